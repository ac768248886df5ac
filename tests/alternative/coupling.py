"""Alternative stage 1: split into first half / second half, with masks."""

import numpy as np
import tensorflow as tf


class AdditiveCoupling(tf.keras.layers.Layer):
    def __init__(self, dim, parity, hidden_units=64, hidden_layers=3, **kwargs):
        super().__init__(**kwargs)
        if dim < 2 or parity not in (0, 1):
            raise ValueError("dim >= 2 and parity in (0, 1)")
        first = np.arange(dim) < dim // 2
        self.dim = dim
        self.change_mask = tf.constant((~first if parity == 0 else first).astype(np.float32))
        net = [tf.keras.layers.Dense(hidden_units, activation="relu") for _ in range(hidden_layers)]
        self.net = tf.keras.Sequential([tf.keras.Input(shape=(dim,)), *net, tf.keras.layers.Dense(dim)])

    def _shift(self, keep_part):
        return self.net(keep_part * (1.0 - self.change_mask)) * self.change_mask

    def forward(self, x):
        x = tf.convert_to_tensor(x, tf.float32)
        return x + self._shift(x)

    def backward(self, y):
        y = tf.convert_to_tensor(y, tf.float32)
        return y - self._shift(y)


ANSWERS = {"log_density_at_zero": -0.32, "coupling_parameters": 183, "jacobian_zero_entries": 21}
