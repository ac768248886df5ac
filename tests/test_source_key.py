"""The key of stage 3's cached training run: what the run calls, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from mutation_support import SOLUTIONS

from nicelab.core.source_key import used_source_key

RUN = ("train_step", "log_likelihood", "make_prior", "logistic_log_density")
SOURCE = (SOLUTIONS / "likelihood.py").read_text()


def _key(folder: Path, source: str) -> str:
    (folder / "likelihood.py").write_text(source)
    return used_source_key(folder / "likelihood.py", RUN)


def _replace(old: str, new: str) -> str:
    assert SOURCE.count(old) == 1, old
    return SOURCE.replace(old, new)


@pytest.mark.parametrize("old, new", [
    ("return model.backward(prior.sample(n, seed=seed))", "return model.forward(prior.sample(n, seed=seed))"),
    ('"untrained_nll_parabola": ', '"untrained_nll_parabola": -'),
    ("    h = model.forward(x)\n", "    h = model.forward(x)  # a comment\n\n"),
    ('    """One gradient step', '    """A gradient step'),
], ids=["sample", "an answer", "a comment", "a docstring"])
def test_what_the_run_does_not_use_keeps_the_key(tmp_path, old, new):
    assert _key(tmp_path, _replace(old, new)) == _key(tmp_path, SOURCE)


@pytest.mark.parametrize("old, new", [
    ("loss = -tf.reduce_mean(", "loss = -tf.reduce_sum("),
    ("h = model.forward(x)", "h = model.backward(x)"),
    ('PRIOR_KINDS = ("logistic", "gaussian")', 'PRIOR_KINDS = ("logistic", "gaussian", "x")'),
    ("tfd = tfp.distributions", "tfd = tfp.distributions\nprint('imported')"),
    ("import tensorflow as tf\n", "import tensorflow as tf\nimport numpy as np\n"),
    ("    h = model.forward(x)\n", "    h = scaled(model.forward(x))\n"),
], ids=["train_step", "log_likelihood", "a constant it reads", "module-level code", "an import",
        "a helper it calls"])
def test_what_the_run_uses_changes_the_key(tmp_path, old, new):
    helper = "\n\ndef scaled(h):\n    return h * FACTOR\n\n\nFACTOR = 1.0\n"
    before = _key(tmp_path, SOURCE + helper)
    assert _key(tmp_path, _replace(old, new) + helper) != before
    if "scaled" in new:  # the helper and the constant it reads count, transitively
        changed = _replace(old, new)
        assert _key(tmp_path, changed + helper) != _key(tmp_path, changed + helper.replace("1.0", "2.0"))


def test_a_relative_import_counts_the_other_lesson_files(tmp_path):
    source = _replace("import tensorflow as tf\n", "import tensorflow as tf\n\nfrom .model import NICE\n")
    (tmp_path / "model.py").write_text("NICE = 1\n")
    before = _key(tmp_path, source)
    (tmp_path / "model.py").write_text("NICE = 2\n")
    assert _key(tmp_path, source) != before
    (tmp_path / "model.py").write_text("NICE = 3\n")
    assert _key(tmp_path, SOURCE) == _key(tmp_path, SOURCE)  # no such import: the file is not read


def test_dynamic_lookups_and_broken_files_count_the_whole_file(tmp_path):
    mark = "\n    # BEGIN SOLUTION: train_step"
    dynamic = _replace("    x = as_batch(x, model.dim)" + mark,
                       "    x = globals()['as_batch'](x, model.dim)" + mark)
    edited = dynamic.replace("return model.backward(prior.sample(n, seed=seed))",
                             "return model.forward(prior.sample(n, seed=seed))")
    assert _key(tmp_path, dynamic) != _key(tmp_path, edited)
    assert _key(tmp_path, "def train_step(:\n") != _key(tmp_path, "def train_step(:\n\n")
