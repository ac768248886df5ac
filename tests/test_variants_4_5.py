"""Every right answer passes: correct variants of stages 4-5 that differ from the reference where
the contract leaves the choice open (a loop without tf.function, noise drawn another way, the
projection done in the loop, NumPy inside the step, an analytic epsilon, other parts and
batches) pass every check of their stage. The variants live in tests/mutants/stages_4_5.py."""

from __future__ import annotations

import importlib.util

import pytest
from mutation_support import ROOT, grade_jobs


def variants():
    spec = importlib.util.spec_from_file_location("_stages_4_5", ROOT / "tests" / "mutants" / "stages_4_5.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.VARIANTS


VARIANTS = variants()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("variants")
    jobs = [{"name": v.name, "impl": str(v.build(workdir / v.name)), "stage": v.stage, "check": None}
            for v in VARIANTS]
    return grade_jobs(jobs, workdir)


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_correct_variant_passes(results, variant):
    checks = results[variant.name]
    assert checks, f"no checks ran for {variant.name}"
    failed = {c["nodeid"]: c["message"] for c in checks if c["outcome"] != "passed"}
    assert not failed, failed
