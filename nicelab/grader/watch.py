"""``nicelab watch``: keep TensorFlow loaded and re-run a stage's checks every time a lesson file
is saved, printing one line per failed check (the same verdicts ``pytest checks`` prints).

The files are polled (their modification time and size, a few times a second): no file-system
event library is needed and it works the same on every platform and network drive. Each run is
a fresh pytest session in this process (:func:`nicelab.grader.runner.run_checks`), which loads the
lesson modules afresh; TensorFlow and the check modules stay imported, so a run of stage 1 or 2
costs about a second instead of the five seconds of imports a new ``pytest`` process pays.

Verdicts stream: each failure is printed as its check ends (:class:`Stream`), and a slow run
says how many checks pass so far before its slow check (stage 3's training run, which trains
again only when what it uses changed: :mod:`nicelab.core.source_key`) ends.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from nicelab.core.course import STAGE_NAMES
from nicelab.core.impl import resolve

#: Every verdict block ends with a line that starts with this (``nicelab bench`` and the tests
#: wait for it).
SUMMARY = "==>"

Snapshot = dict[Path, tuple[int, int]]


def snapshot(folder: Path) -> Snapshot:
    """``{path: (mtime_ns, size)}`` of the Python files directly in ``folder``."""
    found = {}
    for path in sorted(folder.glob("*.py")):
        try:
            stat = path.stat()
        except OSError:  # removed between glob and stat (an editor's atomic save)
            continue
        found[path] = (stat.st_mtime_ns, stat.st_size)
    return found


def changed_files(before: Snapshot, after: Snapshot) -> list[Path]:
    """Files added, removed or modified between two snapshots."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def stages_for(changed: Iterable[Path], watched: tuple[str, ...]) -> tuple[str, ...]:
    """The watched stages to re-run after ``changed`` were saved: the stage of each changed stage
    module (a stage is graded on the reference modules of the stages before it), and every
    watched stage when another file (a helper module) changed."""
    names = {Path(p).stem for p in changed}
    if names - set(STAGE_NAMES):
        return watched
    return tuple(s for s in watched if s in names)


@dataclass
class Verdict:
    """One run: the stages checked, how many checks passed, the printed lines, its duration."""

    stages: tuple[str, ...]
    passed: int
    total: int
    lines: list[str]
    seconds: float


def failure_line(result, more: int = 0) -> str:
    """``FAILED file::check - message`` (``NOT DONE`` for a stub), with ``(and N more)`` when
    ``more`` other checks failed with the same message."""
    label = "NOT DONE" if result.kind == "not_implemented" else result.outcome.upper()
    also = f" (and {more} more)" if more else ""
    text = result.message.removeprefix("Not implemented yet - ")
    return f"{label} {Path(result.nodeid.split('::')[0]).name}::{result.name}{also} - {text}"


def failure_groups(results) -> dict[str, list]:
    """message -> the failed checks with it: a stub or an import error fails every check of a
    stage with one message, printed once."""
    groups: dict[str, list] = {}
    for result in results:
        if not (result.passed or result.outcome == "skipped"):
            groups.setdefault(result.message, []).append(result)
    return groups


def format_verdict(stages: tuple[str, ...], results, seconds: float, cpu: float | None = None) -> Verdict:
    """One ``FAILED file::check - message`` line per failed check (pytest's short summary),
    then a summary line starting with :data:`SUMMARY` (with the run's wall time, and its CPU
    time when given: on a busy machine the two differ)."""
    lines = [failure_line(failed[0], len(failed) - 1) for failed in failure_groups(results).values()]
    passed = sum(r.passed for r in results)
    named = ", ".join(f"{STAGE_NAMES.index(s) + 1} ({s})" for s in stages)
    tail = "all pass" if results and passed == len(results) else f"{passed}/{len(results)} pass"
    took = f"{seconds:.1f} s" + (f", {cpu:.1f} s CPU" if cpu is not None else "")
    lines.append(f"{SUMMARY} stage{'s' if len(stages) > 1 else ''} {named}: {tail} ({took})")
    return Verdict(stages, passed, len(results), lines, seconds)


