"""Image corruptions for stage 5 (provided code, not a student task) and the image sets the
digits (and MNIST) are morphed towards, dequantized the way the data is.

Every function works on flattened images ``(n, H*W)`` with values in [0, 1] and returns
float32 arrays of the same shape. ``level`` means:

* ``rotate``: the angle in degrees (bilinear, about the image centre, background 0);
* ``contrast``: the fraction of contrast removed towards black, x' = (1 - level) * x, so
  level 0 is the image and level 1 a black image;
* ``morph``: the fraction of the way towards a target image, x' = (1 - level) * x + level * t.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from sklearn.datasets import load_sample_images

from nicelab.core import mnist
from nicelab.core.data import dequantize

IMAGE_KINDS = ("rotate", "contrast", "morph")


def image_shape_of(dim: int) -> tuple[int, int]:
    """The square image shape of a flattened ``dim``, or a ValueError for non-image data."""
    side = math.isqrt(dim)
    if side * side != dim or side < 4:
        raise ValueError(f"image corruptions need square images of side >= 4 (D = 16, 64, 784, ...); "
                         f"this data has D = {dim}. Use kind='noise'.")
    return side, side


def rotate(x: np.ndarray, degrees: float) -> np.ndarray:
    """Every image rotated by ``degrees`` (counter-clockwise), shape kept, values clipped to [0, 1]."""

    shape = image_shape_of(x.shape[1])
    images = x.reshape(-1, *shape)
    turned = ndimage.rotate(images, degrees, axes=(2, 1), reshape=False, order=1, mode="constant", cval=0.0)
    return np.clip(turned, 0.0, 1.0).reshape(x.shape).astype(np.float32)


def contrast(x: np.ndarray, level: float) -> np.ndarray:
    """x' = (1 - level) * x: contrast (and brightness) reduced towards a black image."""
    return ((1.0 - level) * x).astype(np.float32)


def morph(x: np.ndarray, level: float, targets: np.ndarray, seed: int | None = None) -> np.ndarray:
    """x' = (1 - level) * x + level * t, t a random image of ``targets`` (another image set)."""
    if targets.ndim != 2 or targets.shape[1] != x.shape[1]:
        raise ValueError(f"morph targets must be shaped (n, {x.shape[1]}), got {targets.shape}.")
    rng = np.random.default_rng(seed)
    chosen = targets[rng.integers(0, len(targets), len(x))]
    return ((1.0 - level) * x + level * chosen).astype(np.float32)


def photo_patches(shape: tuple[int, int], n: int = 2000, seed: int = 0) -> np.ndarray:
    """``(n, H*W)`` grey image patches in [0, 1] cut from scikit-learn's two bundled sample photos
    (a temple and a flower, works offline), each patch 4x the image side, shrunk to ``shape``.

    A different image set from digits: natural-image texture instead of pen strokes.
    """

    h, w = shape
    rng = np.random.default_rng(seed)
    photos = [photo.mean(axis=2) / 255.0 for photo in load_sample_images().images]
    patches = np.empty((n, h * w), np.float32)
    size = 4
    for i in range(n):
        photo = photos[i % len(photos)]
        top = rng.integers(0, photo.shape[0] - size * h)
        left = rng.integers(0, photo.shape[1] - size * w)
        patch = photo[top:top + size * h, left:left + size * w]
        patches[i] = patch.reshape(h, size, w, size).mean(axis=(1, 3)).ravel()
    return patches


def dequantized(images: np.ndarray, levels: int, seed: int = 0) -> np.ndarray:
    """Images in [0, 1] put on the data's footing: rounded to ``levels`` integer levels
    0 .. levels - 1, then dequantized as the data sets are, (level + u) / levels, u ~ U(0, 1).

    A morph target must live where the model's data does: a target on the exact grid k / 255
    (or a continuous photo) is not what a model of dequantized pixels was trained on, and its
    density says more about that mismatch than about the image."""
    integer = np.clip(np.rint(np.asarray(images, np.float64) * (levels - 1)), 0, levels - 1)
    return dequantize(integer, levels, np.random.default_rng(seed))


def morph_targets(dim: int, data_name: str | None = None,
                  levels: int | None = None) -> tuple[np.ndarray, str]:
    """The images morphing heads towards for data of dimension ``dim``, and their name.

    D = 784: the test images of the other one of MNIST / Fashion-MNIST (``data_name`` is the
    data being corrupted; None: Fashion-MNIST first) when Keras' cached copy is present,
    dequantized as the paper's protocol does, (pixel + u) / 256; otherwise, and for every other
    size (digits), photo patches on ``levels`` levels (default: 256 for D = 784, else the
    digits' 17), dequantized the same way.
    """
    shape = image_shape_of(dim)
    levels = levels or (256 if dim == 784 else 17)
    if dim == 784:
        for name in ("fashion_mnist", "mnist"):
            if name == data_name:
                continue
            try:
                pixels = mnist.raw_images(name, "test")
            except mnist.DataUnavailable:
                continue
            return mnist.dequantize(pixels, np.random.default_rng(0)), name
    return dequantized(photo_patches(shape), levels), "photo patches"
