"""Stage 5 - outlier detection (lessons/outliers.py).

Spec: corrupt(x, "noise", level) adds Gaussian noise of std ``level`` (seeded);
choose_threshold(valid_log_liks, false_alarm_rate) is the log-likelihood below which a point
is flagged, from in-distribution validation data only; flag_outliers marks log-likelihoods
below it; precision_recall counts with outliers as the positive class, as scikit-learn does.
The model is the reference NICE trained (once, cached) on digits.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from sklearn.metrics import precision_score, recall_score

from nicelab import fixtures
from nicelab.checking import expect, fail

pytestmark = pytest.mark.outliers

#: Noise levels (std, pixels in [0, 1]) of the recall check, and the bar at the strongest one.
NOISE_LEVELS = (0.02, 0.05, 0.1, 0.2)
RECALL_BAR = 0.95
FALSE_ALARM_RATE = 0.05


def log_lik(model, prior, x) -> np.ndarray:
    return importlib.import_module("solutions.likelihood").log_likelihood(model, prior, x).numpy()


def as_array(value) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


@pytest.fixture(scope="module")
def digits():
    """The reference model's log-likelihoods of the validation and test digits."""
    model, prior, data = fixtures.trained_reference("digits")
    return {"model": model, "prior": prior, "data": data,
            "valid": log_lik(model, prior, data.valid), "test": log_lik(model, prior, data.test)}


def threshold(outliers, valid, rate=FALSE_ALARM_RATE) -> float:
    tau = outliers.choose_threshold(valid, rate)
    try:
        return float(tau)
    except (TypeError, ValueError):
        fail("choose_threshold to return one float", f"{type(tau).__name__} {np.shape(tau)}",
             "return float(np.quantile(valid_log_liks, false_alarm_rate)).")


@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_threshold_hits_the_false_alarm_rate(outliers, digits, rate):
    tau = threshold(outliers, digits["valid"], rate)
    on_valid, on_test = np.mean(digits["valid"] < tau), np.mean(digits["test"] < tau)
    if abs(on_valid - rate) > 0.02 or not 0.4 * rate <= on_test <= 2 * rate + 0.03:
        if abs(on_valid - (1 - rate)) <= 0.02:
            likely = ("threshold from the wrong tail: outliers have LOW log-likelihood, so tau is the "
                      "false_alarm_rate-quantile (np.quantile(valid, rate)), not the (1 - rate)-quantile.")
        else:
            likely = "tau = np.quantile(valid_log_liks, false_alarm_rate), from the validation data only."
        fail(f"a threshold below which {rate:.0%} of the validation digits fall (and about as many held-out "
             "test digits)", f"{on_valid:.1%} of validation and {on_test:.1%} of test digits below it",
             likely)


def test_threshold_uses_only_the_given_values(outliers):
    valid = np.linspace(-10.0, 10.0, 201)
    tau = threshold(outliers, valid, 0.1)
    expect(abs(tau - np.quantile(valid, 0.1)) <= 0.1 + 1e-9,
           f"the 10 % quantile of -10, -9.9, ..., 10 (about {np.quantile(valid, 0.1):.1f})", f"{tau:.3f}",
           "threshold from the wrong tail: the low tail is the suspicious one." if tau > 0 else
           "tau = np.quantile(valid_log_liks, false_alarm_rate).")


def test_flags_mark_low_log_likelihood(outliers, digits):
    tau = float(np.quantile(digits["valid"], FALSE_ALARM_RATE))
    flags = as_array(outliers.flag_outliers(digits["test"], tau))
    expect(flags.shape == digits["test"].shape and flags.dtype == bool,
           f"a boolean array shaped {digits['test'].shape}", f"{flags.dtype} {flags.shape}",
           "return log_liks < threshold (one boolean per example).")
    expected = digits["test"] < tau
    if not np.array_equal(flags, expected):
        likely = ("flags flipped: True must mean 'outlier', i.e. log-likelihood BELOW the threshold."
                  if np.array_equal(flags, ~expected) or np.mean(flags == expected) < 0.5 else
                  "flag exactly the points with log_liks < threshold.")
        fail("True exactly where log-likelihood < threshold",
             f"{int(np.sum(flags != expected))} of {len(flags)} flags differ ({flags.mean():.0%} flagged, "
             f"{expected.mean():.0%} expected)", likely)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_recall_agree_with_sklearn(outliers, seed):
    rng = np.random.default_rng(seed)
    is_outlier = rng.uniform(size=200) < 0.3
    flags = np.where(rng.uniform(size=200) < 0.8, is_outlier, ~is_outlier) & (rng.uniform(size=200) < 0.9)
    flags |= rng.uniform(size=200) < 0.2  # unequal precision and recall, so a swap shows
    got = outliers.precision_recall(flags, is_outlier)
    expected = (precision_score(is_outlier, flags), recall_score(is_outlier, flags))
    try:
        got = tuple(float(v) for v in got)
    except (TypeError, ValueError):
        fail("precision_recall to return (precision, recall) as two floats", f"{got!r}")
    if len(got) != 2 or not np.allclose(got, expected, atol=1e-9):
        if len(got) == 2 and np.allclose(got, expected[::-1], atol=1e-9):
            likely = ("precision and recall swapped: precision = TP / (TP + FP) (of what was flagged), "
                      "recall = TP / (TP + FN) (of the outliers).")
        elif len(got) == 2 and np.allclose(got, (precision_score(~is_outlier, ~flags),
                                                 recall_score(~is_outlier, ~flags)), atol=1e-9):
            likely = "the positive class is the outliers (is_outlier True), not the normal points."
        else:
            likely = "count TP = flags & is_outlier, FP = flags & ~is_outlier, FN = ~flags & is_outlier."
        fail(f"(precision, recall) = ({expected[0]:.4f}, {expected[1]:.4f}) as scikit-learn computes them",
             f"{tuple(round(v, 4) for v in got)}", likely)


