"""Grade a class: every submission in its own sandboxed processes, with limits, in parallel.

``grade_class(SUBMISSIONS_DIR, ...)`` grades each sub-folder (one per student, holding the
lesson modules, directly or in a ``lessons/`` folder) and writes the results after every
submission, atomically, so an interrupted batch leaves a valid file and a rerun resumes.

How one submission is graded, and how the limits are enforced:

* :mod:`nicelab.grader.submission` grades one submission, :mod:`nicelab.grader.isolation.process`
  runs and watches one worker process; this module grades the class and keeps the results.
* The batch first lists the checks it expects (:func:`collect_checks`, once, without any
  student code): only their results count, and one that never reports counts as failed.
* The submission's files are copied (regular files only, no ``__pycache__``) into a fresh
  temporary folder: grading never writes into the submission.
* Verdicts are decided where student code never runs: a worker process
  (``python -m nicelab.grader.worker``, outside the sandbox) runs the checks, the hidden ones
  included; each stage's module of the submission is loaded in a child process
  (:mod:`nicelab.grader.child`) that only answers the checks' requests over a pipe, arrays in
  and arrays out (:mod:`nicelab.grader.remote`). Whatever the submission patches there changes
  only its own answers. The child runs in a bubblewrap sandbox (:mod:`nicelab.grader.isolation.sandbox`):
  the project (without the checks), the venv and the caches read-only, of ``solutions/`` only
  the stages before the graded one, the copy read-only, a capped private ``/tmp``, its own user,
  PID, network, IPC and UTS namespaces. ``--no-sandbox`` runs the child directly (and says so
  in the results).
* The worker reports every check as it starts and ends over a pipe (capped at
  :data:`MAX_EVENT_BYTES`); only the batch writes results.
* Time: the batch kills the worker and every process descending from it (the sandboxes
  included, invisible from inside them) when the submission's wall-time budget (``timeout``)
  or one check's (``check_timeout``) is spent. Memory: the batch polls the resident memory
  (RSS, through psutil) of every process descending from the worker, the ones that run the
  submission's code (in the sandbox, every process of the namespace, whatever session it
  started; the worker's own memory is the grader's and does not count) every 0.1 s and kills them all above
  ``memory_mb`` or above :data:`MAX_PROCESSES` processes; the worker also caps its address
  space (RLIMIT_AS, 4x the limit), which its children inherit. Output: stdout and stderr go to
  a pipe the batch drains, keeping the first ``output_kb`` kilobytes and the last 2 kB. Files:
  RLIMIT_FSIZE, no core dumps, and in the sandbox nothing is writable but its capped tmpfs.
* When the child ends during a check (os._exit, a native crash, a signal), that check gets the
  verdict (crashed), the rest of its stage is not run, and the next stage gets a fresh child.
  When the batch stops a worker at a limit, the check that was running gets the verdict (timed
  out, out of memory), the rest of that stage is not run, and a fresh worker grades the stages
  left while the time budget lasts.
* Every row is signed with the instructor's key (:mod:`nicelab.grader.results.integrity`); a resumed
  batch grades again a row whose signature does not match. Every row also carries (signed) the
  digest of the batch's settings (:func:`settings`: points, limits, stages, sandbox, the public
  and hidden checks' files, the nicelab version); a resumed batch grades again a row graded
  under other settings. Every text of a row is cleaned (control characters removed, what
  cannot be encoded escaped); CSV cells lose their formula prefixes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from nicelab.core.course import STAGE_NAMES, VERSION
from nicelab.grader.isolation import forkserver, sandbox
from nicelab.grader.isolation.process import Interrupted, Limits, Plan, worker_environment
from nicelab.grader.results import integrity, report
from nicelab.grader.results import shard as sharding
from nicelab.grader.results.check_digests import stage_digests
from nicelab.grader.runner import CHECKS_DIR
from nicelab.grader.submission import (
    NO_SANDBOX_WARNING,
    CollectionError,
    collect_checks,
    find_submissions,
    fingerprint,
    grade_submission,
)

__all__ = ["Limits", "grade_class", "grade_submission", "load_results", "settings"]


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


def _check_arguments(extra_dirs: tuple[str, ...]) -> tuple[str, ...]:
    """The hidden checks' folders, resolved (an error for one that does not exist)."""
    extra_dirs = tuple(str(Path(d).resolve()) for d in extra_dirs)
    for extra in extra_dirs:
        if not Path(extra).is_dir():
            raise FileNotFoundError(f"no extra checks folder at {extra}.")
    return extra_dirs


