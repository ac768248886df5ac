"""One grading process of a submission: its command, its sandbox, and the limits the batch
enforces on it from outside (:mod:`nicelab.grader.batch` describes how).

:func:`run_worker` starts ``python -m nicelab.grader.worker`` (in bubblewrap when the
:class:`Plan` says so), reads its events, keeps the first ``output_kb`` kilobytes and the last
2 kB of its output, polls the memory and the number of processes of its whole process tree, and
kills it at a limit; :func:`describe_end` says in words how it ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from nicelab.grader.isolation import forkserver, memory
from nicelab.grader.isolation.student_user import kill_user, user_processes
from nicelab.grader.runner import CheckResult

POLL_S = 0.1
#: The most a worker may write into its event channel, and into one event line.
MAX_EVENT_BYTES = 32 * 2**20
MAX_EVENT_LINE = 2**20
#: The most processes one submission may run at once.
MAX_PROCESSES = 256
ABNORMAL = ("timeout", "memory_limit", "crashed")


class Interrupted(Exception):
    """The batch was interrupted (Ctrl-C) while this submission was being graded."""


@dataclass
class Limits:
    """Per-submission limits: wall time (s), resident memory (MB), output kept (kB), file size
    (MB), and optionally the wall time of any one check (s)."""

    timeout: float = 600.0
    memory_mb: int = 4096
    output_kb: int = 256
    file_mb: int = 1024
    check_timeout: float | None = None  # wall time of one check; None: only the submission's limit
    scratch_mb: int = 256  # the sandbox's private /tmp (a tmpfs; its files count as memory in a cgroup)

    def __post_init__(self):
        if not self.timeout > 0:
            raise ValueError(f"the time limit must be positive; saw {self.timeout}.")
        if self.check_timeout is not None and not self.check_timeout > 0:
            raise ValueError(f"the time limit of one check must be positive; saw {self.check_timeout}.")
        if self.memory_mb < 512:
            raise ValueError(f"the memory limit must be at least 512 MB (TensorFlow alone needs about "
                             f"800 MB); saw {self.memory_mb}.")
        if self.output_kb < 1 or self.file_mb < 1 or self.scratch_mb < 16:
            raise ValueError("the output and file limits must be at least 1, the scratch space 16 MB.")




class _Drain(threading.Thread):
    """Reads a pipe to its end, keeping its first ``limit`` bytes and last 2 kB."""

    def __init__(self, pipe, limit: int):
        super().__init__(daemon=True)
        self.pipe, self.limit = pipe, limit
        self.head, self.tail, self.total = bytearray(), bytearray(), 0

    def run(self):
        with contextlib.suppress(OSError, ValueError):
            while chunk := self.pipe.read1(65536):
                self.total += len(chunk)
                if len(self.head) < self.limit:
                    self.head += chunk[: self.limit - len(self.head)]
                self.tail = (self.tail + chunk)[-2048:]

    def text(self) -> str:
        if self.total <= len(self.head):
            return self.head.decode(errors="replace")
        return (self.head.decode(errors="replace") + f"\n[... {self.total - len(self.head)} more bytes; "
                "the last 2 kB:]\n" + self.tail.decode(errors="replace"))


def _group(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


def _rss(procs, groups=()) -> int:
    """The memory ``procs`` hold: their resident pages and what no resident set shows (memfd
    files, System V segments nobody attaches, tmpfs files: :mod:`nicelab.grader.isolation.memory`).
    The shared memory of the processes that run in ``groups``, the sandboxes' memory cgroups,
    is the groups' (each page once); for the others (no cgroup, or one they could not join)
    the fallback adds the memfd files they hold and their detached segments."""
    held: dict[int, tuple[int, int]] = {}
    for proc in procs:
        try:
            held[proc.pid] = memory.process_bytes(proc.pid)
        except (OSError, ValueError):
            continue  # it ended between the listing and the reading
    others = memory.outside(held, groups)
    total = sum(private + (shared if pid in others else 0) for pid, (private, shared) in held.items())
    total += sum(memory.shared_bytes(group) for group in groups)
    return total + memory.memfd_bytes(others) + memory.sysv_bytes(others)


def tree_usage(root: int, pgid: int | None = None, without_root: bool = False) -> tuple[int, int]:
    """``(resident bytes, processes)`` of ``root`` and all its descendants (and of the process
    group ``pgid``), from psutil; ``without_root``: the memory of the others only. In the sandbox
    every process of the submission descends from bwrap: its PID namespace's first process adopts
    the orphans of ``setsid`` and double forks; the sandboxes ``root`` started run in memory
    cgroups of their own where the machine has them (:func:`nicelab.grader.isolation.memory.groups_of`)."""
    procs: dict[int, psutil.Process] = {}
    try:
        top = psutil.Process(root)
        procs = {proc.pid: proc for proc in (top, *top.children(recursive=True))}
    except psutil.Error:
        pass  # it has ended
    if pgid is not None:
        procs.update((proc.pid, proc) for proc in psutil.process_iter() if _group(proc) == pgid)
    counted = [proc for pid, proc in procs.items() if not (without_root and pid == root)]
    return _rss(counted, memory.groups_of(root)), len(procs)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@dataclass
class Attempt:
    """What one worker process did: the results it reported, the check it was running when it
    ended, and how it ended (``reason``: None, timeout, memory_limit, crashed)."""

    results: dict[str, CheckResult] = field(default_factory=dict)
    in_flight: str | None = None
    started: int = 0
    done: bool = False
    reason: str | None = None
    note: str = ""
    check_timed_out: bool = False
    returncode: int | None = None
    peak_rss: int = 0
    output: str = ""
    output_bytes: int = 0


class _EventReader(threading.Thread):
    """Reads the worker's events from a pipe as they come (at most ``limit`` bytes): which
    check is running and since when, and the results. Nothing is written to disk, and a
    flood neither grows the parent nor can be rewritten later."""

    def __init__(self, fd: int, attempt: Attempt, limit: int = MAX_EVENT_BYTES):
        super().__init__(daemon=True)
        self.fd, self.attempt, self.limit = fd, attempt, limit
        self.total, self.flooded = 0, False
        self.running: str | None = None
        self.since = 0.0

    def run(self):
        buffer = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(self.fd, 65536):
                self.total += len(chunk)
                if self.total > self.limit:
                    self.flooded = True
                    continue  # drained and dropped: the parent kills the worker
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    self._event(line)
                if len(buffer) > MAX_EVENT_LINE:
                    buffer = b""
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def _event(self, line: bytes) -> None:
        try:
            event = json.loads(line)
            kind = event["event"]
        except (ValueError, KeyError, TypeError):
            return  # a line cut short by a kill
        attempt = self.attempt
        if kind == "start" and isinstance(event.get("nodeid"), str):
            self.running, self.since = event["nodeid"], time.monotonic()
            attempt.in_flight, attempt.started = event["nodeid"], attempt.started + 1
        elif kind == "result":
            try:
                result = CheckResult.from_dict(event["result"])
            except (TypeError, KeyError):
                return
            attempt.results.setdefault(result.nodeid, result)
            if result.nodeid == attempt.in_flight:
                attempt.in_flight = self.running = None
        elif kind == "done":
            attempt.done = True

    def running_for(self) -> float:
        return time.monotonic() - self.since if self.running else 0.0


def worker_command(impl: str, stages: list[str], extra_dirs: list[str], limits: Limits, threads: int,
                   events_fd: int, python: str = sys.executable, collect_only: bool = False,
                   plan: Plan | None = None) -> list[str]:
    command = [python, "-m", "nicelab.grader.worker", impl, "--events-fd", str(events_fd),
               "--stages", ",".join(stages), "--threads", str(threads),
               "--memory-mb", str(limits.memory_mb), "--file-mb", str(limits.file_mb)]
    if collect_only:
        command.append("--collect-only")
    elif plan is not None:  # the graded modules answer from child processes (in bwrap when sandboxed)
        command += ["--remote", "sandbox" if plan.sandboxed else "process",
                    "--scratch-mb", str(plan.scratch_mb)]
        if plan.bwrap:
            command += ["--bwrap", plan.bwrap]
        if plan.uid is not None:
            command += ["--child-uid", str(plan.uid)]
    for extra in extra_dirs:
        command += ["--extra-checks", extra]
    return command


@dataclass
class Plan:
    """How the batch runs its workers: each stage's graded module in a child process that
    answers the checks' requests, in the bubblewrap sandbox when ``bwrap`` is set, or as the
    unprivileged user ``uid`` when that is set (Gradescope without bubblewrap; the grader must
    be root: it starts the child as that user, counts every process of that user against the
    limits and kills them all when a worker ends)."""

    bwrap: str | None
    scratch_mb: int = 256
    uid: int | None = None

    def __post_init__(self):
        if self.uid is None:
            return
        if isinstance(self.uid, bool) or not isinstance(self.uid, int) or self.uid <= 0:
            raise ValueError(f"the student's code runs as an unprivileged user: its uid must be a positive "
                             f"integer, never root's 0; saw {self.uid!r}.")
        if self.bwrap is not None:
            raise ValueError("give the plan either bwrap (the sandbox has its own user) or a uid, not both.")
        if os.geteuid() != 0:
            raise PermissionError(f"running the student's code as uid {self.uid} needs a grader running as "
                                  f"root (this one runs as uid {os.geteuid()}).")

    @property
    def sandboxed(self) -> bool:
        return self.bwrap is not None


def worker_environment() -> dict[str, str]:
    """Every worker's environment (the batch's list of checks' too): the grader's, fixed hashes,
    no student's start-up file, TensorFlow's notices off."""
    env = {k: v for k, v in os.environ.items() if k not in ("NICELAB_IMPL", "PYTHONSTARTUP")}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0", TF_CPP_MIN_LOG_LEVEL="2",
               MALLOC_ARENA_MAX="2", PYTHONFAULTHANDLER="1", PYTHONUNBUFFERED="1")
    return env


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process descending from it (and its process group): the
    worker, the children running the submission's code, and whatever they started."""
    try:
        procs = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        procs = []
    _kill_group(pid)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def _usage(proc: subprocess.Popen, uid: int | None) -> tuple[int, int]:
    """``(resident bytes, processes)`` of the submission: the worker's descendants (its own
    memory is the grader's) and, with a ``uid``, every process of that user too, wherever it
    is (a double fork or ``setsid`` leaves the tree, never the user). Every descendant of the
    worker then runs as that user, so the larger count covers both without counting twice."""
    rss, count = tree_usage(proc.pid, proc.pid, without_root=True)
    if uid is not None:
        users = user_processes(uid)
        rss, count = max(rss, _rss(users)), max(count, len(users) + 1)
    return rss, count


