"""The grading workers of a batch, forked from one process that imported TensorFlow once.

A worker (:mod:`nicelab.grader.worker`) used to spend most of its start importing TensorFlow,
about three seconds of a core, once per submission and once more for the batch's list of checks.
:func:`serving` (around a batch of two submissions or more) starts a server instead,
``python -m nicelab.grader.worker --fork-server FD``, which imports TensorFlow, pytest and the
worker's own modules, and then forks a worker for each request of the batch (:func:`popen`).
Nothing else changes:

* each worker is still a new process of its own: a new session and process group, its output
  and event pipes where the batch asked, its working folder and environment, its own limits
  (the worker sets them, as before); the batch watches, limits and kills it by its pid and
  process group as before, and the server reports how it ended (its exit code, or the signal);
* the server runs no student code and grades nothing: every worker starts as a copy of the same
  clean image, and no submission reaches the server (only the batch writes to it);
* the server runs no TensorFlow operation, so TensorFlow has started no thread and initialised
  no device when it forks (the worker's thread settings still apply at its first operation);
  numpy's BLAS threads are parked by OpenBLAS around a fork;
* the server dies with the batch (``PR_SET_PDEATHSIG``), and its workers with it;
* a request whose interpreter settings differ from the server's (another Python, another
  ``PYTHONHASHSEED``...), or a server that failed to start, gets a plain new process
  (:class:`subprocess.Popen`), as every worker did before.

The protocol is one JSON message per datagram on a ``SOCK_SEQPACKET`` socket pair, with the
worker's pipes passed as file descriptors: ``{"argv", "cwd", "env"}`` and its answer
``{"pid"}``; then ``{"exit": pid, "code": ...}`` when a worker ends (the code as
:attr:`subprocess.Popen.returncode` gives it: negative for a signal).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable

import psutil

#: The environment variables a Python reads when it starts: a worker forked from the server
#: has the server's, so a request must have the same (else it gets a new process).
START_ENV = ("PYTHONHASHSEED", "PYTHONUNBUFFERED", "PYTHONFAULTHANDLER", "PYTHONDONTWRITEBYTECODE",
             "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONNOUSERSITE", "PYTHONUSERBASE",
             "PYTHONWARNINGS", "PYTHONIOENCODING", "PYTHONUTF8", "MALLOC_ARENA_MAX", "LD_PRELOAD",
             "LD_LIBRARY_PATH", "KERAS_HOME", "KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL",
             "TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
#: The module a worker runs, and the file descriptor its event pipe gets in a forked worker.
WORKER_MODULE = "nicelab.grader.worker"
EVENTS_FD = 3
#: ``NICELAB_FORK_SERVER=0``: a batch starts every worker directly, and every graded stage's
#: process too (no :mod:`~nicelab.grader.isolation.stage_host`; ``nicelab bench`` compares).
SWITCH_ENV = "NICELAB_FORK_SERVER"
#: How long the batch waits for the server to import TensorFlow before it does without.
READY_TIMEOUT_S = 120.0
MAX_MESSAGE = 1 << 20


# ----------------------------------------------------------------------------- the server

def serve(fd: int, worker_main: Callable[[list[str]], int | None],
          preload: Callable[[], None] | None = None) -> None:
    """The server's loop (``python -m nicelab.grader.worker --fork-server FD``, which passes its
    ``main``, having asked to die with the batch): import (``preload``, default
    :func:`preload_grading`), say ready, then fork a process per request (``worker_main(argv)``
    in the child) and report each one's end, until the other end closes the socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the batch's to handle
    sock = socket.socket(fileno=fd)
    (preload or preload_grading)()
    sock.send(json.dumps({"ready": True}).encode())
    while True:
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 4)
            if not data:
                break
            started_r, started_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(started_r)
                _become(sock, json.loads(data), fds, started_w, worker_main)
            os.close(started_w)
            for passed in fds:
                os.close(passed)
            os.read(started_r, 1)  # its own session first: the batch may kill its group at once
            os.close(started_r)
            sock.send(json.dumps({"pid": pid}).encode())
        _reap(sock)
    os._exit(0)


def preload_grading() -> None:
    """What every worker (and every graded stage's process) imports first: TensorFlow (quietly,
    no operation run) and pytest (the worker's own modules are the server's: it runs as the
    worker module)."""
    from nicelab.core.quiet import loading

    with loading():
        import tensorflow  # noqa: F401 - lazy: the cost this server pays once
    import pytest  # noqa: F401


def _reap(sock: socket.socket) -> None:
    """Report every worker that has ended."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        sock.send(json.dumps({"exit": pid, "code": os.waitstatus_to_exitcode(status)}).encode())


def _become(sock: socket.socket, request: dict, fds: list[int], started_w: int,
            worker_main: Callable[[list[str]], int | None]) -> None:
    """In the forked child: the process the other end asked for (a new session, said on
    ``started_w``; stdin from /dev/null; the passed ``fds`` at the request's ``"targets"``,
    default stdout and stderr, then :data:`EVENTS_FD`; nothing else open above them; the
    request's ``cwd`` and ``env`` when it gives them), then ``worker_main``. Never returns."""
    code = 1
    try:
        sock.close()
        os.setsid()
        os.write(started_w, b"s")
        targets = [int(t) for t in request.get("targets", (1, EVENTS_FD))]
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]  # clear of the targets
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, target in zip(high, targets, strict=True):
            os.dup2(fd, target)
            if target == 1:
                os.dup2(fd, 2)
        os.closerange(max(targets) + 1, _max_fd())
        if "cwd" in request:
            os.chdir(request["cwd"])
        if "env" in request:
            os.environ.clear()
            os.environ.update(request["env"])
        import tempfile

        tempfile.tempdir = None  # found again from this process's TMPDIR
        signal.signal(signal.SIGINT, signal.default_int_handler)
        code = worker_main(request["argv"])
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:  # noqa: BLE001 - a worker that cannot start says why in its output
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 65536


