"""Stage 5 - outlier detection by likelihood.

Train NICE on clean data; flag a point x as an outlier when its log-likelihood is low:

    flag(x) = [ log p_X(x) < tau ],    tau = quantile_alpha( log p_X(validation data) )

``tau`` comes from in-distribution validation data only, so that a fraction alpha (the
false-alarm rate) of normal data is flagged. With outliers as the positive class:

    precision = TP / (TP + FP),    recall = TP / (TP + FN)

``corrupt`` makes outliers of increasing strength: additive Gaussian noise for any data, and
for images rotation, contrast reduction and morphing towards another image set (provided, in
``nicelab.tasks.corruptions``). Use stage 3's ``log_likelihood`` to score data.

The typicality test (Nalisnick et al. 2019, "Detecting out-of-distribution inputs to deep
generative models using typicality") flags a whole batch of M inputs, on either side:

    flag(batch) = [ | -(1/M) sum_m log p_X(x_m) - H_hat | > epsilon ]

H_hat (the entropy estimate, a mean NLL) and epsilon come from two disjoint parts of the
validation log-likelihoods: epsilon is the (1 - false_alarm_rate)-quantile of the statistic
on clean batches of M drawn from the part that did not give H_hat.

Lesson page: docs/lessons/5-outliers.md.
"""

from __future__ import annotations

import math

import numpy as np

from nicelab.tasks import corruptions
from nicelab.validate import check_choice

from .likelihood import log_likelihood

__all__ = ["KINDS", "choose_threshold", "corrupt", "fit_typicality", "flag_batches", "flag_outliers",
           "log_likelihood", "precision_recall"]

#: Corruption kinds: "noise" for any data, the others for square images in [0, 1].
KINDS = ("noise", *corruptions.IMAGE_KINDS)
#: How many clean batches fit_typicality draws (with replacement) to set epsilon.
TYPICALITY_BATCHES = 2000