class Stream:
    """Prints each verdict as its check finishes, before the slow checks of the run are done: the
    first failure of every message at once, and, once the run has lasted :attr:`progress_after`
    seconds, one ``... N/M pass so far`` line as the next check starts (stage 3's training run,
    say). ``say`` is called with ``sys.stdout`` as it was when the stream was made (the runner
    sends pytest's own output elsewhere while it runs)."""

    def __init__(self, say: Callable[[str], None], progress_after: float = 1.0,
                 clock: Callable[[], float] = time.perf_counter):
        self._say, self._stdout, self._clock = say, sys.stdout, clock
        self.progress_after, self.start = progress_after, clock()
        self.streamed: set[str] = set()  # the messages already printed
        self.passed = self.done = 0
        self._progress = False

    def say(self, line: str) -> None:
        with contextlib.redirect_stdout(self._stdout):
            self._say(line)

    def __call__(self, event: str, payload) -> None:
        """``run_checks``'s ``on_event``: ``start`` (a node id) and ``result`` (a CheckResult)."""
        if event == "result":
            self.done += 1
            self.passed += bool(payload.passed)
            failed = not (payload.passed or payload.outcome == "skipped")
            if failed and payload.message not in self.streamed:
                self.streamed.add(payload.message)
                self.say(failure_line(payload))
        elif event == "start" and not self._progress and self.done:
            elapsed = self._clock() - self.start
            if elapsed >= self.progress_after:
                self._progress = True
                name = str(payload).rsplit("::", 1)[-1]
                self.say(f"... {self.passed}/{self.done} pass so far ({elapsed:.1f} s); now {name}")


def fresh_sources() -> None:
    """Never read or write compiled bytecode from here on: a file saved twice within one second
    with the same size would otherwise be loaded from a stale ``.pyc``."""
    sys.dont_write_bytecode = True
    sys.pycache_prefix = tempfile.mkdtemp(prefix="nicelab-watch-pyc-")  # stays empty
    atexit.register(shutil.rmtree, sys.pycache_prefix, True)


class Watcher:
    """Polls the lesson folder of ``impl`` and re-runs the checks of ``stages`` on every save.

    ``run(stages, on_event)`` grades and returns a list of CheckResult, reporting progress to
    ``on_event`` as :func:`nicelab.grader.runner.run_checks` does (its default); ``say``
    prints a line; ``sleep`` is injectable for tests.
    """

    def __init__(self, impl: str, stages: tuple[str, ...] = STAGE_NAMES, interval: float = 0.1,
                 say: Callable[[str], None] = print,
                 run: Callable[[tuple[str, ...], Callable[[str, object], None]], list] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        unknown = [s for s in stages if s not in STAGE_NAMES]
        if unknown:
            raise ValueError(f"unknown stage {unknown[0]!r}; stages: {', '.join(STAGE_NAMES)}.")
        if interval <= 0:
            raise ValueError("--interval must be positive.")
        self.impl, self.stages, self.interval = impl, tuple(stages), interval
        self.folder = resolve(impl)
        self.say, self.sleep = say, sleep
        self._run = run or self._run_checks
        self.state = snapshot(self.folder)
        self._frozen = False

    def _run_checks(self, stages: tuple[str, ...], on_event: Callable[[str, object], None]) -> list:
        from nicelab.grader.runner import run_checks  # pytest and the checks: only once watching

        return run_checks(self.impl, stages, on_event=on_event)

    def check(self, stages: tuple[str, ...] | None = None) -> Verdict:
        """Run the checks of ``stages`` (default: all watched) now and print the verdict: each
        failure as its check ends (:class:`Stream`), then the summary line."""
        stages = stages or self.stages
        start, cpu = time.perf_counter(), time.process_time()
        stream = Stream(self.say)
        results = self._run(stages, stream)
        verdict = format_verdict(stages, results, time.perf_counter() - start, time.process_time() - cpu)
        for message, failed in failure_groups(results).items():
            if message not in stream.streamed:  # not reported as it ended (a run without events)
                self.say(failure_line(failed[0], len(failed) - 1))
        self.say(verdict.lines[-1])
        if not self._frozen:
            # TensorFlow, Keras and pytest hold millions of long-lived objects, and pytest runs a
            # full garbage collection at the end of every session (about a second). Free the
            # first run's garbage, then exempt everything alive now from later collections.
            gc.collect()
            gc.freeze()
            self._frozen = True
        return verdict

    def wait(self, timeout: float | None = None) -> list[Path]:
        """Poll until a Python file of the folder changes; return the changed files ([] on
        ``timeout``)."""
        waited = 0.0
        while timeout is None or waited < timeout:
            now = snapshot(self.folder)
            changed = changed_files(self.state, now)
            if changed:
                self.state = now
                return changed
            self.sleep(self.interval)
            waited += self.interval
        return []

    def loop(self, max_runs: int | None = None) -> int:
        """Check once, then after every save; stop after ``max_runs`` runs (None: never)."""
        runs = 0
        names = ", ".join(self.stages)
        self.say(f"watching {self.folder} (stages: {names}); Ctrl-C stops a run that hangs, "
                 "Ctrl-C while waiting stops watching")
        self.check()
        runs += 1
        while max_runs is None or runs < max_runs:
            changed = self.wait()
            stages = stages_for(changed, self.stages)
            if not stages:
                continue
            self.say(f"--- {', '.join(p.name for p in changed)} changed: checking {', '.join(stages)}")
            self.check(stages)
            runs += 1
        return runs
