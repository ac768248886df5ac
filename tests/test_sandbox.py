"""Issue 10: a class of hostile submissions (tests/attack_submissions.py, every attack class of
the issue's table) graded in one sandboxed batch beside honest ones: no forged mark, no honest
row hurt, nothing left running, the venv, the project and the caches unchanged, and a results
file edited after grading not trusted on resume. Also the sandbox's parts one by one.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import jsonschema
import psutil
import pytest
from attack_submissions import DAEMON_MARK, FORGERIES, POISON, RECIPE_FORGERS, make_attacks

from nicelab.core.cache import cache_dir
from nicelab.grader.isolation import sandbox
from nicelab.grader.results import integrity, report

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads(report.SCHEMA_FILE.read_text())
KEY_FILE = Path(tempfile.gettempdir()) / "nicelab-test-grade-key"
PLANTED_KEY = "PLANTED-KEY-" + "0" * 64
LIMITS = ["--timeout", "300", "--check-timeout", "60", "--memory-mb", "2048", "--jobs", "3"]
HIDDEN = '''
import numpy as np
import pytest

pytestmark = pytest.mark.coupling


def test_hidden_coupling_secret(coupling):
    layer = coupling.AdditiveCoupling(4, 0)
    x = np.random.default_rng(7).normal(size=(5, 4)).astype("float32")
    np.testing.assert_allclose(layer.backward(layer.forward(x)), x, atol=1e-5)
'''
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap is not installed (.ci/run installs it)")


def nicelab(*args: str, timeout: float = 1200, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NICELAB_IMPL"}
    env.update(COLUMNS="100", NICELAB_GRADE_KEY_FILE=str(KEY_FILE))
    if cache is not None:
        env["NICELAB_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "nicelab.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def _digest(paths) -> dict[str, str]:
    found = {}
    for base in paths:
        base = Path(base)
        files = [base] if base.is_file() else sorted(base.rglob("*")) if base.is_dir() else []
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def environment_snapshot() -> dict:
    """What no submission may change: the project tree, the caches, the venv's site-packages
    (its entries, and every .pth file's text)."""
    sites = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    listing = {s: sorted(os.listdir(s)) for s in sites if os.path.isdir(s)}
    pth = _digest(p for s in sites if os.path.isdir(s) for p in Path(s).glob("*.pth"))
    project = _digest(ROOT / part for part in ("nicelab", "checks", "solutions", "lessons", "pyproject.toml"))
    keras = Path(os.path.expanduser(os.environ.get("KERAS_HOME") or "~/.keras"))
    return {"site": listing, "pth": pth, "project": project, "cache": _digest([cache_dir(), keras])}


def _processes_with(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """The hostile class graded in one batch: (expected rows, folder, run, wall s, before, after)."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (.ci/run installs it)")
    tmp = tmp_path_factory.mktemp("attacks")
    expected = make_attacks(tmp / "subs")
    (tmp / "hidden").mkdir()
    (tmp / "hidden" / "test_secret.py").write_text(HIDDEN)
    cache = tmp / "cache"  # another submission's training run and a key beside it: out of reach
    (cache / "fixtures").mkdir(parents=True)
    (cache / "parabola-run-0123456789abcdef.npz").write_bytes(b"another submission's run")
    (cache / "grade-key").write_text(PLANTED_KEY)
    before = environment_snapshot()
    start = time.perf_counter()
    run = nicelab("grade", str(tmp / "subs"), "--json", str(tmp / "r.json"), "--csv", str(tmp / "r.csv"),
                  "--stage", "coupling", "--extra-checks", str(tmp / "hidden"), *LIMITS, cache=cache)
    wall = time.perf_counter() - start
    print(f"\nthe hostile class ({len(expected)} submissions) was graded in {wall:.0f} s")
    written = (tmp / "r.json").read_bytes()
    time.sleep(3)  # a left-over process would rewrite the results now
    return expected, tmp, run, wall, before, environment_snapshot(), written


def _rows(tmp: Path) -> dict[str, dict]:
    document = json.loads((tmp / "r.json").read_text())
    jsonschema.validate(document, SCHEMA)
    return {row["name"]: row for row in document["submissions"]}


def _statuses(row: dict) -> tuple[str, dict[str, str]]:
    return row["status"], {st["stage"]: st["status"] for st in row["stages"]}


@pytest.mark.slow
def test_no_forged_mark_and_no_honest_row_hurt(attacked):
    expected, tmp, run, _, _, _, _ = attacked
    assert run.returncode == 0, run.stdout + run.stderr
    rows = _rows(tmp)
    assert sorted(rows) == sorted(expected)  # the batch was neither killed nor frozen
    seen = {name: _statuses(row) for name, row in rows.items() if name not in FORGERIES}
    assert seen == {name: row for name, row in expected.items() if name not in FORGERIES}
    honest = rows["honest_alternative"]
    assert honest["points"] == honest["max_points"] > 0 and not honest["flags"]
    assert rows["honest_partial"]["points"] == rows["honest_partial"]["max_points"]
    hidden = [c for c in honest["stages"][0]["checks"] if c["hidden"]]
    assert [c["name"] for c in hidden] == ["test_hidden_coupling_secret"] and hidden[0]["passed"]
    for name, row in rows.items():
        assert row["sandboxed"] is True
        if name.startswith(("forge", "reference", "detect", "edit", "kill", "stop", "poison")):
            if name not in FORGERIES:
                assert row["points"] == 0, f"{name} forged {row['points']} points"


@pytest.mark.slow
def test_in_process_forgeries_are_stopped(attacked):
    """The checks run in the grader's worker; the submission's code answers from a sandboxed
    child: patching the checks there changes nothing, forged events break only its own pipe."""
    expected, tmp, _, _, _, _, _ = attacked
    rows = _rows(tmp)
    assert {name: _statuses(rows[name]) for name in FORGERIES} == {name: expected[name] for name in FORGERIES}


@pytest.mark.slow
def test_recipe_forgers_get_no_more_than_their_mistake(attacked):
    """Issue 21: a recipe replaced in the graded process (from a helper module or by a dynamic
    import) claims gradients the grader checks against forward's answers: the forgers score no
    more than the same mistake without the forgery, and less than full marks."""
    _, tmp, _, _, _, _, _ = attacked
    rows = _rows(tmp)
    plain = rows["recipe_plain"]
    for name in RECIPE_FORGERS:
        assert rows[name]["points"] <= plain["points"] < plain["max_points"], (name, rows[name]["points"])


@pytest.mark.slow
def test_a_broadcast_answer_is_refused_by_its_shape(attacked):
    """Issue 21: forward answering (1.2M, 1, 1) fails on its shape before any check computes
    with it (broadcast against the batch, it would cost the grader's worker gigabytes)."""
    _, tmp, _, _, _, _, _ = attacked
    row = _rows(tmp)["broadcast_shape"]
    assert "(1200000, 1, 1)" in row["stages"][0]["message"], row["stages"][0]["message"]


@pytest.mark.slow
def test_reference_is_out_of_reach_and_copies_are_flagged(attacked):
    _, tmp, _, _, _, _, _ = attacked
    rows = _rows(tmp)
    for name in ("reference_import", "reference_exec", "detect_checks"):  # stubs that found no reference
        assert rows[name]["points"] == 0 and _statuses(rows[name])[1] == {"coupling": "not started"}
    assert rows["honest_partial"]["similarity"]["coupling"] == 1.0
    assert any("like the reference" in flag for flag in rows["honest_partial"]["flags"])
    assert rows["honest_alternative"]["similarity"]["coupling"] < integrity.SIMILARITY_FLAG
    assert rows["honest_stub"]["similarity"]["coupling"] == 0.0


@pytest.mark.slow
def test_nothing_outlives_the_batch(attacked):
    _, tmp, _, _, _, _, written = attacked
    assert (tmp / "r.json").read_bytes() == written  # nobody rewrote the results after the batch
    for mark in (DAEMON_MARK, "NICELAB_ATTACK_HOG", str(tmp / "subs")):
        assert not _processes_with(mark), f"a process ({mark}) outlived the batch"


@pytest.mark.slow
def test_venv_project_and_caches_unchanged(attacked):
    _, _, _, _, before, after, _ = attacked
    for part in ("site", "pth", "project", "cache"):
        assert after[part] == before[part], f"the {part} changed"
    assert not any(POISON in name for names in after["site"].values() for name in names)


@pytest.mark.slow
def test_rows_are_clean_and_leak_nothing(attacked):
    _, tmp, run, _, _, _, _ = attacked
    text = (tmp / "r.json").read_text() + (tmp / "r.csv").read_text() + run.stdout
    assert "\x1b" not in text and "\u202e" not in text
    assert "ALL CHECKS PASSED" in _rows(tmp)["ansi_escapes"]["stages"][0]["message"]
    leak = _rows(tmp)["leak"]["stages"][0]["message"]
    seen = base64.b64decode(leak.split("SEEN ", 1)[1].split(" END", 1)[0]).decode()  # its own argv
    assert "nicelab.grader.child /grader/submission coupling" in seen  # the child that runs its code...
    assert "extra" not in seen and str(tmp) not in seen  # ...knows no hidden checks and no path of ours
    for secret in (tmp / "hidden", tmp / "r.json", tmp / "subs" / "honest_alternative", ROOT / "solutions"):
        assert str(secret) not in leak  # no path of the instructor's (bwrap's options came by a pipe)
    for row in csv.reader((tmp / "r.csv").open()):
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@")), cell
    assert "'=HYPERLINK" in (tmp / "r.csv").read_text()


@pytest.mark.slow
def test_the_cache_shows_nothing_of_another_submission(attacked):
    """The sandbox sees the checks' fixtures only: no other submission's run, no key."""
    _, tmp, _, _, _, _, _ = attacked
    message = _rows(tmp)["cache_read"]["stages"][0]["message"]
    # It ran (what it found is listed: the read-only system and venv hold files named *key*,
    # such as icons); no other submission's run and no grading key is among them.
    assert message.startswith("CACHE_READ KEYS:"), message[:300]
    for secret in ("parabola-run", "grade-key", PLANTED_KEY, KEY_FILE.name, str(tmp)):
        assert secret not in message


@pytest.mark.slow
def test_tampered_rows_are_graded_again(attacked):
    _, tmp, _, _, _, _, _ = attacked
    document = json.loads((tmp / "r.json").read_text())
    for row in document["submissions"]:
        if row["name"] == "honest_stub":
            row["points"] = row["max_points"]  # a forged mark, after grading
    (tmp / "r.json").write_text(json.dumps(document))
    run = nicelab("grade", str(tmp / "subs"), "--json", str(tmp / "r.json"), "--stage", "coupling",
                  "--extra-checks", str(tmp / "hidden"), *LIMITS)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "honest_stub: its row" in run.stdout and "graded again" in run.stdout
    assert "grading 1 submissions" in run.stdout
    assert _rows(tmp)["honest_stub"]["points"] == 0


# ----------------------------------------------------------------------------- parts

def test_rows_are_signed_and_checked():
    key = b"k" * 64
    row = integrity.sign_row({"name": "a", "points": 1.0}, key)
    assert integrity.row_is_authentic(row, key)
    assert not integrity.row_is_authentic({**row, "points": 2.0}, key)
    assert not integrity.row_is_authentic(row, b"x" * 64)
    assert not integrity.row_is_authentic({"name": "a", "points": 1.0}, key)


def test_text_and_csv_cells_are_made_harmless():
    assert integrity.clean_text("a\x1b[31mb\x1b[0m\x1b]0;t\x07c\u202ed\x00e\tf\ng") == "abcde\tf\ng"
    assert [integrity.csv_cell(v) for v in ("=1+1", "+1", "-1", "@x", "ok", 1.5)] == \
        ["'=1+1", "'+1", "'-1", "'@x", "ok", 1.5]


def test_similarity_sees_through_renames_and_comments():
    stub = "def f(x):\n    raise NotImplementedError\n"
    reference = "def f(x):\n    y = x * 2\n    return y + 1\n"
    renamed = "def f(x):\n    # mine!\n    z = x * 2\n    return z + 1\n"
    own = "def f(x):\n    return sum([x, x, 1])\n"
    assert integrity.similarity(renamed, reference, stub) == 1.0
    assert integrity.similarity(stub, reference, stub) == 0.0
    assert integrity.similarity(own, reference, stub) < integrity.SIMILARITY_FLAG


@needs_bwrap
def test_sandbox_sees_only_what_it_needs(tmp_path):
    """Inside: read-only project without the graded stage's reference, no network, a capped
    /tmp, no view of the host's processes."""
    solutions = sandbox.filtered_solutions(tmp_path / "solutions", "model")
    assert sorted(p.name for p in solutions.iterdir()) == ["__init__.py", "coupling.py"]
    (tmp_path / "sub").mkdir()
    view = sandbox.View(solutions, tmp_path / "sub", scratch_mb=16)
    probe = (
        "import os, socket, pathlib\n"
        "p = pathlib.Path('/grader/project')\n"
        "print(sorted(x.name for x in (p / 'solutions').iterdir()))\n"
        "print(len([d for d in os.listdir('/proc') if d.isdigit()]))\n"
        "for target in (p / 'nicelab' / 'x', pathlib.Path('/grader/submission/x'), pathlib.Path('/x')):\n"
        "    try: target.write_text('x'); print('wrote', target)\n"
        "    except OSError: pass\n"
        "try: socket.create_connection(('1.1.1.1', 53), timeout=2); print('network')\n"
        "except OSError: pass\n"
        "try: open('/tmp/big', 'wb').write(b'0' * 32 * 2**20); print('big file')\n"
        "except OSError: pass\n"
        f"print(os.path.exists({str(tmp_path)!r}), os.getuid())\n"
        "try: open('/etc/shadow').read(); print('read /etc/shadow')\n"
        "except OSError: pass\n"
        "print(sorted(os.listdir('/grader/cache')) if os.path.isdir('/grader/cache') else ['fixtures'])\n"
    )
    info_r, info_w = os.pipe()
    command = sandbox.sandbox_command([sandbox.python_inside(), "-c", probe], view, 1, info_w,
                                      sandbox.check_available())
    run = subprocess.run(command, capture_output=True, text=True, pass_fds=(info_w,), timeout=120)
    os.close(info_w)
    os.close(info_r)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "['__init__.py', 'coupling.py']"
    assert int(lines[1]) <= 3  # bwrap's init, python: nothing of the host
    uid = sandbox.NOBODY if os.geteuid() == 0 else sandbox.UID  # root's sandbox: nobody, outside too
    assert lines[2:] == [f"False {uid}", "['fixtures']"], lines


def test_batch_refuses_to_run_without_bwrap(tmp_path):
    (tmp_path / "subs" / "a").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "NICELAB_IMPL"}
    env["PATH"] = str(tmp_path)  # no bwrap on it
    run = subprocess.run([sys.executable, "-m", "nicelab.cli", "grade", str(tmp_path / "subs"), "--json",
                          str(tmp_path / "r.json")], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=120)
    assert run.returncode == 2 and "bubblewrap" in run.stderr and "--no-sandbox" in run.stderr
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_no_sandbox_grades_and_warns(tmp_path):
    sub = tmp_path / "subs" / "stub"
    shutil.copytree(ROOT / "lessons", sub, ignore=shutil.ignore_patterns("__pycache__"))
    run = nicelab("grade", str(tmp_path / "subs"), "--json", str(tmp_path / "r.json"), "--stage", "coupling",
                  "--no-sandbox", "--jobs", "1")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "WARNING: graded WITHOUT the sandbox" in run.stdout
    document = json.loads((tmp_path / "r.json").read_text())
    jsonschema.validate(document, SCHEMA)
    assert document["options"]["sandbox"] is False and "WITHOUT the sandbox" in document["warnings"][0]
    (row,) = document["submissions"]
    assert row["sandboxed"] is False and "WITHOUT the sandbox" in row["flags"][0]
    assert _statuses(row) == ("graded", {"coupling": "not started"})
    run = nicelab("grade", str(tmp_path / "subs"), "--json", str(tmp_path / "r.json"), "--stage", "coupling",
                  "--jobs", "1")  # with the sandbox: a row graded without it is not reused
    assert run.returncode == 0 and "grading 1 submissions" in run.stdout
    assert json.loads((tmp_path / "r.json").read_text())["submissions"][0]["sandboxed"] is True


def _view(tmp_path: Path) -> sandbox.View:
    solutions = sandbox.filtered_solutions(tmp_path / "solutions", "model")
    (tmp_path / "sub").mkdir()
    return sandbox.View(solutions, tmp_path / "sub", scratch_mb=16)


def test_the_grading_key_is_never_bound(monkeypatch, tmp_path):
    """The sandbox binds the cache's fixtures only: a key next to them is out of view, one
    inside them (or in any folder bound) is refused before anything starts."""
    view = _view(tmp_path)
    monkeypatch.setenv("NICELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(integrity.KEY_ENV, str(tmp_path / "cache" / "grade-key"))
    options = sandbox._options(view, 1, 3)
    assert str(tmp_path / "cache" / "fixtures") in options and str(tmp_path / "cache") not in options
    monkeypatch.setenv(integrity.KEY_ENV, str(tmp_path / "cache" / "fixtures" / "grade-key"))
    with pytest.raises(sandbox.SandboxUnavailable, match="grading key"):
        sandbox._options(view, 1, 3)
    monkeypatch.setenv(integrity.KEY_ENV, str(view.submission / "k"))
    with pytest.raises(sandbox.SandboxUnavailable, match="grading key"):
        sandbox._options(view, 1, 3)


def _run_inside(view: sandbox.View, code: str) -> subprocess.CompletedProcess:
    info_r, info_w = os.pipe()
    command = sandbox.sandbox_command(["/usr/bin/env", "python3", "-c", code], view, 1, info_w,
                                      sandbox.check_available())
    try:
        return subprocess.run(command, capture_output=True, text=True, pass_fds=(info_w,), timeout=120)
    finally:
        os.close(info_w)
        os.close(info_r)


@needs_bwrap
def test_a_python_under_tmp_is_bound_over_the_private_tmp(monkeypatch, tmp_path):
    """bwrap mounts in order: a Python environment under /tmp goes on top of the private /tmp."""
    venv = Path(tempfile.mkdtemp(prefix="nicelab-test-venv-"))
    try:
        (venv / "marker.txt").write_text("here")
        os.chmod(venv, 0o755)
        found = sandbox._python_dirs()
        monkeypatch.setattr(sandbox, "_python_dirs", lambda: [*found, venv])
        run = _run_inside(_view(tmp_path), f"print(open({str(venv / 'marker.txt')!r}).read())")
        assert run.returncode == 0 and run.stdout.strip() == "here", run.stderr
    finally:
        shutil.rmtree(venv)


HOLD = """
import ctypes, os, sys, time
held = []
for _ in range(2):
    fd = os.memfd_create("hold")
    for _ in range(8):
        os.write(fd, b"\\1" * 2**24)
    held.append(fd)
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype, libc.shmat.argtypes = ctypes.c_void_p, [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
segment = libc.shmget(0, 2**28, 0o1000 | 0o600)
address = libc.shmat(segment, None, 0)
ctypes.memset(address, 1, 2**28)
libc.shmdt(ctypes.c_void_p(address))
print("ready", flush=True)
time.sleep(60)
"""


@needs_bwrap
@pytest.mark.parametrize("joins", [True, False], ids=["in-its-group", "join-refused"])
def test_memfd_and_detached_shm_count(tmp_path, monkeypatch, joins):
    """256 MB in memfd files never mapped and 256 MB in a detached System V segment: the
    resident sets show neither; the sandbox's memory cgroup (or the fallback) counts both. A
    sandbox the kernel would not let into its group is counted by the fallback, not missed."""
    from nicelab.grader.isolation import memory, process

    if not joins:
        monkeypatch.setattr(memory, "join", lambda group, pid: False)
    info_r, info_w = os.pipe()
    args_r, args_w = os.pipe()
    command, options = sandbox.sandbox_command([sandbox.python_inside(), "-c", HOLD], _view(tmp_path), 1,
                                               info_w, sandbox.check_available(), args_r)
    proc = subprocess.Popen(command, pass_fds=(info_w, args_r), stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    os.close(info_w)
    os.close(args_r)
    child = None
    try:
        sandbox.start(proc.pid, args_w, options)
        child = sandbox.read_child_pid(info_r)
        assert proc.stdout.readline().strip() == "ready"
        procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        resident = sum(p.memory_info().rss for p in procs)
        # what the worker's poll counts of its sandbox (the test's other children, a grading
        # runner of the session among them, are not the sandbox's)
        counted = process._rss(procs, memory.groups_of(os.getpid()))
        fallback = process._rss(procs)  # what the poll counts where there is no cgroup
        print(f"\nresident {resident / 2**20:.0f} MB, counted {counted / 2**20:.0f} MB, fallback "
              f"{fallback / 2**20:.0f} MB, cgroups {memory.groups_of(os.getpid())}")
        assert resident < 2**28
        assert 2**29 - 2**25 < counted < resident + 2**29 + 2**26  # all of it, each page once
        if os.geteuid() == 0:  # the fallback reads the detached segments of the sandbox's IPC namespace
            assert fallback > 2**29 - 2**25
        else:
            assert fallback > 2**28 - 2**24
    finally:
        sandbox.kill_namespace(child, proc.pid)
        proc.wait()
        os.close(info_r)
        memory.release(os.getpid())
    assert not memory.groups_of(os.getpid())
