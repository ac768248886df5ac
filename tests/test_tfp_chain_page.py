"""The stage 3 page's "NICE assembled from TFP bijectors" code runs as printed and matches the
reference: its TransformedDistribution's log_prob equals log_likelihood (odd D too)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from nicelab.core.impl import PROJECT_ROOT, load_all
from nicelab.core.quiet import import_tensorflow
from nicelab.grader.assertions import randomize

import_tensorflow()
M = load_all("solutions", ("coupling", "model", "likelihood"))
PAGE = PROJECT_ROOT / "docs" / "lessons" / "3-likelihood.md"


def page_code() -> str:
    text = PAGE.read_text()
    section = text[text.index("## NICE assembled from TFP bijectors"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("dim", [4, 5])
def test_page_chain_matches_log_likelihood(dim):
    model = M["model"].NICE(dim, 4, hidden_units=16, hidden_layers=2)
    x = np.random.default_rng(dim).normal(size=(16, dim)).astype(np.float32)
    model.forward(x)
    randomize(model.trainable_variables, seed=dim, scale=0.3)
    for kind in ("logistic", "gaussian"):
        prior = M["likelihood"].make_prior(dim, kind)
        namespace = {"model": model, "prior": prior, "x": x}
        exec(page_code(), namespace)  # noqa: S102 - the page's own example, run as printed
        flow = namespace["flow"]
        expected = M["likelihood"].log_likelihood(model, prior, x).numpy()
        np.testing.assert_allclose(flow.log_prob(x).numpy(), expected, atol=1e-4)
        assert tuple(flow.sample(3, seed=1).shape) == (3, dim)
