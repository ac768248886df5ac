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
        # BEGIN SOLUTION: NICE.__init__
        # > Two attributes. couplings: a list of num_couplings AdditiveCoupling layers, each a
        # > new layer with its own network of the sizes asked for, parities alternating 0, 1,
        # > 0, 1, ... log_scale: a trainable vector of D zeros that this model owns (a Keras
        # > layer or model can create its own weights). Create the couplings first.
        self.couplings = [
            AdditiveCoupling(dim, parity=i % 2, hidden_units=hidden_units,
                             hidden_layers=hidden_layers, name=f"coupling_{i}")
            for i in range(num_couplings)
        ]
        self.log_scale = self.add_weight(name="log_scale", shape=(dim,), initializer="zeros")
        # END SOLUTION

    def forward(self, x):
        """f: data -> latent, ``(batch, D)`` -> ``(batch, D)``: couplings in order, each applied to
        the previous one's output, then the scaling layer h = x * exp(log_scale)."""
        h = as_batch(x, self.dim)
        # BEGIN SOLUTION: NICE.forward
        # > Each coupling works on what the one before it returned, never on the original x;
        # > the scaling layer comes last.
        for coupling in self.couplings:
            h = coupling.forward(h)
        return h * tf.exp(self.log_scale)
        # END SOLUTION

    def backward(self, h):
        """f^-1: latent -> data, ``(batch, D)`` -> ``(batch, D)``: x = h * exp(-log_scale), then
        each coupling's backward, last coupling first."""
        x = as_batch(h, self.dim, name="h")
        # BEGIN SOLUTION: NICE.backward
        # > Undo forward step by step, last step first.
        x = x * tf.exp(-self.log_scale)
        for coupling in reversed(self.couplings):
            x = coupling.backward(x)
        return x
        # END SOLUTION

    def log_det_jacobian(self):
        """Scalar log|det df/dx| = sum_d log_scale_d (couplings contribute 0), the same for every
        x. A TensorFlow scalar, so that gradients reach log_scale."""
        # BEGIN SOLUTION: NICE.log_det_jacobian
        # > One number: how much does the scaling layer stretch volume, in log units?
        return tf.reduce_sum(self.log_scale)
        # END SOLUTION

    def call(self, x):
        return self.forward(x)


# Predict, then check: the questions at the end of docs/lessons/2-model.md. Write a number for
# each key (work it out first, then run code to check it); the stage's checks grade them.
# BEGIN ANSWERS
ANSWERS = {
    "log_det_of_given_scales": 1.5,
    "nice_parameters": 738,
    "ml_log_scale": 2.3026,
}
# END ANSWERS
