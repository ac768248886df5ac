"""Lazily built coupling network; halves split by slicing."""

import tensorflow as tf

HALVES = "first half / second half"


class AdditiveCoupling(tf.keras.layers.Layer):
    def __init__(self, dim, parity, hidden_units=64, hidden_layers=3, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.parity, self.cut = dim, parity, dim // 2
        self.m = tf.keras.Sequential(
            [tf.keras.layers.Dense(hidden_units, activation="relu") for _ in range(hidden_layers)]
            + [tf.keras.layers.Dense(dim - self.cut if parity == 0 else self.cut)])

    def _parts(self, x):
        first, second = x[:, : self.cut], x[:, self.cut:]
        return (first, second) if self.parity == 0 else (second, first)

    def _join(self, keep, change):
        return tf.concat([keep, change] if self.parity == 0 else [change, keep], axis=1)

    def forward(self, x):
        keep, change = self._parts(tf.cast(x, tf.float32))
        return self._join(keep, change + self.m(keep))

    def backward(self, y):
        keep, change = self._parts(tf.cast(y, tf.float32))
        return self._join(keep, change - self.m(keep))


ANSWERS = {"log_density_at_zero": -0.3203, "coupling_parameters": 183, "jacobian_zero_entries": 21}