def _watch(proc: subprocess.Popen, attempt: Attempt, reader: _EventReader, limits: Limits,
           deadline: float, stop: threading.Event, uid: int | None = None) -> None:
    """Poll the running worker every :data:`POLL_S` until it ends, or set ``attempt.reason``
    (and ``note``) at the first limit it breaks (``uid``: the processes of that user count)."""
    limit = limits.memory_mb * 2**20
    while proc.poll() is None:
        if stop.is_set():
            raise Interrupted()
        if time.monotonic() > deadline:
            attempt.reason = "timeout"
            return
        if limits.check_timeout and reader.running_for() > limits.check_timeout:
            attempt.reason, attempt.check_timed_out = "timeout", True
            return
        rss, count = _usage(proc, uid)  # the submission's processes
        attempt.peak_rss = max(attempt.peak_rss, rss)
        if rss > limit:
            attempt.reason = "memory_limit"
            return
        if count > MAX_PROCESSES:
            attempt.reason, attempt.note = "crashed", f"it started more than {MAX_PROCESSES} processes"
            return
        if reader.flooded:
            attempt.reason = "crashed"
            attempt.note = f"it wrote more than {MAX_EVENT_BYTES // 2**20} MB into the grader's event channel"
            return
        time.sleep(POLL_S)


