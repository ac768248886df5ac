"""Figures: loss curves, learned density beside the data, samples beside the data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from nicelab.plots.common import limits, save

if TYPE_CHECKING:  # only a type: nicelab.core.training imports TensorFlow, the plots must not
    from nicelab.core.training import History


def loss_curves(history: History, path: Path, floor: float | None = None) -> Path:
    """Train and validation NLL per epoch; ``floor`` (an exact entropy) as a dashed line."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    epochs = np.arange(1, len(history.train_nll) + 1)
    ax.plot(epochs, history.train_nll, label="train NLL")
    ax.plot(epochs, history.valid_nll, label="validation NLL")
    ax.axvline(history.best_epoch + 1, color="grey", lw=0.8, ls=":", label="best epoch")
    if floor is not None:
        ax.axhline(floor, color="k", ls="--", lw=1, label=f"exact entropy {floor:.3f}")
        top = max(history.valid_nll[min(2, len(history.valid_nll) - 1)], floor + 0.5)
        ax.set_ylim(floor - 0.1, top)
    ax.set_xlabel("epoch")
    ax.set_ylabel("NLL (nats per example)")
    ax.legend()
    ax.set_title("Training")
    return save(fig, path)


def density_2d(log_density: Callable[[np.ndarray], np.ndarray], data: np.ndarray,
               path: Path, grid: int = 160) -> Path:
    """The learned density exp(log p(x)) on a grid, beside a scatter of the data."""
    (x0, x1), (y0, y1) = limits(data)
    gx, gy = np.meshgrid(np.linspace(x0, x1, grid), np.linspace(y0, y1, grid))
    points = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    density = np.exp(np.asarray(log_density(points))).reshape(grid, grid)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4), sharex=True, sharey=True)
    left.scatter(data[:4000, 0], data[:4000, 1], s=2, alpha=0.4)
    left.set_title("data")
    right.imshow(density, origin="lower", extent=(x0, x1, y0, y1), aspect="auto", cmap="magma")
    right.set_title("learned density p(x)")
    for ax in (left, right):
        ax.set_xlabel("x1")
    left.set_ylabel("x2")
    return save(fig, path)


def samples_2d(samples: np.ndarray, data: np.ndarray, path: Path) -> Path:
    """Model samples beside data samples, on the same axes."""
    (x0, x1), (y0, y1) = limits(data)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4), sharex=True, sharey=True)
    n = min(len(samples), len(data), 4000)
    left.scatter(data[:n, 0], data[:n, 1], s=2, alpha=0.4)
    left.set_title("data")
    right.scatter(samples[:n, 0], samples[:n, 1], s=2, alpha=0.4, color="tab:orange")
    right.set_title("samples: f^-1(h), h ~ prior")
    left.set_xlim(x0, x1)
    left.set_ylim(y0, y1)
    return save(fig, path)


def image_grid(images: np.ndarray, shape: tuple[int, int], columns: int = 10) -> np.ndarray:
    """``(n, H*W)`` -> one ``(rows*H, columns*W)`` mosaic, values clipped to [0, 1]."""
    n = len(images)
    rows = -(-n // columns)
    h, w = shape
    mosaic = np.ones((rows * (h + 1) - 1, columns * (w + 1) - 1))
    for i, image in enumerate(np.clip(images, 0, 1)):
        r, c = divmod(i, columns)
        mosaic[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = image.reshape(shape)
    return mosaic


def samples_images(samples: np.ndarray, data: np.ndarray, shape: tuple[int, int],
                   path: Path, n: int = 50) -> Path:
    """A grid of data images beside a grid of samples."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 5))
    left.imshow(image_grid(data[:n], shape), cmap="gray", vmin=0, vmax=1)
    left.set_title("data")
    right.imshow(image_grid(samples[:n], shape), cmap="gray", vmin=0, vmax=1)
    right.set_title("samples")
    for ax in (left, right):
        ax.axis("off")
    return save(fig, path)
