"""The checks test the contract, not the reference's choices: independently written correct
implementations pass every check.

- tests/alternative/ (stages 1-3 and 6): halves instead of even/odd, masks, an int seed passed to
  TFP, a train_step that cannot be compiled; an affine coupling with two networks and a soft
  clamp of s.
- tests/alternative/mixing.py (stage 7): the LU factors from TensorFlow, another permutation (kept
  as a row order), L and U packed in one trainable matrix, Glow couplings of alternating parity.
- tests/alternative/lazy/ (stages 1-2): halves by slicing and a coupling network with no Input
  layer, which Keras builds on its first call; its model is graded on its own lazy couplings.
"""

from __future__ import annotations

import pytest
from mutation_support import ROOT, grade_jobs

FOLDER = ROOT / "tests" / "alternative"
JOBS = [("coupling", FOLDER, "coupling"), ("model", FOLDER, "model"),
        ("likelihood", FOLDER, "likelihood"), ("affine", FOLDER, "affine"), ("mixing", FOLDER, "mixing"),
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
