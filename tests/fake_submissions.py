"""A fake class for the grading tests: submissions made from copies of solutions/ and lessons/
with small edits, each with the row ``nicelab grade`` must give it.

The class is graded on stages 1-2 only (the cheap ones); every misbehaviour sits in stage 1
or 2. ``EXPECTED[name]`` = (submission status, {stage: stage status}).
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS, LESSONS = ROOT / "solutions", ROOT / "lessons"
STAGES = ("coupling", "model")

FORWARD = "        x = as_batch(x, self.dim)\n        # BEGIN SOLUTION: AdditiveCoupling.forward\n"
LOG_DET = "return tf.reduce_sum(self.log_scale)"

HANG = "import time\n        while True:\n            time.sleep(1)\n"
ENDLESS = ("import os, time\n        while True:\n            print('spam ' * 2000)\n"
           "            os.write(1, b'x' * 65536)\n            time.sleep(0.005)\n")
HOG = ("import numpy as np\n        hoard = []\n        while True:\n"
       "            hoard.append(np.ones(10_000_000))\n")
SEGFAULT = "import ctypes\n        ctypes.string_at(0)\n"


def _copy(into: Path, base: Path) -> Path:
    shutil.copytree(base, into, ignore=shutil.ignore_patterns("__pycache__"))
    return into


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new))


def _in_forward(sub: Path, code: str) -> None:
    """Insert ``code`` at the start of AdditiveCoupling.forward of the reference copy."""
    _edit(sub / "coupling.py", FORWARD,
          FORWARD.replace("        # BEGIN", "        " + code + "        # BEGIN"))


def make_class(root: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """Write the fake class into ``root``; return each submission's expected row."""
    root.mkdir(parents=True, exist_ok=True)
    expected = {}

    _copy(root / "complete", SOLUTIONS)
    expected["complete"] = ("graded", {"coupling": "passed", "model": "passed"})

    sub = _copy(root / "partial", LESSONS)
    shutil.copyfile(SOLUTIONS / "coupling.py", sub / "coupling.py")
    expected["partial"] = ("graded", {"coupling": "passed", "model": "not started"})

    sub = _copy(root / "broken_model", SOLUTIONS)
    _edit(sub / "model.py", LOG_DET, "return -tf.reduce_sum(self.log_scale)")
    expected["broken_model"] = ("graded", {"coupling": "passed", "model": "failing"})

    # model.py needs a helper from the student's own (unfinished) coupling.py: blocked by stage 1.
    sub = _copy(root / "blocked", LESSONS)
    shutil.copyfile(SOLUTIONS / "model.py", sub / "model.py")
    (sub / "coupling.py").write_text((sub / "coupling.py").read_text() + "\n\nHELPER_SCALE = 1.0\n")
    _edit(sub / "model.py", "from .coupling import AdditiveCoupling",
          "from .coupling import HELPER_SCALE, AdditiveCoupling  # noqa: F401")
    expected["blocked"] = ("graded", {"coupling": "not started", "model": "blocked"})

    sub = _copy(root / "imports_solutions", LESSONS)
    (sub / "model.py").write_text("from solutions.model import NICE  # noqa: F401\n")
    expected["imports_solutions"] = ("graded", {"coupling": "not started", "model": "imports solutions"})

    sub = _copy(root / "import_error", LESSONS)
    _edit(sub / "coupling.py", "import tensorflow as tf\n",
          "import tensorflow as tf\nimport a_package_nobody_installed  # noqa: F401\n")
    expected["import_error"] = ("graded", {"coupling": "failing", "model": "not started"})

    sub = _copy(root / "sys_exit", LESSONS)
    _edit(sub / "coupling.py", "import tensorflow as tf\n",
          "import sys\n\nimport tensorflow as tf\n\nsys.exit(3)\n")
    expected["sys_exit"] = ("graded", {"coupling": "failing", "model": "not started"})

    # Each of these stops stage 1 (the check time limit, a crash, the memory limit); stage 2 (a
    # stub) is then graded in a fresh process: "not started", not "not graded".
    for name, code, status, stage_status in (
            ("hanging", HANG, "timeout", "timed out"), ("endless_output", ENDLESS, "timeout", "timed out"),
            ("crashing", SEGFAULT, "crashed", "crashed"), ("memory_hog", HOG, "memory", "out of memory")):
        sub = _copy(root / name, LESSONS)
        shutil.copyfile(SOLUTIONS / "coupling.py", sub / "coupling.py")
        _in_forward(sub, code)
        expected[name] = (status, {"coupling": stage_status, "model": "not started"})
    return expected


def make_hanging(root: Path) -> Path:
    """One submission that hangs in stage 1 (for the whole-submission time limit)."""
    sub = _copy(root / "hanging", LESSONS)
    shutil.copyfile(SOLUTIONS / "coupling.py", sub / "coupling.py")
    _in_forward(sub, HANG)
    return sub


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), to prove grading writes nothing."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
