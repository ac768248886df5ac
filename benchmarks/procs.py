"""Sections 1 and 4 of the bench: commands run as subprocesses, with their wall time and peak
resident memory (``ru_maxrss`` of that very command, see :data:`LAUNCHER`).

* the check suite, ``python -m pytest checks --impl solutions``, whole and stage by stage, from a
  cold cache of trained fixtures (``NICELAB_CACHE`` pointed at an empty folder), then warm, and
  warm with the graded modules in child processes (``--remote process``, and ``sandbox`` when
  bubblewrap is there: what a graded batch does);
* the main job, ``nicelab train parabola --impl solutions``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nicelab.core.course import STAGE_NAMES
from nicelab.core.impl import PROJECT_ROOT


@dataclass
class ProcResult:
    """One finished subprocess: exit status, wall seconds, peak RSS in MiB, and its output."""

    command: list[str]
    returncode: int
    seconds: float
    peak_mib: float
    output: str
    row_seconds: float = float("nan")  # ``nicelab grade``: the submission's own seconds (its row)

    @property
    def summary(self) -> str:
        """pytest's last summary line ("12 passed in 3.1s"), else the last line of output."""
        lines = [line.strip("= ") for line in self.output.strip().splitlines() if line.strip()]
        for line in reversed(lines):
            if re.search(r"\d+ (passed|failed|error|skipped|deselected)", line):
                return re.sub(r" in [\d.]+s.*$", "", line)
        return lines[-1] if lines else ""

    def count(self, word: str) -> int:
        """How many checks pytest's summary line reports as ``word`` (passed, failed, ...)."""
        match = re.search(rf"(\d+) {word}", self.summary)
        return int(match.group(1)) if match else 0


#: A small launcher between the bench and the measured command. Linux carries a process's peak
#: RSS across ``exec``, so a child forked straight from the bench (TensorFlow loaded: hundreds of
#: MiB) would report at least the bench's size. The launcher is a fresh small process; its child's
#: peak is the command's own (plus at most the launcher's few MiB).
LAUNCHER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def run_measured(command: list[str], env: dict[str, str] | None = None,
                 cwd: Path = PROJECT_ROOT, timeout: float = 1800) -> ProcResult:
    """Run ``command``; its wall time and its own peak resident set size (through :data:`LAUNCHER`)."""
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryDirectory(prefix="nicelab-bench-proc-") as tmp:
        report = Path(tmp) / "maxrss"
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(report), *command], cwd=cwd,
                                  env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, timeout=timeout)
            returncode, output = proc.returncode, proc.stdout
        except subprocess.TimeoutExpired as err:
            returncode = -9
            output = (err.stdout.decode() if isinstance(err.stdout, bytes) else err.stdout or "")
            output += f"\ntimed out after {timeout:.0f} s"
        seconds = time.perf_counter() - start
        maxrss = float(report.read_text()) if report.exists() else float("nan")
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    peak = maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return ProcResult(command, returncode, seconds, peak, output)


def pytest_command(stage: str | None = None) -> list[str]:
    """The check suite on the reference (one stage with ``-m STAGE``)."""
    command = [sys.executable, "-m", "pytest", "checks", "--impl", "solutions", "-q",
               "-p", "no:cacheprovider"]
    return command + (["-m", stage] if stage else [])


def check_suite(stages: bool = True, warm: bool = True) -> dict[str, ProcResult]:
    """Time the whole check suite from a cold fixture cache (key ``all``), again with that cache
    warm (``all (warm)``), and each stage alone from a cold cache (keys: the stage names)."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="nicelab-bench-cache-") as cache:
        results["all"] = run_measured(pytest_command(), {"NICELAB_CACHE": cache})
        if warm:
            results["all (warm)"] = run_measured(pytest_command(), {"NICELAB_CACHE": cache})
            # What a graded batch does: the graded modules answer from child processes (remote
            # grading), in bubblewrap when the machine has it.
            results["all (warm, remote)"] = run_measured(pytest_command() + ["--remote", "process"],
                                                         {"NICELAB_CACHE": cache})
            if shutil.which("bwrap"):
                results["all (warm, sandbox)"] = run_measured(pytest_command() + ["--remote", "sandbox"],
                                                              {"NICELAB_CACHE": cache})
            results["graded submission"], results["graded submission"].row_seconds = \
                graded_submission(cache)
            for key, server in (("graded class, no server", False), ("graded class", True)):
                results[key], results[key].row_seconds = graded_class(server=server, cache=cache)
    if stages:
        for stage in STAGE_NAMES:
            with tempfile.TemporaryDirectory(prefix="nicelab-bench-cache-") as cache:
                results[stage] = run_measured(pytest_command(stage), {"NICELAB_CACHE": cache})
    return results


def graded_submission(cache: str | None = None) -> tuple[ProcResult, float]:
    """``nicelab grade`` of one copy of the reference, every stage, one at a time (in the sandbox
    when bubblewrap is there): the batch's whole run, and the submission's own seconds (its
    row's ``wall_time``: its worker, its stages' child processes and the checks)."""
    with tempfile.TemporaryDirectory(prefix="nicelab-bench-grade-") as tmp:
        shutil.copytree(PROJECT_ROOT / "solutions", Path(tmp) / "subs" / "reference",
                        ignore=shutil.ignore_patterns("__pycache__"))
        command = [sys.executable, "-m", "nicelab.cli", "grade", str(Path(tmp) / "subs"), "--json",
                   str(Path(tmp) / "r.json"), "--jobs", "1"]
        command += [part for stage in STAGE_NAMES for part in ("--stage", stage)]  # as the suite: all
        if not shutil.which("bwrap"):
            command.append("--no-sandbox")
        env = {"NICELAB_GRADE_KEY_FILE": str(Path(tmp) / "key")}
        if cache:
            env["NICELAB_CACHE"] = cache
        result = run_measured(command, env)
        rows = json.loads((Path(tmp) / "r.json").read_text())["submissions"] if result.returncode == 0 else []
    return result, float(rows[0]["wall_time"]) if rows else float("nan")


def graded_class(size: int = 4, server: bool = True, cache: str | None = None) -> tuple[ProcResult, float]:
    """``nicelab grade`` of a class of ``size`` copies of the reference, stage 1 only, two at a
    time (in the sandbox when bubblewrap is there), with the batch's fork server of workers or
    without it (``NICELAB_FORK_SERVER=0``): the batch's run and its seconds per submission."""
    with tempfile.TemporaryDirectory(prefix="nicelab-bench-class-") as tmp:
        for index in range(size):
            shutil.copytree(PROJECT_ROOT / "solutions", Path(tmp) / "subs" / f"student-{index}",
                            ignore=shutil.ignore_patterns("__pycache__"))
        command = [sys.executable, "-m", "nicelab.cli", "grade", str(Path(tmp) / "subs"), "--json",
                   str(Path(tmp) / "r.json"), "--jobs", "2", "--stage", "coupling"]
        if not shutil.which("bwrap"):
            command.append("--no-sandbox")
        env = {"NICELAB_GRADE_KEY_FILE": str(Path(tmp) / "key"),
               "NICELAB_FORK_SERVER": "1" if server else "0"}
        if cache:
            env["NICELAB_CACHE"] = cache
        result = run_measured(command, env)
    return result, result.seconds / size


def main_job(out: Path, data: str = "parabola") -> ProcResult:
    """``nicelab train DATA --impl solutions --quiet --out OUT``, the project's main job."""
    command = [sys.executable, "-m", "nicelab.cli", "train", data, "--impl", "solutions",
               "--quiet", "--out", str(out)]
    return run_measured(command)
