"""Stage 6 (advanced) - the affine coupling layer and RealNVP (Dinh, Sohl-Dickstein and Bengio
2017, "Density estimation using Real NVP", section 3.3; docs/lessons/6-affine.md).

An affine coupling layer keeps one part of x (shape ``(batch, D)``) and scales and shifts the
other, both by amounts computed from the kept part only:

    forward  (data -> latent):  y_keep = x_keep,  y_change = x_change * exp(s(x_keep)) + t(x_keep)
    backward (latent -> data):  x_keep = y_keep,  x_change = (y_change - t(y_keep)) * exp(-s(y_keep))

The Jacobian is triangular with diagonal exp(s(x_keep)) on the changed coordinates and ones on
the kept ones, so, one value per example,

    log|det df/dx| = sum_{j in change} s_j(x_keep),

which depends on x, unlike NICE's. The scale is bounded, s = scale * tanh(raw), with a learned
per-coordinate factor ``scale``: an unbounded s can grow until exp(s) overflows float32
(from s = 89 on) and one large input then turns the loss into inf or NaN. A new layer is the
identity (raw = t = 0). A RealNVP chains couplings of alternating parity; its log-determinant
is the sum of its couplings', each taken at the input that coupling sees.

Direction convention: ``forward`` is f (data -> latent), as in stages 1-5. A TensorFlow
Probability bijector names this direction ``inverse``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nicelab.validate import as_batch, check_positive_int

from .coupling import coupling_network, partition


class AffineCoupling(tf.keras.layers.Layer):
    """Affine coupling layer: y_change = x_change * exp(s(x_keep)) + t(x_keep), y_keep = x_keep.

    Args:
        dim: the data dimensionality D >= 2.
        parity: 0 or 1; layers of parity 0 and 1 change complementary coordinates (stage 1's
            ``partition``).
        hidden_units, hidden_layers: the size of this layer's own network, which maps the kept
            part to s and t.
    """

    def __init__(self, dim, parity, hidden_units=64, hidden_layers=3, **kwargs):
        super().__init__(**kwargs)
        self.dim = check_positive_int(dim, "dim", minimum=2)
        self.parity = parity
        self.keep, self.change = partition(self.dim, parity)
        # BEGIN SOLUTION: AffineCoupling.__init__
        # > This layer's own network from the kept part to both s and t: one network whose
        # > output holds the two side by side (two heads), or two networks. Start its output
        # > at zero, as in stage 1, so that a new layer is the identity. Then the learned
        # > factor that bounds s: a trainable vector with one entry per changed coordinate.
        self.net = coupling_network(len(self.keep), 2 * len(self.change), hidden_units, hidden_layers)
        self.scale = self.add_weight(name="scale", shape=(len(self.change),), initializer="ones")
        # END SOLUTION

    def split(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``(batch, D)`` -> ``(x_keep, x_change)``: the columns ``self.keep`` and ``self.change``
        of x, in that order (as in stage 1)."""
        # BEGIN SOLUTION: AffineCoupling.split
        # > The same as your stage 1 layer's.
        return tf.gather(x, self.keep, axis=1), tf.gather(x, self.change, axis=1)
        # END SOLUTION

    def merge(self, keep: tf.Tensor, change: tf.Tensor) -> tf.Tensor:
        """The inverse of ``split``: every column back at its own index (as in stage 1)."""
        # BEGIN SOLUTION: AffineCoupling.merge
        # > The same as your stage 1 layer's.
        order = np.argsort(np.concatenate([self.keep, self.change]))
        return tf.gather(tf.concat([keep, change], axis=1), order, axis=1)
        # END SOLUTION

    def scale_and_shift(self, keep: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``(batch, |keep|)`` -> ``(s, t)``, each ``(batch, |change|)``, from the kept part only.

        s is bounded whatever the input, so exp(s) cannot overflow: here s = a * tanh(raw), a
        learned factor per changed coordinate times tanh of the network's raw output, with raw
        and t the network's two heads (docs/lessons/6-affine.md, "Bounding the scale")."""
        # BEGIN SOLUTION: AffineCoupling.scale_and_shift
        # > Run the network on the kept part, cut its output into the raw log-scale and the
        # > shift, and squash the raw log-scale into a bounded range with a smooth function,
        # > times the learned factor.
        raw, t = tf.split(self.net(keep), 2, axis=1)
        return self.scale * tf.tanh(raw), t
        # END SOLUTION

    def forward(self, x):
        """f: data -> latent. ``(batch, D)`` -> ``(batch, D)``:
        y_change = x_change * exp(s(x_keep)) + t(x_keep), y_keep = x_keep."""
        x = as_batch(x, self.dim)
        # BEGIN SOLUTION: AffineCoupling.forward
        # > Split, compute s and t from the kept part, scale then shift the changed part,
        # > merge back.
        x_keep, x_change = self.split(x)
        s, t = self.scale_and_shift(x_keep)
        return self.merge(x_keep, x_change * tf.exp(s) + t)
        # END SOLUTION

    def backward(self, y):
        """f^-1: latent -> data. ``(batch, D)`` -> ``(batch, D)``:
        x_change = (y_change - t(y_keep)) * exp(-s(y_keep)), x_keep = y_keep."""
        y = as_batch(y, self.dim, name="y")
        # BEGIN SOLUTION: AffineCoupling.backward
        # > Undo forward's two steps in the opposite order. The kept part is the same in x and
        # > y, so it gives you back the very s and t forward used.
        y_keep, y_change = self.split(y)
        s, t = self.scale_and_shift(y_keep)
        return self.merge(y_keep, (y_change - t) * tf.exp(-s))
        # END SOLUTION

    def log_det_jacobian(self, x):
        """log|det df/dx| at each example of x, shape ``(batch,)``: sum over the changed
        coordinates of s(x_keep). A TensorFlow tensor, so that gradients reach the network."""
        x = as_batch(x, self.dim)
        # BEGIN SOLUTION: AffineCoupling.log_det_jacobian
        # > Which entries of the Jacobian's diagonal are not 1, and what are their logs? Keep
        # > one number per example.
        s, _ = self.scale_and_shift(self.split(x)[0])
        return tf.reduce_sum(s, axis=1)
        # END SOLUTION

    def call(self, x):
        return self.forward(x)


class RealNVP(tf.keras.Model):
    """A RealNVP flow for vectors: affine couplings with parities 0, 1, 0, 1, ...

    Args:
        dim: data dimensionality D.
        num_couplings: how many affine coupling layers.
        hidden_units, hidden_layers: size of each coupling's own network.
    """

    def __init__(self, dim, num_couplings=4, hidden_units=64, hidden_layers=3, **kwargs):
        super().__init__(**kwargs)
        self.dim = check_positive_int(dim, "dim", minimum=2)
        check_positive_int(num_couplings, "num_couplings")
        # BEGIN SOLUTION: RealNVP.__init__
        # > A list of num_couplings new AffineCoupling layers, each with its own network of the
        # > sizes asked for, parities alternating 0, 1, 0, 1, ... (as NICE's couplings). There
        # > is no separate scaling layer: the couplings scale.
        self.couplings = [
            AffineCoupling(dim, parity=i % 2, hidden_units=hidden_units,
                           hidden_layers=hidden_layers, name=f"affine_coupling_{i}")
            for i in range(num_couplings)
        ]
        # END SOLUTION

    def forward(self, x):
        """f: data -> latent, ``(batch, D)`` -> ``(batch, D)``: couplings in order, each applied to
        the previous one's output."""
        h = as_batch(x, self.dim)
        # BEGIN SOLUTION: RealNVP.forward
        # > As NICE's, without the scaling layer.
        for coupling in self.couplings:
            h = coupling.forward(h)
        return h
        # END SOLUTION

    def backward(self, h):
        """f^-1: latent -> data, ``(batch, D)`` -> ``(batch, D)``: each coupling's backward, last
        coupling first."""
        x = as_batch(h, self.dim, name="h")
        # BEGIN SOLUTION: RealNVP.backward
        # > Undo forward step by step, last step first.
        for coupling in reversed(self.couplings):
            x = coupling.backward(x)
        return x
        # END SOLUTION

    def log_det_jacobian(self, x):
        """log|det df/dx| per example, shape ``(batch,)``: by the chain rule, the sum over the
        couplings of each one's log-determinant at the input it sees (x for the first, the
        first's output for the second, ...)."""
        h = as_batch(x, self.dim)
        # BEGIN SOLUTION: RealNVP.log_det_jacobian
        # > Walk through the couplings as forward does, adding up each one's log-determinant
        # > at the point where that coupling is applied, before moving on.
        log_det = tf.zeros(tf.shape(h)[:1])
        for coupling in self.couplings:
            log_det += coupling.log_det_jacobian(h)
            h = coupling.forward(h)
        return log_det
        # END SOLUTION

    def call(self, x):
        return self.forward(x)


def log_likelihood(model, prior, x):
    """log p(x) for each example, shape ``(batch,)``: log p_H(f(x)) + log|det df/dx|.

    ``model`` a RealNVP (or any flow with ``forward`` and a per-example ``log_det_jacobian(x)``,
    such as stage 7's Glow), ``prior`` a distribution over ``(batch, D)`` latents with
    ``log_prob`` of shape ``(batch,)``, ``x`` ``(batch, D)``. See "The likelihood" in
    docs/lessons/6-affine.md.
    """
    x = as_batch(x, model.dim)
    # BEGIN SOLUTION: log_likelihood
    # > As in stage 3, except that the log-determinant now has one value per example: it
    # > takes the data as its argument.
    return prior.log_prob(model.forward(x)) + model.log_det_jacobian(x)
    # END SOLUTION


# Predict, then check: the questions at the end of docs/lessons/6-affine.md. Write a number for
# each key (work it out first, then run code to check it); the stage's checks grade them.
# BEGIN ANSWERS
ANSWERS = {
    "realnvp_log_det": 1.6796,
    "max_log_det": 24,
    "first_overflowing_s": 89,
}
# END ANSWERS
