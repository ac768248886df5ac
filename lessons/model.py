"""Stage 2 - the NICE model: alternating coupling layers, then a diagonal scaling layer
(NICE paper, sections 3.3 and 5; docs/lessons/2-model.md).

    forward  f (data -> latent):   h = (c_L o ... o c_2 o c_1)(x) * exp(log_scale)
    backward f^-1 (latent -> data): x = (c_1^-1 o ... o c_L^-1)(h * exp(-log_scale))

Every coupling has log|det J| = 0, so the whole log-determinant is the scaling layer's:
log|det df/dx| = sum_d log_scale_d, the same for every x (NICE paper, section 3.3).
Each layer works on the previous layer's output, never on the original x.
"""

from __future__ import annotations

import tensorflow as tf

from nicelab.validate import as_batch, check_positive_int

from .coupling import AdditiveCoupling


class NICE(tf.keras.Model):
    """The NICE flow of the paper (section 5): couplings with parities 0, 1, 0, 1, ... and a
    trainable diagonal scaling S = exp(log_scale).

    Args:
        dim: data dimensionality D.
        num_couplings: how many coupling layers (the paper uses 4).
        hidden_units, hidden_layers: size of each coupling's own network m.
    """

    def __init__(self, dim, num_couplings=4, hidden_units=64, hidden_layers=3, **kwargs):
        super().__init__(**kwargs)
        self.dim = check_positive_int(dim, "dim", minimum=2)
        check_positive_int(num_couplings, "num_couplings")
        # TODO (model): NICE.__init__
        # Two attributes. couplings: a list of num_couplings AdditiveCoupling layers, each a
        # new layer with its own network of the sizes asked for, parities alternating 0, 1,
        # 0, 1, ... log_scale: a trainable vector of D zeros that this model owns (a Keras
        # layer or model can create its own weights). Create the couplings first.
        raise NotImplementedError(
            'Stage 2 (model): implement NICE.__init__. See docs/lessons/2-model.md.'
        )

    def forward(self, x):
        """f: data -> latent, ``(batch, D)`` -> ``(batch, D)``: couplings in order, each applied to
        the previous one's output, then the scaling layer h = x * exp(log_scale)."""
        h = as_batch(x, self.dim)
        # TODO (model): NICE.forward
        # Each coupling works on what the one before it returned, never on the original x;
        # the scaling layer comes last.
        raise NotImplementedError(
            'Stage 2 (model): implement NICE.forward. See docs/lessons/2-model.md.'
        )

    def backward(self, h):
        """f^-1: latent -> data, ``(batch, D)`` -> ``(batch, D)``: x = h * exp(-log_scale), then
        each coupling's backward, last coupling first."""
        x = as_batch(h, self.dim, name="h")
        # TODO (model): NICE.backward
        # Undo forward step by step, last step first.
        raise NotImplementedError(
            'Stage 2 (model): implement NICE.backward. See docs/lessons/2-model.md.'
        )

    def log_det_jacobian(self):
        """Scalar log|det df/dx| = sum_d log_scale_d (couplings contribute 0), the same for every
        x. A TensorFlow scalar, so that gradients reach log_scale."""
        # TODO (model): NICE.log_det_jacobian
        # One number: how much does the scaling layer stretch volume, in log units?
        raise NotImplementedError(
            'Stage 2 (model): implement NICE.log_det_jacobian. See docs/lessons/2-model.md.'
        )

    def call(self, x):
        return self.forward(x)


# Predict, then check: the questions at the end of docs/lessons/2-model.md. Write a number for
# each key (work it out first, then run code to check it); the stage's checks grade them.
ANSWERS = {
    "log_det_of_given_scales": None,
    "nice_parameters": None,
    "ml_log_scale": None,
}
