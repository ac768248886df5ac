"""One submission: its files, the checks the batch expects of it, and its grading, stage by
stage, in worker processes (:mod:`nicelab.grader.isolation.process`); the result is its JSON row."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nicelab.core.course import STAGE_NAMES
from nicelab.core.impl import PROJECT_ROOT
from nicelab.grader.isolation import forkserver, sandbox
from nicelab.grader.isolation.process import (
    Attempt,
    Limits,
    Plan,
    describe_end,
    run_worker,
    worker_command,
    worker_environment,
)
from nicelab.grader.results import integrity, report
from nicelab.grader.runner import CheckResult

#: ``{nodeid: (stage, hidden)}`` of the checks a batch expects, or a function that returns it.
Expected = dict[str, tuple[str | None, bool]] | Callable[[], dict[str, tuple[str | None, bool]]]
#: The largest submission copied for grading (all its files together).
MAX_SUBMISSION_BYTES = 50 * 2**20
#: A fresh worker needs at least this much of the time budget to be worth starting.
MIN_ATTEMPT_S = 8.0
NO_SANDBOX_WARNING = ("graded WITHOUT the sandbox (--no-sandbox): each submission's code ran with the "
                      "grader's rights and could change its own or others' results; trust these grades "
                      "only as far as you trust the students.")


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


#: What a fingerprint hashes first: the version of its encoding (a new encoding, new fingerprints).
FINGERPRINT_FORMAT = b"nicelab-fingerprint/2\0"


def fingerprint(folder: Path) -> str:
    """A hash of the submission's files (names and bytes): a changed submission is regraded.

    Each file's relative path (its bytes, as the file system holds them) and content go in
    with their lengths in front (8 bytes each), so that the hashed stream decodes to exactly
    one list of files: no two different sets of files share a fingerprint (short of a SHA-256
    collision), whatever bytes their names or contents hold."""
    digest = hashlib.sha256(FINGERPRINT_FORMAT)
    for path in _files(folder):
        for part in (os.fsencode(path.relative_to(folder)), path.read_bytes()):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


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


class CollectionError(RuntimeError):
    """The checks cannot be collected: a problem in the checks, not in a submission (the batch stops)."""


def collect_checks(stages: tuple[str, ...], extra_dirs: tuple[str, ...], limits: Limits,
                   workdir: Path) -> dict[str, tuple[str | None, bool]]:
    """``{nodeid: (stage, hidden)}`` of every check the batch expects, collected once, by the
    grader alone (the reference is graded's stand-in: no student code runs, no fixture runs)."""
    collected: dict[str, tuple[str | None, bool]] = {}
    events_r, events_w = os.pipe()
    command = worker_command("solutions", list(stages), list(extra_dirs), limits, 1, events_w,
                             collect_only=True)
    try:  # forked from the batch's server when there is one
        proc = forkserver.popen(command, workdir, worker_environment(), events_w)
    finally:
        os.close(events_w)
    with os.fdopen(events_r, "rb") as events:
        data = events.read()
    with proc.stdout:
        output = proc.stdout.read()
    proc.wait()
    if proc.returncode != 0:
        raise CollectionError("cannot collect the checks (a problem in the checks or the hidden checks, not "
                              f"in a submission): {output.decode(errors='replace')[-2000:]}")
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


@dataclass
class _Grading:
    """One submission's grading in progress: its results so far, its status and message, why
    the checks left are not run, and the row's extra fields."""

    limits: Limits
    replacements: dict[str, str]
    extra: dict
    results: dict[str, CheckResult] = field(default_factory=dict)
    status: str = "graded"
    message: str = ""
    why_not_run: str = "not run."
    out_of_time: bool = False

    def not_run(self, mine: dict[str, tuple[str | None, bool]], deadline: float) -> bool:
        """Mark the stage's checks ``mine`` as not run when the time left is too short."""
        if not (self.out_of_time or deadline - time.monotonic() < MIN_ATTEMPT_S):
            return False
        if not self.out_of_time:
            self.why_not_run = f"not run: too little of the {self.limits.timeout:g} s time limit was left."
        for nodeid, (st, hidden) in mine.items():
            self.results[nodeid] = CheckResult(nodeid, st, "error", self.why_not_run, 0.0, "not_run",
                                               hidden=hidden)
        return True

    def record(self, attempt: Attempt, mine: dict[str, tuple[str | None, bool]]) -> None:
        """The stage's results from ``attempt``; a check that never reported counts as failed."""
        self.extra["output_bytes"] += attempt.output_bytes
        self.extra["peak_memory_mb"] = max(self.extra["peak_memory_mb"], round(attempt.peak_rss / 2**20, 1))
        for nodeid in mine:
            result = attempt.results.get(nodeid)
            if result is not None and result.nodeid == nodeid:
                result.stage, result.hidden = mine[nodeid]
                self.results[nodeid] = _clean(result, self.replacements)
        self._ended_in_a_check(attempt, mine)
        if attempt.reason is None:
            for nodeid, (st, hidden) in mine.items():
                if nodeid not in self.results:
                    self.results[nodeid] = CheckResult(
                        nodeid, st, "error", "This check never reported a verdict (it counts as failed): "
                        "something in the submission kept it from running.", 0.0, "error", hidden=hidden)
        else:
            self.abnormal_end(attempt, mine)

    def _ended_in_a_check(self, attempt: Attempt, mine: dict[str, tuple[str | None, bool]]) -> None:
        """The row's status when the process running the submission's code ended during a check
        (the worker went on with the next stage): crashed or timeout, and where."""
        for nodeid in mine:
            result = attempt.results.get(nodeid)
            if self.status == "graded" and result is not None and result.kind in ("crashed", "timeout"):
                self.status = result.kind
                self.message = f"{result.message.removesuffix(' during this check.')} during {nodeid}."

    def abnormal_end(self, attempt: Attempt, mine: dict[str, tuple[str | None, bool]]) -> None:
        """A worker killed or dead: the check it was running (or the first one left) gets the
        verdict, the rest of the stage is not run, and a timeout ends the submission's time."""
        what = integrity.clean_text(describe_end(attempt, self.limits))
        if self.status == "graded":
            self.status = {"timeout": "timeout", "memory_limit": "memory"}.get(attempt.reason, "crashed")
            excerpt = attempt.output[-4000:]
            for old, new in self.replacements.items():
                excerpt = excerpt.replace(old, new)
            self.extra["output_excerpt"] = integrity.clean_text(excerpt)
        culprit = attempt.in_flight if attempt.in_flight in mine else None
        if culprit is None:  # it died before (or between) checks: the first one left takes the verdict
            culprit = next((n for n in mine if n not in self.results), None)
            when = "before any check ran" if not attempt.started else "between two checks"
            where = when
        else:
            when, where = "during this check", f"during {culprit}"
        if culprit is not None:
            st, hidden = mine[culprit]
            self.results[culprit] = CheckResult(culprit, st, "error", f"{what} {when}.", 0.0, attempt.reason,
                                                hidden=hidden)
            self.message = self.message or f"{what} {where}."
        whole = attempt.reason == "timeout" and not attempt.check_timed_out  # the submission's time is up
        stage = mine[culprit][0] if culprit is not None else None
        for nodeid, (st, hidden) in mine.items():
            if nodeid not in self.results and (whole or st == stage):
                self.results[nodeid] = CheckResult(nodeid, st, "error", f"not run: {what} {where}.",
                                                   0.0, "not_run", hidden=hidden)
        if whole:
            self.out_of_time = True
            self.why_not_run = f"not run: {what}."


def _replacements(impl: Path, folder: Path, extra_dirs: list[str]) -> dict[str, str]:
    """Paths the messages must not show (the copy, the sandbox's, the hidden checks') and what
    they show instead."""
    original = str(lesson_folder(folder))
    replacements = {str(impl): original, str(sandbox.SUBMISSION): original}
    for index, root in enumerate(extra_dirs):
        replacements[str(Path(root).resolve())] = f"<hidden checks {index + 1}>"
        replacements[root] = f"<hidden checks {index + 1}>"
    return replacements


def _similarity_flags(impl: Path, stages: tuple[str, ...], extra: dict) -> None:
    similar = integrity.reference_similarity(impl, PROJECT_ROOT / "solutions", PROJECT_ROOT / "lessons",
                                             stages)
    extra["similarity"] = similar
    extra["flags"] = [f"{stage}.py is {value:.0%} like the reference solution (in what it adds to the "
                      "stub): check by hand whether it was handed in" for stage, value in similar.items()
                      if value >= integrity.SIMILARITY_FLAG]


def _readable_by_the_student(workdir: Path, impl: Path) -> None:
    """Let the student's user (a child run as another uid) pass through ``workdir`` (0711: it
    lists nothing there) and read, not write, the copy ``impl`` (folders 0755, files 0644)."""
    os.chmod(workdir, 0o711)
    for base, dirs, files in os.walk(impl):
        for entry in dirs:
            os.chmod(os.path.join(base, entry), 0o755)
        for entry in files:
            os.chmod(os.path.join(base, entry), 0o644)


def grade_submission(name: str, folder: Path, stages: tuple[str, ...], extra_dirs: list[str],
                     limits: Limits, points: report.Points, threads: int = 1,
                     stop: threading.Event | None = None, plan: Plan | None = None,
                     expected: Expected | None = None) -> dict:
    """Grade one submission: a worker process runs the checks of every stage, each stage's
    module answering from a child process (in the sandbox when ``plan`` says so); a worker
    stopped at a limit is followed by a fresh one for the stages left. Returns the JSON row
    (never raises for anything the submission does).

    ``expected``: ``{nodeid: (stage, hidden)}`` of the checks (:func:`collect_checks`), or a
    function that returns it once the batch has collected them (the first worker starts in the
    meantime); only their results count, in that order, and one that never reported counts as
    failed."""
    stop = stop or threading.Event()
    start = time.monotonic()
    deadline = start + limits.timeout
    sandboxed = bool(plan and plan.sandboxed)
    extra = {"fingerprint": fingerprint(folder), "extra_checks": list(extra_dirs),
             "limits": {"timeout": limits.timeout, "memory_mb": limits.memory_mb},
             "attempts": 0, "output_bytes": 0, "output_excerpt": "", "peak_memory_mb": 0.0,
             "sandboxed": sandboxed, "similarity": {}, "flags": []}
    with tempfile.TemporaryDirectory(prefix="nicelab-grade-") as tmp:
        workdir = Path(tmp)
        try:
            impl = copy_submission(lesson_folder(folder), workdir / "submission")
        except (OSError, ValueError) as err:
            return report.submission_row(name, str(folder), [], stages, points, status="error",
                                         message=f"cannot copy the submission: {err}",
                                         wall_time=round(time.monotonic() - start, 2), **extra)
        os.chmod(impl, 0o755)
        if plan is not None and plan.uid is not None:
            _readable_by_the_student(workdir, impl)
        _similarity_flags(impl, stages, extra)
        if expected is None:  # graded without a batch (tests): collect here
            expected = collect_checks(stages, tuple(extra_dirs), limits, workdir)
        known = expected if isinstance(expected, dict) else None
        grading = _Grading(limits, _replacements(impl, folder, extra_dirs), extra)
        plan = plan or Plan(None)
        pending = list(stages) if known is None else \
            [st for st in stages if any(info[0] == st for info in known.values())]
        while pending:  # one worker for the stages left; a fresh one after a worker is stopped
            if known is not None:
                mine = {n: info for n, info in known.items() if info[0] in pending}
                if grading.not_run(mine, deadline):
                    break
            extra["attempts"] += 1
            attempt = run_worker(impl, pending, list(extra_dirs), limits, deadline, workdir,
                                 str(extra["attempts"]), threads, stop, plan)
            known = known if known is not None else expected()
            mine = {n: info for n, info in known.items() if info[0] in pending}
            grading.record(attempt, mine)
            pending = [st for st in pending
                       if any(n not in grading.results for n, info in mine.items() if info[0] == st)]
        ordered = [grading.results[n] for n in (known or {}) if n in grading.results]
    if not sandboxed:
        extra["flags"].insert(0, NO_SANDBOX_WARNING)
    return report.submission_row(name, str(folder), ordered, stages, points, status=grading.status,
                                 message=grading.message, wall_time=round(time.monotonic() - start, 2),
                                 **extra)
