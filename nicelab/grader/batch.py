"""Grade a class: every submission in its own sandboxed processes, with limits, in parallel.

``grade_class(SUBMISSIONS_DIR, ...)`` grades each sub-folder (one per student, holding the
lesson modules, directly or in a ``lessons/`` folder) and writes the results after every
submission, atomically, so an interrupted batch leaves a valid file and a rerun resumes.

How one submission is graded, and how the limits are enforced:

* The batch first lists the checks it expects (:func:`collect_checks`, once, without any
  student code): only their results count, and one that never reports counts as failed.
* The submission's files are copied (regular files only, no ``__pycache__``) into a fresh
  temporary folder: grading never writes into the submission.
* Each stage is graded by its own worker process (``python -m nicelab.grader.worker``), run in
  a bubblewrap sandbox (:mod:`nicelab.grader.sandbox`): the project, the venv and the caches
  read-only, of ``solutions/`` only the stages before the graded one, the copy read-only, a
  capped private ``/tmp``, its own user, PID, network, IPC and UTS namespaces. ``--no-sandbox``
  runs the worker directly, in its own process group (and says so in the results).
* The worker reports every check as it starts and ends over a pipe (capped at
  :data:`MAX_EVENT_BYTES`); only the batch writes results.
* Time: the batch (outside the sandbox, invisible from it) kills the sandbox's PID namespace
  when the submission's wall-time budget (``timeout``) or one check's (``check_timeout``) is
  spent. Memory: the batch polls the resident memory (RSS, from ``/proc``) of every process
  descending from the worker (in the sandbox, every process of the namespace, whatever session
  it started) every 0.1 s and kills them all above ``memory_mb`` or above
  :data:`MAX_PROCESSES` processes; the worker also caps its address space (RLIMIT_AS, 4x the
  limit). Output: stdout and stderr go to a pipe the batch drains, keeping the first
  ``output_kb`` kilobytes and the last 2 kB. Files: RLIMIT_FSIZE, no core dumps, and in the
  sandbox nothing is writable but its capped tmpfs.
* When a worker is killed or dies (os._exit, a native crash, a signal), the check that was
  running gets the verdict (timed out, out of memory, crashed), the rest of that stage is not
  run, and the next stage gets a fresh process while the time budget lasts.
* Every row is signed with the instructor's key (:mod:`nicelab.grader.integrity`); a resumed
  batch grades again a row whose signature does not match. Messages lose their control
  characters; CSV cells their formula prefixes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from nicelab.core.course import STAGE_NAMES
from nicelab.core.impl import PROJECT_ROOT
from nicelab.grader import integrity, report, sandbox
from nicelab.grader import shard as sharding
from nicelab.grader.runner import CheckResult

#: The largest submission copied for grading (all its files together).
MAX_SUBMISSION_BYTES = 50 * 2**20
#: A fresh worker needs at least this much of the time budget to be worth starting.
MIN_ATTEMPT_S = 8.0
POLL_S = 0.1
#: The most a worker may write into its event channel, and into one event line.
MAX_EVENT_BYTES = 32 * 2**20
MAX_EVENT_LINE = 2**20
#: The most processes one submission may run at once.
MAX_PROCESSES = 256
PAGE = os.sysconf("SC_PAGE_SIZE")
ABNORMAL = ("timeout", "memory_limit", "crashed")
NO_SANDBOX_WARNING = ("graded WITHOUT the sandbox (--no-sandbox): each submission's code ran with the "
                      "grader's rights and could change its own or others' results; trust these grades "
                      "only as far as you trust the students.")


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
    scratch_mb: int = 256  # the sandbox's private /tmp (a tmpfs: its files count against no other limit)

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


# ----------------------------------------------------------------------------- submissions

def find_submissions(root: str | os.PathLike) -> list[tuple[str, Path]]:
    """``(name, folder)`` of every submission: the sub-folders of ``root``, sorted by name
    (names starting with ``.`` or ``_`` are skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no submissions folder at {root}.")
    subs = [(p.name, p) for p in sorted(root.iterdir())
            if p.is_dir() and not p.is_symlink() and not p.name.startswith((".", "_"))]
    if not subs:
        raise ValueError(f"{root} holds no submission folders (one folder per student, holding "
                         "coupling.py, model.py, ...).")
    return subs


def lesson_folder(folder: Path) -> Path:
    """Where a submission's lesson modules are: the folder itself or its ``lessons/``."""
    if any((folder / f"{stage}.py").is_file() for stage in STAGE_NAMES):
        return folder
    if (folder / "lessons").is_dir():
        return folder / "lessons"
    return folder


def _files(folder: Path) -> list[Path]:
    found = []
    for base, dirs, files in os.walk(folder):  # never follows symbolic links
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            path = Path(base) / name
            if path.is_file() and not path.is_symlink() and not name.endswith(".pyc"):
                found.append(path)
    return found


def fingerprint(folder: Path) -> str:
    """A hash of the submission's files (names and bytes): a changed submission is regraded."""
    digest = hashlib.sha256()
    for path in _files(folder):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]


