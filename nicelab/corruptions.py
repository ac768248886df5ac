"""Image corruptions for stage 5 (provided code, not a student task), the offline image set the
digits are morphed towards, and the typicality test that stage 5 shows as a remedy.

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
    from scipy import ndimage

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
    from sklearn.datasets import load_sample_images

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


def morph_targets(dim: int, data_name: str | None = None) -> tuple[np.ndarray, str]:
    """The images morphing heads towards for data of dimension ``dim``, and their name.

    D = 784: the test images of the other one of MNIST / Fashion-MNIST (``data_name`` is the
    data being corrupted; None: Fashion-MNIST first) when Keras' cached copy is present;
    otherwise, and for every other size (digits), photo patches.
    """
    shape = image_shape_of(dim)
    if dim == 784:
        from nicelab import mnist

        for name in ("fashion_mnist", "mnist"):
            if name == data_name:
                continue
            try:
                return mnist.raw_images(name, "test") / 255.0, name
            except mnist.DataUnavailable:
                continue
    return photo_patches(shape), "photo patches"


def typicality_scores(log_liks: np.ndarray, entropy_estimate: float, batch_size: int,
                      seed: int = 0, n_batches: int | None = None) -> np.ndarray:
    """Two-sided typicality statistic of random batches (Nalisnick et al. 2019b):
    |mean NLL of a batch of ``batch_size`` - H_hat|, for ``n_batches`` batches drawn without
    replacement within a batch. Large = atypical, on either side."""
    rng = np.random.default_rng(seed)
    n = len(log_liks)
    n_batches = n_batches or max(1, n // batch_size)
    picks = np.stack([rng.choice(n, size=batch_size, replace=False) for _ in range(n_batches)])
    return np.abs(-np.asarray(log_liks)[picks].mean(axis=1) - entropy_estimate)

