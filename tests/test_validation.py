"""Bad input to any public function of the reference gets one clear error, never a crash
deep inside TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from nicelab.core.impl import load_all
from nicelab.core.quiet import import_tensorflow

tf = import_tensorflow()
M = load_all("solutions", ("coupling", "model", "likelihood"))
coupling, model, likelihood = M["coupling"], M["model"], M["likelihood"]


@pytest.fixture(scope="module")
def flow():
    return model.NICE(4, 2, hidden_units=8, hidden_layers=1)


@pytest.mark.parametrize("make, match", [
    (lambda: coupling.AdditiveCoupling(1, 0), "dim must be an integer >= 2"),
    (lambda: coupling.AdditiveCoupling(4, 2), "parity must be 0 or 1"),
    (lambda: coupling.AdditiveCoupling(4.5, 0), "dim must be an integer"),
    (lambda: model.NICE(4, 0), "num_couplings must be an integer >= 1"),
    (lambda: likelihood.make_prior(4, "cauchy"), "unknown prior kind 'cauchy'"),
    (lambda: likelihood.make_prior(0), "dim must be an integer >= 1"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("x, error, match", [
    (np.zeros(4), ValueError, r"shaped \(batch, D\)"),
    (np.zeros((2, 3)), ValueError, "3 columns but this model has D = 4"),
    (np.zeros((2, 2, 4)), ValueError, r"shaped \(batch, D\)"),
    (np.array([[np.nan, 0, 0, 0]]), ValueError, "NaN or infinite"),
    (np.array([["a", "b", "c", "d"]]), TypeError, "real numbers"),
    (np.zeros((2, 4), dtype=bool), TypeError, "real numbers"),
])
def test_bad_batches(flow, x, error, match):
    prior = likelihood.make_prior(4)
    for call in (flow.forward, flow.backward, flow.couplings[0].forward,
                 lambda v: likelihood.log_likelihood(flow, prior, v)):
        with pytest.raises(error, match=match):
            call(x)


def test_good_batches_of_any_real_dtype_are_accepted(flow):
    for x in (np.zeros((2, 4), dtype=np.float64), np.zeros((2, 4), dtype=np.int32), [[0, 1, 2, 3]],
              tf.zeros((2, 4), dtype=tf.float64)):
        h = flow.forward(x)
        assert h.dtype == tf.float32 and tuple(h.shape) == (len(x), 4)


def test_bad_sample_count(flow):
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        likelihood.sample(flow, likelihood.make_prior(4), 0)
