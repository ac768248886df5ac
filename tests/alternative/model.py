"""Alternative stage 2."""

import tensorflow as tf

from .coupling import AdditiveCoupling


class NICE(tf.keras.Model):
    def __init__(self, dim, num_couplings=4, hidden_units=64, hidden_layers=3, **kwargs):
        super().__init__(**kwargs)
        self.couplings = []
        for i in range(num_couplings):
            self.couplings.append(AdditiveCoupling(dim, 1 - i % 2, hidden_units, hidden_layers))
        self.log_scale = self.add_weight(shape=(dim,), initializer="zeros", name="log_scale")

    def forward(self, x):
        for layer in self.couplings:
            x = layer.forward(x)
        return x * tf.exp(self.log_scale)

    def backward(self, h):
        x = tf.convert_to_tensor(h, tf.float32) / tf.exp(self.log_scale)
        for layer in self.couplings[::-1]:
            x = layer.backward(x)
        return x

    def log_det_jacobian(self):
        return tf.reduce_sum(self.log_scale)


ANSWERS = {"log_det_of_given_scales": 1.5, "nice_parameters": 738, "ml_log_scale": 2.3}
