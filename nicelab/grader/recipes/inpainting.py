"""Recipes of stage 4's checks (inpainting): the reference models the student's ``inpaint`` climbs.

The checks build them with ``twin(...)``: their own copy computes the expected values (the
log-likelihood, its gradient, the curvature), the student's ``inpaint`` gets the copy of the
process that runs it. Both are built from the same weights, so both give the same answers.

Their couplings pick and put back columns by products with 0/1 matrices
(:func:`selection_couplings`) instead of the reference's ``tf.gather``: the same values, bit for
bit, and a gradient far cheaper to trace. A compiled ascent step through four gather couplings
is a graph of about 1,100 operations, three quarters of them the gathers' gradients, and
tracing it took about 0.6 s of every ``nicelab watch`` run per model; with the products it is
about 350 operations and 0.15 s.
"""

from __future__ import annotations

import functools
import importlib

import numpy as np
import tensorflow as tf

from nicelab.grader import fixtures
from nicelab.grader.recipes import recipe


def _selection(dim: int, columns: np.ndarray) -> tf.Tensor:
    """The ``(dim, len(columns))`` 0/1 matrix S with ``x @ S == x[:, columns]``."""
    matrix = np.zeros((dim, len(columns)), np.float32)
    matrix[np.asarray(columns), np.arange(len(columns))] = 1.0
    return tf.constant(matrix)


def _split(self, x):
    return tf.matmul(x, self.keep_matrix), tf.matmul(x, self.change_matrix)


def _merge(self, keep, change):
    return tf.matmul(tf.concat([keep, change], axis=1), self.merge_matrix)


def selection_couplings(model) -> None:
    """Make every coupling of ``model`` split and merge with matrix products: ``x @ S`` for 0/1
    matrices S, each entry of the result one entry of x times 1 plus zeros, hence exactly the
    reference's values (for finite x), with the same variables and attributes."""
    for coupling in model.couplings:
        dim, keep, change = coupling.dim, np.asarray(coupling.keep), np.asarray(coupling.change)
        coupling.keep_matrix, coupling.change_matrix = _selection(dim, keep), _selection(dim, change)
        coupling.merge_matrix = tf.transpose(_selection(dim, np.concatenate([keep, change])))
        base = type(coupling)
        coupling.__class__ = type(f"Selection{base.__name__}", (base,), {"split": _split, "merge": _merge})


@functools.cache
def _trained_copy(data_name: str):
    model, prior, _ = fixtures.trained_reference(data_name)
    config = fixtures.CONFIGS[data_name]
    copy = type(model)(model.dim, config.num_couplings, config.hidden_units, config.hidden_layers)
    copy.set_weights(model.get_weights())
    selection_couplings(copy)
    return copy, prior


@recipe
def trained_flow(data_name: str):
    """``(model, prior)``: the reference NICE trained on ``data_name`` (a copy of the check
    fixture with :func:`selection_couplings`; the same objects at every call in a process)."""
    return _trained_copy(data_name)


@recipe
def linear_flow(curvatures):
    """``(model, prior)``: a reference NICE with every coupling weight zero and log_scale = log(S),
    S^2 = ``curvatures``, and a standard Gaussian prior: log p(x) = const - sum_d S_d^2 x_d^2 / 2."""
    model_mod = importlib.import_module("solutions.model")
    likelihood = importlib.import_module("solutions.likelihood")
    dim = len(curvatures)
    model = model_mod.NICE(dim, 2, 8, 1)
    model.forward(tf.zeros((1, dim)))
    for coupling in model.couplings:
        for variable in coupling.trainable_variables:
            variable.assign(tf.zeros_like(variable))
    model.log_scale.assign(0.5 * np.log(np.asarray(curvatures, np.float32)))
    selection_couplings(model)
    return model, likelihood.make_prior(dim, "gaussian")
