"""Run the checks in-process and collect one result per check (no pytest output parsing).

``run_checks(impl, stages)`` is what ``nicelab grade``, the mutation tests and the benchmarks
build on. It can run many times in one process: TensorFlow is imported once.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nicelab import STAGE_NAMES
from nicelab.impl import PROJECT_ROOT

CHECKS_DIR = PROJECT_ROOT / "checks"


@dataclass
class CheckResult:
    """One check's verdict: ``outcome`` is passed, failed, error (in setup) or skipped."""

    nodeid: str
    stage: str | None
    outcome: str
    message: str
    duration: float

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


def _stage_of(keywords) -> str | None:
    for stage in STAGE_NAMES:
        if stage in keywords:
            return stage
    return None


def _message(report) -> str:
    text = getattr(report, "longreprtext", "") or str(report.longrepr or "")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    for line in lines:  # our checks' own messages come first and start with these words
        stripped = line.strip()
        if stripped.startswith("E "):
            stripped = stripped[2:].strip()
        if stripped.startswith(("Expected ", "Not implemented yet", "Failed: Expected")):
            return stripped.removeprefix("Failed: ")
    last = lines[-1].strip()
    return last[2:].strip() if last.startswith("E ") else last


class _Collector:
    def __init__(self):
        self.results: dict[str, CheckResult] = {}
        self.collect_errors: list[str] = []

    def pytest_runtest_logreport(self, report):
        stage = _stage_of(report.keywords)
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            outcome = report.outcome
            if report.when == "setup" and report.outcome == "failed":
                outcome = "error"
            message = "" if report.passed else _message(report)
            self.results[report.nodeid] = CheckResult(report.nodeid, stage, outcome, message,
                                                      report.duration)
        elif report.when == "teardown" and report.failed and report.nodeid in self.results:
            self.results[report.nodeid].outcome = "error"

    def pytest_collectreport(self, report):
        if report.failed:
            self.collect_errors.append(str(report.longrepr))


def run_checks(impl: str | Path, stages: tuple[str, ...] | None = None, keyword: str | None = None,
               extra_dirs: tuple[Path, ...] = (), quiet: bool = True) -> list[CheckResult]:
    """Run the checks of ``stages`` (default: all) on ``impl``; return one result per check."""
    import pytest

    args = [str(CHECKS_DIR), *map(str, extra_dirs), "--impl", str(impl), "-p", "no:cacheprovider",
            "-q", "--rootdir", str(PROJECT_ROOT)]
    if stages:
        args += ["-m", " or ".join(stages)]
    if keyword:
        args += ["-k", keyword]
    collector = _Collector()
    start = time.perf_counter()
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
        pytest.main(args, plugins=[collector])
    if collector.collect_errors:
        collector.results["<collection>"] = CheckResult(
            "<collection>", None, "error", collector.collect_errors[0][-500:], time.perf_counter() - start)
    return list(collector.results.values())
