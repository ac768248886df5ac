"""Recipes of the stage 6 checks (checks/test_affine.py): the flow the checks hand to the
student's ``log_likelihood`` (built with ``twin``, so that reference values come from the
check's own copy), the log-determinant as a function the gradient checks can call, and the
short training runs on two moons (the student's RealNVP next to their code, the reference NICE
of the same size in the grader's process). Everything a recipe returns from the graded process
is a claim: the checks judge it against what they compute themselves.

Nothing here is an affine coupling: a handout that opens stage 6 ships this file.
"""

from __future__ import annotations

import importlib

import numpy as np
import tensorflow as tf

from nicelab.grader.recipes import common, recipe

#: The slope of the elementwise map of :class:`TiltedNICE` (below 1: the map is increasing).
TILT = 0.5


class TiltedNICE(tf.keras.Model):
    """A flow whose log-determinant differs from example to example, and no affine coupling: a
    reference NICE (stage 2) followed by the elementwise map h = u + a tanh(u), a = :data:`TILT`:

        log|det df/dx| = sum(log_scale) + sum_d log(1 + a (1 - tanh(u_d)^2)),   u = NICE(x).

    It has the contract's ``dim``, ``forward`` and per-example ``log_det_jacobian(x)``."""

    def __init__(self, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.nice = importlib.import_module("solutions.model").NICE(dim, 2, 8, 1)

    def forward(self, x):
        u = self.nice.forward(x)
        return u + TILT * tf.tanh(u)

    def log_det_jacobian(self, x):
        u = self.nice.forward(x)
        return self.nice.log_det_jacobian() + tf.reduce_sum(
            tf.math.log1p(TILT * (1.0 - tf.square(tf.tanh(u)))), axis=1)

    def call(self, x):
        return self.forward(x)


@recipe
def tilted_nice(dim: int, seed: int, scale: float = 0.3) -> TiltedNICE:
    """A :class:`TiltedNICE` with every trainable variable drawn from N(0, scale^2)."""
    flow = TiltedNICE(dim)
    flow.forward(np.zeros((1, dim), np.float32))
    common.randomize(flow.trainable_variables, seed, scale)
    return flow


@recipe
def log_det_total(flow, x: np.ndarray):
    """A function of no argument: sum over the batch of ``flow.log_det_jacobian(x)`` (the
    ``extra`` term of a gradient report, so that gradients through the log-det are checked)."""
    x = tf.constant(x, tf.float32)

    def total():
        return tf.reduce_sum(flow.log_det_jacobian(x))

    return total


def gaussian_log_density(h):
    """Standard Gaussian log-density summed over dimensions, ``(batch, D)`` -> ``(batch,)``."""
    return tf.reduce_sum(-0.5 * tf.square(h) - 0.5 * np.log(2.0 * np.pi), axis=1)


@recipe
def realnvp(affine, settings: dict):
    """``affine.RealNVP(2, ...)`` of the training run's size, initialised from the global seed 1
    and called once (so that its variables exist)."""
    tf.keras.utils.set_random_seed(1)
    flow = affine.RealNVP(2, settings["couplings"], settings["hidden_units"], settings["hidden_layers"])
    flow.forward(np.zeros((1, 2), np.float32))
    return flow


def reference_nice(settings: dict):
    """The reference NICE of the same size, initialised from the global seed 1."""
    tf.keras.utils.set_random_seed(1)
    flow = importlib.import_module("solutions.model").NICE(
        2, settings["couplings"], settings["hidden_units"], settings["hidden_layers"])
    flow.forward(np.zeros((1, 2), np.float32))
    return flow


@recipe
def train_flow(flow, per_example: bool, train: np.ndarray, settings: dict) -> dict:
    """A short, seeded run of Adam on the mean NLL of ``train`` under a standard Gaussian,
    -mean(log p_H(f(x)) + log|det df/dx|), the log-det ``flow.log_det_jacobian(x)`` (per example)
    or ``flow.log_det_jacobian()`` (NICE's scalar), each step compiled.
    ``{"error": [type, message]}`` when it raises, else the weights ``w0, w1, ...`` and the losses."""
    variables = flow.trainable_variables
    schedule = tf.keras.optimizers.schedules.CosineDecay(settings["lr"], settings["steps"], 0.0)
    optimizer = tf.keras.optimizers.Adam(schedule)
    optimizer.build(variables)
    data = tf.constant(train, tf.float32)
    rows = np.random.default_rng(1).integers(0, len(train), (settings["steps"], settings["batch"]))

    def log_det(x):
        return flow.log_det_jacobian(x) if per_example else flow.log_det_jacobian()

    @tf.function(autograph=False)  # traced once, not converted: tracing is the run's cost
    def step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(gaussian_log_density(flow.forward(x)) + log_det(x))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    try:  # a Python loop of compiled steps: a graph loop races its variable updates
        losses = np.array([float(step(tf.gather(data, row))) for row in rows])
    except Exception as err:  # noqa: BLE001 - the check reports it as attempt() does
        return {"error": [type(err).__name__, str(err)[:20000]]}
    return {**{f"w{i}": w.numpy() for i, w in enumerate(flow.weights)}, "losses": losses}
