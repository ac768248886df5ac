"""The data sets: the parabola's law and entropy, digits' dequantization and fixed splits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nicelab.core import data


def test_parabola_follows_its_definition():
    x = data.parabola(200_000, seed=0)
    assert x.shape == (200_000, 2) and x.dtype == np.float32
    assert abs(x[:, 1].std() - 4.0) < 0.05
    residual = x[:, 0] - x[:, 1] ** 2 / 4
    assert abs(residual.mean()) < 0.02 and abs(residual.std() - 1.0) < 0.02


def test_parabola_entropy_is_exact():
    assert data.PARABOLA_ENTROPY == pytest.approx(math.log(2 * math.pi * math.e) + math.log(4.0))
    assert data.PARABOLA_ENTROPY == pytest.approx(4.224, abs=1e-3)
    # Monte Carlo: the mean of -log p(x) under the true density converges to the entropy.
    x = data.parabola(400_000, seed=1).astype(np.float64)
    log_p = (-0.5 * (x[:, 1] / 4) ** 2 - math.log(4 * math.sqrt(2 * math.pi))
             - 0.5 * (x[:, 0] - x[:, 1] ** 2 / 4) ** 2 - 0.5 * math.log(2 * math.pi))
    assert -log_p.mean() == pytest.approx(data.PARABOLA_ENTROPY, abs=0.01)


def test_parabola_splits_are_fixed_and_disjoint():
    a, b = data.load("parabola"), data.load("parabola")
    assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
    assert (len(a.train), len(a.valid), len(a.test)) == (20_000, 5_000, 50_000)
    assert not np.array_equal(a.train[:100], a.valid[:100])
    assert a.entropy == data.PARABOLA_ENTROPY


def test_digits_are_dequantized_into_the_unit_box():
    d = data.load("digits")
    levels, _ = data.digit_levels()
    assert (len(d.train), len(d.valid), len(d.test)) == (1258, 270, 269)
    assert len(d.train) + len(d.valid) + len(d.test) == len(levels) == 1797
    everything = np.concatenate([d.train, d.valid, d.test])
    assert everything.dtype == np.float32 and everything.min() >= 0.0 and everything.max() <= 1.0
    # Dequantization keeps the level: floor(17 x) recovers it.
    assert sorted(np.unique(np.floor(everything * 17)).astype(int)) == list(range(17))
    assert d.image_shape == (8, 8) and d.bounds == (0.0, 1.0)
    assert np.array_equal(d.train, data.load("digits").train)


def test_unknown_data_set_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown data set 'cifar'"):
        data.load("cifar")
    with pytest.raises(ValueError, match="n must be an integer"):
        data.parabola(0)


def test_bits_per_dimension_convention():
    # A uniform density on [0, 1]^D (log p = 0) is log2(levels) bits per dimension.
    assert data.bits_per_dim(0.0, 64, 17) == pytest.approx(math.log2(17))
    # The NICE paper's MNIST log-likelihood, 1980.50 nats, is about 4.36 bits per dimension.
    assert data.bits_per_dim(1980.50, 784, 256) == pytest.approx(4.36, abs=0.01)


def test_digits_keep_their_training_levels_for_fresh_noise():
    d = data.load("digits")
    assert d.levels == 17 and d.train_levels.shape == d.train.shape
    assert np.array_equal(np.floor(d.train * 17), d.train_levels)
    rng = np.random.default_rng(0)
    a, b = data.dequantize(d.train_levels, 17, rng), data.dequantize(d.train_levels, 17, rng)
    assert not np.array_equal(a, b), "each call draws new noise"
    for draw in (a, b):
        assert np.array_equal(np.floor(draw * 17), d.train_levels)
    assert data.load("parabola").train_levels is None


def test_a_data_set_is_added_by_registering_its_loader(monkeypatch):
    ring = data.Dataset("ring", *(np.ones((4, 2), np.float32) for _ in range(3)))
    monkeypatch.setitem(data.LOADERS, "ring", lambda: ring)
    assert data.load("ring") is ring
    assert set(data.DATASETS) <= set(data.LOADERS)
