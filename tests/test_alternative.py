"""The checks test the contract, not the reference's choices: an independently written
correct implementation (tests/alternative/: halves instead of even/odd, masks, an int seed
passed to TFP, a train_step that cannot be compiled) passes every check of stages 1-3."""

from __future__ import annotations

import pytest
from mutation_support import ROOT, grade_jobs

STAGES = ("coupling", "model", "likelihood")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = str(ROOT / "tests" / "alternative")
    jobs = [{"name": s, "impl": folder, "stage": s, "check": None} for s in STAGES]
    return grade_jobs(jobs, tmp_path_factory.mktemp("alternative"))


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_alternative_implementation_passes(results, stage):
    assert results[stage], f"no checks ran for {stage}"
    failed = {r["nodeid"]: r["message"] for r in results[stage] if r["outcome"] != "passed"}
    assert not failed, failed
