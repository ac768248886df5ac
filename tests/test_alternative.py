"""The checks test the contract, not the reference's choices: independently written correct
implementations pass every check.

- tests/alternative/ (stages 1-3): halves instead of even/odd, masks, an int seed passed to
  TFP, a train_step that cannot be compiled.
- tests/alternative/lazy/ (stages 1-2): halves by slicing and a coupling network with no Input
  layer, which Keras builds on its first call; its model is graded on its own lazy couplings.
"""

from __future__ import annotations

import pytest
from mutation_support import ROOT, grade_jobs

FOLDER = ROOT / "tests" / "alternative"
JOBS = [("coupling", FOLDER, "coupling"), ("model", FOLDER, "model"),
        ("likelihood", FOLDER, "likelihood"),
        ("lazy-coupling", FOLDER / "lazy", "coupling"), ("lazy-model", FOLDER / "lazy", "model")]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    jobs = [{"name": name, "impl": str(folder), "stage": stage, "check": None}
            for name, folder, stage in JOBS]
    return grade_jobs(jobs, tmp_path_factory.mktemp("alternative"))


@pytest.mark.slow
@pytest.mark.parametrize("job", [name for name, _, _ in JOBS])
def test_alternative_implementation_passes(results, job):
    assert results[job], f"no checks ran for {job}"
    failed = {r["nodeid"]: r["message"] for r in results[job] if r["outcome"] != "passed"}
    assert not failed, failed


@pytest.mark.slow
def test_lazy_model_is_graded_on_its_own_lazy_couplings(results):
    assert all(r["own_earlier"] == ["coupling"] for r in results["lazy-model"])