def copy_submission(folder: Path, into: Path) -> Path:
    """Copy the submission's regular files into ``into`` (which must not exist)."""
    files = _files(folder)
    size = sum(p.stat().st_size for p in files)
    if size > MAX_SUBMISSION_BYTES:
        raise ValueError(f"the submission holds {size / 2**20:.0f} MB of files (at most "
                         f"{MAX_SUBMISSION_BYTES / 2**20:.0f} MB are graded).")
    into.mkdir(parents=True)
    for path in files:
        target = into / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return into


# ----------------------------------------------------------------------------- one process

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


def _process_table() -> dict[int, tuple[int, int, int]]:
    """``{pid: (ppid, pgid, rss bytes)}`` of every process on the machine (from ``/proc``)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[21]) * PAGE)
        except (OSError, IndexError, ValueError):
            continue
    return table


def tree_usage(root: int, pgid: int | None = None) -> tuple[int, int]:
    """``(resident bytes, processes)`` of ``root`` and all its descendants (and of the process
    group ``pgid``). In the sandbox every process of the submission descends from bwrap: its PID
    namespace's first process adopts the orphans of ``setsid`` and double forks."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, ()))
    if pgid is not None:
        seen.update(pid for pid, (_, group, _) in table.items() if group == pgid)
    return sum(table[pid][2] for pid in seen if pid in table), len(seen & table.keys())


def group_rss(pgid: int) -> int:
    """Resident memory, in bytes, of every process in the process group ``pgid``."""
    return sum(rss for _, group, rss in _process_table().values() if group == pgid)


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
                   events_fd: int, python: str = sys.executable, collect_only: bool = False) -> list[str]:
    command = [python, "-m", "nicelab.grader.worker", impl, "--events-fd", str(events_fd),
               "--stages", ",".join(stages), "--threads", str(threads),
               "--memory-mb", str(limits.memory_mb), "--file-mb", str(limits.file_mb)]
    if collect_only:
        command.append("--collect-only")
    for extra in extra_dirs:
        command += ["--extra-checks", extra]
    return command


@dataclass
class Plan:
    """How the batch runs its workers: in the sandbox (``bwrap`` set) or not."""

    bwrap: str | None
    workdir: Path
    extra_dirs: tuple[str, ...] = ()
    scratch_mb: int = 256
    solutions: dict[str, Path] = field(default_factory=dict)
    #: Stages whose verdicts are decided in the batch's process (:mod:`nicelab.grader.verdicts`),
    #: the student's module answering from a sandboxed child: an experimental prototype.
    remote_stages: tuple[str, ...] = ()

    @property
    def sandboxed(self) -> bool:
        return self.bwrap is not None

    def __post_init__(self):
        if self.sandboxed:  # made before the workers' threads start
            for stage in STAGE_NAMES:
                self.solutions[stage] = sandbox.filtered_solutions(self.workdir / f"solutions-{stage}", stage)

    def solutions_for(self, stage: str) -> Path:
        return self.solutions[stage]


