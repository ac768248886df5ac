"""Stage 1 - the additive coupling layer (NICE paper, section 3.2; docs/lessons/1-coupling.md).

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

    Shapes: two 1-D integer arrays of column indices, one of size floor(D/2) and the other of
    size ceil(D/2) (odd D too). Together they hold every index 0 .. D-1 exactly once, and a
    layer of parity 1 changes exactly the coordinates a layer of parity 0 keeps, so that
    alternating layers change every coordinate. Which rule (halves, even/odd, a fixed
    permutation) is your choice. Page: docs/lessons/1-coupling.md, "Splitting x".
    """
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 or 1, got {parity!r}.")
    # TODO (coupling): partition
    # Pick a rule that gives each coordinate to exactly one part, then let parity 1 swap the
    # two roles. Work it out on paper for D = 5 before you write it.
    raise NotImplementedError(
        'Stage 1 (coupling): implement partition. See docs/lessons/1-coupling.md.'
    )


def coupling_network(
    in_dim: int, out_dim: int, hidden_units: int = 64, hidden_layers: int = 3
) -> tf.keras.Sequential:
    """The coupling function m: an MLP from ``(batch, in_dim)`` to ``(batch, out_dim)``.

    ``hidden_layers`` Dense layers of ``hidden_units`` units with ReLU, then a linear Dense
    output layer of ``out_dim`` units: m(u) = W_L relu(... relu(W_1 u + b_1) ...) + b_L.
    Declaring the input size is optional (Keras builds a network on its first call).
    Page: docs/lessons/1-coupling.md, "The coupling network".
    """
    # TODO (coupling): coupling_network
    # A Keras Sequential model: the hidden Dense layers with a ReLU activation, then an output
    # Dense layer with no activation. Start the output layer's weights at zero: a new coupling
    # layer is then the identity map (the page says why that helps).
    raise NotImplementedError(
        'Stage 1 (coupling): implement coupling_network. See docs/lessons/1-coupling.md.'
    )


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
        self.m = coupling_network(len(self.keep), len(self.change), hidden_units, hidden_layers)

    def split(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``(batch, D)`` -> ``(x_keep, x_change)``: the columns ``self.keep`` and ``self.change``
        of x, in that order, shaped ``(batch, len(self.keep))`` and ``(batch, len(self.change))``."""
        # TODO (coupling): AdditiveCoupling.split
        # Select columns by their indices. Plain slicing only serves some splits; TensorFlow
        # has an op that picks entries of an axis from a list of indices.
        raise NotImplementedError(
            'Stage 1 (coupling): implement AdditiveCoupling.split. See docs/lessons/1-coupling.md.'
        )

    def merge(self, keep: tf.Tensor, change: tf.Tensor) -> tf.Tensor:
        """The inverse of ``split``: ``(batch, |keep|)`` and ``(batch, |change|)`` -> ``(batch, D)``
        with every column back at its original index, so merge(*split(x)) == x."""
        # TODO (coupling): AdditiveCoupling.merge
        # Side by side, the two parts hold the original columns in the order keep, then
        # change. Which reordering of those columns puts each one back at its own index?
        raise NotImplementedError(
            'Stage 1 (coupling): implement AdditiveCoupling.merge. See docs/lessons/1-coupling.md.'
        )

    def forward(self, x):
        """f: data -> latent. ``(batch, D)`` -> ``(batch, D)``: y_change = x_change + m(x_keep),
        y_keep = x_keep (docs/lessons/1-coupling.md, "The idea")."""
        x = as_batch(x, self.dim)
        # TODO (coupling): AdditiveCoupling.forward
        # Split, shift the changed part by the network's output on the kept part, merge back.
        raise NotImplementedError(
            'Stage 1 (coupling): implement AdditiveCoupling.forward. See docs/lessons/1-coupling.md.'
        )

    def backward(self, y):
        """f^-1: latent -> data. ``(batch, D)`` -> ``(batch, D)``: x_change = y_change - m(y_keep),
        x_keep = y_keep."""
        y = as_batch(y, self.dim, name="y")
        # TODO (coupling): AdditiveCoupling.backward
        # The exact inverse of forward. Which part is the same in x and y? It lets you
        # recompute the very shift forward added.
        raise NotImplementedError(
            'Stage 1 (coupling): implement AdditiveCoupling.backward. See docs/lessons/1-coupling.md.'
        )

    def call(self, x):
        return self.forward(x)


# Predict, then check: the questions at the end of docs/lessons/1-coupling.md. Write a number
# for each key (work it out first, then run code to check it); the stage's checks grade them.
ANSWERS = {
    "log_density_at_zero": None,
    "coupling_parameters": None,
    "jacobian_zero_entries": None,
}
