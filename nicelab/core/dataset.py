"""What every data set shares: the :class:`Dataset` record, its fixed seed, dequantization and
bits per dimension (:mod:`nicelab.core.data` loads the course's sets, :mod:`nicelab.core.mnist`
the paper's)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

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
