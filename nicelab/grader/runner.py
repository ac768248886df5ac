"""Run the checks in-process and collect one result per check (no pytest output parsing).

``run_checks(impl, stages)`` is what ``nicelab grade``, the mutation tests and the benchmarks
build on. It can run many times in one process: TensorFlow is imported once.

Each check's stage comes from its stage marker (``pytestmark = pytest.mark.model``) or, for a
hidden check without one, from the stage fixtures it uses (the latest stage wins). Hidden
checks (``extra_dirs``) run in their own pytest session with :mod:`nicelab.checks_plugin`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from nicelab.core.course import STAGE_NAMES
from nicelab.core.impl import PROJECT_ROOT
from nicelab.core.stubs import is_stub
from nicelab.grader.remote import GradingProcessEnded

CHECKS_DIR = PROJECT_ROOT / "checks"

#: What ``CheckResult.kind`` can be: passed, skipped, failed (a check's verdict on wrong
#: values), error (the student's code raised), not_implemented (a stub), and, when the stage's
#: module cannot be loaded: missing, solutions (imports the reference), import, exit
#: (sys.exit), blocked (another stage module of the student's failed). Also memory
#: (MemoryError) and collection (a check file that cannot be imported). ``nicelab grade``
#: adds crashed, timeout, memory_limit (killed at the memory limit) and not_run for checks of a
#: grading process that was stopped or died.
KINDS = ("passed", "skipped", "failed", "error", "not_implemented", "missing", "solutions", "import",
         "exit", "blocked", "memory", "collection", "crashed", "timeout", "memory_limit", "not_run")
NOT_IMPLEMENTED = "Not implemented yet"


@dataclass
class CheckResult:
    """One check's verdict: ``outcome`` is passed, failed, error (in setup) or skipped.

    ``kind`` says more (see :data:`KINDS`); ``duration`` covers setup, call and teardown;
    ``blocked_by`` names the student's own stage module that kept this stage's module from
    loading; ``own_earlier`` the earlier stages taken from the student instead of the reference;
    ``hidden`` marks an instructor's extra check.
    """

    nodeid: str
    stage: str | None
    outcome: str
    message: str
    duration: float
    kind: str = ""
    blocked_by: str | None = None
    own_earlier: list[str] = field(default_factory=list)
    hidden: bool = False

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    @property
    def name(self) -> str:
        """The check's name: ``test_x[param]`` from ``checks/test_file.py::test_x[param]``."""
        return self.nodeid.rsplit("::", 1)[-1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CheckResult:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def _one_line(text: str, limit: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _message(report) -> str:
    text = getattr(report, "longreprtext", "") or str(report.longrepr or "")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    for line in lines:  # our checks' own messages come first and start with these words
        stripped = line.strip()
        if stripped.startswith("E "):
            stripped = stripped[2:].strip()
        if stripped.startswith(("Expected ", NOT_IMPLEMENTED, "Failed: Expected")):
            return _one_line(stripped.removeprefix("Failed: "))
    if len(lines) == 1:
        return _one_line(lines[0])
    errors = [line.strip()[2:].strip() for line in lines if line.strip().startswith("E ")]
    if errors:
        return _one_line(" ".join(errors))
    return _one_line(lines[-1])


def stage_of_file(path: str) -> str | None:
    """The stage of a check file named like ``test_<stage>...py``."""
    name = Path(str(path).split("::")[0]).name
    for stage in STAGE_NAMES:
        if re.match(rf"test_{stage}\b|test_{stage}_", name):
            return stage
    return None


def stage_of_item(item) -> str | None:
    """A check's stage: its stage marker, else the latest stage fixture it uses."""
    for marker in item.iter_markers():
        if marker.name in STAGE_NAMES:
            return marker.name
    used = [s for s in STAGE_NAMES if s in getattr(item, "fixturenames", ())]
    return used[-1] if used else None


class _BoundedSink:
    """A write-only text stream that keeps at most ``limit`` characters (the grader's own
    pytest output, and anything a student prints, without growing memory)."""

    def __init__(self, limit: int = 64_000):
        self.limit, self.parts, self.kept, self.total = limit, [], 0, 0

    def write(self, text: str) -> int:
        self.total += len(text)
        if self.kept < self.limit:
            piece = text[: self.limit - self.kept]
            self.parts.append(piece)
            self.kept += len(piece)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def getvalue(self) -> str:
        return "".join(self.parts)


class _Collector:
    """A pytest plugin that turns reports into :class:`CheckResult`, one per check."""

    def __init__(self, stages: Iterable[str] | None, hidden: bool,
                 on_event: Callable[[str, object], None] | None):
        self.stages = set(stages) if stages else None
        self.hidden = hidden
        self.on_event = on_event
        self.stage: dict[str, str | None] = {}
        self.results: dict[str, CheckResult] = {}
        self.durations: dict[str, float] = {}

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items):
        kept, dropped = [], []
        for item in items:
            stage = stage_of_item(item)
            self.stage[item.nodeid] = stage
            (kept if self.stages is None or stage in self.stages else dropped).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept
        if self.on_event:
            self.on_event("collected", [[item.nodeid, self.stage[item.nodeid], self.hidden] for item in kept])

    def pytest_runtest_logstart(self, nodeid, location):
        if self.on_event:
            self.on_event("start", nodeid)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        kind = None
        if call.excinfo is not None:
            if call.excinfo.errisinstance(GradingProcessEnded):
                kind = call.excinfo.value.kind
            elif call.excinfo.errisinstance(SystemExit):
                code = call.excinfo.value.code
                kind = "exit"
                report.longrepr = (f"Your code called sys.exit({code!r}) during the check: a lesson "
                                   "module must never exit the program; remove that call.")
            elif call.excinfo.errisinstance(MemoryError):
                kind = "memory"
                report.longrepr = ("Your code ran out of memory (MemoryError) during the check; look "
                                   "for a loop that keeps allocating or a huge array.")
            elif is_stub(call.excinfo):
                kind = "not_implemented"
            elif not call.excinfo.errisinstance((AssertionError, pytest.fail.Exception,
                                                 pytest.skip.Exception)):
                kind = "error"
        report.nicelab_kind = kind
        return report

    def _kind(self, report, stage: str | None, message: str) -> tuple[str, str | None, list[str]]:
        from nicelab.grader.plugin import LOADS  # lazy: TensorFlow's start-up cost

        load = LOADS.get(stage) if stage else None
        own = list(load.own_earlier) if load else []
        if report.passed:
            return "passed", None, own
        if report.skipped:
            return "skipped", None, own
        if message.startswith(NOT_IMPLEMENTED):
            return "not_implemented", None, own
        if report.when == "setup" and load is not None and load.kind != "ok":
            return load.kind, load.blocked_by, own
        kind = getattr(report, "nicelab_kind", None)
        if kind:
            return kind, None, own
        return ("failed" if report.when == "call" else "error"), None, own

    def pytest_runtest_logreport(self, report):
        nodeid = report.nodeid
        self.durations[nodeid] = self.durations.get(nodeid, 0.0) + report.duration
        stage = self.stage.get(nodeid, stage_of_file(nodeid))
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            outcome = report.outcome
            if report.when == "setup" and report.outcome == "failed":
                outcome = "error"
            message = "" if report.passed else _message(report)
            kind, blocked_by, own = self._kind(report, stage, message)
            self.results[nodeid] = CheckResult(nodeid, stage, outcome, message, self.durations[nodeid],
                                               kind, blocked_by, own, self.hidden)
        elif report.when == "teardown":
            result = self.results.get(nodeid)
            if result is None:
                return
            if report.failed and result.outcome == "passed":
                result.outcome, result.kind, result.message = "error", "error", _message(report)
            result.duration = self.durations[nodeid]
            if self.on_event:
                self.on_event("result", result)

    def pytest_collectreport(self, report):
        if report.failed:
            nodeid = report.nodeid or "<collection>"
            text = str(report.longrepr)
            errors = [line[2:].strip() for line in text.splitlines() if line.startswith("E ")]
            message = ("This check file cannot be loaded (a problem in the checks, not in your "
                       f"code; tell your instructor): {_one_line(' '.join(errors[-3:]) or text[-400:])}")
            result = CheckResult(nodeid, stage_of_file(nodeid), "error", message, 0.0, "collection",
                                 hidden=self.hidden)
            self.results[nodeid] = result
            if self.on_event:
                self.on_event("result", result)


def _pytest(args: list[str], collector: _Collector, quiet: bool) -> None:
    sink = _BoundedSink()
    with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
        pytest.main(args, plugins=[collector])


def _check_files(stages: tuple[str, ...] | None) -> list[str]:
    """What pytest collects: the check files of ``stages`` alone (each file holds one stage's checks,
    so the other modules, TFP's import among them, are never loaded), or the whole folder."""
    files = sorted(CHECKS_DIR / f"test_{stage}.py" for stage in set(stages or ()))
    if not files or not all(file.is_file() for file in files):
        return [str(CHECKS_DIR)]
    return [str(file) for file in files]


def run_checks(impl: str | Path, stages: tuple[str, ...] | None = None, keyword: str | None = None,
               extra_dirs: tuple[Path, ...] = (), quiet: bool = True, capture: str = "fd",
               on_event: Callable[[str, object], None] | None = None,
               collect_only: bool = False, remote: str | None = None,
               first_failure: bool = False) -> list[CheckResult]:
    """Run the checks of ``stages`` (default: all) on ``impl``; return one result per check.

    ``extra_dirs``: folders of hidden checks, run after the public ones with the same fixtures.
    ``capture``: pytest's ``--capture`` (``no`` lets a student's prints through to the process's
    own stdout, which a batch worker caps). ``on_event("collected", [[nodeid, stage, hidden],
    ...])``, ``on_event("start", nodeid)`` and ``on_event("result", CheckResult)`` report
    progress as checks are collected, start and finish. ``collect_only``: collect (and report
    ``collected``) without running any check or fixture. ``remote``: ``process`` or
    ``sandbox`` runs the graded modules in child processes that answer the checks' requests
    (:mod:`nicelab.grader.remote`); the checks and their verdicts stay in this process.
    ``first_failure``: stop at the first check that fails (what a student reads first).
    """
    from nicelab.grader import plugin as checks_plugin  # lazy: TensorFlow's start-up cost

    unknown = [s for s in stages or () if s not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown stage {unknown[0]!r}; stages: {', '.join(STAGE_NAMES)}.")
    # ``--impl=DIR`` as one token: as two, pytest would also take DIR for a test path and load
    # a conftest.py from the graded folder.
    common = [f"--impl={impl}", "-p", "no:cacheprovider", "-q", f"--capture={capture}",
              "--continue-on-collection-errors", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    if keyword:
        common += ["-k", keyword]
    if remote:
        common.append(f"--remote={remote}")
    if collect_only:
        common.append("--collect-only")
    if first_failure:
        common.append("--exitfirst")
    results: list[CheckResult] = []
    runs = [([*_check_files(stages), "--rootdir", str(PROJECT_ROOT)], False)]
    for extra in extra_dirs:
        extra = Path(extra).resolve()
        if not extra.is_dir():
            raise ValueError(f"the extra checks folder {extra} does not exist.")
        ini = PROJECT_ROOT / "pyproject.toml"  # the project's pytest settings (warning filters)
        runs.append(([str(extra), "-p", "nicelab.checks_plugin", "--import-mode=importlib",
                      *(["-c", str(ini)] if ini.exists() else []), "--rootdir", str(extra.parent)], True))
    from nicelab.grader import stage_processes  # lazy: with the plugin

    stage_processes.SETTINGS["keep"] = len(runs) > 1  # the graded processes serve every run
    try:
        for args, hidden in runs:
            checks_plugin.LOADS.clear()
            collector = _Collector(stages, hidden, on_event)
            _pytest(args + common, collector, quiet)
            results.extend(collector.results.values())
    finally:
        stage_processes.SETTINGS["keep"] = False
        stage_processes.close_all()
    return results
