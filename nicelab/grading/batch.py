"""Grade a class: every submission in its own process, with limits, in parallel.

``grade_class(SUBMISSIONS_DIR, ...)`` grades each sub-folder (one per student, holding the
lesson modules, directly or in a ``lessons/`` folder) and writes the results after every
submission, atomically, so an interrupted batch leaves a valid file and a rerun resumes.

How one submission is graded, and how the limits are enforced:

* Its files are copied (regular files only, no ``__pycache__``) into a fresh temporary folder:
  grading never writes into the submission; ``PYTHONDONTWRITEBYTECODE`` is set too.
* A worker process (``python -m nicelab.grading.worker``) runs the checks on the copy, in its
  own process group and an empty scratch working directory, and reports every check as it
  starts and ends through an events file.
* Time: the parent kills the whole process group when the submission's wall-time budget
  (``timeout``) is spent. Memory: the parent polls the resident memory (RSS, from ``/proc``)
  of every process in the group every 0.1 s and kills the group above ``memory_mb``; the worker
  also caps its address space (RLIMIT_AS, 4x the limit) so one giant allocation fails at once
  with a MemoryError. Output: stdout and stderr go to a pipe the parent drains, keeping the
  first ``output_kb`` kilobytes and the last 2 kB, counting the rest and discarding it.
  Files: the worker caps the size of any file it writes (RLIMIT_FSIZE) and core dumps are off.
* When the process is killed or dies (os._exit, a native crash, a signal), the check that was
  running gets the verdict (timed out, out of memory, crashed); the rest of that stage is not
  run, and the stages not graded yet get a fresh process while the time budget lasts.
* The worker exits by itself when its parent disappears (a killed batch leaves no orphans).
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

from nicelab import STAGE_NAMES
from nicelab.checkrun import CheckResult, stage_of_file
from nicelab.grader import shard as sharding
from nicelab.grading import report

#: The largest submission copied for grading (all its files together).
MAX_SUBMISSION_BYTES = 50 * 2**20
#: A fresh worker needs at least this much of the time budget to be worth starting.
MIN_ATTEMPT_S = 8.0
POLL_S = 0.1
PAGE = os.sysconf("SC_PAGE_SIZE")
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

    def __post_init__(self):
        if not self.timeout > 0:
            raise ValueError(f"the time limit must be positive; saw {self.timeout}.")
        if self.check_timeout is not None and not self.check_timeout > 0:
            raise ValueError(f"the time limit of one check must be positive; saw {self.check_timeout}.")
        if self.memory_mb < 512:
            raise ValueError(f"the memory limit must be at least 512 MB (TensorFlow alone needs about "
                             f"800 MB); saw {self.memory_mb}.")
        if self.output_kb < 1 or self.file_mb < 1:
            raise ValueError("the output and file limits must be at least 1.")


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


def group_rss(pgid: int) -> int:
    """Resident memory, in bytes, of every process in the process group ``pgid``."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            total += int(fields[21]) * PAGE
    return total


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@dataclass
class Attempt:
    """What one worker process did: the checks it collected, their results, the check it was
    running when it ended, and how it ended (``reason``: None, timeout, memory_limit, crashed)."""

    expected: dict[str, tuple[str | None, bool]] = field(default_factory=dict)
    results: dict[str, CheckResult] = field(default_factory=dict)
    sessions: int = 0
    in_flight: str | None = None
    done: bool = False
    reason: str | None = None
    check_timed_out: bool = False
    returncode: int | None = None
    peak_rss: int = 0
    output: str = ""
    output_bytes: int = 0


def _read_events(path: Path, attempt: Attempt) -> None:
    started = None
    if not path.exists():
        return
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
            kind = event["event"]
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
        if kind == "collected":
            attempt.sessions += 1
            for nodeid, stage, hidden in event["checks"]:
                attempt.expected[nodeid] = (stage, bool(hidden))
        elif kind == "start":
            started = event["nodeid"]
        elif kind == "result":
            result = CheckResult.from_dict(event["result"])
            attempt.results.setdefault(result.nodeid, result)
            if result.nodeid == started:
                started = None
        elif kind == "done":
            attempt.done = True
    attempt.in_flight = started


class _EventTail:
    """Follows a worker's events file while it runs: which check is running, for how long."""

    def __init__(self, path: Path):
        self.path, self.offset, self.buffer = path, 0, b""
        self.running: str | None = None
        self.since = 0.0

    def running_for(self) -> float:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return 0.0
        self.offset += len(data)
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "start":
                self.running, self.since = event.get("nodeid"), time.monotonic()
            elif event.get("event") in ("result", "done"):
                self.running = None
        return time.monotonic() - self.since if self.running else 0.0