def _options(root, stages, extra_dirs, jobs: int, use_sandbox: bool, limits: Limits) -> dict:
    """The batch's options, as the results file records them (every text cleaned, as in a row)."""
    return integrity.clean_value({
        "submissions_dir": str(Path(root).resolve()), "stages": list(stages),
        "extra_checks": list(extra_dirs), "jobs": jobs, "sandbox": use_sandbox,
        "limits": {"timeout": limits.timeout, "memory_mb": limits.memory_mb,
                   "check_timeout": limits.check_timeout, "output_kb": limits.output_kb,
                   "file_mb": limits.file_mb, "scratch_mb": limits.scratch_mb}})


def _digest(value: object) -> str:
    """SHA-256 (hex) of ``value`` as sorted JSON."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def settings(points: report.Points, options: dict) -> dict[str, str]:
    """What a row must have been graded with to be kept on a resume, beyond its own files: a
    digest of each part (the points, the limits, the stages, the sandbox setting, the public
    checks' files, the hidden checks' files, the nicelab version) and of them all
    (``"digest"``, which every row carries, signed). The checks a batch expects are collected
    from these files, so a changed set of checks changes the digest. ``options["jobs"]`` is
    not part of it: how many submissions run at once changes no verdict."""
    parts = {
        "points": _digest({"stages": points.stages, "partial_credit": points.partial_credit}),
        "limits": _digest(options["limits"]), "stages": _digest(options["stages"]),
        "sandbox": _digest(options["sandbox"]), "checks": fingerprint(CHECKS_DIR),
        "hidden_checks": _digest([fingerprint(Path(d)) for d in options["extra_checks"]]),
        "nicelab": _digest(VERSION),
    }
    return {**parts, "digest": _digest(parts)}


def _row_names(subs: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """The submissions under names a row can hold: cleaned (:func:`integrity.clean_text`: a
    folder name with control characters or undecodable bytes), never empty, each unique (a
    cleaned name already taken gets a digest of the folder's raw name)."""
    named, taken = [], set()
    for name, folder in subs:
        clean = integrity.clean_text(name)
        if not clean or clean in taken:
            clean = f"{clean}~{hashlib.sha256(os.fsencode(name)).hexdigest()[:8]}"
        taken.add(clean)
        named.append((clean, folder))
    return named


def _new_document(points: report.Points, options: dict, previous: dict | None,
                  log: Callable[[str], None]) -> dict:
    """The results document (created when the earlier batch was; warning without the sandbox)."""
    document = report.new_document(points, options)
    if not options["sandbox"]:
        document["warnings"] = [NO_SANDBOX_WARNING]
        log("WARNING: " + NO_SANDBOX_WARNING)
    if previous:
        document["created"] = previous.get("created", document["created"])
    document["settings"] = settings(points, options)
    return document


def _authentic_rows(previous: dict | None, key: bytes, json_path: Path,
                    log: Callable[[str], None]) -> dict[str, dict]:
    """The rows of an earlier batch that still carry the grader's own signature, by name."""
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
    return rows


#: How the log names the parts of :func:`settings`.
_SETTINGS_LABELS = {"sandbox": "sandbox setting", "checks": "public checks", "hidden_checks": "hidden checks",
                    "nicelab": "nicelab version"}


def _current_rows(rows: dict[str, dict], previous: dict | None, now: dict[str, str],
                  log: Callable[[str], None]) -> dict[str, dict]:
    """The rows graded under this batch's settings (``now``); the others are dropped (their
    submissions are graded again), with a line that says how many, which, and what changed."""
    stale = sorted(name for name, row in rows.items() if row.get("settings") != now["digest"])
    if not stale:
        return rows
    before = (previous or {}).get("settings")
    before = before if isinstance(before, dict) else {}
    changed = [_SETTINGS_LABELS.get(part, part) for part in now
               if part != "digest" and before.get(part) != now[part]]
    what = ", ".join(changed) if before and changed else "settings (points, limits or checks)"
    names = ", ".join(integrity.clean_text(n)[:60] for n in stale[:10])
    more = f" and {len(stale) - 10} more" if len(stale) > 10 else ""
    log(f"  {len(stale)} of the earlier rows were graded with other {what} than this batch's: "
        f"graded again ({names}{more})")
    return {name: row for name, row in rows.items() if name not in stale}


def _to_grade(subs: list[tuple[str, Path]], rows: dict[str, dict], options: dict) -> list[tuple[str, Path]]:
    """The submissions not already graded, unchanged, with the same stages, hidden checks,
    and sandbox setting."""
    todo = []
    for name, folder in subs:
        row = rows.get(name)
        if (row and row.get("fingerprint") == fingerprint(folder)
                and row.get("stages_requested") == options["stages"]
                and row.get("extra_checks") == options["extra_checks"]
                and row.get("sandboxed", False) == options["sandbox"]):
            continue
        todo.append((name, folder))
    return todo


def _log_start(todo: int, skipped: int, root, jobs: int, use_sandbox: bool, json_path: Path,
               log: Callable[[str], None]) -> None:
    note = f" ({skipped} already graded in {json_path}: skipped; --regrade grades them again)"
    log(f"grading {todo} submissions from {integrity.clean_text(str(root))}, {jobs} at a time"
        + ("" if use_sandbox else " WITHOUT the sandbox") + (note if skipped else ""))


def _log_row(row: dict, log: Callable[[str], None]) -> None:
    stages_done = " ".join(f"{st['passed']}/{st['total']}" for st in row["stages"])
    log(f"  {row['name']}: {row['status']}, {row['points']:.1f}/{row['max_points']:g} points "
        f"[{stages_done}] in {row['wall_time']:.0f} s"
        + (f" - {row['message'][:150]}" if row["message"] else "")
        + "".join(f"\n    flag: {flag}" for flag in row.get("flags", [])
                  if flag != NO_SANDBOX_WARNING))


def _run_pool(jobs: int, todo: list[tuple[str, Path]], one: Callable[[str, Path], None],
              stop: threading.Event) -> None:
    """``one(name, folder)`` for every submission, ``jobs`` at a time; Ctrl-C stops them all."""
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


class _Results:
    """The results document, written atomically (JSON, and CSV) after every signed row."""

    def __init__(self, document: dict, rows: dict[str, dict], key: bytes, json_path: Path,
                 csv_path: Path | None, log: Callable[[str], None]):
        self.document, self.rows, self.key = document, rows, key
        self.settings = document["settings"]["digest"]
        self.json_path, self.csv_path, self.log = json_path, csv_path, log
        self.lock = threading.Lock()

    def write(self) -> None:
        report.write_atomic(self.json_path, report.to_json(self.document))
        if self.csv_path:
            report.write_atomic(self.csv_path, report.to_csv(self.document))

    def save(self, row: dict) -> None:
        with self.lock:
            row["settings"] = self.settings  # signed with the rest: what it was graded under
            self.rows[row["name"]] = integrity.sign_row(row, self.key)
            self.document["submissions"] = [self.rows[k] for k in sorted(self.rows)]
            self.document["updated"] = report.now()
            self.write()
            _log_row(row, self.log)


class _Collection:
    """The checks the batch expects, collected by a worker of their own while the first
    submissions' workers start; :meth:`expected` waits for them (and keeps their stages'
    digests in the results: what ``nicelab grade regrade`` compares a later set of checks with)."""

    def __init__(self, stages: tuple[str, ...], extra_dirs: tuple[str, ...], limits: Limits, workdir: Path,
                 document: dict, lock: threading.Lock, start: bool = True):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nicelab-collect")
        if start:  # (nothing to grade: nothing to collect)
            self.future = self.pool.submit(collect_checks, stages, extra_dirs, limits, workdir)
        self.extra_dirs, self.document, self.lock, self.digested = extra_dirs, document, lock, False

    def expected(self) -> dict[str, tuple[str | None, bool]]:
        checks = self.future.result()
        with self.lock:
            if not self.digested:
                self.document["stage_checks"] = stage_digests(checks, self.extra_dirs)
                self.digested = True
        return checks

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def grade_class(root: str | os.PathLike, json_path: Path, csv_path: Path | None = None,
                stages: tuple[str, ...] = STAGE_NAMES, extra_dirs: tuple[str, ...] = (),
                limits: Limits | None = None, points: report.Points | None = None,
                jobs: int | None = None, regrade: bool = False,
                log: Callable[[str], None] = print, shard: tuple[int, int] | None = None,
                use_sandbox: bool = True) -> dict:
    """Grade every submission in ``root`` (in parallel, ``jobs`` at a time), writing the
    results to ``json_path`` (and ``csv_path``) after each one. Submissions already there,
    unchanged, graded with the same settings (:func:`settings`) and still signed by the grader
    are skipped unless ``regrade``. ``shard = (I, N)``: only share I of N (``results.shard``).
    ``use_sandbox``: grade each submission in bubblewrap (:mod:`nicelab.grader.isolation.sandbox`),
    else refuse to start (``SandboxUnavailable``); False: without it, with a warning in the results.
    The checks decide in the worker processes; the submission's code answers from child processes.
    Finally the class's similar pairs are flagged in their rows (``nicelab grade report``)."""
    extra_dirs = _check_arguments(extra_dirs)
    limits = limits or Limits()
    points = points or report.load_points()
    jobs = max(1, jobs or os.cpu_count() or 1)
    bwrap = sandbox.check_available() if use_sandbox else None
    subs = _row_names(find_submissions(root))
    key = integrity.grading_key()
    options = _options(root, stages, extra_dirs, jobs, use_sandbox, limits)
    if shard:
        options["shard"] = sharding.options(subs, *shard)
        subs = sharding.share(subs, *shard)
    previous = None if regrade else load_results(json_path)
    document = _new_document(points, options, previous, log)
    rows = _current_rows(_authentic_rows(previous, key, json_path, log), previous, document["settings"], log)
    document["submissions"] = [rows[k] for k in sorted(rows)]
    todo = _to_grade(subs, rows, options)
    _log_start(len(todo), len(subs) - len(todo), root, jobs, use_sandbox, json_path, log)
    results = _Results(document, rows, key, json_path, csv_path, log)
    stop = threading.Event()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with tempfile.TemporaryDirectory(prefix="nicelab-batch-") as tmp, _worker_server(len(todo) > 1, tmp):
        plan, lock = Plan(bwrap, limits.scratch_mb), results.lock
        collection = _Collection(stages, extra_dirs, limits, Path(tmp), document, lock, start=bool(todo))

        def one(name: str, folder: Path) -> None:
            try:
                row = grade_submission(name, folder, stages, list(extra_dirs), limits, points, threads, stop,
                                       plan, collection.expected)
            except Interrupted:
                return
            except CollectionError:  # the checks' problem, not a submission's: the batch stops
                raise
            except Exception as err:  # noqa: BLE001 - a grader bug must not stop the class
                row = report.submission_row(name, str(folder), [], stages, points, status="error",
                                            message=f"grading failed: {type(err).__name__}: {err}")
            results.save(row)

        with results.lock:
            results.write()
        with contextlib.closing(collection):
            _run_pool(jobs, todo, one, stop)
    if todo and not stop.is_set():
        _flag_similar_pairs(results, find_submissions(root), stages)
    return document


def _worker_server(needed: bool, folder: str):
    """The server the batch's workers are forked from (:mod:`nicelab.grader.isolation.forkserver`),
    when there are at least two submissions to grade. One submission alone (and Gradescope's)
    starts its worker directly: its first stage's sandbox then imports TensorFlow beside the
    worker, where a server would have to finish its own import first (about 3 s more to wait).
    ``NICELAB_FORK_SERVER=0`` starts every worker directly (a comparison, or a way out)."""
    if not needed or os.environ.get(forkserver.SWITCH_ENV) == "0":
        return contextlib.nullcontext()
    scratch = Path(folder) / "server"
    scratch.mkdir()
    return forkserver.serving(worker_environment(), str(scratch))


def _flag_similar_pairs(results: _Results, subs: list[tuple[str, Path]], stages: tuple[str, ...]) -> None:
    """Flag, in both rows, every pair of the class's submissions (all of ``root``'s, whatever
    the shard) whose additions to a stage's stub are alike (:mod:`nicelab.grader.results.similarity`),
    re-signing the rows that change."""
    from nicelab.grader.results import similarity  # lazy: copydetect only once a class is graded

    modules = similarity.read_modules(dict(subs), stages)
    pairs = similarity.compare_class(modules, similarity.read_stubs(stages))
    with results.lock:
        rows = list(results.rows.values())
        if similarity.flag_rows(rows, pairs, results.key):
            results.document["submissions"] = [results.rows[k] for k in sorted(results.rows)]
            results.write()
        for pair in pairs:
            results.log(f"similar: {pair.a} ~ {pair.b} ({', '.join(pair.matches)}): "
                        "see `nicelab grade report`")
