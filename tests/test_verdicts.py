"""The checks' verdicts on the two implementations that ship: the untouched stubs fail every
stage with a not-implemented message that names the stage and its docs page, and the
reference passes every check (also run directly by `pytest checks --impl solutions`)."""

from __future__ import annotations

import pytest
from mutation_support import ROOT, grade_jobs

from nicelab import STAGE_NAMES


@pytest.fixture(scope="module")
def stub_results(tmp_path_factory):
    jobs = [{"name": "stubs", "impl": str(ROOT / "lessons"), "stage": None, "check": None}]
    return grade_jobs(jobs, tmp_path_factory.mktemp("stubs"))["stubs"]


def existing_stages():
    return [s for s in STAGE_NAMES if (ROOT / "checks" / f"test_{s}.py").exists()]


@pytest.mark.slow
@pytest.mark.parametrize("stage", existing_stages())
def test_stubs_fail_every_stage_as_not_implemented(stub_results, stage):
    results = [r for r in stub_results if r["stage"] == stage]
    assert results, f"no checks ran for stage {stage}"
    passed = [r["nodeid"] for r in results if r["outcome"] == "passed"]
    assert not passed, f"checks passed on the untouched stubs: {passed}"
    number = STAGE_NAMES.index(stage) + 1
    for result in results:
        assert result["message"].startswith("Not implemented yet"), result
        assert f"Stage {number} ({stage})" in result["message"], result
        assert f"docs/lessons/{number}-{stage}.md" in result["message"], result
