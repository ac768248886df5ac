"""One process per submission that imports TensorFlow once and forks each graded stage's process.

A graded stage's process (:mod:`nicelab.grader.child`) spends most of its start importing
TensorFlow, about four seconds of a core: seven times for a submission graded on every stage.
When a worker grades two stages or more (:mod:`nicelab.grader.stage_processes`), it starts a
*host* instead: ``python -m nicelab.grader.child --host FD``, in the submission's sandbox (or a
plain process without one), which imports TensorFlow and pytest, runs none of TensorFlow's
operations and none of the submission's code, and forks each stage's process when the checks
reach that stage (the protocol of :mod:`nicelab.grader.isolation.forkserver`). What each stage's
process sees and can do is what it was before:

* its files: the sandbox's ``solutions/`` holds the reference of the stages before the stage
  being graded and nothing more. It starts with none, and the grader adds the reference of a
  stage when the stage after it is reached; a host never serves a stage before one it served
  (that stage's process would see a later reference): such a request (a hidden check's, after
  the public checks) gets a new host;
* one stage's code at a time: when a stage is done, every process in the sandbox but the host
  is killed (:meth:`StageHost.reset`), from outside, whatever the student's code did (a double
  fork, a new session); a host that cannot be reset is killed with all its processes, and
  the next stage gets a new one;
* a fresh scratch: a stage's process removes, before it runs any of the submission's code,
  what the stages before left in the sandbox's ``/tmp`` and ``/dev/shm`` and its System V
  segments (:func:`nicelab.grader.child.fresh_scratch`), as a sandbox of its own would start;
* time and memory: a stage's process is a descendant of the worker, counted and killed as
  before; the host's own memory counts too (as the process of the next stage, started ahead,
  did before);
* a stage whose process must be stopped (a time limit, a broken protocol) kills the whole host.

Processes run as a student's user without the sandbox (Gradescope) are not hosted: each starts
when its stage is reached, as the user, as before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from nicelab.core.course import STAGE_NAMES
from nicelab.grader.isolation import forkserver, sandbox

#: The descriptors a stage's process reads its requests from and writes its answers to.
FD_IN, FD_OUT = 3, 4
#: How many rounds of killing a reset tries before it gives up on the host.
RESET_ROUNDS = 50


def process_environment() -> dict[str, str]:
    """The environment of a graded stage's process without the sandbox: the grader's, less
    what would change how Python starts or which lessons load."""
    env = {k: v for k, v in os.environ.items() if k not in ("NICELAB_IMPL", "PYTHONSTARTUP")}
    env.update(PYTHONDONTWRITEBYTECODE="1", TF_CPP_MIN_LOG_LEVEL="2")
    return env


def popen(inner: list[str], fds: list[int], view: sandbox.View | None = None, threads: int = 0,
          bwrap: str | None = None, **options) -> tuple[subprocess.Popen, int | None]:
    """Start ``inner`` in a new session with ``fds`` (closed here): in the sandbox ``view`` when
    given (bwrap in its memory cgroup first, then its options), else as it is (``options``:
    :class:`subprocess.Popen`'s, default :func:`process_environment`). Returns the process and,
    in the sandbox, the pid (ours) of the sandbox's first process."""
    if view is None:
        options.setdefault("env", process_environment())
        proc = subprocess.Popen(inner, pass_fds=fds, stdin=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True, **options)
        for fd in fds:
            os.close(fd)
        return proc, None
    args_r, args_w = os.pipe()
    info_r, info_w = os.pipe()
    command, bwrap_options = sandbox.sandbox_command(inner, view, max(1, threads), info_w,
                                                     bwrap or sandbox.check_available(), args_r)
    proc, _ = popen(command, [*fds, args_r, info_w], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    sandbox.start(proc.pid, args_w, bwrap_options)
    first = sandbox.read_child_pid(info_r, timeout=60.0)
    os.close(info_r)
    return proc, first


class _HostChannel(forkserver.Channel):
    def gone(self, pid: int) -> bool:
        return True  # a stage's process dies with its host (PR_SET_PDEATHSIG); in the sandbox its
        # pid is the namespace's, not ours to look up


class StageHost:
    """The host of the stage processes of the submission at ``path`` (``mode`` ``sandbox``: in
    bubblewrap with ``bwrap``; ``process``: a plain process)."""

    def __init__(self, path: Path, mode: str, threads: int = 0, bwrap: str | None = None,
                 scratch_mb: int = 256):
        self.path, self.mode, self.threads = path, mode, threads
        self.reached = -1
        self.folder = self.solutions = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        python = sandbox.python_inside() if mode == "sandbox" else sys.executable
        inner = [python, "-m", "nicelab.grader.child", "--host", str(theirs.fileno())]
        view = None
        if mode == "sandbox":
            self.folder = Path(tempfile.mkdtemp(prefix="nicelab-view-"))
            self.solutions = sandbox.filtered_solutions(self.folder / "solutions", STAGE_NAMES[0])
            view = sandbox.View(self.solutions, path, scratch_mb)
        self.proc, self._inner = popen(inner, [theirs.fileno()], view, threads, bwrap)
        theirs.detach()  # closed by popen
        self.channel = _HostChannel(ours)
        self._keep: set[int] | None = None

    # ------------------------------------------------------------------ stages

    def alive(self) -> bool:
        return self.proc.poll() is None and not self.channel.ended

    def spawn(self, stage: str, fds: list[int]) -> forkserver.ForkedProcess | None:
        """The process of ``stage`` (its requests on ``fds[0]``, its answers on ``fds[1]``), or
        None when this host cannot serve it (ended, not started, or past that stage)."""
        index = STAGE_NAMES.index(stage)
        if index < self.reached or not self.alive() or not self.channel.wait_ready():
            return None
        if self._keep is None:  # before any of the submission's code: the host and its parents
            self._keep = self._tree()
        if self.solutions is not None:
            sandbox.add_references(self.solutions, stage)
        self.reached = index
        impl = str(sandbox.SUBMISSION) if self.mode == "sandbox" else str(self.path)
        argv = [impl, stage, "--fd-in", str(FD_IN), "--fd-out", str(FD_OUT), "--threads", str(self.threads)]
        if self.mode == "sandbox":
            argv.append("--fresh-scratch")
        pid = self.channel.spawn({"argv": argv, "targets": [FD_IN, FD_OUT]}, fds)
        return None if pid is None else forkserver.ForkedProcess(self.channel, pid)

    def _tree(self) -> set[int]:
        with contextlib.suppress(psutil.Error):
            return {self.proc.pid, *(p.pid for p in psutil.Process(self.proc.pid).children(recursive=True))}
        return {self.proc.pid}

    def others(self) -> list[psutil.Process]:
        """The live processes in the host's tree but the host (and bwrap): a stage's process and
        whatever it started, in the sandbox even what left its session or process group."""
        keep = self._keep or {self.proc.pid}
        return [p for p in psutil.Process(self.proc.pid).children(recursive=True)
                if p.pid not in keep and p.status() != psutil.STATUS_ZOMBIE]

    def reset(self) -> bool:
        """Kill every process of the submission here but the host: True when none is left."""
        for _ in range(RESET_ROUNDS):
            try:
                left = self.others()
            except psutil.Error:
                return False
            if not left:
                return self.alive()
            for proc in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(proc.pid, 9)
            time.sleep(0.01)
        return False

    # ------------------------------------------------------------------ ending

    def kill(self) -> None:
        """Kill the host and every process in it (safe from another thread)."""
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(proc.pid, 9)
        sandbox.kill_namespace(self._inner, self.proc.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, 9)

    def close(self) -> None:
        self.channel.shut()
        self.kill()
        self.proc.wait()
        self.channel.sock.close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


__all__ = ["FD_IN", "FD_OUT", "StageHost", "popen", "process_environment"]
