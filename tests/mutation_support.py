"""Deliberately broken implementations ("mutants") of the reference, and how to run them.

Each mutant copies ``solutions/`` and applies text replacements to one file: one classic
student mistake. The mutation tests assert that the named check fails on it with a message
that names the mistake. Mutant lists live in ``tests/mutants/*.py`` (a ``MUTANTS`` list each).
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from runner_pool import grade_jobs

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


def run_all(mutants: list[Mutant], workdir: Path) -> dict[str, dict[str, list[dict]]]:
    """Build every mutant and grade it, all in one subprocess per core (TensorFlow is imported
    once each): its whole stage stopped at the first failing check, and its named check(s).
    Returns mutant name -> {"first": check results, "named": check results}."""
    jobs = [{"name": mutant.name, "impl": str(mutant.build(workdir / mutant.name)), "stage": mutant.stage,
             "check": mutant.check, "mistake": True} for mutant in mutants]
    return grade_jobs(jobs, workdir)


__all__ = ["Mutant", "all_mutants", "grade_jobs", "run_all", "asdict"]