def run_worker(impl: Path, stages: list[str], extra_dirs: list[str], limits: Limits, deadline: float,
               workdir: Path, tag: str, threads: int, stop: threading.Event,
               plan: Plan | None = None) -> Attempt:
    """Run one worker process on ``impl`` for ``stages`` until it ends, the ``deadline``
    (time.monotonic) passes, it exceeds the memory limit, or ``stop`` is set. With a sandboxed
    ``plan``, the worker runs in bwrap and grades one stage (``stages[0]``)."""
    scratch = workdir / f"scratch-{tag}"
    scratch.mkdir()
    attempt = Attempt()
    limit = limits.memory_mb * 2**20
    events_r, events_w = os.pipe()
    info_r, info_w = os.pipe() if plan and plan.sandboxed else (-1, -1)
    if plan and plan.sandboxed:
        view = sandbox.View(plan.solutions_for(stages[0]), impl, [Path(d) for d in extra_dirs],
                            plan.scratch_mb)
        inner = worker_command(str(sandbox.SUBMISSION), stages[:1], view.extra_inside(), limits, threads,
                               events_w, sandbox.python_inside())
        args_r, args_w = os.pipe()
        command, options = sandbox.sandbox_command(inner, view, threads, info_w, plan.bwrap, args_r)
        if len(options) > 60_000:  # a pipe's buffer: the write must not block
            raise ValueError("the sandbox's options are too long for a pipe.")
        os.write(args_w, options)
        os.close(args_w)
        env, cwd = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, scratch
        fds = (events_w, info_w, args_r)
    else:
        command = worker_command(str(impl), stages, extra_dirs, limits, threads, events_w)
        env = {k: v for k, v in os.environ.items() if k not in ("NICELAB_IMPL", "PYTHONSTARTUP")}
        env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0", TF_CPP_MIN_LOG_LEVEL="2",
                   MALLOC_ARENA_MAX="2", PYTHONFAULTHANDLER="1", PYTHONUNBUFFERED="1")
        cwd, fds = scratch, (events_w,)
    try:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True, pass_fds=fds)
    finally:
        for fd in fds:
            os.close(fd)
    reader = _EventReader(events_r, attempt)
    reader.start()
    drain = _Drain(proc.stdout, limits.output_kb * 1024)
    drain.start()
    child = None
    try:
        if info_r >= 0:
            child = sandbox.read_child_pid(info_r, timeout=max(1.0, min(30.0, deadline - time.monotonic())))
        while proc.poll() is None:
            if stop.is_set():
                raise Interrupted()
            if time.monotonic() > deadline:
                attempt.reason = "timeout"
                break
            if limits.check_timeout and reader.running_for() > limits.check_timeout:
                attempt.reason, attempt.check_timed_out = "timeout", True
                break
            rss, count = tree_usage(proc.pid, proc.pid)
            attempt.peak_rss = max(attempt.peak_rss, rss)
            if rss > limit:
                attempt.reason = "memory_limit"
                break
            if count > MAX_PROCESSES:
                attempt.reason, attempt.note = "crashed", f"it started more than {MAX_PROCESSES} processes"
                break
            if reader.flooded:
                attempt.reason = "crashed"
                attempt.note = (f"it wrote more than {MAX_EVENT_BYTES // 2**20} MB into the grader's "
                                "event channel")
                break
            time.sleep(POLL_S)
    finally:
        if info_r >= 0:
            with contextlib.suppress(OSError):
                os.close(info_r)
        if plan and plan.sandboxed:
            sandbox.kill_namespace(child, proc.pid)
        _kill_group(proc.pid)  # also any process the submission started
        proc.wait()
        drain.join(timeout=2.0)
        reader.join(timeout=2.0)
        with contextlib.suppress(OSError):
            proc.stdout.close()
    attempt.returncode = proc.returncode
    if plan and plan.sandboxed and proc.returncode is not None and 128 < proc.returncode < 128 + 65:
        attempt.returncode = 128 - proc.returncode  # bwrap exits with 128 + N when a signal N killed it
    attempt.output, attempt.output_bytes = drain.text(), drain.total
    if attempt.reason is None and not (attempt.done and attempt.in_flight is None):
        attempt.reason = "crashed"
    return attempt


def _describe_end(attempt: Attempt, limits: Limits) -> str:
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