def test_precision_when_nothing_is_flagged(outliers):
    is_outlier = np.array([True, False, True, False])
    got = outliers.precision_recall(np.zeros(4, dtype=bool), is_outlier)
    expect(tuple(float(v) for v in got) == (0.0, 0.0), "(0.0, 0.0) when nothing is flagged", f"{got!r}",
           "precision is 0/0 when nothing is flagged: return 0.0 there (scikit-learn's convention), "
           "not NaN or an error.")


def test_noise_has_the_requested_std_and_seed(outliers, digits):
    x = digits["data"].test
    for level in (0.05, 0.3):
        noisy = as_array(outliers.corrupt(x, "noise", level, seed=0))
        expect(noisy.shape == x.shape, f"corrupt to keep the shape {x.shape}", f"{noisy.shape}")
        std, mean = float(np.std(noisy - x)), float(np.mean(noisy - x))
        expect(abs(std - level) < 0.05 * level and abs(mean) < 0.05 * level,
               f"noise of mean 0 and standard deviation {level} (= level)",
               f"mean {mean:.4f} and std {std:.4f}",
               "corruption that ignores its level: the noise's standard deviation is `level` "
               "(x + level * rng.standard_normal(x.shape)).")
    again = as_array(outliers.corrupt(x, "noise", 0.1, seed=0))
    other = as_array(outliers.corrupt(x, "noise", 0.1, seed=1))
    expect(np.array_equal(again, as_array(outliers.corrupt(x, "noise", 0.1, seed=0)))
           and not np.allclose(again, other),
           "the same seed to give the same noise and another seed other noise", "noise that ignores the seed",
           "draw from rng = np.random.default_rng(seed).")


@pytest.fixture(scope="module")
def noise_recalls(outliers, digits):
    """Recall and precision of your detector on test digits mixed 1:1 with their noisy copies."""
    tau = threshold(outliers, digits["valid"])
    clean = digits["data"].test
    results = []
    for i, level in enumerate(NOISE_LEVELS):
        noisy = as_array(outliers.corrupt(clean, "noise", level, seed=10 + i))
        scores = np.concatenate([digits["test"], log_lik(digits["model"], digits["prior"], noisy)])
        is_outlier = np.r_[np.zeros(len(clean), bool), np.ones(len(noisy), bool)]
        flags = as_array(outliers.flag_outliers(scores, tau))
        precision, recall = (float(v) for v in outliers.precision_recall(flags, is_outlier))
        results.append((level, precision, recall))
    return results


def describe(results) -> str:
    return ", ".join(f"{recall:.2f} at {level}" for level, _, recall in results)


def test_recall_rises_with_the_noise_level(noise_recalls):
    recalls = [recall for _, _, recall in noise_recalls]
    rising = all(b >= a - 0.03 for a, b in zip(recalls, recalls[1:], strict=False))
    expect(rising and recalls[-1] - recalls[0] > 0.5,
           f"recall to rise with the noise level {NOISE_LEVELS}", describe(noise_recalls),
           "corruption that ignores its level (noise std must be `level`), or flags that do not mark low "
           "log-likelihoods.")


def test_recall_reaches_the_bar_on_strong_noise(noise_recalls):
    level, precision, recall = noise_recalls[-1]
    if recall < RECALL_BAR:
        fail(f"recall >= {RECALL_BAR} on digits with noise std {level}", f"{recall:.3f} (all levels: "
             f"{describe(noise_recalls)})",
             "flag_outliers must flag log-likelihoods below the threshold, and the threshold is the low "
             "false_alarm_rate-quantile of the validation log-likelihoods.")
    expect(precision > 0.85, f"precision above 0.85 at noise std {level} (half the mixed set are outliers)",
           f"{precision:.3f}", "precision = TP / (TP + FP); check for swapped precision and recall.")