def _array(values, name: str, ndim: int | None = None) -> np.ndarray:
    """``values`` as a NumPy array, TypeError for non-numbers, ValueError for NaN or a wrong rank."""
    if hasattr(values, "numpy"):
        values = values.numpy()
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}.")
    if ndim is not None and arr.ndim != ndim:
        shape = {1: "one number per example", 2: "shaped (n_batches, batch_size)"
                 if name == "batch_log_liks" else "shaped (batch, D)"}.get(ndim, f"of rank {ndim}")
        raise ValueError(f"{name} must be {shape}, "
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


def _rate(false_alarm_rate) -> float:
    if isinstance(false_alarm_rate, bool) or not isinstance(false_alarm_rate, int | float | np.number) \
            or not 0 < false_alarm_rate < 1:
        raise ValueError(f"false_alarm_rate must be a fraction strictly between 0 and 1, "
                         f"got {false_alarm_rate!r}.")
    return float(false_alarm_rate)


def _number(value, name: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not math.isfinite(value) \
            or (minimum is not None and value < minimum):
        at_least = "" if minimum is None else f" >= {minimum:g}"
        raise ValueError(f"{name} must be a finite number{at_least}, got {value!r}.")
    return float(value)


def _seed(seed) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise TypeError(f"seed must be an integer or None, got {seed!r}.")


def corrupt(x, kind, level, seed=None, targets=None):
    """Corrupted copies of ``x`` ``(batch, D)`` (float32, same shape).

    Kinds and their ``level``:
        "noise":    x + level * eps, eps ~ N(0, I) (any data; std = level, not clipped);
        "rotate":   images rotated by ``level`` degrees;
        "contrast": images with contrast reduced towards black, (1 - level) * x, level in [0, 1];
        "morph":    images moved the fraction ``level`` towards images of another set
                    (``targets``, default ``nicelab.tasks.corruptions.morph_targets``), level in [0, 1].
    Level 0 returns an unchanged copy; the same seed gives the same corruption.
    """
    x = _array(x, "x", ndim=2).astype(np.float32)
    check_choice(kind, KINDS, "corruption kind")
    if isinstance(level, bool) or not isinstance(level, int | float | np.number) or not math.isfinite(level) \
            or level < 0:
        raise ValueError(f"level must be a finite number >= 0, got {level!r}.")
    if kind in ("contrast", "morph") and level > 1:
        raise ValueError(f"a {kind} level is a fraction in [0, 1], got {level!r}.")
    _seed(seed)
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
    # Additive Gaussian noise of standard deviation `level` on every entry, from a generator
    # seeded with `seed` (the same seed, the same noise); float32, not clipped.
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
    _rate(false_alarm_rate)
    # TODO (outliers): choose_threshold
    # The false_alarm_rate-quantile of the validation log-likelihoods (np.quantile), as a float:
    # low log-likelihoods are the suspicious tail.
    raise NotImplementedError(
        'Stage 5 (outliers): implement choose_threshold. See docs/lessons/5-outliers.md.'
    )


def flag_outliers(log_liks, threshold):
    """Boolean array shaped like ``log_liks`` ``(n,)``: True = flagged (log-likelihood below threshold)."""
    log_liks = _array(log_liks, "log_liks", ndim=1)
    _number(threshold, "threshold")
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
    # Count the flagged outliers, the flagged normal points and the missed outliers; each
    # ratio of the docstring is 0.0 when its denominator is 0.
    raise NotImplementedError(
        'Stage 5 (outliers): implement precision_recall. See docs/lessons/5-outliers.md.'
    )


def fit_typicality(valid_log_liks, batch_size, false_alarm_rate=0.05, seed=None):
    """``(entropy, epsilon)``, two floats, for the two-sided typicality test on batches of
    ``batch_size``, from in-distribution validation log-likelihoods ``(n,)`` only:

    * split them at random (``seed``) into two disjoint parts A and B;
    * entropy H_hat = the mean NLL of part A, -(1/|A|) sum_{a in A} log p_X(x_a);
    * epsilon = the (1 - false_alarm_rate)-quantile of | mean NLL of a batch - H_hat | over
      ``TYPICALITY_BATCHES`` batches of ``batch_size`` drawn from part B (with replacement),
      so that clean batches are flagged at about ``false_alarm_rate``.

    Epsilon shrinks like 1 / sqrt(batch_size). Using the same points for both would leave out
    the error of H_hat, and false alarms would grow with the batch size.
    """
    valid = _array(valid_log_liks, "valid_log_liks", ndim=1).astype(np.float64)
    if len(valid) < 4:
        raise ValueError(f"fit_typicality needs at least 4 validation log-likelihoods (two disjoint parts), "
                         f"got {len(valid)}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    _rate(false_alarm_rate)
    _seed(seed)
    # TODO (outliers): fit_typicality
    # Two disjoint random parts; the entropy estimate from one, the batch statistic's spread on
    # clean batches drawn from the other, its upper quantile as epsilon.
    raise NotImplementedError(
        'Stage 5 (outliers): implement fit_typicality. See docs/lessons/5-outliers.md.'
    )


def flag_batches(batch_log_liks, entropy, epsilon):
    """Boolean ``(n_batches,)`` for log-likelihoods shaped ``(n_batches, batch_size)``: True where
    the batch's mean NLL is more than ``epsilon`` away from ``entropy``, on either side:

        | -(1/M) sum_m log p_X(x_m) - entropy | > epsilon

    (too unlikely AND too likely batches are flagged: Nalisnick et al. 2019)."""
    batches = _array(batch_log_liks, "batch_log_liks", ndim=2)
    _number(entropy, "entropy")
    _number(epsilon, "epsilon", minimum=0.0)
    # TODO (outliers): flag_batches
    # The statistic of each batch (one row), compared with epsilon on both sides.
    raise NotImplementedError(
        'Stage 5 (outliers): implement flag_batches. See docs/lessons/5-outliers.md.'
    )


ANSWERS = {
    "epsilon_for_batches_of_25": None,
    "batch_size_halving_epsilon_of_10": None,
    "log_det_share_of_dimming": None,
}