def run_remote(impl: Path, stage: str, limits: Limits, deadline: float, plan: Plan,
               stop: threading.Event) -> Attempt:
    """Decide ``stage`` in this process (:func:`nicelab.grader.verdicts.stage1_verdicts`), the
    student's module answering from a sandboxed child that a watchdog thread kills at the
    time or memory limit."""
    from nicelab.grader import remote, verdicts

    attempt = Attempt()
    view = sandbox.View(plan.solutions_for(stage), impl, [], plan.scratch_mb)
    limit = limits.memory_mb * 2**20
    with remote.Client(impl, stage, view, timeout=max(1.0, deadline - time.monotonic())) as client:
        done = threading.Event()

        def watch() -> None:
            while not done.wait(POLL_S):
                rss, count = tree_usage(client.proc.pid, client.proc.pid)
                attempt.peak_rss = max(attempt.peak_rss, rss)
                reason = ("timeout" if time.monotonic() > deadline or stop.is_set() else
                          "memory_limit" if rss > limit else "crashed" if count > MAX_PROCESSES else None)
                if reason:
                    attempt.reason = reason
                    client.kill()
                    return

        watchdog = threading.Thread(target=watch, daemon=True)
        watchdog.start()
        try:
            for result in verdicts.stage1_verdicts(client.module):
                attempt.results[result.nodeid] = result
        finally:
            done.set()
            watchdog.join()
    if stop.is_set():
        raise Interrupted()
    if attempt.reason:  # the verdicts cut short by the watchdog say why
        what = _describe_end(attempt, limits)
        for result in attempt.results.values():
            if result.kind == "crashed":
                result.kind, result.message = attempt.reason, f"{what} during this check."
    attempt.done = attempt.reason is None
    return attempt


REMOTE_CHECKS = {"coupling": [f"remote/coupling::{name}" for name in (
    "round_trips", "one_part_changes", "unit_jacobian", "odd_dimensions", "own_variables", "gradients_reach",
    "batch_independent")]}


# ----------------------------------------------------------------------------- expected checks

def collect_checks(stages: tuple[str, ...], extra_dirs: tuple[str, ...], limits: Limits,
                   workdir: Path) -> dict[str, tuple[str | None, bool]]:
    """``{nodeid: (stage, hidden)}`` of every check the batch expects, collected once, by the
    grader alone (the reference is graded's stand-in: no student code runs, no fixture runs)."""
    collected: dict[str, tuple[str | None, bool]] = {}
    events_r, events_w = os.pipe()
    command = worker_command("solutions", list(stages), list(extra_dirs), limits, 1, events_w,
                             collect_only=True)
    env = {k: v for k, v in os.environ.items() if k not in ("NICELAB_IMPL", "PYTHONSTARTUP")}
    env.update(PYTHONDONTWRITEBYTECODE="1", TF_CPP_MIN_LOG_LEVEL="2")
    try:
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, pass_fds=(events_w,), cwd=workdir)
    finally:
        os.close(events_w)
    with os.fdopen(events_r, "rb") as events:
        data = events.read()
    output = proc.communicate()[0]
    if proc.returncode != 0:
        raise RuntimeError("cannot collect the checks (a problem in the checks or the hidden checks, not in "
                           f"a submission): {output.decode(errors='replace')[-2000:]}")
    for line in data.splitlines():
        event = json.loads(line)
        if event.get("event") == "collected":
            for nodeid, stage, hidden in event["checks"]:
                collected[nodeid] = (stage, bool(hidden))
        elif event.get("event") == "result":  # a check file that cannot be collected
            result = CheckResult.from_dict(event["result"])
            collected[result.nodeid] = (result.stage, result.hidden)
    return collected


# ----------------------------------------------------------------------------- one submission

def _clean(result: CheckResult, replacements: dict[str, str]) -> CheckResult:
    message = result.message
    for old, new in replacements.items():
        message = message.replace(old, new)
    result.message = integrity.clean_text(message)
    return result


