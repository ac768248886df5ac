"""Stage 5 - outlier detection by likelihood.

Train NICE on clean data; flag a point x as an outlier when its log-likelihood is low:

    flag(x) = [ log p_X(x) < tau ],    tau = quantile_alpha( log p_X(validation data) )

``tau`` comes from in-distribution validation data only, so that a fraction alpha (the
false-alarm rate) of normal data is flagged. With outliers as the positive class:

    precision = TP / (TP + FP),    recall = TP / (TP + FN)

``corrupt`` makes outliers of increasing strength: additive Gaussian noise for any data, and
for images rotation, contrast reduction and morphing towards another image set (provided, in
``nicelab.corruptions``). Use stage 3's ``log_likelihood`` to score data.
"""

from __future__ import annotations

import math

import numpy as np

from nicelab import corruptions
from nicelab.validate import check_choice

from .likelihood import log_likelihood

__all__ = ["KINDS", "choose_threshold", "corrupt", "flag_outliers", "log_likelihood", "precision_recall"]

#: Corruption kinds: "noise" for any data, the others for square images in [0, 1].
KINDS = ("noise", *corruptions.IMAGE_KINDS)


def _array(values, name: str, ndim: int | None = None) -> np.ndarray:
    """``values`` as a NumPy array, TypeError for non-numbers, ValueError for NaN or a wrong rank."""
    if hasattr(values, "numpy"):
        values = values.numpy()
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}.")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {'one number per example' if ndim == 1 else 'shaped (batch, D)'}, "
                         f"got shape {arr.shape}.")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def _flags(values, name: str) -> np.ndarray:
    arr = _array(values, name, ndim=1)
    if arr.dtype != bool:
        if arr.dtype.kind in "iu" and np.isin(arr, (0, 1)).all():
            return arr.astype(bool)
        raise TypeError(f"{name} must be a boolean array (True = outlier), got dtype {arr.dtype}.")
    return arr


def corrupt(x, kind, level, seed=None, targets=None):
    """Corrupted copies of ``x`` ``(batch, D)`` (float32, same shape).

    Kinds and their ``level``:
        "noise":    x + level * eps, eps ~ N(0, I) (any data; std = level, not clipped);
        "rotate":   images rotated by ``level`` degrees;
        "contrast": images with contrast reduced towards black, (1 - level) * x, level in [0, 1];
        "morph":    images moved the fraction ``level`` towards images of another set
                    (``targets``, default ``nicelab.corruptions.morph_targets``), level in [0, 1].
    Level 0 returns an unchanged copy; the same seed gives the same corruption.
    """
    x = _array(x, "x", ndim=2).astype(np.float32)
    check_choice(kind, KINDS, "corruption kind")
    if isinstance(level, bool) or not isinstance(level, int | float | np.number) or not math.isfinite(level) \
            or level < 0:
        raise ValueError(f"level must be a finite number >= 0, got {level!r}.")
    if kind in ("contrast", "morph") and level > 1:
        raise ValueError(f"a {kind} level is a fraction in [0, 1], got {level!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise TypeError(f"seed must be an integer or None, got {seed!r}.")
    if kind == "rotate":
        return corruptions.rotate(x, float(level))
    if kind == "contrast":
        corruptions.image_shape_of(x.shape[1])
        return corruptions.contrast(x, float(level))
    if kind == "morph":
        if targets is None:
            targets, _ = corruptions.morph_targets(x.shape[1])
        return corruptions.morph(x, float(level), np.asarray(targets, np.float32), seed)
    # TODO (outliers): corrupt
    # Additive Gaussian noise of standard deviation `level`: with rng = np.random.default_rng(seed)
    # (the same seed, the same noise), x + level * rng.standard_normal(x.shape), as float32.
    raise NotImplementedError(
        'Stage 5 (outliers): implement corrupt. See docs/lessons/5-outliers.md.'
    )


def choose_threshold(valid_log_liks, false_alarm_rate=0.05):
    """The log-likelihood tau below which a point is flagged (a float), from in-distribution
    validation log-likelihoods only: their ``false_alarm_rate``-quantile, so that about that
    fraction of normal data falls below it."""
    valid = _array(valid_log_liks, "valid_log_liks", ndim=1).astype(np.float64)
    if len(valid) == 0:
        raise ValueError("valid_log_liks is empty: the threshold needs validation log-likelihoods.")
    if isinstance(false_alarm_rate, bool) or not isinstance(false_alarm_rate, int | float | np.number) \
            or not 0 < false_alarm_rate < 1:
        raise ValueError(f"false_alarm_rate must be a fraction strictly between 0 and 1, "
                         f"got {false_alarm_rate!r}.")
    # TODO (outliers): choose_threshold
    # The false_alarm_rate-quantile of the validation log-likelihoods (np.quantile), as a float:
    # low log-likelihoods are the suspicious tail.
    raise NotImplementedError(
        'Stage 5 (outliers): implement choose_threshold. See docs/lessons/5-outliers.md.'
    )


def flag_outliers(log_liks, threshold):
    """Boolean array shaped like ``log_liks`` ``(n,)``: True = flagged (log-likelihood below threshold)."""
    log_liks = _array(log_liks, "log_liks", ndim=1)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.number) \
            or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}.")
    # TODO (outliers): flag_outliers
    # True where the log-likelihood is strictly below the threshold.
    raise NotImplementedError(
        'Stage 5 (outliers): implement flag_outliers. See docs/lessons/5-outliers.md.'
    )


def precision_recall(flags, is_outlier):
    """``(precision, recall)`` as floats, outliers the positive class:
    precision = TP / (TP + FP) (0.0 when nothing is flagged), recall = TP / (TP + FN)
    (0.0 when there are no outliers), as scikit-learn's precision_score / recall_score."""
    flags, is_outlier = _flags(flags, "flags"), _flags(is_outlier, "is_outlier")
    if flags.shape != is_outlier.shape:
        raise ValueError(f"flags and is_outlier must have the same shape, got {flags.shape} and "
                         f"{is_outlier.shape}.")
    # TODO (outliers): precision_recall
    # Count TP (flagged outliers), FP (flagged normal points), FN (missed outliers);
    # precision = TP / (TP + FP), recall = TP / (TP + FN), each 0.0 when its denominator is 0.
    raise NotImplementedError(
        'Stage 5 (outliers): implement precision_recall. See docs/lessons/5-outliers.md.'
    )