def run_worker(impl: Path, stages: list[str], extra_dirs: list[str], limits: Limits, deadline: float,
               workdir: Path, tag: str, threads: int, stop: threading.Event,
               plan: Plan | None = None) -> Attempt:
    """Run one worker process on ``impl`` for ``stages`` until it ends, the ``deadline``
    (time.monotonic) passes, its process tree exceeds the memory limit, or ``stop`` is set.
    With a ``plan``, the graded modules answer from child processes (sandboxed when it says so)."""
    uid = plan.uid if plan is not None else None
    scratch = workdir / f"scratch-{tag}"
    scratch.mkdir()
    if uid is not None:
        os.chmod(scratch, 0o711)  # the student's user passes through to its own folder, lists nothing
    attempt = Attempt()
    events_r, events_w = os.pipe()
    # The worker runs the checks (and the hidden ones) outside the sandbox: only the child
    # processes it starts run the submission's code.
    command = worker_command(str(impl), stages, extra_dirs, limits, threads, events_w, plan=plan)
    env = worker_environment()
    if uid is not None or (plan is not None and plan.sandboxed):  # the children's private folders
        env["TMPDIR"] = str(scratch)  # (sandbox views) go there, removed with the submission's
    try:  # forked from the batch's server when there is one (TensorFlow imported once)
        proc = forkserver.popen(command, scratch, env, events_w)
    finally:
        os.close(events_w)
    reader = _EventReader(events_r, attempt)
    reader.start()
    drain = _Drain(proc.stdout, limits.output_kb * 1024)
    drain.start()
    try:
        _watch(proc, attempt, reader, limits, deadline, stop, uid)
    finally:
        kill_tree(proc.pid)  # the children running the submission's code too
        if uid is not None:  # and whatever they left behind (setsid, double forks)
            kill_user(uid)
        proc.wait()
        memory.release(proc.pid)  # the memory cgroups of its sandboxes, once their processes are gone
        drain.join(timeout=2.0)
        reader.join(timeout=2.0)
        with contextlib.suppress(OSError):
            proc.stdout.close()
    attempt.returncode = proc.returncode
    attempt.output, attempt.output_bytes = drain.text(), drain.total
    if attempt.reason is None and not (attempt.done and attempt.in_flight is None):
        attempt.reason = "crashed"
    return attempt


def describe_end(attempt: Attempt, limits: Limits) -> str:
    """How a worker ended, in words, for the verdict of the check it was running."""
    if attempt.note:
        return f"stopped: {attempt.note}"
    if attempt.check_timed_out:
        return f"stopped at the time limit of one check, {limits.check_timeout:g} s,"
    if attempt.reason == "timeout":
        return f"stopped at the time limit of {limits.timeout:g} s"
    if attempt.reason == "memory_limit":
        return (f"stopped at the memory limit of {limits.memory_mb} MB "
                f"(it used {attempt.peak_rss / 2**20:.0f} MB)")
    code = attempt.returncode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the grading process died of {name}"
    if attempt.done:
        return "the checks stopped early (KeyboardInterrupt or a similar exception from your code)"
    if not attempt.started:
        last = [line for line in attempt.output.splitlines() if line.strip()][-1:]
        return f"the grading process exited with code {code}" + (f" ({last[0][:300]})" if last else "")
    return f"the grading process exited with code {code} before the checks were done (os._exit?)"
