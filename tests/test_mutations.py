"""The checks catch every classic mistake, each with a message that names it.

All mutants are graded in one subprocess (one TensorFlow import); each test then reads
its mutant's verdict.
"""

from __future__ import annotations

import pytest
from mutation_support import all_mutants, run_all

MUTANTS = all_mutants()


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    return run_all(MUTANTS, tmp_path_factory.mktemp("mutants"))


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_check_catches_mistake(verdicts, mutant):
    results = verdicts[mutant.name]
    assert results, f"{mutant.name}: no check matched -k {mutant.check!r} in stage {mutant.stage}"
    failed = [r for r in results if r["outcome"] in ("failed", "error")]
    assert failed, f"{mutant.name}: the checks {[r['nodeid'] for r in results]} all passed on this mistake"
    messages = " | ".join(r["message"] for r in failed)
    assert mutant.message.lower() in messages.lower(), (
        f"{mutant.name}: failure messages do not name the mistake ({mutant.message!r}): {messages}")
    assert "Not implemented" not in messages


def test_mutants_are_distinct_and_apply(tmp_path):
    names = [m.name for m in MUTANTS]
    assert len(names) == len(set(names))
    for mutant in MUTANTS:  # every replacement matches the reference exactly once
        mutant.build(tmp_path / mutant.name)
