"""Stage 1 - the additive coupling layer (NICE paper, section 3.2).

A coupling layer splits x (shape ``(batch, D)``) into a part it keeps and a part it changes:

    forward  (data -> latent):  y_keep = x_keep,  y_change = x_change + m(x_keep)
    backward (latent -> data):  x_keep = y_keep,  x_change = y_change - m(y_keep)

The Jacobian is triangular with ones on its diagonal, so log|det J| = 0 whatever the
coupling network m is: m can be any neural network and never needs to be inverted.

Direction convention: ``forward`` is NICE's f (data -> latent). A TensorFlow Probability
bijector names this direction ``inverse``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nicelab.validate import as_batch, check_positive_int


def partition(dim: int, parity: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(keep, change)``: the coordinates a layer of this parity keeps and changes.

    Even/odd split: parity 0 keeps the even coordinates 0, 2, 4, ... and changes the odd
    ones; parity 1 does the opposite. For odd D the two parts have sizes ceil(D/2) and
    floor(D/2), so layers of parity 0 and 1 together change every coordinate.
    """
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 or 1, got {parity!r}.")
    even, odd = np.arange(0, dim, 2), np.arange(1, dim, 2)
    return (even, odd) if parity == 0 else (odd, even)


def coupling_network(
    in_dim: int, out_dim: int, hidden_units: int = 64, hidden_layers: int = 3
) -> tf.keras.Sequential:
    """The coupling function m: an MLP from ``(batch, in_dim)`` to ``(batch, out_dim)``.

    ``hidden_layers`` Dense layers of ``hidden_units`` with ReLU, then a linear Dense output.
    The output layer starts at zero, so a fresh coupling layer is the identity map.
    """
    # BEGIN SOLUTION: coupling_network
    # > Build a tf.keras.Sequential: an Input of shape (in_dim,), `hidden_layers` Dense
    # > layers with ReLU, then a linear Dense(out_dim) (kernel_initializer="zeros" helps).
    layers = [tf.keras.Input(shape=(in_dim,))]
    layers += [tf.keras.layers.Dense(hidden_units, activation="relu") for _ in range(hidden_layers)]
    layers.append(tf.keras.layers.Dense(out_dim, kernel_initializer="zeros"))
    return tf.keras.Sequential(layers)
    # END SOLUTION


class AdditiveCoupling(tf.keras.layers.Layer):
    """Additive coupling layer: y_change = x_change + m(x_keep), y_keep = x_keep.

    Args:
        dim: the data dimensionality D >= 2.
        parity: 0 or 1; layers of parity 0 and 1 change complementary coordinates.
        hidden_units, hidden_layers: the size of this layer's own coupling network m.
    """

    def __init__(self, dim, parity, hidden_units=64, hidden_layers=3, **kwargs):
        super().__init__(**kwargs)
        self.dim = check_positive_int(dim, "dim", minimum=2)
        self.parity = parity
        self.keep, self.change = partition(self.dim, parity)
        # Inverse permutation: concat([x_keep, x_change])[:, self.merge_order] restores x.
        self.merge_order = np.argsort(np.concatenate([self.keep, self.change]))
        self.m = coupling_network(len(self.keep), len(self.change), hidden_units, hidden_layers)

    def split(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``(batch, D)`` -> ``(x_keep, x_change)``, shaped ``(batch, |keep|)`` and ``(batch, |change|)``."""
        return tf.gather(x, self.keep, axis=1), tf.gather(x, self.change, axis=1)

    def merge(self, keep: tf.Tensor, change: tf.Tensor) -> tf.Tensor:
        """Inverse of ``split``: put the two parts back in their original columns."""
        return tf.gather(tf.concat([keep, change], axis=1), self.merge_order, axis=1)

    def forward(self, x):
        """f: data -> latent. ``(batch, D)`` -> ``(batch, D)``: y_change = x_change + m(x_keep)."""
        x = as_batch(x, self.dim)
        # BEGIN SOLUTION: AdditiveCoupling.forward
        # > 1. x_keep, x_change = self.split(x)
        # > 2. y_change = x_change + self.m(x_keep)   (x_keep passes through unchanged)
        # > 3. return self.merge(x_keep, y_change)
        x_keep, x_change = self.split(x)
        return self.merge(x_keep, x_change + self.m(x_keep))
        # END SOLUTION

    def backward(self, y):
        """f^-1: latent -> data. ``(batch, D)`` -> ``(batch, D)``: x_change = y_change - m(y_keep)."""
        y = as_batch(y, self.dim, name="y")
        # BEGIN SOLUTION: AdditiveCoupling.backward
        # > The exact inverse of forward: the kept part is the same in x and y, so m(y_keep)
        # > is the very shift forward added. Subtract it.
        y_keep, y_change = self.split(y)
        return self.merge(y_keep, y_change - self.m(y_keep))
        # END SOLUTION

    def call(self, x):
        return self.forward(x)
