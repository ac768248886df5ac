"""The stage host (``nicelab.grader.isolation.stage_host``): one process per submission imports
TensorFlow once and forks each graded stage's process; each stage's process still sees only
the reference of the stages before it, runs alone, and is counted and killed as before."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_sandbox import HIDDEN  # one hidden check of stage 1

from nicelab.grader import remote, stage_processes
from nicelab.grader.isolation import sandbox

LESSONS = Path(__file__).resolve().parents[1] / "lessons"
#: Appended to a stage's stub: what its process sees of the reference, and (stage 1) a daemon
#: that leaves the stage's session and process group, as a student's code could.
SEEN = '\nimport os as _os\nSEEN = sorted(_os.listdir("/grader/project/solutions"))\n'
#: Appended to stage 1: what it leaves in the sandbox's scratch; stage 2 lists what it finds.
LEAVES = '''
open("/tmp/work/left.txt", "w").write("stage 1")
open("/tmp/home/.left", "w").write("stage 1")
open("/dev/shm/left", "w").write("stage 1")
import ctypes as _ctypes
_ctypes.CDLL(None).shmget(0, 1 << 20, 0o1600)  # a System V segment, detached at once
'''
FINDS = '''
FOUND = sorted(_os.listdir("/tmp/work") + _os.listdir("/tmp/home") + _os.listdir("/dev/shm"))
SEGMENTS = len(open("/proc/sysvipc/shm").read().splitlines()) - 1
'''
DAEMON = '''
if _os.fork() == 0:
    _os.setsid()
    if _os.fork() == 0:
        import time as _time
        _time.sleep(600)
    _os._exit(0)
_os.wait()
'''


def _submission(root: Path, extra: dict[str, str]) -> Path:
    sub = root / "sub"
    shutil.copytree(LESSONS, sub, ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in extra.items():
        with open(sub / name, "a") as module:
            module.write(text)
    return sub


@pytest.mark.slow
def test_each_stage_sees_only_the_reference_before_it_and_runs_alone_in_a_fresh_scratch(tmp_path):
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (.ci/run installs it)")
    sub = _submission(tmp_path, {"coupling.py": SEEN + LEAVES + FINDS + DAEMON, "model.py": SEEN + FINDS})
    host = stage_processes.host(sub, "sandbox")
    try:
        coupling = stage_processes.start(sub, "coupling", "sandbox", hosted=True)
        assert coupling.host is host
        first = coupling.load()["module"]
        assert first.SEEN == ["__init__.py"]
        assert (first.FOUND, first.SEGMENTS) == ([".left", "left", "left.txt"], 1)
        assert host.others(), "the stage's process and its daemon run in the host's sandbox"
        coupling.close()
        assert host.alive() and not host.others(), "the daemon outlived its stage"
        model = stage_processes.start(sub, "model", "sandbox", hosted=True)
        module = model.load()["module"]
        assert model.host is host and module.SEEN == ["__init__.py", "coupling.py"]
        assert (module.FOUND, module.SEGMENTS) == ([], 0), "stage 2 found what stage 1 left in the scratch"
        model.close()
        # An earlier stage after a later one (the hidden checks): the host's view holds its
        # reference now, so that stage's process gets a new host, with the reference before it only.
        with pytest.raises(remote.NotHosted):
            remote.Client(sub, "coupling", host=host)
        again = stage_processes.start(sub, "coupling", "sandbox", hosted=True)
        assert again.host not in (None, host) and not host.alive()
        assert again.load()["module"].SEEN == ["__init__.py"]
        again.close()
    finally:
        stage_processes.close_all()
    assert not Path(host.folder).exists() and not Path(again.host.folder).exists()


@pytest.mark.slow
def test_a_stopped_stage_takes_its_host_with_it_and_a_crash_says_how_it_ended(tmp_path):
    sub = _submission(tmp_path, {"model.py": "\nimport os as _os\n_os._exit(3)\n"})
    try:
        host = stage_processes.host(sub, "process")
        coupling = stage_processes.start(sub, "coupling", "process", hosted=True)
        assert coupling.host is host and coupling.load()["kind"] == "ok"
        coupling.kill()  # a time limit: the whole host goes
        assert coupling.proc.wait(timeout=30) == -9
        coupling.close()
        assert not host.alive()
        model = stage_processes.start(sub, "model", "process", hosted=True)
        assert model.host is not None and model.host is not host  # a new host
        with pytest.raises(remote.GradingProcessEnded, match="exited with code 3"):
            model.load()
        model.close()
    finally:
        stage_processes.close_all()


def test_a_host_view_grows_by_the_reference_of_the_stages_reached(tmp_path):
    solutions = sandbox.filtered_solutions(tmp_path / "solutions", "coupling")
    assert sorted(p.name for p in solutions.iterdir()) == ["__init__.py"]
    sandbox.add_references(solutions, "likelihood")
    assert sorted(p.name for p in solutions.iterdir()) == ["__init__.py", "coupling.py", "model.py"]


@pytest.mark.slow
def test_hidden_checks_load_a_fresh_module_in_the_public_checks_process(monkeypatch, tmp_path):
    """The hidden checks (a second session) reuse the process of the stage the public checks
    ended on, with the module imported afresh there, as in-process grading does; no new
    process, no second TensorFlow import."""
    from nicelab.grader.runner import run_checks

    log = tmp_path / "loads.txt"
    sub = tmp_path / "sub"
    shutil.copytree(LESSONS.parent / "solutions", sub, ignore=shutil.ignore_patterns("__pycache__"))
    with open(sub / "coupling.py", "a") as module:
        module.write('\nimport os as _os\n'
                     'open(_os.environ["NICELAB_TEST_LOADS"], "a").write(f"{_os.getpid()}\\n")\n')
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / "test_secret.py").write_text(HIDDEN)
    monkeypatch.setenv("NICELAB_TEST_LOADS", str(log))
    started = []
    monkeypatch.setattr(remote.Client, "_start", lambda self, *a, _start=remote.Client._start: (
        started.append(a[1]), _start(self, *a))[1])
    results = run_checks(sub, ("coupling",), extra_dirs=(tmp_path / "hidden",), remote="process")
    assert results and all(r.outcome == "passed" for r in results), [r.message for r in results if r.message]
    assert [r.nodeid for r in results if "hidden_coupling_secret" in r.nodeid]
    assert started == ["coupling"], "the hidden checks started a process of their own"
    pids = log.read_text().split()
    assert len(pids) == 2 and len(set(pids)) == 1, pids  # loaded twice, in one process
    assert not stage_processes._KEPT and not stage_processes.SETTINGS["keep"]


@pytest.mark.parametrize("junk", [b"not json", b'{"pid": "x"}', b'{"exit": 5}', b"[1, 2]", b"7"])
def test_a_host_that_breaks_the_protocol_counts_as_ended(junk):
    """A host runs beside a student's code, which may take it over: whatever it sends, the
    grader's side ends the channel (the next stage gets a new host), never raises."""
    import socket

    from nicelab.grader.isolation import forkserver, stage_host

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    channel = stage_host._HostChannel(ours)
    theirs.send(b'{"ready": true}')
    theirs.send(junk)
    channel.reader.join(timeout=10)
    assert channel.ended and not channel.wait_ready(timeout=1)
    assert channel.spawn({"argv": []}, []) is None
    assert forkserver.ForkedProcess(channel, 12345).wait(timeout=10) == -9
    theirs.close()
    ours.close()
