"""Issue 21: the Gradescope bundle gives the batch's guarantees where it cannot use bubblewrap.

On Gradescope the autograder runs as root; without the sandbox the student's code (the child
answering the checks) runs as an unprivileged user. Run here through AUTOGRADER_ROOT, as root,
with that user forced (``NICELAB_GRADESCOPE_ISOLATION=user``) and a uid no account has:

* (a) a stub that forges "passed" events through ``/proc/<pid>/fd/N`` of every nicelab process
  it can see gets no mark, and opens none of their descriptors;
* (b) a stub that reads the hidden checks, the references and the grading key, writes into the
  bundle and the results, and leaves a double-forked daemon that tries again after the grader is
  done: every attempt is refused, the daemon is killed before ``results.json`` is written, and
  no process of that user is left;
* (c) a correct submission still gets full marks.

The bundle grades stage 1 only (with one hidden check). The child needs a Python that user may
run: the tests use a virtual environment of the system's Python of this version, in a folder
everyone may read, that sees this project's packages (nothing is installed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
from attack_submissions import recipe_forger
from test_gradescope import ROOT, run_bundle, totals

from nicelab.authoring import gradescope
from nicelab.authoring.gradescope import isolation_plan, lock_down, write_bundle
from nicelab.grader.isolation.process import Plan, _usage, worker_command
from nicelab.grader.isolation.student_user import kill_user, user_processes
from nicelab.grader.results.report import load_points

#: The student's uid in these tests (no account has it).
UID = 61234
SECRET = "HIDDEN-SECRET-4b1d9"
HIDDEN = f'''# {SECRET}
import numpy as np

from nicelab.grader.assertions import expect


def test_hidden_coupling_round_trip(coupling):
    layer = coupling.AdditiveCoupling(4, 0, hidden_units=8, hidden_layers=1)
    x = np.ones((3, 4), np.float32)
    error = float(np.max(np.abs(np.asarray(layer.backward(layer.forward(x))) - x)))
    expect(error < 1e-4, "backward(forward(x)) == x", f"an error of {{error:.3g}}", "undo the shift.")
'''
ANCHOR = "import tensorflow as tf\n"
MAX_POINTS = load_points().of("coupling")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the student's user needs a root grader")


# ----------------------------------------------------------------------------- fast checks

def test_plan_refuses_root_and_a_second_isolation(monkeypatch):
    with pytest.raises(ValueError, match="never root"):
        Plan(None, uid=0)
    with pytest.raises(ValueError, match="not both"):
        Plan("/usr/bin/bwrap", uid=UID)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(PermissionError, match="needs a grader running as root"):
        Plan(None, uid=UID)
    assert Plan(None).uid is None


@needs_root
def test_the_worker_is_told_the_uid():
    limits = gradescope.Limits(timeout=60, memory_mb=1024)
    command = worker_command("impl", ["coupling"], [], limits, 1, 5, plan=Plan(None, uid=UID))
    assert command[command.index("--child-uid") + 1] == str(UID) and "--bwrap" not in command


@needs_root
def test_isolation_modes(monkeypatch):
    monkeypatch.setenv(gradescope.UID_ENV, str(UID))
    plan = isolation_plan("user", 256)
    assert plan.uid == UID and not plan.sandboxed
    assert isolation_plan("none", 256).uid is None
    with pytest.raises(ValueError, match="isolation is one of"):
        isolation_plan("chroot", 256)
    auto = isolation_plan("auto", 256)  # the sandbox where bubblewrap works, else the user
    assert auto.sandboxed or auto.uid == UID


@needs_root
def test_kill_user_kills_what_left_the_tree():
    spawned = subprocess.Popen(["/bin/sh", "-c", "(setsid sleep 300 &); (sleep 300 &); sleep 300"], user=UID,
                               group=UID, extra_groups=[], cwd="/", stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while len(user_processes(UID)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(user_processes(UID)) >= 3
    assert kill_user(UID, timeout=10)
    spawned.wait(timeout=10)
    assert user_processes(UID) == []


@needs_root
def test_the_users_processes_count_wherever_they_run():
    worker = subprocess.Popen(["sleep", "60"], start_new_session=True)  # a worker with no children
    outside = subprocess.Popen(["sleep", "60"], user=UID, group=UID, extra_groups=[], cwd="/",
                               start_new_session=True)  # the user's, outside the worker's tree
    try:
        assert _usage(worker, None)[1] == 1
        rss, count = _usage(worker, UID)
        assert count == 2 and rss > 0
    finally:
        assert kill_user(UID, timeout=10)
        worker.kill()
        worker.wait()
        outside.wait()


@needs_root
def test_lock_down(tmp_path):
    root = tmp_path / "autograder"
    for folder in ("source/hidden/0-hidden", "source/solutions", "source/nicelab", "results"):
        (root / folder).mkdir(parents=True)
    (root / "source" / "nicelab" / "x.py").write_text("")
    for path in (root, root / "source", root / "source" / "nicelab", root / "source" / "nicelab" / "x.py"):
        path.chmod(0o777)
    lock_down(root, root / "source", {"hidden_checks": ["hidden/0-hidden"]})
    mode = {p: (root / p).stat().st_mode & 0o777 for p in
            (".", "source", "source/nicelab", "source/nicelab/x.py", "source/hidden/0-hidden",
             "source/solutions", "results")}
    assert mode == {".": 0o755, "source": 0o755, "source/nicelab": 0o755, "source/nicelab/x.py": 0o755,
                    "source/hidden/0-hidden": 0o700, "source/solutions": 0o700, "results": 0o700}


# ----------------------------------------------------------------------------- through the bundle

def _others_can_run(python: Path) -> bool:
    probe = subprocess.run([str(python), "-c", "import numpy, tensorflow"], user=UID, group=UID, cwd="/",
                           extra_groups=[], capture_output=True, timeout=120)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def student_python():
    """A virtual environment of the system's Python (this version) that the student's user may
    run, seeing this project's packages; skips where there is none or the user cannot read them."""
    if os.geteuid() != 0:
        pytest.skip("the student's user needs a root grader")
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        pytest.skip(f"no {system} to build a Python the student's user may run")
    folder = Path(tempfile.mkdtemp(prefix="nicelab-student-python-"))
    folder.chmod(0o755)
    try:
        subprocess.run([str(system), "-m", "venv", "--without-pip", str(folder / "venv")], check=True,
                       capture_output=True, timeout=120)
        site = subprocess.run([str(folder / "venv" / "bin" / "python"), "-c",
                               "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
        here = sysconfig.get_paths()["purelib"]
        (Path(site) / "nicelab-host.pth").write_text(f"import site; site.addsitedir({here!r})\n")
        python = folder / "venv" / "bin" / "python"
        if not _others_can_run(python):
            pytest.skip(f"the student's user cannot read this project's packages ({here})")
        yield python
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def stage1_bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gradescope-attacks")
    (tmp / "hidden").mkdir()
    (tmp / "hidden" / "test_hidden_coupling.py").write_text(HIDDEN)
    return write_bundle(tmp / "autograder.zip", 1, [tmp / "hidden"], timeout=600, memory_mb=2048)


@pytest.fixture
def place(tmp_path):
    """A root folder the student's user may pass through, and a folder it may write its loot into."""
    folder = Path(tempfile.mkdtemp(prefix="nicelab-gradescope-"))
    folder.chmod(0o755)
    (folder / "loot").mkdir()
    (folder / "loot").chmod(0o777)
    try:
        yield folder
    finally:
        kill_user(UID)
        shutil.rmtree(folder, ignore_errors=True)


def _grade_as_user(bundle, tmp_path: Path, place: Path, submission: Path, python: Path) -> dict:
    key = place / "grade-key"  # root's grading key, 0600, somewhere the student's user can pass
    key.write_text("k" * 64)
    key.chmod(0o600)
    env = {gradescope.ISOLATION_ENV: "user", gradescope.UID_ENV: str(UID), "NICELAB_PYTHON": str(python),
           "NICELAB_GRADE_KEY_FILE": str(key)}
    return run_bundle(bundle, tmp_path, submission, root=place / "autograder", env=env)


def _hostile(tmp_path: Path, code: str) -> Path:
    """The stubs, whose coupling.py runs ``code`` when it is imported (in the child)."""
    submission = tmp_path / "hostile"
    shutil.copytree(ROOT / "lessons", submission, ignore=shutil.ignore_patterns("__pycache__"))
    module = submission / "coupling.py"
    text = module.read_text()
    assert ANCHOR in text
    module.write_text(text.replace(ANCHOR, ANCHOR + code, 1))
    return submission


FORGE = '''
import json as _json, os as _os, re as _re, sys as _sys
from pathlib import Path as _Path

_loot = _Path({loot!r})
_source = _Path(_sys.modules["nicelab"].__file__).resolve().parents[1]
_names = _re.findall(r"^def (test_\\w+)", (_source / "checks" / "test_coupling.py").read_text(), _re.M)
_ids = [f"checks/test_coupling.py::{{n}}" for n in _names] + ["0-hidden/test_hidden_coupling.py::"
                                                            "test_hidden_coupling_round_trip"]
_forged = b"".join((_json.dumps({{"event": "result", "result": {{
    "nodeid": n, "stage": "coupling", "outcome": "passed", "message": "", "duration": 0.0,
    "kind": "passed"}}}}) + "\\n").encode() for n in _ids) + b'{{"event": "done"}}\\n'
_targets, _pid = set(), _os.getppid()
while _pid > 1:  # the worker, the grader, run_autograder, ...
    _targets.add(_pid)
    _pid = int((_Path("/proc") / str(_pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
for _entry in _Path("/proc").iterdir():  # and every process of this grading (its paths)
    try:
        if _entry.name.isdigit() and {place!r}.encode() in (_entry / "cmdline").read_bytes():
            _targets.add(int(_entry.name))
    except OSError:
        pass
_targets.discard(_os.getpid())
_opened, _tried = [], 0
for _target in sorted(_targets):
    for _fd in range(0, 64):
        _tried += 1
        try:
            _w = _os.open(f"/proc/{{_target}}/fd/{{_fd}}", _os.O_WRONLY | _os.O_NONBLOCK)
        except OSError:
            continue
        _opened.append(f"{{_target}}/{{_fd}}")
        try:
            _os.write(_w, _forged)
        except OSError:
            pass
        _os.close(_w)
(_loot / "forge.json").write_text(_json.dumps({{"tried": _tried, "opened": _opened,
                                               "targets": sorted(_targets)}}))
'''


@pytest.mark.slow
def test_events_forged_through_proc_get_no_mark(stage1_bundle, tmp_path, place, student_python):
    submission = _hostile(tmp_path, FORGE.format(loot=str(place / "loot"), place=str(place)))
    document = _grade_as_user(stage1_bundle, tmp_path, place, submission, student_python)
    report = json.loads((place / "loot" / "forge.json").read_text())
    assert len(report["targets"]) >= 3 and report["opened"] == []  # root's descriptors are out of reach
    assert totals(document) == (0, MAX_POINTS)
    assert user_processes(UID) == []


DAEMON = '''
import json as _json, os as _os, sys as _sys, time as _time
from pathlib import Path as _Path

_loot = _Path({loot!r})
_source = _Path(_sys.modules["nicelab"].__file__).resolve().parents[1]
_root = _source.parent
_forged = _json.dumps({{"score": 20, "output": "forged", "tests": []}})


def _attempt(tag, name, action):
    try:
        found = action()
    except Exception as err:
        (_loot / f"{{tag}}-{{name}}.denied").write_text(type(err).__name__)
    else:
        (_loot / f"{{tag}}-{{name}}.done").write_text(repr(found)[:100000])


def _hidden():
    return [(_source / "hidden" / n).read_text() for n in _os.listdir(_source / "hidden")]


def _attempts(tag):
    _attempt(tag, "read-hidden", _hidden)
    _attempt(tag, "read-hidden-file", lambda: (_source / "hidden" / "0-hidden" / "test_hidden_coupling.py")
             .read_text())
    _attempt(tag, "read-reference", lambda: (_source / "solutions" / "__init__.py").read_text())
    _attempt(tag, "read-key", lambda: _Path({key!r}).read_text())
    _attempt(tag, "write-source", lambda: (_source / "nicelab" / "zz_attack.py").write_text("x = 1\\n"))
    _attempt(tag, "write-checks", lambda: (_source / "checks" / "test_coupling.py").write_text(""))
    _attempt(tag, "write-results", lambda: (_root / "results" / "results.json").write_text(_forged))
    _attempt(tag, "list-results", lambda: _os.listdir(_root / "results"))


_attempts("import")
if _os.fork() == 0:
    _os.setsid()
    if _os.fork() == 0:
        _os.closerange(3, 1024)
        _start = _time.time()
        while _time.time() - _start < 600:
            (_loot / "heartbeat").write_text(str(_time.time()))
            if (_root / "results" / "results.json").exists() or _time.time() - _start > 5:
                _attempts("daemon")
            _time.sleep(0.2)
    _os._exit(0)
_os.wait()
'''


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.slow
def test_a_daemon_left_behind_is_killed_and_reaches_nothing(stage1_bundle, tmp_path, place, student_python):
    loot = place / "loot"
    submission = _hostile(tmp_path, DAEMON.format(loot=str(loot), key=str(place / "grade-key")))
    bundled = tmp_path / "bundled"
    with zipfile.ZipFile(stage1_bundle.path) as archive:
        archive.extractall(bundled)
    document = _grade_as_user(stage1_bundle, tmp_path, place, submission, student_python)
    results = place / "autograder" / "results" / "results.json"
    written, before = results.stat().st_mtime, results.read_bytes()
    assert user_processes(UID) == []  # killed before the results were written
    time.sleep(3)
    assert results.read_bytes() == before and totals(document) == (0, MAX_POINTS)
    assert (loot / "heartbeat").exists() and float((loot / "heartbeat").read_text()) <= written
    done = sorted(p.name for p in loot.iterdir() if p.suffix == ".done")
    denied = sorted(p.name for p in loot.iterdir() if p.suffix == ".denied")
    assert done == [] and "import-read-hidden.denied" in denied and len(denied) >= 8, (done, denied)
    assert not any(SECRET in p.read_text(errors="replace") for p in loot.iterdir())
    assert _tree(place / "autograder" / "source") == _tree(bundled)  # the bundle is as it was unpacked
    assert user_processes(UID) == []


@pytest.mark.slow
def test_a_recipe_forger_gets_no_gradient_marks(stage1_bundle, tmp_path, place, student_python):
    """Issue 21: a helper module next to the lesson replaces the recipe that reports gradients;
    the grader checks the claims against forward's answers, so the gradient checks still fail."""
    submission = recipe_forger(tmp_path / "forger", "helper")
    document = _grade_as_user(stage1_bundle, tmp_path, place, submission, student_python)
    gradients = [t for t in document["tests"] if "gradients_reach_every_variable" in t["name"]]
    assert len(gradients) == 2 and all(t["score"] == 0 for t in gradients), gradients
    assert totals(document)[0] < MAX_POINTS
    assert user_processes(UID) == []


@pytest.mark.slow
def test_a_correct_submission_gets_full_marks_as_the_student_user(stage1_bundle, tmp_path, place,
                                                                 student_python):
    submission = tmp_path / "correct"
    shutil.copytree(ROOT / "lessons", submission, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(ROOT / "solutions" / "coupling.py", submission / "coupling.py")
    document = _grade_as_user(stage1_bundle, tmp_path, place, submission, student_python)
    assert totals(document) == (MAX_POINTS, MAX_POINTS), [t["output"] for t in document["tests"]][:5]
    hidden = [t for t in document["tests"] if t["visibility"] == "after_published"]
    assert [t["status"] for t in hidden] == ["passed"]
    assert user_processes(UID) == []
