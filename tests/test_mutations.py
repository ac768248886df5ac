"""The checks catch every classic mistake, each with a message that names it, and the first
failure a student reads (the whole stage run, stopped at its first failing check) names it too.

All mutants are graded in two subprocesses (one TensorFlow import each); each test then reads
its mutant's verdict. A named check that is already the stage's first failure is not run twice.
"""

from __future__ import annotations

import re

import pytest
from mutation_support import all_mutants, run_all

MUTANTS = all_mutants()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return run_all(MUTANTS, tmp_path_factory.mktemp("mutants"))


@pytest.fixture(scope="module")
def verdicts(graded):
    """Every mutant's named check(s)."""
    return {name: runs["named"] for name, runs in graded.items()}


@pytest.fixture(scope="module")
def first_failures(graded):
    """Every mutant's whole stage, stopped at the first failing check: what a student reads first
    in pytest, ``nicelab grade``, ``nicelab watch`` and the notebooks."""
    return {name: runs["first"] for name, runs in graded.items()}


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


#: Code a student could paste: a call with arguments on NumPy, TensorFlow or the lesson's objects,
#: a Python statement, an assignment of a keyword argument. Contract equations (h = x * exp(s))
#: and names (model.forward) are not code to paste.
PASTEABLE = re.compile(r"\b(?:np|tf|tfd|tfp|self)\.[\w.]+\([^)]+\)|\breversed\(|\bfloat\(np\.|"
                       r"\breturn [\w.]+\(|\bfor \w+ in \w|\b\w+=\w+ *[%*+-] *\w")


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_first_failure_names_the_mistake(first_failures, mutant):
    failed = [r for r in first_failures[mutant.name] if r["outcome"] in ("failed", "error")]
    assert failed, f"{mutant.name}: its stage passed"
    first = failed[0]["message"]
    assert mutant.first_message.lower() in first.lower(), (
        f"{mutant.name}: the first failure ({failed[0]['nodeid']}) does not name the mistake "
        f"({mutant.first_message!r}): {first}")
    assert not PASTEABLE.search(first), f"{mutant.name}: the first failure hands over code: {first}"