def run_worker(impl: Path, stages: list[str], extra_dirs: list[str], limits: Limits, deadline: float,
               workdir: Path, tag: str, threads: int, stop: threading.Event) -> Attempt:
    """Run one worker process on ``impl`` for ``stages`` until it ends, the ``deadline``
    (time.monotonic) passes, it exceeds the memory limit, or ``stop`` is set."""
    events = workdir / f"events-{tag}.jsonl"
    scratch = workdir / f"scratch-{tag}"
    scratch.mkdir()
    command = [sys.executable, "-m", "nicelab.grading.worker", str(impl), str(events),
               "--stages", ",".join(stages), "--threads", str(threads),
               "--memory-mb", str(limits.memory_mb), "--file-mb", str(limits.file_mb),
               "--parent", str(os.getpid())]
    for extra in extra_dirs:
        command += ["--extra-checks", extra]
    env = {k: v for k, v in os.environ.items() if k not in ("NICELAB_IMPL", "PYTHONSTARTUP")}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0", TF_CPP_MIN_LOG_LEVEL="2",
               MALLOC_ARENA_MAX="2", PYTHONFAULTHANDLER="1", PYTHONUNBUFFERED="1")
    attempt = Attempt()
    limit = limits.memory_mb * 2**20
    tail = _EventTail(events)
    proc = subprocess.Popen(command, cwd=scratch, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    drain = _Drain(proc.stdout, limits.output_kb * 1024)
    drain.start()
    try:
        while proc.poll() is None:
            if stop.is_set():
                raise Interrupted()
            if time.monotonic() > deadline:
                attempt.reason = "timeout"
                break
            if limits.check_timeout and tail.running_for() > limits.check_timeout:
                attempt.reason, attempt.check_timed_out = "timeout", True
                break
            rss = group_rss(proc.pid)
            attempt.peak_rss = max(attempt.peak_rss, rss)
            if rss > limit:
                attempt.reason = "memory_limit"
                break
            time.sleep(POLL_S)
    finally:
        _kill_group(proc.pid)  # also any process the submission started
        proc.wait()
        drain.join(timeout=2.0)
        with contextlib.suppress(OSError):
            proc.stdout.close()
    attempt.returncode = proc.returncode
    attempt.output, attempt.output_bytes = drain.text(), drain.total
    _read_events(events, attempt)
    if attempt.reason is None and not (attempt.done and attempt.in_flight is None):
        attempt.reason = "crashed"
    return attempt


def _describe_end(attempt: Attempt, limits: Limits) -> str:
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
    if not attempt.expected:
        last = [line for line in attempt.output.splitlines() if line.strip()][-1:]
        return f"the grading process exited with code {code}" + (f" ({last[0][:300]})" if last else "")
    return f"the grading process exited with code {code} before the checks were done (os._exit?)"


# ----------------------------------------------------------------------------- one submission

def grade_submission(name: str, folder: Path, stages: tuple[str, ...], extra_dirs: list[str],
                     limits: Limits, points: report.Points, threads: int = 1,
                     stop: threading.Event | None = None) -> dict:
    """Grade one submission in worker processes; return its JSON row (never raises for
    anything the submission does)."""
    stop = stop or threading.Event()
    start = time.monotonic()
    deadline = start + limits.timeout
    expected: dict[str, tuple[str | None, bool]] = {}
    results: dict[str, CheckResult] = {}
    extra = {"fingerprint": fingerprint(folder), "extra_checks": list(extra_dirs),
             "limits": {"timeout": limits.timeout, "memory_mb": limits.memory_mb},
             "attempts": 0, "output_bytes": 0, "output_excerpt": "", "peak_memory_mb": 0.0}
    status, message, why_not_run = "graded", "", "not run"
    remaining = list(stages)
    abandoned: set[str | None] = set()
    with tempfile.TemporaryDirectory(prefix="nicelab-grade-") as tmp:
        workdir = Path(tmp)
        try:
            impl = copy_submission(lesson_folder(folder), workdir / "submission")
        except (OSError, ValueError) as err:
            return report.submission_row(name, str(folder), [], stages, points, status="error",
                                         message=f"cannot copy the submission: {err}",
                                         wall_time=round(time.monotonic() - start, 2), **extra)
        while remaining:
            extra["attempts"] += 1
            attempt = run_worker(impl, remaining, extra_dirs, limits, deadline, workdir,
                                 str(extra["attempts"]), threads, stop)
            extra["output_bytes"] += attempt.output_bytes
            extra["peak_memory_mb"] = max(extra["peak_memory_mb"], round(attempt.peak_rss / 2**20, 1))
            for nodeid, info in attempt.expected.items():
                expected.setdefault(nodeid, info)
            for nodeid, result in attempt.results.items():
                results.setdefault(nodeid, result)
            if attempt.reason is None:
                break
            what = _describe_end(attempt, limits)
            if status == "graded":
                status = {"timeout": "timeout", "memory_limit": "memory"}.get(attempt.reason, "crashed")
                extra["output_excerpt"] = attempt.output[-4000:]
            if attempt.in_flight:
                fallback = (stage_of_file(attempt.in_flight), False)
                stage, hidden = attempt.expected.get(attempt.in_flight, fallback)
                results[attempt.in_flight] = CheckResult(
                    attempt.in_flight, stage, "error", f"{what} during this check.", 0.0, attempt.reason,
                    hidden=hidden)
                abandoned.add(stage)
                message = message or f"{what} during {attempt.in_flight}."
                why_not_run = f"not run: {what} during {attempt.in_flight}."
            elif not attempt.expected:
                message = message or f"{what} before any check ran."
                for stage in remaining:
                    results[f"<{stage}>"] = CheckResult(f"<{stage}>", stage, "error", f"{what} before any "
                                                        "check ran.", 0.0, attempt.reason)
                break
            else:
                message = message or f"{what}."
                why_not_run = f"not run: {what}."
            sessions_expected = 1 + len(extra_dirs)
            remaining = [s for s in stages if s not in abandoned and (
                attempt.sessions < sessions_expected
                or any(info[0] == s and n not in results for n, info in expected.items()))]
            out_of_time = attempt.reason == "timeout" and not attempt.check_timed_out
            if out_of_time or deadline - time.monotonic() < MIN_ATTEMPT_S:
                if not out_of_time:
                    why_not_run = f"not run: too little of the {limits.timeout:g} s time limit was left."
                break
            if extra["attempts"] > len(stages) + 1:
                break
        ordered = []
        for nodeid, (stage, hidden) in expected.items():
            ordered.append(results.pop(nodeid, None) or CheckResult(
                nodeid, stage, "error", why_not_run, 0.0, "not_run", hidden=hidden))
        ordered.extend(results.values())
        original = str(lesson_folder(folder))
        for result in ordered:  # messages name the submission's files, not the temporary copy
            result.message = result.message.replace(str(impl), original)
        extra["output_excerpt"] = extra["output_excerpt"].replace(str(impl), original)
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
                log: Callable[[str], None] = print, shard: tuple[int, int] | None = None) -> dict:
    """Grade every submission in ``root`` (in parallel, ``jobs`` at a time), writing the
    results to ``json_path`` (and ``csv_path``) after each one. Submissions already in the
    results file, unchanged and graded with the same stages and hidden checks, are skipped
    unless ``regrade``. ``shard = (I, N)``: only share I of N (:mod:`nicelab.grader.shard`)."""
    limits = limits or Limits()
    points = points or report.load_points()
    jobs = max(1, jobs or os.cpu_count() or 1)
    extra_dirs = tuple(str(Path(d).resolve()) for d in extra_dirs)
    for extra in extra_dirs:
        if not Path(extra).is_dir():
            raise FileNotFoundError(f"no extra checks folder at {extra}.")
    subs = find_submissions(root)
    options = {"submissions_dir": str(Path(root).resolve()), "stages": list(stages),
               "extra_checks": list(extra_dirs), "jobs": jobs,
               "limits": {"timeout": limits.timeout, "memory_mb": limits.memory_mb,
                          "output_kb": limits.output_kb, "file_mb": limits.file_mb}}
    if shard:
        options["shard"] = sharding.options(subs, *shard)
        subs = sharding.share(subs, *shard)
    previous = None if regrade else load_results(json_path)
    document = report.new_document(points, options)
    if previous:
        document["created"] = previous.get("created", document["created"])
        document["submissions"] = list(previous.get("submissions", []))
    rows = {row["name"]: row for row in document["submissions"]}
    todo = []
    for name, folder in subs:
        row = rows.get(name)
        if (row and row.get("fingerprint") == fingerprint(folder)
                and row.get("stages_requested") == list(stages)
                and row.get("extra_checks") == list(extra_dirs)):
            continue
        todo.append((name, folder))
    skipped = len(subs) - len(todo)
    note = f" ({skipped} already graded in {json_path}: skipped; --regrade grades them again)"
    log(f"grading {len(todo)} submissions from {root}, {jobs} at a time" + (note if skipped else ""))
    lock = threading.Lock()
    stop = threading.Event()
    threads = max(1, (os.cpu_count() or 1) // jobs)

    def save(row: dict) -> None:
        with lock:
            rows[row["name"]] = row
            document["submissions"] = [rows[k] for k in sorted(rows)]
            document["updated"] = report.now()
            report.write_atomic(json_path, report.to_json(document))
            if csv_path:
                report.write_atomic(csv_path, report.to_csv(document))
            stages_done = " ".join(f"{st['passed']}/{st['total']}" for st in row["stages"])
            log(f"  {row['name']}: {row['status']}, {row['points']:.1f}/{row['max_points']:g} points "
                f"[{stages_done}] in {row['wall_time']:.0f} s"
                + (f" - {row['message'][:150]}" if row["message"] else ""))

    def one(name: str, folder: Path) -> None:
        try:
            row = grade_submission(name, folder, stages, list(extra_dirs), limits, points, threads, stop)
        except Interrupted:
            return
        except Exception as err:  # noqa: BLE001 - a grader bug must not stop the class
            row = report.submission_row(name, str(folder), [], stages, points, status="error",
                                        message=f"grading failed: {type(err).__name__}: {err}")
        save(row)

    with lock:
        report.write_atomic(json_path, report.to_json(document))
        if csv_path:
            report.write_atomic(csv_path, report.to_csv(document))
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
