"""The docs' own figures (beyond the ones ``nicelab train`` writes): the home page's picture of
a trained flow, a flow taken apart layer by layer, and the galleries that show the figures of
stages 4 and 5 on their pages.

``nicelab figures`` (``nicelab.cli.commands.figures``) calls these; nothing here trains.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from nicelab.plots.common import limits, save

#: Resolution of every docs figure: small files, sharp enough on screen.
DPI = 100


def hero(data: np.ndarray, log_density: Callable[[np.ndarray], np.ndarray], samples: np.ndarray,
         path: Path, grid: int = 150) -> Path:
    """Three panels: the data, the density a trained NICE assigns, and samples drawn from it."""
    (x0, x1), (y0, y1) = limits(data)
    gx, gy = np.meshgrid(np.linspace(x0, x1, grid), np.linspace(y0, y1, grid))
    points = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    density = np.exp(np.asarray(log_density(points))).reshape(grid, grid)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), sharex=True, sharey=True)
    n = min(3000, len(data), len(samples))
    axes[0].scatter(data[:n, 0], data[:n, 1], s=2, alpha=0.35)
    axes[0].set_title("data")
    axes[1].imshow(density, origin="lower", extent=(x0, x1, y0, y1), aspect="auto", cmap="magma")
    axes[1].set_title("density learned by NICE, p(x)")
    axes[2].scatter(samples[:n, 0], samples[:n, 1], s=2, alpha=0.35, color="tab:orange")
    axes[2].set_title("new samples, x = f⁻¹(h)")
    axes[0].set_xlim(x0, x1)
    axes[0].set_ylim(y0, y1)
    for ax in axes:
        ax.set_xlabel("x1")
    axes[0].set_ylabel("x2")
    return save(fig, path, dpi=DPI)


def layer_by_layer(stages: Sequence[tuple[str, np.ndarray]], path: Path) -> Path:
    """One scatter per stage of a flow (``(title, points)`` pairs, each ``(n, 2)``), coloured by
    the first stage's x2 so the eye can follow each point from data to latent."""
    colour = stages[0][1][:, 1]
    fig, axes = plt.subplots(1, len(stages), figsize=(2.6 * len(stages), 2.9))
    for ax, (title, points) in zip(np.atleast_1d(axes), stages, strict=True):
        ax.scatter(points[:, 0], points[:, 1], s=1.5, c=colour, cmap="viridis", alpha=0.6)
        (x0, x1), (y0, y1) = limits(points)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    return save(fig, path, dpi=DPI)


def flow_stages(model, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``x`` after each coupling of ``model`` in turn, then after the scaling layer (= h)."""
    import tensorflow as tf  # lazy: TensorFlow's start-up cost

    stages = [("data x", np.asarray(x))]
    h = tf.constant(x)
    for i, coupling in enumerate(model.couplings):
        h = coupling.forward(h)
        changed = "x1" if 0 in list(coupling.change) else "x2"
        stages.append((f"after coupling {i + 1}\n(changes {changed})", h.numpy()))
    h = h * tf.exp(model.log_scale)
    stages.append(("after scaling: h = f(x)", h.numpy()))
    return stages


#: Captions of the figures ``nicelab inpaint`` and ``nicelab outliers`` write, by file name;
#: any other figure is captioned by its file name.
CAPTIONS = {
    "inpainting.png": "Inpainted test digits, one block per mask kind: originals, masked (hidden "
                      "pixels in red), inpainted",
    "inpainting_mse.png": "Squared error of the hidden pixels per mask kind: inpainted against "
                          "the mean training image",
    "outliers_histograms.png": "Log-likelihoods of clean and corrupted test digits, one level per "
                               "kind, with the threshold",
    "outliers_levels.png": "Precision and recall of the detector against the corruption level, "
                           "per kind",
    "outliers_roc.png": "ROC and precision-recall curves, one level per kind",
    "outliers_typicality.png": "The failure case: corrupted digits more likely than clean ones, "
                               "and the two-sided typicality test on batches",
}


def gallery(images: Sequence[Path], page_dir: Path, empty: str) -> str:
    """Markdown showing ``images`` (paths relative to the docs folder are computed from
    ``page_dir``), one figure each, captioned from :data:`CAPTIONS` or by its file name;
    ``empty`` when there are none."""
    if not images:
        return empty.rstrip() + "\n"
    blocks = []
    for image in sorted(images):
        title = CAPTIONS.get(image.name) or image.stem.replace("_", " ").replace("-", " ")
        rel = Path(*([".."] * len(page_dir.parts))) / image
        blocks.append(f'<figure markdown="span">\n  ![{title}]({rel.as_posix()})\n'
                      f'  <figcaption markdown="span">{title} (<code>{image.name}</code>)'
                      "</figcaption>\n</figure>\n")
    return "\n".join(blocks)
