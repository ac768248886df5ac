"""Deliberately broken implementations ("mutants") of the reference, and how to run them.

Each mutant copies ``solutions/`` and applies text replacements to one file: one classic
student mistake. The mutation tests assert that the named check fails on it with a message
that names the mistake. Mutant lists live in ``tests/mutants/*.py`` (a ``MUTANTS`` list each).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"


@dataclass(frozen=True)
class Mutant:
    """One classic mistake: ``replacements`` (old, new) applied to ``solutions/<file>``."""

    name: str
    stage: str
    file: str
    replacements: tuple[tuple[str, str], ...]
    check: str  # a -k expression selecting the check(s) that must catch it
    message: str  # a phrase (case-insensitive) the failure message must contain
    first: str | None = None  # the phrase the stage's first failure must contain (default: message)

    @property
    def first_message(self) -> str:
        return self.first or self.message

    def build(self, into: Path) -> Path:
        """Write the mutated copy of the reference into ``into`` and return it."""
        shutil.copytree(SOLUTIONS, into, ignore=shutil.ignore_patterns("__pycache__"))
        target = into / self.file
        source = target.read_text()
        for old, new in self.replacements:
            count = source.count(old)
            if count != 1:
                raise AssertionError(f"mutant {self.name}: {old!r} occurs {count} times in {self.file}")
            source = source.replace(old, new)
        target.write_text(source)
        return into


def all_mutants() -> list[Mutant]:
    mutants = []
    for path in sorted((ROOT / "tests" / "mutants").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"_mutants_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        mutants.extend(getattr(module, "MUTANTS", []))
    return mutants


def run_all(mutants: list[Mutant], workdir: Path, first_failure: bool = False) -> dict[str, list[dict]]:
    """Build every mutant and grade its named check(s) (with ``first_failure``: its whole stage,
    stopped at the first failing check), all in one subprocess (TensorFlow is imported once).
    Returns mutant name -> list of check results."""
    jobs = []
    for mutant in mutants:
        path = mutant.build(workdir / mutant.name)
        jobs.append({"name": mutant.name, "impl": str(path), "stage": mutant.stage,
                     "check": None if first_failure else mutant.check, "first_failure": first_failure})
    return grade_jobs(jobs, workdir)


def grade_jobs(jobs: list[dict], workdir: Path, processes: int | None = None) -> dict[str, list[dict]]:
    """Run ``tests/mutation_runner.py`` on ``jobs`` ({"name", "impl", "stage", "check"}) and return
    name -> list of check results (CheckResult dicts). The jobs are dealt two by two (a job and
    its neighbour, often its twin in another mode) to ``processes`` subprocesses (default: one
    per core, at most 2) running side by side, each importing TensorFlow once; every check is
    seeded on its own, so the verdicts do not depend on which process ran a job."""
    count = max(1, min(processes or os.cpu_count() or 1, 2, (len(jobs) + 1) // 2))
    env = {**os.environ, "NICELAB_HINTS": "0"}  # first messages only: no fix unlocked by repeats
    running = []
    for i in range(count):
        spec_file, out_file = workdir / f"jobs-{i}.json", workdir / f"results-{i}.json"
        spec_file.write_text(json.dumps([job for k, job in enumerate(jobs) if k // 2 % count == i]))
        command = [sys.executable, str(Path(__file__).with_name("mutation_runner.py")), str(spec_file),
                   str(out_file)]
        running.append((subprocess.Popen(command, cwd=ROOT, env=env), out_file))
    results: dict[str, list[dict]] = {}
    for process, out_file in running:
        try:
            code = process.wait(timeout=1800)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        if code != 0:
            raise subprocess.CalledProcessError(code, process.args)
        results.update(json.loads(out_file.read_text()))
    return results


__all__ = ["Mutant", "all_mutants", "grade_jobs", "run_all", "asdict"]
