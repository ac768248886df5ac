"""The course's data sets, with fixed seeded train / validation / test splits.

* ``parabola``: x2 ~ N(0, 4^2), x1 | x2 ~ N(x2^2 / 4, 1). Generated from a seed (works
  offline); its exact differential entropy is log(2 pi e) + log(4) = 4.224 nats.
* ``digits``: scikit-learn's bundled 8x8 digits (levels 0..16), dequantized to [0, 1] with
  x = (level + u) / 17, u ~ U(0, 1).
* ``mnist`` / ``fashion_mnist``: see :mod:`nicelab.core.mnist` (the NICE paper's protocol).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nicelab.core import toy
from nicelab.core.validate import check_choice, check_positive_int

#: Exact differential entropy of the parabola in raw units: the lowest expected NLL possible.
PARABOLA_ENTROPY = math.log(2 * math.pi * math.e) + math.log(4.0)

DATA_SEED = 20141030  # NICE's arXiv submission date: the splits never change


@dataclass
class Dataset:
    """A data set split three ways; every array is float32 shaped ``(n, D)``."""

    name: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    image_shape: tuple[int, int] | None = None
    entropy: float | None = None  # exact differential entropy, when known
    bounds: tuple[float, float] | None = None  # the box the data lives in, when bounded
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # split -> class labels
    levels: int | None = None  # for dequantized data: how many discrete levels per dimension
    #: For dequantized data: the training split's integer levels ``(n, D)``, from which the
    #: training driver draws fresh noise every epoch (``train`` is one fixed draw of it, as are
    #: ``valid`` and ``test``).
    train_levels: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])


def parabola(n: int, seed: int | None = None) -> np.ndarray:
    """``n`` points of the parabola, shape ``(n, 2)``, columns (x1, x2)."""
    n = check_positive_int(n, "n")
    rng = np.random.default_rng(seed)
    x2 = rng.normal(0.0, 4.0, size=n)
    x1 = rng.normal(x2**2 / 4.0, 1.0)
    return np.stack([x1, x2], axis=1).astype(np.float32)


def dequantize(levels: np.ndarray, num_levels: int, rng: np.random.Generator) -> np.ndarray:
    """Integer levels 0..num_levels-1 -> (level + u) / num_levels in [0, 1], u ~ U(0, 1),
    float32 of the same shape. Each call draws new noise from ``rng``."""
    return ((levels + rng.uniform(size=levels.shape)) / num_levels).astype(np.float32)


def bits_per_dim(log_likelihood: float, dim: int, levels: int) -> float:
    """Bits per dimension of dequantized data in the usual convention: the continuous density
    on [0, 1]^D, rescaled to the discrete grid of ``levels`` values per dimension,
    (-log p(x) + D log(levels)) / (D log 2); log2(levels) means no better than uniform."""
    return (-log_likelihood + dim * math.log(levels)) / (dim * math.log(2.0))


def split_indices(n: int, fractions: tuple[float, float], seed: int) -> tuple[np.ndarray, ...]:
    """A seeded permutation of range(n) cut into train / valid / test by ``fractions``."""
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_valid = int(round(fractions[0] * n)), int(round(fractions[1] * n))
    return order[:n_train], order[n_train:n_train + n_valid], order[n_train + n_valid:]


def load_parabola(n_train: int = 20000, n_valid: int = 5000, n_test: int = 50000) -> Dataset:
    return Dataset(
        "parabola",
        parabola(n_train, seed=DATA_SEED),
        parabola(n_valid, seed=DATA_SEED + 1),
        parabola(n_test, seed=DATA_SEED + 2),
        entropy=PARABOLA_ENTROPY,
    )


def digit_levels() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as integer levels 0..16, shape ``(1797, 64)``, and their labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data.astype(np.int64), bunch.target.astype(np.int64)


def load_digits() -> Dataset:
    """Digits, dequantized to [0, 1], split 70 / 15 / 15 % with a fixed seed."""
    levels, labels = digit_levels()
    x = dequantize(levels, 17, np.random.default_rng(DATA_SEED))
    train, valid, test = split_indices(len(x), (0.70, 0.15), DATA_SEED)
    return Dataset(
        "digits", x[train], x[valid], x[test], image_shape=(8, 8), bounds=(0.0, 1.0), levels=17,
        labels={"train": labels[train], "valid": labels[valid], "test": labels[test]},
        train_levels=levels[train],
    )


def load_toy(name: str, **kwargs) -> Dataset:
    """A 2-D toy set of :mod:`nicelab.core.toy` (``moons``, ``rings``, ``gaussian_grid``)."""
    return Dataset(name, *toy.splits(name, **kwargs), entropy=toy.ENTROPIES.get(name))


def load_mnist(name: str = "mnist", **kwargs) -> Dataset:
    from nicelab.core import mnist  # only MNIST needs its loader (and, to download, Keras)

    return mnist.load(name, **kwargs)


#: Every data set by name: a function returning its :class:`Dataset`. To add one, write its
#: loader and add it here (and its training preset to :data:`nicelab.core.config.PRESETS`).
LOADERS: dict[str, Callable[..., Dataset]] = {
    "parabola": load_parabola,
    "digits": load_digits,
    "mnist": lambda **kwargs: load_mnist("mnist", **kwargs),
    "fashion_mnist": lambda **kwargs: load_mnist("fashion_mnist", **kwargs),
}
# Two moons, rings, a grid of Gaussians (nicelab.core.toy): offline 2-D sets for the notebooks.
LOADERS.update({name: functools.partial(load_toy, name) for name in toy.NAMES})
DATASETS = tuple(LOADERS)


def load(name: str, **kwargs) -> Dataset:
    """Load a data set by name (one of :data:`LOADERS`: ``parabola``, ``digits``, ``mnist``,
    ``fashion_mnist``, ...)."""
    check_choice(name, tuple(LOADERS), "data set")
    return LOADERS[name](**kwargs)
