"""The 2-D toy data sets (nicelab.core.toy): shapes, fixed splits, each one's law, the grid's
entropy, and their registration as data sets with presets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nicelab.core import data, toy
from nicelab.core.config import PRESETS


@pytest.mark.parametrize("name", toy.NAMES)
def test_toy_sets_are_registered_and_fixed(name):
    assert name in data.DATASETS and name in PRESETS
    a, b = data.load(name), data.load(name)
    assert (len(a.train), len(a.valid), len(a.test)) == toy.SIZES and a.dim == 2
    for split in (a.train, a.valid, a.test):
        assert split.dtype == np.float32 and np.all(np.isfinite(split))
    assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
    assert not np.allclose(a.train[:100], a.valid[:100])  # different seeds per split
    assert a.name == name and a.image_shape is None


def test_moons_are_two_interleaved_half_circles():
    x = toy.moons(20_000, seed=0)
    assert np.abs(x.mean(axis=0)).max() < 0.1  # centred
    low, high = np.percentile(x[:, 0], [0.5, 99.5])  # x1 spans about [-3, 3]
    assert abs(low + 3) < 0.3 and abs(high - 3) < 0.3
    # Undo the scaling: each point lies near a unit circle centred at (0, 0) or (1, 0.5).
    raw = x / 2 + [0.5, 0.25]
    distance = np.minimum(np.abs(np.hypot(*raw.T) - 1), np.abs(np.hypot(raw[:, 0] - 1, raw[:, 1] - 0.5) - 1))
    assert np.median(distance) < 0.1


def test_rings_lie_on_their_radii_with_more_points_outside():
    x = toy.rings(30_000, seed=0)
    radius = np.hypot(*x.T)
    nearest = np.abs(radius[:, None] - np.array(toy.RING_RADII)).argmin(axis=1)
    residual = radius - np.array(toy.RING_RADII)[nearest]
    assert abs(residual.std() - 0.1) < 0.01
    shares = np.bincount(nearest, minlength=3) / len(x)
    assert np.allclose(shares, np.array(toy.RING_RADII) / sum(toy.RING_RADII), atol=0.01)
    # Denser towards the upper right (the angle's density is 1 + 0.5 cos(theta - pi/4)).
    angle = np.arctan2(x[:, 1], x[:, 0])
    assert np.mean(np.cos(angle - np.pi / 4)) == pytest.approx(0.25, abs=0.02)


def test_gaussian_grid_entropy_matches_monte_carlo():
    x = toy.gaussian_grid(200_000, seed=0).astype(np.float64)
    nearest = ((x[:, None, :] - toy.GRID_CENTRES[None]) ** 2).sum(-1).argmin(axis=1)
    assert np.allclose(np.bincount(nearest) / len(x), 1 / 9, atol=0.01)
    assert abs((x - toy.GRID_CENTRES[nearest]).std() - toy.GRID_STD) < 0.005
    # The mixture's exact log-density; its mean is minus the entropy.
    sq = ((x[:, None, :] - toy.GRID_CENTRES[None]) ** 2).sum(-1) / (2 * toy.GRID_STD**2)
    log_p = (np.log(np.exp(-sq).sum(axis=1)) - math.log(9) - math.log(2 * math.pi * toy.GRID_STD**2))
    assert -log_p.mean() == pytest.approx(toy.GAUSSIAN_GRID_ENTROPY, abs=0.01)
    assert data.load("gaussian_grid").entropy == toy.GAUSSIAN_GRID_ENTROPY


def test_bad_names_and_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="unknown toy data set 'spiral'"):
        toy.splits("spiral")
    with pytest.raises(ValueError, match="n must be an integer"):
        toy.rings(0)


def test_commands_take_the_toy_sets_as_2d_data():
    from nicelab.cli import build_parser
    from nicelab.cli.commands import inpaint, outliers

    assert build_parser()[0].parse_args(["train", "rings"]).data == "rings"

    for name in toy.NAMES:
        assert name in inpaint.TWO_D and name in outliers.TWO_D
    known = inpaint.make_masks("x2", 5, 2, None, np.random.default_rng(0))
    assert known.shape == (5, 2) and known[:, 0].all() and not known[:, 1].any()
