"""Alternative stage 7: the LU factors from TensorFlow (of the rotation with its rows reversed,
so another permutation than the reference's), P kept as a row order applied by gathering, L and
U packed in one trainable matrix masked by band_part, and a Glow whose couplings alternate
parity, its steps stored as lists."""

import numpy as np
import tensorflow as tf

from .affine import AffineCoupling


class InvertibleLinear(tf.keras.layers.Layer):
    def __init__(self, dim, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        rng = np.random.default_rng(np.random.randint(2**31) if seed is None else seed + 1000)
        rotation = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
        packed, pivots = (t.numpy() for t in tf.linalg.lu(tf.constant(rotation[::-1])))
        # tf.linalg.lu: L U = A[pivots], so row i of the rotation is row rows[i] of L U.
        self.rows = np.argsort(pivots)[::-1].copy()
        self.columns = np.argsort(self.rows)  # gathering by these undoes the row order
        diagonal = np.diag(packed)
        self.sign_s = tf.constant(np.sign(diagonal), tf.float32)
        self.packed = self.add_weight(name="packed", shape=(dim, dim), initializer="zeros")
        self.packed.assign((packed - np.diag(diagonal)).astype(np.float32))
        self.log_s = self.add_weight(name="log_s", shape=(dim,), initializer="zeros")
        self.log_s.assign(np.log(np.abs(diagonal)).astype(np.float32))

    def _triangles(self):
        strict_lower = self.packed - tf.linalg.band_part(self.packed, 0, -1)
        strict_upper = self.packed - tf.linalg.band_part(self.packed, -1, 0)
        lower = strict_lower + tf.eye(self.dim)
        upper = strict_upper + tf.linalg.diag(self.sign_s * tf.exp(self.log_s))
        return lower, upper

    def matrix(self):
        lower, upper = self._triangles()
        return tf.gather(lower @ upper, self.rows, axis=0)

    def forward(self, x):
        return tf.convert_to_tensor(x, tf.float32) @ tf.transpose(self.matrix())

    def backward(self, h):
        lower, upper = self._triangles()
        z = tf.transpose(tf.gather(tf.convert_to_tensor(h, tf.float32), self.columns, axis=1))
        z = tf.linalg.triangular_solve(upper, tf.linalg.triangular_solve(lower, z), lower=False)
        return tf.transpose(z)

    def log_det_jacobian(self):
        return tf.reduce_sum(self.log_s)


class Glow(tf.keras.Model):
    def __init__(self, dim, num_steps=4, hidden_units=64, hidden_layers=3, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.steps = [[InvertibleLinear(dim, seed=k), AffineCoupling(dim, k % 2, hidden_units, hidden_layers)]
                      for k in range(num_steps)]

    def forward(self, x):
        return self._run(x)[0]

    def backward(self, h):
        x = tf.convert_to_tensor(h, tf.float32)
        for mixing, coupling in self.steps[::-1]:
            x = mixing.backward(coupling.backward(x))
        return x

    def log_det_jacobian(self, x):
        return self._run(x)[1]

    def _run(self, x):
        h = tf.convert_to_tensor(x, tf.float32)
        terms = []
        for mixing, coupling in self.steps:
            h = mixing.forward(h)
            terms.append(coupling.log_det_jacobian(h) + mixing.log_det_jacobian())
            h = coupling.forward(h)
        return h, tf.add_n(terms)


ANSWERS = {"log_det_of_given_diagonal": 1.1, "free_parameters": 64, "fresh_log_det": 0}
