"""Recipes of stage 4's checks (inpainting): the reference models the student's ``inpaint`` climbs.

The checks build them with ``twin(...)``: their own copy computes the expected values (the
log-likelihood, its gradient, the curvature), the student's ``inpaint`` gets the copy of the
process that runs it. Both are built from the same weights, so both give the same answers.
"""

from __future__ import annotations

import importlib

import numpy as np
import tensorflow as tf

from nicelab.grader import fixtures
from nicelab.grader.recipes import recipe


@recipe
def trained_flow(data_name: str):
    """``(model, prior)``: the reference NICE trained on ``data_name`` (the check fixture, loaded
    from the shipped weights or the disk cache; the same objects at every call in a process)."""
    model, prior, _ = fixtures.trained_reference(data_name)
    return model, prior


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
    return model, likelihood.make_prior(dim, "gaussian")
