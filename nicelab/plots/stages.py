"""Figures of stages 4 and 5: inpainting blocks and errors, outlier histograms, curves against
the corruption level, ROC and precision-recall curves, and the typicality remedy."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from nicelab.plots.common import save
from nicelab.plots.training import image_grid

HIDDEN_COLOUR = np.array([0.85, 0.25, 0.2])


def _rgb(mosaic: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(mosaic, 0, 1)[..., None], 3, axis=2)


def inpainting_figure(arrays: dict, masks, n: int, data, path: Path, show: int = 8) -> Path:
    """Images: per mask kind a block of three rows (original | masked, hidden pixels red |
    inpainted) of ``show`` examples. The parabola: per mask kind the filled points over the data."""
    if data.image_shape is None:
        return _parabola_figure(arrays, masks, n, data, path)
    show = min(show, n)
    columns = min(3, len(masks))
    grid_rows = -(-len(masks) // columns)
    fig, axes = plt.subplots(grid_rows, columns, figsize=(0.75 * show * columns + 0.5, 2.6 * grid_rows),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    shape = data.image_shape
    for i, (kind, ax) in enumerate(zip(masks, axes.ravel(), strict=False)):
        rows = slice(i * n, i * n + show)
        truth, known, result = arrays["truth"][rows], arrays["known"][rows], arrays["result"][rows]
        masked = _rgb(image_grid(np.where(known, truth, 0.0), shape, columns=show))
        hidden = image_grid(np.where(known, 0.0, 1.0), shape, columns=show) > 0.5
        inside = image_grid(np.zeros_like(truth), shape, columns=show) < 0.5  # not the separators
        masked[hidden & inside] = HIDDEN_COLOUR
        blocks = [_rgb(image_grid(truth, shape, columns=show)), masked,
                  _rgb(image_grid(result, shape, columns=show))]
        gap = np.ones((max(1, shape[0] // 4), blocks[0].shape[1], 3))
        ax.imshow(np.concatenate([blocks[0], gap, blocks[1], gap, blocks[2]]), interpolation="nearest")
        ax.set_title(f"mask: {kind}", fontsize=10)
    fig.suptitle("rows of each block: original | masked (hidden in red) | inpainted", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def _parabola_figure(arrays: dict, masks, n: int, data, path: Path) -> Path:
    fig, axes = plt.subplots(1, len(masks), figsize=(4.5 * len(masks), 4), squeeze=False)
    curve = np.linspace(-12, 12, 200)
    for i, (kind, ax) in enumerate(zip(masks, axes[0], strict=True)):
        rows = slice(i * n, (i + 1) * n)
        ax.scatter(data.test[:3000, 0], data.test[:3000, 1], s=2, alpha=0.25, color="grey", label="data")
        ax.scatter(arrays["start"][rows][:500, 0], arrays["start"][rows][:500, 1], s=4, alpha=0.5,
                   color="tab:blue", label="start")
        ax.scatter(arrays["result"][rows][:500, 0], arrays["result"][rows][:500, 1], s=4, alpha=0.7,
                   color="tab:orange", label="inpainted")
        if data.name == "parabola":
            ax.plot(curve ** 2 / 4, curve, color="k", lw=0.8, label="x1 = x2^2 / 4")
            ax.set_xlim(-4, 30)
            ax.set_ylim(-13, 13)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        ax.set_title(f"{kind} hidden, the other observed")
        ax.legend(fontsize=7, loc="lower right", markerscale=3)
    return save(fig, path)


def inpainting_errors(rows: list[dict], path: Path) -> Path:
    """Squared error of the hidden entries per mask kind: inpainted against the mean fill."""
    fig, ax = plt.subplots(figsize=(1.0 * len(rows) + 2.5, 3.4))
    at = np.arange(len(rows))
    ax.bar(at - 0.2, [r["mse_mean_fill"] for r in rows], 0.4, label="mean fill", color="tab:grey")
    ax.bar(at + 0.2, [r["mse_inpainted"] for r in rows], 0.4, label="inpainted", color="tab:orange")
    ax.set_xticks(at, [r["mask"] for r in rows], rotation=30)
    ax.set_ylabel("MSE on the hidden entries")
    ax.set_title("Inpainting: squared error of the filled entries")
    ax.legend()
    return save(fig, path)


def outlier_histograms(clean: np.ndarray, corrupted: dict, threshold: float, path: Path) -> Path:
    """One panel per corruption kind: log-likelihoods of clean and corrupted test data.
    ``corrupted`` maps kind -> (level, log-likelihoods)."""
    kinds = list(corrupted)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.4), squeeze=False)
    for kind, ax in zip(kinds, axes[0], strict=True):
        level, values = corrupted[kind]
        both = np.concatenate([clean, values])
        low, high = np.percentile(both, 1), np.percentile(both, 99.5)
        bins = np.linspace(low, high, 40)
        ax.hist(np.clip(clean, low, high), bins, alpha=0.6, label="clean test", density=True)
        ax.hist(np.clip(values, low, high), bins, alpha=0.6, label=f"{kind} {level:g}", density=True)
        ax.axvline(threshold, color="k", ls="--", lw=1, label="threshold")
        ax.set_xlabel("log-likelihood (nats)")
        ax.set_title(f"{kind}, level {level:g}")
        ax.legend(fontsize=7)
    return save(fig, path)


def outlier_levels(rows: list[dict], clean_mean: float, path: Path) -> Path:
    """Per kind: mean log-likelihood against the level (top), recall and AUROC (bottom)."""
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    fig, axes = plt.subplots(2, len(kinds), figsize=(3.6 * len(kinds), 6), squeeze=False)
    for j, kind in enumerate(kinds):
        part = [r for r in rows if r["kind"] == kind]
        levels = [r["level"] for r in part]
        top, bottom = axes[0, j], axes[1, j]
        top.plot(levels, [r["mean_log_lik"] for r in part], "o-")
        top.axhline(clean_mean, color="grey", ls=":", label="clean test")
        top.set_title(kind)
        top.set_ylabel("mean log-likelihood")
        top.legend(fontsize=7)
        bottom.plot(levels, [r["recall"] for r in part], "o-", label="recall")
        bottom.plot(levels, [r["auroc"] for r in part], "s--", label="AUROC")
        bottom.axhline(0.5, color="grey", lw=0.6, ls=":")
        bottom.set_ylim(-0.03, 1.03)
        bottom.set_xlabel(f"{kind} level")
        bottom.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)


def roc_pr_curves(clean: np.ndarray, corrupted: dict, path: Path) -> Path:
    """ROC and precision-recall curves (score: -log-likelihood, outliers positive) per kind."""

    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(9.5, 4))
    for kind, (level, values) in corrupted.items():
        scores = -np.concatenate([clean, values])
        labels = np.r_[np.zeros(len(clean), bool), np.ones(len(values), bool)]
        fpr, tpr, _ = roc_curve(labels, scores)
        precision, recall, _ = precision_recall_curve(labels, scores)
        roc_ax.plot(fpr, tpr, label=f"{kind} {level:g}")
        pr_ax.plot(recall, precision, label=f"{kind} {level:g}")
    roc_ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=0.8)
    roc_ax.set_xlabel("false-alarm rate")
    roc_ax.set_ylabel("recall (true positive rate)")
    roc_ax.set_title("ROC")
    pr_ax.set_xlabel("recall")
    pr_ax.set_ylabel("precision")
    pr_ax.set_title("precision-recall (half the set are outliers)")
    pr_ax.set_ylim(0, 1.02)
    for ax in (roc_ax, pr_ax):
        ax.legend(fontsize=7)
    return save(fig, path)


def typicality_figure(clean: np.ndarray, failure: np.ndarray, label: str, threshold: float,
                      clean_stats: np.ndarray, failure_stats: np.ndarray,
                      epsilon: float, batch_size: int, path: Path) -> Path:
    """Left: the failure, per example (the corrupted data is MORE likely). Right: the remedy,
    the two-sided typicality statistic |mean NLL of a batch - H_hat| on batches."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    bins = np.linspace(min(clean.min(), failure.min()), max(clean.max(), failure.max()), 40)
    left.hist(clean, bins, alpha=0.6, density=True, label="clean test")
    left.hist(failure, bins, alpha=0.6, density=True, label=label)
    left.axvline(threshold, color="k", ls="--", lw=1, label="one-sided threshold")
    left.set_xlabel("log-likelihood (nats)")
    left.set_title("Likelihood ranks the outliers higher")
    left.legend(fontsize=7)
    top = max(clean_stats.max(), failure_stats.max(), epsilon)
    bins = np.linspace(0, top, 40)
    right.hist(clean_stats, bins, alpha=0.6, density=True, label="clean test batches")
    right.hist(failure_stats, bins, alpha=0.6, density=True, label=f"{label} batches")
    right.axvline(epsilon, color="k", ls="--", lw=1, label="epsilon (fit_typicality, validation)")
    right.set_xlabel(f"|mean NLL of {batch_size} - H_hat| (nats)")
    right.set_title(f"Remedy: typicality test on batches of {batch_size}")
    right.legend(fontsize=7)
    return save(fig, path)
