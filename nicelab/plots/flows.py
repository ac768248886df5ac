"""The figure of the page "Beyond NICE": the densities and samples of NICE, RealNVP and Glow
side by side, on 2-D toy sets (``nicelab figures`` calls it; nothing here trains)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from nicelab.plots.common import limits, save

#: Resolution of the figure (as the other docs figures).
DPI = 100
#: The percentile of a panel's grid densities its colour scale tops out at.
CLIP = 99.5


@dataclass
class FlowPanel:
    """One trained flow on one toy set: its name, test NLL (nats), ``log_density`` (``(n, 2)``
    points -> ``(n,)`` log p(x)) and samples drawn from it, ``(m, 2)``."""

    title: str
    test_nll: float
    log_density: Callable[[np.ndarray], np.ndarray]
    samples: np.ndarray


def _grid(box, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    (x0, x1), (y0, y1) = box
    gx, gy = np.meshgrid(np.linspace(x0, x1, size), np.linspace(y0, y1, size))
    return gx, gy, np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)


def side_by_side(rows: Sequence[tuple[str, np.ndarray, Sequence[FlowPanel]]], path,
                 grid: int = 140, points: int = 3000):
    """Two figure rows per toy set ``(name, test data (n, 2), panels)``: the data and each
    flow's density p(x) on a grid (top), the data's histogram and each flow's samples (bottom).
    Every panel of a toy set shares the data's axis limits. Each density's colours run from 0 to
    its own 99.5th percentile on the grid (:data:`CLIP`), so that one sharp spike does not
    black out the rest of the panel."""
    columns = 1 + max(len(panels) for _, _, panels in rows)
    fig, axes = plt.subplots(2 * len(rows), columns, figsize=(2.7 * columns, 2.6 * 2 * len(rows)),
                             squeeze=False)
    for r, (name, data, panels) in enumerate(rows):
        box = limits(data)
        (x0, x1), (y0, y1) = box
        gx, _, grid_points = _grid(box, grid)
        densities = [np.exp(np.asarray(p.log_density(grid_points), np.float64)).reshape(gx.shape)
                     for p in panels]
        top_row, bottom_row = axes[2 * r], axes[2 * r + 1]
        n = min(points, len(data))
        top_row[0].scatter(data[:n, 0], data[:n, 1], s=1.5, alpha=0.35)
        top_row[0].set_title(f"{name}: data", fontsize=9)
        bottom_row[0].hist2d(data[:, 0], data[:, 1], bins=grid // 2, range=[[x0, x1], [y0, y1]],
                             cmap="magma")
        bottom_row[0].set_title(f"{name}: data histogram", fontsize=9)
        for c, (panel, density) in enumerate(zip(panels, densities, strict=True), start=1):
            top = float(np.nanpercentile(density, CLIP)) or float(np.nanmax(density)) or 1.0
            top_row[c].imshow(density, origin="lower", extent=(x0, x1, y0, y1), aspect="auto",
                              cmap="magma", vmin=0.0, vmax=top)
            top_row[c].set_title(f"{panel.title}: p(x), test NLL {panel.test_nll:.3f}", fontsize=9)
            m = min(points, len(panel.samples))
            bottom_row[c].scatter(panel.samples[:m, 0], panel.samples[:m, 1], s=1.5, alpha=0.35,
                                  color="tab:orange")
            bottom_row[c].set_title(f"{panel.title}: samples", fontsize=9)
        for ax in (*top_row, *bottom_row):
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            ax.tick_params(labelsize=7)
        for ax in (*top_row[len(panels) + 1:], *bottom_row[len(panels) + 1:]):
            ax.set_visible(False)
    fig.tight_layout()
    return save(fig, path, dpi=DPI)
