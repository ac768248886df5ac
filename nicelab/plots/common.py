"""What every figure shares: one way to write a figure, and the axis limits of a 2-D point cloud."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # the Agg backend: nicelab/plots/__init__.py chose it
import numpy as np


def save(fig, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG with no timestamp or software tag (so reruns give the same bytes),
    creating its folder, and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def limits(points: np.ndarray, pad: float = 0.1) -> tuple[tuple[float, float], tuple[float, float]]:
    """``((x0, x1), (y0, y1))``: the 0.5-99.5 percentile box of ``(n, 2)`` points, widened by
    ``pad`` of its size on every side."""
    lo, hi = np.percentile(points, 0.5, axis=0), np.percentile(points, 99.5, axis=0)
    margin = pad * (hi - lo)
    return (lo[0] - margin[0], hi[0] + margin[0]), (lo[1] - margin[1], hi[1] + margin[1])
