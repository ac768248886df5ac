"""What the training driver needs to train a RealNVP or a Glow as it trains NICE
(:mod:`nicelab.core.flows` puts these together; this module imports TensorFlow).

The driver (:mod:`nicelab.core.training`) trains any flow that keeps stage 2's contract: a
trainable ``log_scale`` of shape (D,), the final diagonal scaling layer, which it starts from the
data and lets learn faster than the rest. :class:`ScaledFlow` gives a stage 6 RealNVP or a
stage 7 Glow that last layer:

    forward  f (data -> latent):    h = g(x) * exp(log_scale)
    backward f^-1 (latent -> data): x = g^-1(h * exp(-log_scale))
    log|det df/dx| = log|det dg/dx| + sum_d log_scale_d          (one value per example)

so the three flows of ``nicelab train --flow`` all end in the same scaling layer, started the
same way, and differ only in what comes before it: NICE's additive couplings (unit Jacobian),
RealNVP's affine couplings (an x-dependent volume change) or Glow's learned linear mixing plus
affine couplings. ``log_likelihood`` is stage 6's (it uses only ``forward`` and
``log_det_jacobian(x)``), and :func:`make_train_step` takes one Adam step on its mean NLL.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from nicelab.core.validate import as_batch


class ScaledFlow(tf.keras.Model):
    """A flow ``g`` (``forward``, ``backward``, per-example ``log_det_jacobian(x)``) followed by
    a trainable diagonal scaling h = g(x) * exp(log_scale), ``log_scale`` of shape (D,) starting
    at zeros (the identity).

    Args:
        flow: the inner flow, e.g. stage 6's ``RealNVP(dim, ...)`` or stage 7's ``Glow(dim, ...)``.
        dim: its data dimensionality D.
    """

    def __init__(self, flow: tf.keras.Model, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.flow = flow
        self.dim = int(dim)
        self.log_scale = self.add_weight(name="log_scale", shape=(self.dim,), initializer="zeros")

    def forward(self, x):
        """f: data -> latent, ``(batch, D)`` -> ``(batch, D)``: h = g(x) * exp(log_scale)."""
        x = as_batch(x, self.dim)
        return self.flow.forward(x) * tf.exp(self.log_scale)

    def backward(self, h):
        """f^-1: latent -> data, ``(batch, D)`` -> ``(batch, D)``: x = g^-1(h * exp(-log_scale))."""
        h = as_batch(h, self.dim, name="h")
        return self.flow.backward(h * tf.exp(-self.log_scale))

    def log_det_jacobian(self, x):
        """log|det df/dx| per example, shape ``(batch,)``: g's at x plus sum_d log_scale_d."""
        x = as_batch(x, self.dim)
        return self.flow.log_det_jacobian(x) + tf.reduce_sum(self.log_scale)

    def call(self, x):
        return self.forward(x)


def make_train_step(log_likelihood: Callable) -> Callable:
    """``train_step(model, prior, optimizer, x)`` on the mean NLL of ``log_likelihood``
    (stage 6's): loss = -(1/B) sum_b log p(x_b); every trainable variable takes one optimizer
    step along -d loss / d theta. Returns the loss before the step (a scalar tensor)."""

    def train_step(model, prior, optimizer, x):
        with tf.GradientTape() as tape:
            nll = -tf.reduce_mean(log_likelihood(model, prior, x))
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(nll, variables), variables, strict=True))
        return nll

    return train_step


def count_parameters(model, dim: int) -> int:
    """The number of trainable parameters of ``model`` (built first on two zero rows of ``dim``)."""
    model.forward(tf.zeros((2, dim), tf.float32))
    return int(sum(int(tf.size(v)) for v in model.trainable_variables))
