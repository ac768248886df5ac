"""The batch's workers are forked from one server that imported TensorFlow once
(nicelab/grader/isolation/forkserver.py): each is still a process of its own, in its own
session, with the pipes, folder and environment it was given, and it ends as the batch sees it;
the server runs no TensorFlow operation before it forks, and a request it cannot serve gets a
new process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from nicelab.grader.isolation import forkserver
from nicelab.grader.isolation.process import Limits, worker_command, worker_environment


def _collect_command(events_w: int) -> list[str]:
    return worker_command("solutions", ["coupling"], [], Limits(), 1, events_w, collect_only=True)


def _events(read_fd: int) -> list[dict]:
    with os.fdopen(read_fd, "rb") as events:
        return [json.loads(line) for line in events.read().splitlines()]


def test_the_server_runs_no_tensorflow_operation_before_it_forks():
    """A fork is safe only while TensorFlow has started no thread and no device: the server (the
    worker module, then the preload) imports it and runs nothing."""
    code = ("import os\nimport nicelab.grader.worker\nfrom nicelab.grader.isolation import forkserver\n"
            "forkserver.preload_grading()\n"
            "from tensorflow.python.eager import context\n"
            "tasks = os.listdir('/proc/self/task')\n"
            "names = [open(f'/proc/self/task/{t}/comm').read().strip() for t in tasks]\n"
            "print(context._context is None, sorted(n for n in names if n.startswith('tf_')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "True []", done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with forkserver.serving(worker_environment(), str(tmp_path_factory.mktemp("server"))) as started:
        yield started


def test_a_forked_worker_is_a_process_of_its_own(server, tmp_path):
    events_r, events_w = os.pipe()
    env = {**worker_environment(), "TMPDIR": str(tmp_path)}
    try:
        proc = forkserver.popen(_collect_command(events_w), tmp_path, env, events_w)
    finally:
        os.close(events_w)
    assert isinstance(proc, forkserver.ForkedProcess)
    worker = psutil.Process(proc.pid)
    assert worker.ppid() == server.proc.pid and os.getpgid(proc.pid) == proc.pid  # its own session
    assert worker.cwd() == str(tmp_path)
    events = _events(events_r)
    output = proc.stdout.read().decode()
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0, output
    collected = [e for e in events if e["event"] == "collected"]
    assert collected and all(stage == "coupling" for _, stage, _ in collected[0]["checks"])


def test_a_killed_worker_ends_as_killed(server, tmp_path):
    events_r, events_w = os.pipe()
    try:
        proc = forkserver.popen(_collect_command(events_w), tmp_path, worker_environment(), events_w)
    finally:
        os.close(events_w)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    os.close(events_r)
    proc.stdout.close()


def test_another_interpreter_setting_gets_a_new_process(server, tmp_path):
    events_r, events_w = os.pipe()
    env = {**worker_environment(), "PYTHONHASHSEED": "1"}
    try:
        proc = forkserver.popen(_collect_command(events_w), tmp_path, env, events_w)
    finally:
        os.close(events_w)
    assert isinstance(proc, subprocess.Popen)
    assert _events(events_r) and proc.wait(timeout=120) == 0
    proc.stdout.close()


def test_a_block_serves_from_the_active_server_or_its_own_which_ends_with_it(monkeypatch, tmp_path):
    monkeypatch.setattr(forkserver, "_ACTIVE", [])  # (not the module's server)
    with forkserver.serving(worker_environment(), str(tmp_path)) as started:
        assert started.accepts(_collect_command(9), worker_environment())
        with forkserver.serving(worker_environment(), str(tmp_path)) as inner:  # a submission in a batch
            assert inner is started
        assert started.proc.poll() is None
    assert started.proc.returncode == 0 and not forkserver._ACTIVE


def test_a_batch_forks_its_workers_unless_alone_or_switched_off(monkeypatch, tmp_path):
    from nicelab.grader import batch

    lessons = Path(__file__).resolve().parents[1] / "lessons"
    for name in ("a", "b"):
        (tmp_path / "subs" / name).mkdir(parents=True)
        for file in ("__init__.py", "coupling.py"):
            (tmp_path / "subs" / name / file).write_bytes((lessons / file).read_bytes())
    forked = []
    fork = forkserver.Server.fork

    def counted(self, command, *args):
        forked.append(command[3])  # the implementation graded
        return fork(self, command, *args)

    monkeypatch.setattr(forkserver.Server, "fork", counted)
    monkeypatch.setenv("NICELAB_GRADE_KEY_FILE", str(tmp_path / "key"))
    document = batch.grade_class(tmp_path / "subs", tmp_path / "r.json", stages=("coupling",), jobs=2,
                                 use_sandbox=False, log=lambda line: None)
    assert [row["stages"][0]["status"] for row in document["submissions"]] == ["not started"] * 2
    assert len(forked) == 3 and forked.count("solutions") == 1  # the list of checks, both workers
    assert isinstance(batch._worker_server(False, str(tmp_path)), contextlib.nullcontext)  # one alone
    monkeypatch.setenv(forkserver.SWITCH_ENV, "0")
    assert isinstance(batch._worker_server(True, str(tmp_path)), contextlib.nullcontext)


def test_a_server_that_cannot_start_leaves_every_worker_a_new_process(monkeypatch, tmp_path):
    broken = tmp_path / "broken"
    (broken / "tensorflow").mkdir(parents=True)
    (broken / "tensorflow" / "__init__.py").write_text("raise ImportError('no TensorFlow here')\n")
    env = {**worker_environment(), "PYTHONPATH": str(broken)}
    monkeypatch.setattr(forkserver, "_ACTIVE", [])
    with forkserver.serving(env, str(tmp_path)) as server:
        assert not server.accepts(_collect_command(9), env) and server.ended and not server.ready
        events_r, events_w = os.pipe()
        try:
            proc = forkserver.popen(_collect_command(events_w), tmp_path, worker_environment(), events_w)
        finally:
            os.close(events_w)
        assert isinstance(proc, subprocess.Popen)
        assert _events(events_r) and proc.wait(timeout=120) == 0
        proc.stdout.close()
