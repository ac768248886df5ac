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

import numpy as np
from sklearn import datasets as sklearn_datasets

from nicelab.core import mnist, toy
from nicelab.core.dataset import DATA_SEED, Dataset, bits_per_dim, dequantize, split_indices
from nicelab.core.validate import check_choice, check_positive_int

__all__ = ["DATASETS", "DATA_SEED", "LOADERS", "PARABOLA_ENTROPY", "Dataset", "bits_per_dim", "dequantize",
           "digit_levels", "load", "load_digits", "load_mnist", "load_parabola", "load_toy", "parabola",
           "split_indices"]

#: Exact differential entropy of the parabola in raw units: the lowest expected NLL possible.
PARABOLA_ENTROPY = math.log(2 * math.pi * math.e) + math.log(4.0)


def parabola(n: int, seed: int | None = None) -> np.ndarray:
    """``n`` points of the parabola, shape ``(n, 2)``, columns (x1, x2)."""
    n = check_positive_int(n, "n")
    rng = np.random.default_rng(seed)
    x2 = rng.normal(0.0, 4.0, size=n)
    x1 = rng.normal(x2**2 / 4.0, 1.0)
    return np.stack([x1, x2], axis=1).astype(np.float32)


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

    bunch = sklearn_datasets.load_digits()
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
