"""``nicelab watch``: keep TensorFlow loaded and re-run a stage's checks every time a lesson file
is saved, printing one line per failed check (the same verdicts ``pytest checks`` prints).

The files are polled (their modification time and size, a few times a second): no file-system
event library is needed and it works the same on every platform and network drive. Each run is
a fresh pytest session in this process (:func:`nicelab.grader.runner.run_checks`), which loads the
lesson modules afresh; TensorFlow and the check modules stay imported, so a run of stage 1 or 2
costs about a second instead of the five seconds of imports a new ``pytest`` process pays.
"""

from __future__ import annotations

import atexit
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


def format_verdict(stages: tuple[str, ...], results, seconds: float, cpu: float | None = None) -> Verdict:
    """One ``FAILED file::check - message`` line per failed check (pytest's short summary),
    then a summary line starting with :data:`SUMMARY` (with the run's wall time, and its CPU
    time when given: on a busy machine the two differ)."""
    groups: dict[str, list] = {}  # message -> failed checks: a stub or an import error fails
    for result in results:        # every check of a stage with one message, printed once
        if not (result.passed or result.outcome == "skipped"):
            groups.setdefault(result.message, []).append(result)
    lines = []
    for message, failed in groups.items():
        first = failed[0]
        label = "NOT DONE" if first.kind == "not_implemented" else first.outcome.upper()
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        text = message.removeprefix("Not implemented yet - ")
        lines.append(f"{label} {Path(first.nodeid.split('::')[0]).name}::{first.name}{more} - {text}")
    passed = sum(r.passed for r in results)
    named = ", ".join(f"{STAGE_NAMES.index(s) + 1} ({s})" for s in stages)
    tail = "all pass" if results and passed == len(results) else f"{passed}/{len(results)} pass"
    took = f"{seconds:.1f} s" + (f", {cpu:.1f} s CPU" if cpu is not None else "")
    lines.append(f"{SUMMARY} stage{'s' if len(stages) > 1 else ''} {named}: {tail} ({took})")
    return Verdict(stages, passed, len(results), lines, seconds)


def fresh_sources() -> None:
    """Never read or write compiled bytecode from here on: a file saved twice within one second
    with the same size would otherwise be loaded from a stale ``.pyc``."""
    sys.dont_write_bytecode = True
    sys.pycache_prefix = tempfile.mkdtemp(prefix="nicelab-watch-pyc-")  # stays empty
    atexit.register(shutil.rmtree, sys.pycache_prefix, True)


class Watcher:
    """Polls the lesson folder of ``impl`` and re-runs the checks of ``stages`` on every save.

    ``run(stages)`` grades and returns a list of CheckResult (default: ``run_checks``);
    ``say`` prints a line; ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(self, impl: str, stages: tuple[str, ...] = STAGE_NAMES, interval: float = 0.1,
                 say: Callable[[str], None] = print,
                 run: Callable[[tuple[str, ...]], list] | None = None,
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

    def _run_checks(self, stages: tuple[str, ...]) -> list:
        from nicelab.grader.runner import run_checks  # pytest and the checks: only once watching

        return run_checks(self.impl, stages)

    def check(self, stages: tuple[str, ...] | None = None) -> Verdict:
        """Run the checks of ``stages`` (default: all watched) now and print the verdict."""
        stages = stages or self.stages
        start, cpu = time.perf_counter(), time.process_time()
        results = self._run(stages)
        verdict = format_verdict(stages, results, time.perf_counter() - start, time.process_time() - cpu)
        for line in verdict.lines:
            self.say(line)
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
