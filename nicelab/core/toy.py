"""Two-dimensional toy data sets beyond the parabola: two moons, rings and a grid of Gaussians.

Each one is generated from a seed (no file, no network) and split like the parabola: fixed
train / validation / test sets drawn with three different seeds. :func:`splits` returns the
arrays; :func:`nicelab.core.data.load` wraps them in a :class:`nicelab.core.data.Dataset`.

* ``moons``: scikit-learn's two interleaving half circles (``make_moons``), noise 0.08, scaled
  by 2 and centred, so the points span about [-3, 3] x [-1.5, 1.5].
* ``rings``: three concentric circles of radii 1, 2 and 3, as many points per unit of length
  on each (so the outer ring holds half the points), radial noise N(0, 0.1^2), denser towards
  the upper right.
* ``gaussian_grid``: an equal mixture of 9 isotropic Gaussians, std 0.3, centred on the
  3 x 3 grid {-2, 0, 2}^2. Its components barely overlap, so its differential entropy is
  close to log 9 + log(2 pi e 0.3^2) = 2.627 nats (:data:`GAUSSIAN_GRID_ENTROPY`, exact to
  about 1e-4): the floor a model's test NLL approaches.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.datasets import make_moons

from nicelab.core.validate import check_choice, check_positive_int

NAMES = ("moons", "rings", "gaussian_grid")

#: Split sizes (train, valid, test) and the seed of the first split; the others use seed + 1, + 2.
SIZES = (20_000, 5_000, 20_000)
SEED = 20141030

RING_RADII = (1.0, 2.0, 3.0)
GRID_STD = 0.3
GRID_CENTRES = np.array([(a, b) for a in (-2.0, 0.0, 2.0) for b in (-2.0, 0.0, 2.0)])
#: Entropy of the well-separated mixture: log K + log(2 pi e sigma^2) (nats; overlap ignored).
GAUSSIAN_GRID_ENTROPY = math.log(len(GRID_CENTRES)) + math.log(2 * math.pi * math.e * GRID_STD**2)


def moons(n: int, seed: int | None = None) -> np.ndarray:
    """``n`` points of two interleaving half circles, shape ``(n, 2)``, float32."""

    n = check_positive_int(n, "n")
    x, _ = make_moons(n, noise=0.08, random_state=np.random.RandomState(seed))
    return (2.0 * (x - [0.5, 0.25])).astype(np.float32)


def rings(n: int, seed: int | None = None) -> np.ndarray:
    """``n`` points on concentric rings (radii :data:`RING_RADII`), shape ``(n, 2)``, float32.

    A ring is chosen with probability proportional to its radius and the radius gets
    N(0, 0.1^2) noise. The angle has density proportional to 1 + 0.5 cos(theta - pi / 4)
    (denser towards the upper right): perfectly symmetric rings would sit at a saddle point of
    a fresh NICE, whose couplings start as the identity, and never train.
    """
    n = check_positive_int(n, "n")
    rng = np.random.default_rng(seed)
    radii = np.asarray(RING_RADII)
    radius = rng.choice(radii, size=n, p=radii / radii.sum()) + rng.normal(0.0, 0.1, size=n)
    angle = np.empty(0)
    while len(angle) < n:  # rejection sampling of the angle
        proposal = rng.uniform(0.0, 2 * np.pi, size=2 * n)
        accept = rng.uniform(size=2 * n) * 1.5 < 1 + 0.5 * np.cos(proposal - np.pi / 4)
        angle = np.concatenate([angle, proposal[accept]])
    angle = angle[:n]
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1).astype(np.float32)


def gaussian_grid(n: int, seed: int | None = None) -> np.ndarray:
    """``n`` points of the 3 x 3 grid of Gaussians (std :data:`GRID_STD`), shape ``(n, 2)``."""
    n = check_positive_int(n, "n")
    rng = np.random.default_rng(seed)
    centres = GRID_CENTRES[rng.integers(0, len(GRID_CENTRES), size=n)]
    return (centres + rng.normal(0.0, GRID_STD, size=(n, 2))).astype(np.float32)


GENERATORS = {"moons": moons, "rings": rings, "gaussian_grid": gaussian_grid}
#: Exact (or, for the grid, nearly exact) differential entropies, where known.
ENTROPIES = {"gaussian_grid": GAUSSIAN_GRID_ENTROPY}


def splits(name: str, sizes: tuple[int, int, int] = SIZES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train, valid, test)`` of the toy set ``name``, each float32 ``(n, 2)``; always the same."""
    check_choice(name, NAMES, "toy data set")
    generate = GENERATORS[name]
    return tuple(generate(size, seed=SEED + i) for i, size in enumerate(sizes))  # type: ignore[return-value]
