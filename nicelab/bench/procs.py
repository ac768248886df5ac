"""Sections 1 and 4 of the bench: commands run as subprocesses, with their wall time and peak
resident memory (``ru_maxrss`` of that very child, from ``os.wait4``).

* the check suite, ``python -m pytest checks --impl solutions``, whole and stage by stage, from a
  cold cache of trained fixtures (``NICELAB_CACHE`` pointed at an empty folder), then warm;
* the main job, ``nicelab train parabola --impl solutions``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nicelab import STAGE_NAMES
from nicelab.impl import PROJECT_ROOT


@dataclass
class ProcResult:
    """One finished subprocess: exit status, wall seconds, peak RSS in MiB, and its output."""

    command: list[str]
    returncode: int
    seconds: float
    peak_mib: float
    output: str

    @property
    def summary(self) -> str:
        """pytest's last summary line ("12 passed in 3.1s"), else the last line of output."""
        lines = [line.strip("= ") for line in self.output.strip().splitlines() if line.strip()]
        for line in reversed(lines):
            if re.search(r"\d+ (passed|failed|error|skipped|deselected)", line):
                return re.sub(r" in [\d.]+s.*$", "", line)
        return lines[-1] if lines else ""

    def count(self, word: str) -> int:
        """How many checks pytest's summary line reports as ``word`` (passed, failed, ...)."""
        match = re.search(rf"(\d+) {word}", self.summary)
        return int(match.group(1)) if match else 0


def run_measured(command: list[str], env: dict[str, str] | None = None,
                 cwd: Path = PROJECT_ROOT, timeout: float = 1800) -> ProcResult:
    """Run ``command``; wall time and the child's own peak resident set size (``os.wait4``)."""
    full_env = {**os.environ, **(env or {})}
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(command, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    peak = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return ProcResult(command, proc.returncode, seconds, peak, output)


def pytest_command(stage: str | None = None) -> list[str]:
    """The check suite on the reference (one stage with ``-m STAGE``)."""
    command = [sys.executable, "-m", "pytest", "checks", "--impl", "solutions", "-q",
               "-p", "no:cacheprovider"]
    return command + (["-m", stage] if stage else [])


def check_suite(stages: bool = True, warm: bool = True) -> dict[str, ProcResult]:
    """Time the whole check suite from a cold fixture cache (key ``all``), again with that cache
    warm (``all (warm)``), and each stage alone from a cold cache (keys: the stage names)."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="nicelab-bench-cache-") as cache:
        results["all"] = run_measured(pytest_command(), {"NICELAB_CACHE": cache})
        if warm:
            results["all (warm)"] = run_measured(pytest_command(), {"NICELAB_CACHE": cache})
    if stages:
        for stage in STAGE_NAMES:
            with tempfile.TemporaryDirectory(prefix="nicelab-bench-cache-") as cache:
                results[stage] = run_measured(pytest_command(stage), {"NICELAB_CACHE": cache})
    return results


def main_job(out: Path, data: str = "parabola") -> ProcResult:
    """``nicelab train DATA --impl solutions --quiet --out OUT``, the project's main job."""
    command = [sys.executable, "-m", "nicelab.cli", "train", data, "--impl", "solutions",
               "--quiet", "--out", str(out)]
    return run_measured(command)