# ----------------------------------------------------------------------------- the batch's side

class ForkedProcess:
    """A process forked by a server, with the parts of :class:`subprocess.Popen` its user needs."""

    def __init__(self, server: Channel, pid: int, stdout=None):
        self.server, self.pid, self.stdout = server, pid, stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        with self.server.changed:
            while self.poll() is None:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(WORKER_MODULE, timeout)
                self.server.changed.wait(timeout=left if left is not None else 1.0)
        return self.returncode


class Channel:
    """Our end of a server's socket (:func:`serve`): its answers, read by a thread of our own,
    and the ends of the processes it forked for us."""

    def __init__(self, sock: socket.socket):
        self.sock, self.lock, self.changed = sock, threading.Lock(), threading.Condition()
        self.exits: dict[int, int] = {}
        self.replies: list[int] = []
        self.ready = self.ended = False
        self.reader = threading.Thread(target=self._read, daemon=True, name="nicelab-forkserver")
        self.reader.start()

    def _read(self) -> None:
        """Until the server ends or says something that is not its protocol (a stage host runs
        beside a student's code: whatever it sends, it is no more than a host that ended)."""
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
            while data := self.sock.recv(MAX_MESSAGE):
                message = json.loads(data)
                with self.changed:
                    if "exit" in message:
                        self.exits[int(message["exit"])] = int(message["code"])
                    elif "pid" in message:
                        self.replies.append(int(message["pid"]))
                    else:
                        self.ready = bool(message.get("ready"))
                    self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def gone(self, pid: int) -> bool:
        """Whether the process ``pid`` of a server that has ended is gone (killed with it)."""
        return not psutil.pid_exists(pid)

    def exit_code(self, pid: int) -> int | None:
        """How the process ``pid`` ended; None while it runs. A process of a server that died was
        killed with it (``PR_SET_PDEATHSIG``): -9 once it is gone."""
        with self.changed:
            if pid in self.exits:
                return self.exits[pid]
            if self.ended and self.gone(pid):
                return -signal.SIGKILL
            return None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> bool:
        with self.changed:
            self.changed.wait_for(lambda: self.ready or self.ended, timeout=timeout)
            return self.ready and not self.ended

    def spawn(self, request: dict, fds: list[int]) -> int | None:
        """The pid of a process forked for ``request`` (see :func:`_become`) with ``fds`` passed,
        or None when the server is gone or does not answer."""
        try:
            with self.lock:
                socket.send_fds(self.sock, [json.dumps(request).encode()], fds)
                with self.changed:
                    self.changed.wait_for(lambda: self.replies or self.ended, timeout=READY_TIMEOUT_S)
                    if not self.replies:
                        return None
                    return self.replies.pop(0)
        except OSError:
            return None

    def shut(self) -> None:
        """Close the socket: the server ends its loop."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


class Server(Channel):
    """The batch's end of the fork server of its workers (started by :func:`serving`)."""

    def __init__(self, env: dict[str, str], cwd: str):
        self.env = dict(env)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = [sys.executable, "-m", WORKER_MODULE, "--fork-server", str(theirs.fileno())]
        self.proc = subprocess.Popen(command, pass_fds=(theirs.fileno(),), env=self.env, cwd=cwd,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        theirs.close()
        super().__init__(ours)

    def accepts(self, command: list[str], env: dict[str, str]) -> bool:
        """Whether a worker of ``command`` with ``env`` can be forked from this server."""
        if command[:3] != [sys.executable, "-m", WORKER_MODULE] or not self.wait_ready():
            return False
        return all(env.get(name) == self.env.get(name) for name in START_ENV)

    def fork(self, command: list[str], cwd: str, env: dict[str, str], events_w: int) -> ForkedProcess | None:
        """A worker running ``command`` (its ``--events-fd`` is :data:`EVENTS_FD` there), or
        None when the server is gone."""
        argv = list(command[3:])
        argv[argv.index("--events-fd") + 1] = str(EVENTS_FD)
        out_r, out_w = os.pipe()
        try:
            pid = self.spawn({"argv": argv, "cwd": str(cwd), "env": env}, [out_w, events_w])
        finally:
            os.close(out_w)
        if pid is None:
            os.close(out_r)
            return None
        return ForkedProcess(self, pid, open(out_r, "rb"))

    def close(self) -> None:
        self.shut()
        if not self.ready:  # still importing: nothing of it is needed
            self.proc.kill()
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


_ACTIVE: list[Server] = []


@contextlib.contextmanager
def serving(env: dict[str, str], cwd: str):
    """Serve the workers started in this block from one server: the one already serving (a
    batch's), else one started here (environment ``env``, the workers' without their ``TMPDIR``;
    working folder ``cwd``)."""
    if _ACTIVE:
        yield _ACTIVE[-1]
        return
    server = Server(env, cwd)
    _ACTIVE.append(server)
    try:
        yield server
    finally:
        _ACTIVE.remove(server)
        server.close()


def popen(command: list[str], cwd, env: dict[str, str], events_w: int):
    """The worker process of ``command``: forked by the active server when it can be, else a
    new process as :class:`subprocess.Popen` starts it (output to a pipe, own session)."""
    server = _ACTIVE[-1] if _ACTIVE else None
    if server is not None and server.accepts(command, env):
        forked = server.fork(command, cwd, env, events_w)
        if forked is not None:
            return forked
    return subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(events_w,))


__all__ = ["EVENTS_FD", "SWITCH_ENV", "Channel", "ForkedProcess", "Server", "popen", "preload_grading",
           "serve", "serving"]
