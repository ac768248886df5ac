"""Recipes every stage uses: autodiff Jacobians, gradients, random weights."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nicelab.grader.recipes import recipe


@recipe
def autodiff_jacobian(fn, x: np.ndarray) -> np.ndarray | None:
    """``(batch, D_out, D_in)``: d fn(x) / dx per example from the tape (row j: the gradient of
    output column j summed over the batch), or None where no gradient flows back to ``x``. A
    claim of the graded process: :func:`nicelab.grader.evidence.verified_log_det` checks it."""
    x = tf.constant(x, dtype=tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = fn(x)
        columns = [y[:, j] for j in range(int(y.shape[1]))]
    rows = [tape.gradient(column, x) for column in columns]
    del tape
    if any(row is None for row in rows):
        return None
    return np.stack([np.asarray(r, dtype=np.float64) for r in rows], axis=1)


@recipe
def autodiff_log_det(fn, x: np.ndarray) -> np.ndarray:
    """log|det d fn(x) / dx| per example, shape ``(batch,)``, from :func:`autodiff_jacobian`;
    NaN where no gradient flows from the output back to ``x``."""
    jacobian = autodiff_jacobian(fn, x)
    return np.full(len(x), np.nan) if jacobian is None else np.linalg.slogdet(jacobian)[1]


@recipe
def gradients_of_sum_of_squares(fn, variables, x: np.ndarray, extra=None) -> list[dict]:
    """For every variable: its name, whether ``sum(fn(x)^2) (+ extra())`` has a gradient for it,
    whether that gradient is anywhere non-zero, and the gradient (a claim the grader verifies:
    :func:`nicelab.grader.evidence.verify_gradients`)."""
    x = tf.constant(x, dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(fn(x)))
        if extra is not None:
            loss = loss + extra()
    grads = tape.gradient(loss, list(variables))
    return [{"name": str(v.name), "has": g is not None,
             "nonzero": g is not None and bool(np.any(np.asarray(g) != 0)),
             "grad": None if g is None else np.asarray(tf.convert_to_tensor(g), dtype=np.float64)}
            for v, g in zip(variables, grads, strict=True)]


@recipe
def randomize(variables, seed: int = 0, scale: float = 0.5) -> None:
    """Give every variable reproducible N(0, scale^2) values, so that no layer is the identity
    (a zero-initialised output layer would hide most mistakes)."""
    rng = np.random.default_rng(seed)
    for variable in variables:
        variable.assign(scale * rng.standard_normal(tuple(variable.shape)).astype(np.float32))
