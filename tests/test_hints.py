"""Issue 20: a failed check names the mistake first; its code-level fix unlocks only after the
same check failed several runs in a row on the student's machine, never in a graded run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mutation_support import all_mutants

from nicelab.grader import hints

ROOT = Path(__file__).resolve().parents[1]
CHECK = "checks/test_model.py::test_every_coordinate_is_changed"


def test_counts_unlock_the_fix_after_runs_in_a_row(tmp_path, monkeypatch):
    monkeypatch.setenv("NICELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(hints.ENV, raising=False)
    runs = []
    for _ in range(hints.HINT_AFTER):
        counts = hints.Hints()
        counts.start(tmp_path / "lessons", enabled=True)
        runs.append(counts.failed("c", "Expected a; saw b."))
        counts.save()
    assert runs == list(range(1, hints.HINT_AFTER + 1))
    assert hints.with_hint("m.", "do x", runs[-2]) == "m."
    assert hints.with_hint("m.", "do x", runs[-1]).endswith("do x")
    counts.failed("c", "Expected a; saw c.")  # another message: counting starts again
    assert counts.counts["c"][1] == 1
    counts.passed("c")
    assert "c" not in counts.counts
    for enabled, env in ((False, "1"), (True, "0")):  # a graded run, or hints turned off
        monkeypatch.setenv(hints.ENV, env)
        off = hints.Hints()
        off.start(tmp_path / "lessons", enabled=enabled)
        assert off.failed("c", "Expected a; saw b.") == 0


@pytest.mark.slow
def test_the_fix_shows_on_the_third_run_at_home_and_never_when_graded(tmp_path):
    mutant = next(m for m in all_mutants() if m.name == "model_no_alternation")
    impl = mutant.build(tmp_path / "sub")
    env = {k: v for k, v in os.environ.items() if k != hints.ENV}
    env["NICELAB_CACHE"] = str(tmp_path / "cache")

    def run(*extra: str) -> str:
        command = [sys.executable, "-m", "pytest", CHECK, f"--impl={impl}", "-q", "-p", "no:cacheprovider",
                   *extra]
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600).stdout

    outputs = [run() for _ in range(hints.HINT_AFTER)]
    assert "no alternation" in outputs[0] and "parity=i % 2" not in outputs[0]
    assert "Hint" not in outputs[1]
    assert "parity=i % 2" in outputs[2] and "failed 3 runs in a row" in outputs[2]
    graded = run("--remote", "process")
    assert "no alternation" in graded and "parity=i % 2" not in graded