def grade_submission(name: str, folder: Path, stages: tuple[str, ...], extra_dirs: list[str],
                     limits: Limits, points: report.Points, threads: int = 1,
                     stop: threading.Event | None = None, plan: Plan | None = None,
                     expected: dict[str, tuple[str | None, bool]] | None = None) -> dict:
    """Grade one submission in worker processes, one per stage (in the sandbox when ``plan``
    says so); return its JSON row (never raises for anything the submission does).

    ``expected``: ``{nodeid: (stage, hidden)}`` of the checks (:func:`collect_checks`); only
    their results count, in that order, and one that never reported counts as failed."""
    stop = stop or threading.Event()
    start = time.monotonic()
    deadline = start + limits.timeout
    sandboxed = bool(plan and plan.sandboxed)
    extra = {"fingerprint": fingerprint(folder), "extra_checks": list(extra_dirs),
             "limits": {"timeout": limits.timeout, "memory_mb": limits.memory_mb},
             "attempts": 0, "output_bytes": 0, "output_excerpt": "", "peak_memory_mb": 0.0,
             "sandboxed": sandboxed, "similarity": {}, "flags": []}
    status, message = "graded", ""
    results: dict[str, CheckResult] = {}
    with tempfile.TemporaryDirectory(prefix="nicelab-grade-") as tmp:
        workdir = Path(tmp)
        try:
            impl = copy_submission(lesson_folder(folder), workdir / "submission")
        except (OSError, ValueError) as err:
            return report.submission_row(name, str(folder), [], stages, points, status="error",
                                         message=f"cannot copy the submission: {err}",
                                         wall_time=round(time.monotonic() - start, 2), **extra)
        os.chmod(impl, 0o755)
        similar = integrity.reference_similarity(impl, PROJECT_ROOT / "solutions", PROJECT_ROOT / "lessons",
                                                 stages)
        extra["similarity"] = similar
        extra["flags"] = [f"{stage}.py is {value:.0%} like the reference solution (in what it adds to the "
                          "stub): check by hand whether it was handed in" for stage, value in similar.items()
                          if value >= integrity.SIMILARITY_FLAG]
        if expected is None:  # graded without a batch (tests): collect here
            expected = collect_checks(stages, tuple(extra_dirs), limits, workdir)
        original = str(lesson_folder(folder))
        replacements = {str(impl): original, str(sandbox.SUBMISSION): original}
        inside_names = sandbox.View(impl, impl, [Path(d) for d in extra_dirs]).extra_inside()
        for index, (root, inside) in enumerate(zip(extra_dirs, inside_names, strict=True)):
            replacements[inside] = f"<hidden checks {index + 1}>"
            replacements[root] = f"<hidden checks {index + 1}>"
        why_not_run = "not run."
        out_of_time = False
        for stage in stages:
            mine = {n: info for n, info in expected.items() if info[0] == stage}
            if not mine:
                continue
            if out_of_time or deadline - time.monotonic() < MIN_ATTEMPT_S:
                if not out_of_time:
                    why_not_run = f"not run: too little of the {limits.timeout:g} s time limit was left."
                for nodeid, (st, hidden) in mine.items():
                    results[nodeid] = CheckResult(nodeid, st, "error", why_not_run, 0.0, "not_run",
                                                  hidden=hidden)
                continue
            extra["attempts"] += 1
            if plan and stage in plan.remote_stages:
                attempt = run_remote(impl, stage, limits, deadline, plan, stop)
            else:
                attempt = run_worker(impl, [stage], list(extra_dirs), limits, deadline, workdir,
                                     str(extra["attempts"]), threads, stop, plan)
            extra["output_bytes"] += attempt.output_bytes
            extra["peak_memory_mb"] = max(extra["peak_memory_mb"], round(attempt.peak_rss / 2**20, 1))
            for nodeid in mine:
                result = attempt.results.get(nodeid)
                if result is not None and result.nodeid == nodeid:
                    result.stage, result.hidden = mine[nodeid]
                    results[nodeid] = _clean(result, replacements)
            if attempt.reason is None:
                for nodeid, (st, hidden) in mine.items():
                    if nodeid not in results:
                        results[nodeid] = CheckResult(
                            nodeid, st, "error", "This check never reported a verdict (it counts as failed): "
                            "something in the submission kept it from running.", 0.0, "error", hidden=hidden)
                continue
            what = integrity.clean_text(_describe_end(attempt, limits))
            if status == "graded":
                status = {"timeout": "timeout", "memory_limit": "memory"}.get(attempt.reason, "crashed")
                excerpt = attempt.output[-4000:]
                for old, new in replacements.items():
                    excerpt = excerpt.replace(old, new)
                extra["output_excerpt"] = integrity.clean_text(excerpt)
            culprit = attempt.in_flight if attempt.in_flight in mine else None
            if culprit is None:  # it died before (or between) checks: the first one left takes the verdict
                culprit = next((n for n in mine if n not in results), None)
                when = "before any check ran" if not attempt.started else "between two checks"
                where = when
            else:
                when, where = "during this check", f"during {culprit}"
            if culprit is not None:
                st, hidden = mine[culprit]
                results[culprit] = CheckResult(culprit, st, "error", f"{what} {when}.", 0.0, attempt.reason,
                                               hidden=hidden)
                message = message or f"{what} {where}."
            for nodeid, (st, hidden) in mine.items():
                if nodeid not in results:
                    results[nodeid] = CheckResult(nodeid, st, "error", f"not run: {what} {where}.",
                                                  0.0, "not_run", hidden=hidden)
            if attempt.reason == "timeout" and not attempt.check_timed_out:
                out_of_time = True
                why_not_run = f"not run: {what}."
        ordered = [results[n] for n in expected if n in results]
    if not sandboxed:
        extra["flags"].insert(0, NO_SANDBOX_WARNING)
    return report.submission_row(name, str(folder), ordered, stages, points, status=status, message=message,
                                 wall_time=round(time.monotonic() - start, 2), **extra)


