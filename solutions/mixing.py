"""Stage 7 - learned mixing: Glow's invertible 1x1 convolution, for vectors (Kingma and Dhariwal
2018, "Glow: generative flow with invertible 1x1 convolutions", section 3.2;
docs/lessons/7-mixing.md).

A coupling layer changes one part of x as a function of the other; a fixed split decides which
coordinates ever meet. Glow puts a learned invertible linear map in front of every coupling.
On a batch of row vectors x (shape ``(batch, D)``):

    forward  (data -> latent):  h = W x for every example, i.e.  h = x @ W^T
    backward (latent -> data):  x = W^-1 h

A general W costs O(D^3) for its determinant and for its inverse. Glow keeps W in the factors
of its LU decomposition, with the diagonal apart as sign and log-magnitude:

    W = P L (U + diag(s)),   s = sign_s * exp(log_abs_s)

P is a fixed permutation, L lower-triangular with ones on its diagonal, U strictly
upper-triangular; L, U and log_abs_s are trained, P and sign_s stay fixed. det P = +-1,
det L = 1 and U + diag(s) is triangular, so

    log|det W| = sum_d log|s_d| = sum_d log_abs_s_d     (O(D): no determinant is computed)

the same for every x; and W^-1 h = (U + diag(s))^-1 L^-1 P^T h: a permutation and two
triangular solves (O(D^2) per example), never a general inverse. The layer starts from the LU
factors of a random rotation: orthogonal (log|det W| = 0) but not the identity.

A Glow flow chains steps of (mixing, then an affine coupling of stage 6):

    forward  f = c_K o W_K o ... o c_1 o W_1,    backward: the inverses, last step first
    log|det df/dx| = sum_k ( log|det W_k| + log|det J_{c_k}| at c_k's own input ),

per example (the couplings' terms differ between examples; the mixing terms do not).

Direction convention: ``forward`` is f (data -> latent). A TensorFlow Probability bijector names
this direction ``inverse``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import tensorflow as tf

from nicelab.validate import as_batch, check_positive_int

from .affine import AffineCoupling


def random_rotation(dim: int, seed: int | None = None) -> np.ndarray:
    """A ``(dim, dim)`` random rotation (orthogonal matrix, Q Q^T = I), float64.

    Q of the QR decomposition of a matrix of independent standard normal entries, drawn from
    ``np.random.default_rng(seed)``; with ``seed=None`` from NumPy's global random state (which
    ``tf.keras.utils.set_random_seed`` seeds). Page: docs/lessons/7-mixing.md, "The start".
    """
    dim = check_positive_int(dim, "dim")
    generator = np.random if seed is None else np.random.default_rng(seed)
    # BEGIN SOLUTION: random_rotation
    # > Draw a square matrix of independent standard normal numbers and keep the orthogonal
    # > factor of its QR decomposition. Flipping each column by the sign of the matching
    # > diagonal entry of R makes the result uniformly distributed over rotations (optional).
    q, r = np.linalg.qr(generator.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))
    # END SOLUTION


def lu_factors(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(P, L, U, sign_s, log_abs_s)`` with ``matrix = P @ L @ (U + diag(sign_s * exp(log_abs_s)))``.

    ``matrix``: ``(D, D)``, invertible. P ``(D, D)`` a permutation matrix, L ``(D, D)`` lower-
    triangular with ones on its diagonal, U ``(D, D)`` strictly upper-triangular (zeros on its
    diagonal), sign_s and log_abs_s ``(D,)``: the diagonal s of the LU decomposition's upper
    factor as its signs (+-1) and the logs of its magnitudes. NumPy arrays, float64. Page:
    docs/lessons/7-mixing.md, "W in LU form".
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square, got shape {matrix.shape}.")
    # BEGIN SOLUTION: lu_factors
    # > SciPy (or TensorFlow) computes an LU decomposition with partial pivoting: a permutation,
    # > a unit lower-triangular factor and an upper-triangular one. Mind which side the
    # > permutation is on in the library you pick. Then take the upper factor's diagonal
    # > apart: its signs, the logs of its magnitudes, and the factor with its diagonal zeroed.
    permutation, lower, upper = scipy.linalg.lu(matrix)
    s = np.diag(upper)
    return permutation, lower, np.triu(upper, k=1), np.sign(s), np.log(np.abs(s))
    # END SOLUTION


class InvertibleLinear(tf.keras.layers.Layer):
    """Glow's invertible 1x1 convolution for vectors: h = W x with W = P L (U + diag(s)).

    Args:
        dim: the data dimensionality D.
        seed: the seed of the random rotation W starts from (None: NumPy's global random state).
    """

    def __init__(self, dim, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.dim = check_positive_int(dim, "dim")
        # BEGIN SOLUTION: InvertibleLinear.__init__
        # > Factor a random rotation of this size with your two functions above. P and sign_s
        # > never change: keep them as constants or as weights that are not trainable. L, U and
        # > log_abs_s are trainable weights of the layer, started from the factors. Training may
        # > give L and U any values, so also keep a fixed 0/1 mask for each that keeps only the
        # > entries strictly below (L) or strictly above (U) the diagonal: matrix() applies them.
        permutation, lower, upper, sign_s, log_abs_s = lu_factors(random_rotation(dim, seed))
        dim_2 = (dim, dim)
        self.permutation = self.add_weight(name="permutation", shape=dim_2, initializer="zeros",
                                           trainable=False)
        self.sign_s = self.add_weight(name="sign_s", shape=(dim,), initializer="zeros", trainable=False)
        self.lower = self.add_weight(name="lower", shape=dim_2, initializer="zeros")
        self.upper = self.add_weight(name="upper", shape=dim_2, initializer="zeros")
        self.log_abs_s = self.add_weight(name="log_abs_s", shape=(dim,), initializer="zeros")
        for weight, value in ((self.permutation, permutation), (self.sign_s, sign_s),
                              (self.lower, np.tril(lower, k=-1)), (self.upper, upper),
                              (self.log_abs_s, log_abs_s)):
            weight.assign(value.astype(np.float32))
        ones = np.ones(dim_2, dtype=np.float32)
        self.lower_mask = tf.constant(np.tril(ones, k=-1))
        self.upper_mask = tf.constant(np.triu(ones, k=1))
        # END SOLUTION

    def factors(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """``(P, L, U + diag(s))``, each ``(D, D)``: the permutation, L with ones on its diagonal
        and zeros above it, and U with s = sign_s * exp(log_abs_s) on its diagonal and zeros below
        it, whatever values training gave the trainable weights."""
        # BEGIN SOLUTION: InvertibleLinear.factors
        # > Mask the trainable weights so that only the entries their triangle owns count, then
        # > put ones on L's diagonal and s on U's.
        eye = tf.eye(self.dim)
        lower = self.lower * self.lower_mask + eye
        s = self.sign_s * tf.exp(self.log_abs_s)
        upper = self.upper * self.upper_mask + tf.linalg.diag(s)
        return tf.convert_to_tensor(self.permutation), lower, upper
        # END SOLUTION

    def matrix(self) -> tf.Tensor:
        """W = P @ L @ (U + diag(s)), shape ``(D, D)``."""
        # BEGIN SOLUTION: InvertibleLinear.matrix
        # > The product of the three factors, in the order of the equation.
        permutation, lower, upper = self.factors()
        return permutation @ lower @ upper
        # END SOLUTION

    def forward(self, x):
        """f: data -> latent, ``(batch, D)`` -> ``(batch, D)``: h = W x for every example (a row
        of x), h = x @ W^T."""
        x = as_batch(x, self.dim)
        # BEGIN SOLUTION: InvertibleLinear.forward
        # > Every example is a row of x, not a column: write h = W x for one column vector,
        # > then transpose both sides to see what the batch needs.
        return tf.matmul(x, self.matrix(), transpose_b=True)
        # END SOLUTION

    def backward(self, h):
        """f^-1: latent -> data, ``(batch, D)`` -> ``(batch, D)``: x = W^-1 h for every example,
        x = (U + diag(s))^-1 L^-1 P^T h, by a permutation and two triangular solves (never a
        general inverse or solve: docs/lessons/7-mixing.md, "Inverting W")."""
        h = as_batch(h, self.dim, name="h")
        # BEGIN SOLUTION: InvertibleLinear.backward
        # > Undo the factors of W one at a time, the one applied last (P) first. A permutation
        # > is undone by its transpose. TensorFlow solves a triangular system for many right-hand
        # > sides at once if they are the columns of one matrix: work with the transpose of h.
        permutation, lower, upper = self.factors()
        z = tf.matmul(permutation, h, transpose_a=True, transpose_b=True)  # P^T h, (D, batch)
        z = tf.linalg.triangular_solve(lower, z, lower=True)
        z = tf.linalg.triangular_solve(upper, z, lower=False)
        return tf.transpose(z)
        # END SOLUTION

    def log_det_jacobian(self) -> tf.Tensor:
        """Scalar log|det dh/dx| = log|det W| = sum_d log_abs_s_d, the same for every x; a
        TensorFlow scalar, so that gradients reach log_abs_s. No determinant is computed."""
        # BEGIN SOLUTION: InvertibleLinear.log_det_jacobian
        # > Which factors of W have a determinant of magnitude 1, and what is the determinant of
        # > a triangular matrix?
        return tf.reduce_sum(self.log_abs_s)
        # END SOLUTION

    def call(self, x):
        return self.forward(x)


class Glow(tf.keras.Model):
    """A Glow-style flow for vectors: ``num_steps`` steps of (InvertibleLinear, AffineCoupling).

    Args:
        dim: data dimensionality D.
        num_steps: how many (mixing, coupling) steps.
        hidden_units, hidden_layers: size of each coupling's own networks.
    """

    def __init__(self, dim, num_steps=4, hidden_units=64, hidden_layers=3, **kwargs):
        super().__init__(**kwargs)
        self.dim = check_positive_int(dim, "dim", minimum=2)
        check_positive_int(num_steps, "num_steps")
        # BEGIN SOLUTION: Glow.__init__
        # > One attribute, steps: a list of num_steps pairs (mixing layer, coupling layer),
        # > every layer a new one with its own weights. The mixing layers decide which
        # > coordinates the couplings see, so the couplings may all have the same parity.
        self.steps = [
            (InvertibleLinear(dim, name=f"mixing_{k}"),
             AffineCoupling(dim, parity=0, hidden_units=hidden_units, hidden_layers=hidden_layers,
                            name=f"coupling_{k}"))
            for k in range(num_steps)
        ]
        # END SOLUTION

    def forward(self, x):
        """f: data -> latent, ``(batch, D)`` -> ``(batch, D)``: for each step in order, its mixing
        layer, then its coupling, each applied to the previous output."""
        h = as_batch(x, self.dim)
        # BEGIN SOLUTION: Glow.forward
        # > Mixing first, then the coupling, step after step.
        for mixing, coupling in self.steps:
            h = coupling.forward(mixing.forward(h))
        return h
        # END SOLUTION

    def backward(self, h):
        """f^-1: latent -> data, ``(batch, D)`` -> ``(batch, D)``: the steps undone last first,
        each by its coupling's backward, then its mixing layer's backward."""
        x = as_batch(h, self.dim, name="h")
        # BEGIN SOLUTION: Glow.backward
        # > Undo forward step by step, the last thing forward did first.
        for mixing, coupling in reversed(self.steps):
            x = mixing.backward(coupling.backward(x))
        return x
        # END SOLUTION

    def log_det_jacobian(self, x):
        """log|det df/dx| per example, shape ``(batch,)``: every step's mixing term (a scalar,
        the same for every example) plus its coupling's term at the coupling's own input."""
        h = as_batch(x, self.dim)
        # BEGIN SOLUTION: Glow.log_det_jacobian
        # > Run forward step by step and collect every layer's term on the way: each coupling's
        # > at the input it sees. The mixing terms are scalars: every example gets all of them.
        log_det = tf.zeros(tf.shape(h)[:1])
        for mixing, coupling in self.steps:
            h = mixing.forward(h)
            log_det = log_det + mixing.log_det_jacobian() + coupling.log_det_jacobian(h)
            h = coupling.forward(h)
        return log_det
        # END SOLUTION

    def call(self, x):
        return self.forward(x)


# Predict, then check: the questions at the end of docs/lessons/7-mixing.md. Write a number for
# each key (work it out first, then run code to check it); the stage's checks grade them.
# BEGIN ANSWERS
ANSWERS = {
    "log_det_of_given_diagonal": 1.0986,
    "free_parameters": 64,
    "fresh_log_det": 0.0,
}
# END ANSWERS
