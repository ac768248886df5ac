"""Alternative stage 6: halves instead of even/odd, two networks (s and t) built lazily, and a
soft clamp s = S_MAX * tanh(raw / S_MAX) with a constant bound instead of a learned factor."""

import tensorflow as tf

S_MAX = 2.0


def _network(out_dim, units, layers):
    hidden = [tf.keras.layers.Dense(units, activation="relu") for _ in range(layers)]
    return tf.keras.Sequential([*hidden, tf.keras.layers.Dense(out_dim, kernel_initializer="zeros")])


class AffineCoupling(tf.keras.layers.Layer):
    def __init__(self, dim, parity, hidden_units=64, hidden_layers=3, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.parity = dim, parity
        first, second = dim // 2, dim - dim // 2
        self.n_keep, self.n_change = (first, second) if parity == 0 else (second, first)
        self.s_net = _network(self.n_change, hidden_units, hidden_layers)
        self.t_net = _network(self.n_change, hidden_units, hidden_layers)

    def _parts(self, x):
        x = tf.convert_to_tensor(x, tf.float32)
        low, high = x[:, : self.dim // 2], x[:, self.dim // 2:]
        return (low, high) if self.parity == 0 else (high, low)

    def _join(self, keep, change):
        return tf.concat([keep, change] if self.parity == 0 else [change, keep], axis=1)

    def _s_t(self, keep):
        return S_MAX * tf.tanh(self.s_net(keep) / S_MAX), self.t_net(keep)

    def forward(self, x):
        keep, change = self._parts(x)
        s, t = self._s_t(keep)
        return self._join(keep, change * tf.exp(s) + t)

    def backward(self, y):
        keep, change = self._parts(y)
        s, t = self._s_t(keep)
        return self._join(keep, (change - t) / tf.exp(s))

    def log_det_jacobian(self, x):
        keep, _ = self._parts(x)
        return tf.reduce_sum(self._s_t(keep)[0], axis=-1)


class RealNVP(tf.keras.Model):
    def __init__(self, dim, num_couplings=4, hidden_units=64, hidden_layers=3, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.couplings = [AffineCoupling(dim, 1 - i % 2, hidden_units, hidden_layers)
                          for i in range(num_couplings)]

    def forward(self, x):
        for layer in self.couplings:
            x = layer.forward(x)
        return x

    def backward(self, h):
        for layer in self.couplings[::-1]:
            h = layer.backward(h)
        return h

    def log_det_jacobian(self, x):
        total = 0.0
        for layer in self.couplings:
            total += layer.log_det_jacobian(x)
            x = layer.forward(x)
        return total


def log_likelihood(model, prior, x):
    x = tf.convert_to_tensor(x, tf.float32)
    return model.log_det_jacobian(x) + prior.log_prob(model.forward(x))


ANSWERS = {"realnvp_log_det": 1.68, "max_log_det": 24, "first_overflowing_s": 89}