# ----------------------------------------------------------------------------- a class

def load_results(path: Path) -> dict | None:
    """The results file of an earlier (maybe interrupted) batch, or None if there is none."""
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not a valid results file ({err}); move it away or use "
                         "--regrade.") from err
    if not isinstance(document, dict) or document.get("schema") != report.SCHEMA_ID:
        raise ValueError(f"{path} is not a nicelab grade results file; move it away or use --regrade.")
    return document


def grade_class(root: str | os.PathLike, json_path: Path, csv_path: Path | None = None,
                stages: tuple[str, ...] = STAGE_NAMES, extra_dirs: tuple[str, ...] = (),
                limits: Limits | None = None, points: report.Points | None = None,
                jobs: int | None = None, regrade: bool = False,
                log: Callable[[str], None] = print, shard: tuple[int, int] | None = None,
                use_sandbox: bool = True, remote_stages: tuple[str, ...] = ()) -> dict:
    """Grade every submission in ``root`` (in parallel, ``jobs`` at a time), writing the
    results to ``json_path`` (and ``csv_path``) after each one. Submissions already in the
    results file, unchanged, graded with the same stages, hidden checks and sandbox setting, and
    whose row still carries the grader's own signature, are skipped unless ``regrade``.

    ``shard = (I, N)``: only share I of N (:mod:`nicelab.grader.shard`).
    ``use_sandbox``: grade each submission in bubblewrap (:mod:`nicelab.grader.sandbox`); a
    batch refuses to start without it (:class:`~nicelab.grader.sandbox.SandboxUnavailable`)
    unless this is False, and then warns in the results. ``remote_stages`` (experimental, stage
    1 only, needs the sandbox): stages decided in this process from a sandboxed child's answers
    (:mod:`nicelab.grader.verdicts`) instead of by the checks running beside the student's code;
    their hidden checks do not run."""
    unknown = [s for s in remote_stages if s not in REMOTE_CHECKS]
    if unknown or (remote_stages and not use_sandbox):
        raise ValueError(f"verdicts outside the student's process exist for {', '.join(REMOTE_CHECKS)} "
                         "only, and need the sandbox.")
    limits = limits or Limits()
    points = points or report.load_points()
    jobs = max(1, jobs or os.cpu_count() or 1)
    extra_dirs = tuple(str(Path(d).resolve()) for d in extra_dirs)
    for extra in extra_dirs:
        if not Path(extra).is_dir():
            raise FileNotFoundError(f"no extra checks folder at {extra}.")
    bwrap = sandbox.check_available() if use_sandbox else None
    subs = find_submissions(root)
    key = integrity.grading_key()
    options = {"submissions_dir": str(Path(root).resolve()), "stages": list(stages),
               "extra_checks": list(extra_dirs), "jobs": jobs, "sandbox": use_sandbox,
               "remote_stages": list(remote_stages),
               "limits": {"timeout": limits.timeout, "memory_mb": limits.memory_mb,
                          "output_kb": limits.output_kb, "file_mb": limits.file_mb,
                          "scratch_mb": limits.scratch_mb}}
    if shard:
        options["shard"] = sharding.options(subs, *shard)
        subs = sharding.share(subs, *shard)
    previous = None if regrade else load_results(json_path)
    document = report.new_document(points, options)
    if not use_sandbox:
        document["warnings"] = [NO_SANDBOX_WARNING]
        log("WARNING: " + NO_SANDBOX_WARNING)
    if previous:
        document["created"] = previous.get("created", document["created"])
    rows: dict[str, dict] = {}
    tampered = []
    for row in (previous or {}).get("submissions", []):
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            continue
        if integrity.row_is_authentic(row, key):
            rows[row["name"]] = row
        else:
            tampered.append(row["name"])
    for name in tampered:
        log(f"  {integrity.clean_text(name)[:100]}: its row in {json_path} does not match the grader's own "
            "signature (edited after grading?): graded again")
    document["submissions"] = [rows[k] for k in sorted(rows)]
    todo = []
    for name, folder in subs:
        row = rows.get(name)
        if (row and row.get("fingerprint") == fingerprint(folder)
                and row.get("stages_requested") == list(stages)
                and row.get("extra_checks") == list(extra_dirs)
                and row.get("sandboxed", False) == use_sandbox
                and row.get("remote_stages", []) == list(remote_stages)):
            continue
        todo.append((name, folder))
    skipped = len(subs) - len(todo)
    note = f" ({skipped} already graded in {json_path}: skipped; --regrade grades them again)"
    log(f"grading {len(todo)} submissions from {root}, {jobs} at a time"
        + ("" if use_sandbox else " WITHOUT the sandbox") + (note if skipped else ""))
    lock = threading.Lock()
    stop = threading.Event()
    threads = max(1, (os.cpu_count() or 1) // jobs)

    def write() -> None:
        report.write_atomic(json_path, report.to_json(document))
        if csv_path:
            report.write_atomic(csv_path, report.to_csv(document))

    def save(row: dict) -> None:
        with lock:
            rows[row["name"]] = integrity.sign_row(row, key)
            document["submissions"] = [rows[k] for k in sorted(rows)]
            document["updated"] = report.now()
            write()
            stages_done = " ".join(f"{st['passed']}/{st['total']}" for st in row["stages"])
            log(f"  {row['name']}: {row['status']}, {row['points']:.1f}/{row['max_points']:g} points "
                f"[{stages_done}] in {row['wall_time']:.0f} s"
                + (f" - {row['message'][:150]}" if row["message"] else "")
                + "".join(f"\n    flag: {flag}" for flag in row.get("flags", [])
                          if flag != NO_SANDBOX_WARNING))

    with tempfile.TemporaryDirectory(prefix="nicelab-batch-") as tmp:
        plan = Plan(bwrap, Path(tmp), extra_dirs, limits.scratch_mb, remote_stages=tuple(remote_stages))
        if todo:
            expected = collect_checks(stages, extra_dirs, limits, Path(tmp))
            for stage in remote_stages:  # decided by the batch: its own list of verdicts
                expected = {n: info for n, info in expected.items() if info[0] != stage}
                expected.update({n: (stage, False) for n in REMOTE_CHECKS[stage]})

        def one(name: str, folder: Path) -> None:
            try:
                row = grade_submission(name, folder, stages, list(extra_dirs), limits, points, threads, stop,
                                       plan, expected)
                if remote_stages:
                    row["remote_stages"] = list(remote_stages)
            except Interrupted:
                return
            except Exception as err:  # noqa: BLE001 - a grader bug must not stop the class
                row = report.submission_row(name, str(folder), [], stages, points, status="error",
                                            message=f"grading failed: {type(err).__name__}: {err}")
            save(row)

        with lock:
            write()
        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="nicelab-grade")
        try:
            futures = [pool.submit(one, name, folder) for name, folder in todo]
            for future in as_completed(futures):
                future.result()
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    return document
