"""Stage 5 - outlier detection (lessons/outliers.py).

Spec: corrupt(x, "noise", level) adds Gaussian noise of std ``level`` (seeded);
choose_threshold(valid_log_liks, false_alarm_rate) is the log-likelihood below which a point
is flagged, from in-distribution validation data only; flag_outliers marks log-likelihoods
below it; precision_recall counts with outliers as the positive class, as scikit-learn does.
fit_typicality(valid_log_liks, batch_size, false_alarm_rate, seed) gives (entropy, epsilon)
from two disjoint parts of the validation log-likelihoods; flag_batches flags batches whose
mean NLL is more than epsilon from the entropy, on either side.

The model is the reference NICE trained on digits (a shipped fixture). The typicality checks
also use log-likelihoods drawn here from a known, skewed distribution, so that fresh clean
batches the fit never saw can be drawn at will.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import precision_score, recall_score

from nicelab.checking import attempt, expect, expect_answer, fail, shaped
from nicelab.grader import fixtures

pytestmark = pytest.mark.outliers

#: Noise levels (std, pixels in [0, 1]) of the recall check, and the bar at the strongest one.
NOISE_LEVELS = (0.02, 0.05, 0.1, 0.2)
RECALL_BAR = 0.95
FALSE_ALARM_RATE = 0.05
PAGE = "docs/lessons/5-outliers.md"


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
             "the threshold is one number: the false_alarm_rate-quantile of the validation "
             "log-likelihoods, as a Python float.",
             fix="return float(np.quantile(valid_log_liks, false_alarm_rate)).")


@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_threshold_hits_the_false_alarm_rate(outliers, digits, rate):
    tau = threshold(outliers, digits["valid"], rate)
    on_valid, on_test = np.mean(digits["valid"] < tau), np.mean(digits["test"] < tau)
    if abs(on_valid - rate) > 0.02 or not 0.4 * rate <= on_test <= 2 * rate + 0.03:
        if abs(on_valid - (1 - rate)) <= 0.02:
            likely = ("threshold from the wrong tail: outliers have LOW log-likelihood, so tau is the "
                      "false_alarm_rate-quantile of the validation values, not the (1 - rate)-quantile.")
        else:
            likely = ("tau is the false_alarm_rate-quantile of the validation log-likelihoods (the "
                      "values given, nothing else).")
        fail(f"a threshold below which {rate:.0%} of the validation digits fall (and about as many held-out "
             "test digits)", f"{on_valid:.1%} of validation and {on_test:.1%} of test digits below it",
             likely, fix="tau = np.quantile(valid_log_liks, false_alarm_rate).")


def test_threshold_uses_only_the_given_values(outliers):
    valid = np.linspace(-10.0, 10.0, 201)
    tau = threshold(outliers, valid, 0.1)
    expect(abs(tau - np.quantile(valid, 0.1)) <= 0.1 + 1e-9,
           f"the 10 % quantile of -10, -9.9, ..., 10 (about {np.quantile(valid, 0.1):.1f})", f"{tau:.3f}",
           "threshold from the wrong tail: the low tail is the suspicious one." if tau > 0 else
           "tau is the false_alarm_rate-quantile of the values given.",
           fix="tau = np.quantile(valid_log_liks, false_alarm_rate).")


def test_flags_mark_low_log_likelihood(outliers, digits):
    tau = float(np.quantile(digits["valid"], FALSE_ALARM_RATE))
    flags = as_array(outliers.flag_outliers(digits["test"], tau))
    expect(flags.shape == digits["test"].shape and flags.dtype == bool,
           f"a boolean array shaped {digits['test'].shape}", f"{flags.dtype} {flags.shape}",
           "one boolean per example: True where its log-likelihood is below the threshold.",
           fix="return log_liks < threshold")
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
    got = attempt(outliers.precision_recall, np.zeros(4, dtype=bool), is_outlier,
                  doing="precision_recall with nothing flagged",
                  likely="precision is 0/0 when nothing is flagged: return 0.0 there (scikit-learn's "
                         "convention), not NaN or an error.")
    expect(tuple(float(v) for v in got) == (0.0, 0.0), "(0.0, 0.0) when nothing is flagged", f"{got!r}",
           "precision is 0/0 when nothing is flagged: return 0.0 there (scikit-learn's convention), "
           "not NaN or an error.")


def test_noise_has_the_requested_std_and_seed(outliers, digits):
    x = digits["data"].test
    for level in (0.05, 0.3):
        noisy = as_array(outliers.corrupt(x, "noise", level, seed=0))
        expect(noisy.shape == x.shape, f"corrupt to keep the shape {x.shape}", f"{noisy.shape}")
        repeated = repeated_noise(noisy - x)
        if repeated:
            fail("independent noise for every entry of x", f"the same noise repeated {repeated}",
                 "draw one Gaussian value per entry: noise of x's shape (n, D), not (n, 1) or (D,).")
        std, mean = float(np.std(noisy - x)), float(np.mean(noisy - x))
        if abs(std - level) < 0.05 * level and abs(mean) < 0.05 * level:
            continue
        clipped = noisy.min() >= 0.0 and noisy.max() <= 1.0
        fail(f"noise of mean 0 and standard deviation {level} (= level)",
             f"mean {mean:.4f} and std {std:.4f}",
             "noise clipped to [0, 1]: clipping shrinks the noise and shifts its mean; the contract's noise "
             "is not clipped." if clipped else
             "corruption that ignores its level: the noise's standard deviation is `level` (Gaussian noise "
             "of std 1, times level).")
    again, other, third = (shaped(outliers.corrupt(x, "noise", 0.1, seed=seed), x.shape, "corrupt")
                           for seed in (0, 1, 0))
    expect(np.array_equal(again, third)
           and not np.allclose(again, other),
           "the same seed to give the same noise and another seed other noise", "noise that ignores the seed",
           "draw the noise from a generator seeded with `seed`.")


def repeated_noise(noise: np.ndarray) -> str | None:
    """Where ``noise`` (n, D) repeats itself: "across examples" (every row the same), "across
    the coordinates of an example" (every column the same), or None."""
    if len(noise) > 1 and np.allclose(noise, noise[:1], atol=1e-6):
        return "across examples"
    if noise.shape[1] > 1 and np.allclose(noise, noise[:, :1], atol=1e-6):
        return "across the coordinates of an example"
    return None


@pytest.mark.builds_on("test_noise_has_the_requested_std_and_seed")
def test_noise_is_gaussian_and_independent(outliers):
    """The noise's law, not only its spread: Gaussian (excess kurtosis 0, not a uniform's -1.2),
    independent across examples and across coordinates."""
    x = np.full((2000, 64), 0.5, np.float32)
    noise = (shaped(outliers.corrupt(x, "noise", 0.2, seed=3), x.shape, "corrupt") - x) / 0.2
    kurtosis = float(np.mean(noise ** 4) / np.mean(noise ** 2) ** 2 - 3)
    across_examples = float(np.mean(np.std(noise, axis=0) < 0.5))
    across_coordinates = float(np.mean(np.std(noise, axis=1) < 0.5))
    if across_coordinates > 0.5 or across_examples > 0.5:
        fail("independent noise for every entry of x", "the same noise repeated "
             + ("across the coordinates of an example" if across_coordinates > 0.5 else "across examples"),
             "draw one Gaussian value per entry: noise of x's shape (n, D), not (n, 1) or (D,).")
    expect(abs(kurtosis) < 0.3, "Gaussian noise (excess kurtosis near 0)",
           f"an excess kurtosis of {kurtosis:.2f}",
           "noise of another law (a uniform's excess kurtosis is -1.2): the contract's noise is Gaussian.")


@pytest.fixture(scope="module")
def noise_recalls(outliers, digits):
    """Recall and precision of your detector on test digits mixed 1:1 with their noisy copies."""
    tau = threshold(outliers, digits["valid"])
    clean = digits["data"].test
    results = []
    for i, level in enumerate(NOISE_LEVELS):
        noisy = shaped(outliers.corrupt(clean, "noise", level, seed=10 + i), clean.shape, "corrupt")
        scores = np.concatenate([digits["test"], log_lik(digits["model"], digits["prior"], noisy)])
        is_outlier = np.r_[np.zeros(len(clean), bool), np.ones(len(noisy), bool)]
        flags = shaped(outliers.flag_outliers(scores, tau), scores.shape, "flag_outliers") > 0.5
        precision, recall = (float(v) for v in outliers.precision_recall(flags, is_outlier))
        results.append((level, precision, recall))
    return results


def describe(results) -> str:
    return ", ".join(f"{recall:.2f} at {level}" for level, _, recall in results)


#: What the noise-level checks rest on: the threshold, the flags, the noise and the metrics.
DETECTION_FOUNDATIONS = ("test_threshold_hits_the_false_alarm_rate", "test_flags_mark_low_log_likelihood",
                         "test_precision_recall_agree_with_sklearn",
                         "test_noise_has_the_requested_std_and_seed")


@pytest.mark.builds_on(*DETECTION_FOUNDATIONS)
def test_recall_rises_with_the_noise_level(noise_recalls):
    recalls = [recall for _, _, recall in noise_recalls]
    rising = all(b >= a - 0.03 for a, b in zip(recalls, recalls[1:], strict=False))
    expect(rising and recalls[-1] - recalls[0] > 0.5,
           f"recall to rise with the noise level {NOISE_LEVELS}", describe(noise_recalls),
           "corruption that ignores its level (noise std must be `level`), or flags that do not mark low "
           "log-likelihoods.")


@pytest.mark.builds_on(*DETECTION_FOUNDATIONS)
def test_recall_reaches_the_bar_on_strong_noise(noise_recalls):
    level, precision, recall = noise_recalls[-1]
    if recall < RECALL_BAR:
        fail(f"recall >= {RECALL_BAR} on digits with noise std {level}", f"{recall:.3f} (all levels: "
             f"{describe(noise_recalls)})",
             "flag_outliers must flag log-likelihoods below the threshold, and the threshold is the low "
             "false_alarm_rate-quantile of the validation log-likelihoods.")
    expect(precision > 0.85, f"precision above 0.85 at noise std {level} (half the mixed set are outliers)",
           f"{precision:.3f}", "precision = TP / (TP + FP); check for swapped precision and recall.")


# --- the typicality test ----------------------------------------------------------------------

def synthetic_log_liks(rng, size) -> np.ndarray:
    """Log-likelihoods of a known, skewed law: 50 - Gamma(4, 5) (mean 30, std 10, a long low tail)."""
    return 50.0 - rng.gamma(4.0, 5.0, size)


def statistic(batches, entropy) -> np.ndarray:
    """The typicality statistic |mean NLL of each batch (row) - entropy|."""
    return np.abs(-np.asarray(batches, np.float64).mean(axis=1) - entropy)


def fit(outliers, valid, batch_size, rate=FALSE_ALARM_RATE, seed=0) -> tuple[float, float]:
    """fit_typicality's (entropy, epsilon) as two floats, or a failed check that says what it returned."""
    got = outliers.fit_typicality(valid, batch_size, rate, seed=seed)
    try:
        entropy, epsilon = (float(v) for v in got)
    except (TypeError, ValueError):
        fail("fit_typicality to return (entropy, epsilon), two floats", f"{type(got).__name__} {got!r:.80}",
             "return a pair: the mean NLL of one part of the validation log-likelihoods, and epsilon.")
    expect(math.isfinite(entropy) and math.isfinite(epsilon) and epsilon > 0,
           "a finite entropy and a positive epsilon", f"entropy {entropy!r}, epsilon {epsilon!r}",
           "epsilon is an upper quantile of |mean NLL of a batch - entropy|, which is positive.")
    return entropy, epsilon


def test_fit_typicality_returns_two_floats_and_is_seeded(outliers):
    valid = synthetic_log_liks(np.random.default_rng(0), 400)
    first = fit(outliers, valid, 10, seed=1)
    expect(first == fit(outliers, valid, 10, seed=1), "the same seed to give the same (entropy, epsilon)",
           "different results", "draw the parts and the batches from a generator seeded with `seed`.")


@pytest.mark.builds_on("test_fit_typicality_returns_two_floats_and_is_seeded")
def test_entropy_comes_from_one_part_of_the_validation_data(outliers):
    valid = synthetic_log_liks(np.random.default_rng(1), 1000)
    entropy, _ = fit(outliers, valid, 10)
    mean_nll, spread = float(-valid.mean()), float(valid.std())
    if abs(entropy - valid.mean()) < 0.5 * spread:
        fail(f"the entropy estimate near the mean NLL of the validation points ({mean_nll:.1f})",
             f"{entropy:.2f}", "the mean log-likelihood instead of the mean NEGATIVE log-likelihood: "
             "the entropy is -mean(log p), an NLL.")
    expect(abs(entropy - mean_nll) < 0.5 * spread,
           f"the entropy estimate near the mean NLL of the validation points ({mean_nll:.1f})",
           f"{entropy:.2f}", "the entropy estimate is the mean NLL of a part of the validation data.")
    expect(abs(entropy - mean_nll) > 1e-9 * max(1.0, abs(mean_nll)),
           "the entropy estimated on one part of the validation log-likelihoods, epsilon on the other",
           f"exactly the mean NLL of all {len(valid)} of them",
           "the same points for the entropy and for epsilon: split them into two disjoint parts first. "
           "Otherwise epsilon leaves out the error of the entropy estimate, and false alarms grow with "
           "the batch size.")


@pytest.mark.builds_on("test_fit_typicality_returns_two_floats_and_is_seeded",
                       "test_entropy_comes_from_one_part_of_the_validation_data")
def test_epsilon_shrinks_with_the_batch_size(outliers):
    valid = synthetic_log_liks(np.random.default_rng(2), 4000)
    small, large = fit(outliers, valid, 4)[1], fit(outliers, valid, 64)[1]
    ratio = small / large
    if 3.0 <= ratio <= 5.3:
        return
    if ratio < 0.5:
        likely = "the statistic of a batch from its SUM of NLLs: use the batch's mean NLL."
    elif ratio < 1.5:
        likely = ("epsilon from single points, whatever the batch size: the statistic is the distance of a "
                  "batch's MEAN NLL from the entropy, and its spread shrinks like 1 / sqrt(batch_size).")
    else:
        likely = "batches of the size asked for: draw `batch_size` validation log-likelihoods per batch."
    fail("epsilon for batches of 4 about 4 times epsilon for batches of 64 (the mean of M values "
         "spreads like 1 / sqrt(M))", f"{small:.3f} and {large:.3f}, a ratio of {ratio:.2f}", likely)


@pytest.mark.builds_on("test_fit_typicality_returns_two_floats_and_is_seeded",
                       "test_epsilon_shrinks_with_the_batch_size")
@pytest.mark.parametrize("rate, band", [(0.05, (0.025, 0.10)), (0.2, (0.13, 0.28))])
def test_typicality_false_alarms_on_fresh_clean_batches(outliers, rate, band):
    """20 fits on 400 validation log-likelihoods each; every fit flags fresh clean batches of 25
    drawn from the same law (points it was not fitted on). The average rate must be near `rate`."""
    rates = []
    for seed in range(20):
        valid = synthetic_log_liks(np.random.default_rng(100 + seed), 400)
        entropy, epsilon = fit(outliers, valid, 25, rate, seed=seed)
        fresh = synthetic_log_liks(np.random.default_rng(200 + seed), (2000, 25))
        rates.append(float(np.mean(statistic(fresh, entropy) > epsilon)))
    seen = float(np.mean(rates))
    if band[0] <= seen <= band[1]:
        return
    if seen > 0.5:
        likely = ("epsilon from the wrong tail: it is the (1 - false_alarm_rate)-quantile of the statistic "
                  "on clean batches, so that only false_alarm_rate of them lie beyond it.")
    elif seen > band[1]:
        likely = ("epsilon from a one-sided statistic, or from too few batches: take the quantile of the "
                  "absolute distance |mean NLL - entropy| over many clean batches (drawn with replacement) "
                  "from the part of the validation data the entropy did not come from.")
    else:
        likely = ("an epsilon too large for batches of this size: the batch's mean NLL, batches of "
                  "`batch_size`, and the (1 - false_alarm_rate)-quantile.")
    fail(f"about {rate:.0%} of fresh clean batches of 25 flagged (between {band[0]:.1%} and {band[1]:.1%}, "
         "averaged over 20 fits)", f"{seen:.1%}", likely)


def test_flag_batches_is_two_sided(outliers):
    entropy, epsilon = 30.0, 2.0
    offsets = np.array([-4.0, -2.5, -1.0, 0.0, 1.0, 2.5, 4.0])  # mean NLL - entropy, per batch
    spread = np.linspace(-3.0, 3.0, 10)  # values within a batch differ; their mean is what counts
    batches = -(entropy + offsets[:, None] + spread[None, :])
    expected = np.abs(offsets) > epsilon
    got = np.asarray(as_array(outliers.flag_batches(batches, entropy, epsilon)))
    expect(got.shape == expected.shape and got.dtype == bool,
           f"one boolean per batch (row), shape {expected.shape}", f"{got.dtype} {got.shape}",
           "one flag per batch: the mean over each row (axis 1), compared with epsilon.")
    if np.array_equal(got, expected):
        return
    if np.array_equal(got, offsets > epsilon):
        likely = ("a one-sided test: a batch whose mean NLL is far BELOW the entropy (too likely) is "
                  "atypical too; compare the absolute distance with epsilon.")
    elif np.array_equal(got, offsets < -epsilon):
        likely = ("a one-sided test, and on the wrong side: flag batches whose mean NLL is more than epsilon "
                  "away from the entropy on EITHER side.")
    elif got.all():
        likely = ("log-likelihoods taken for NLLs: the batch's mean NLL is minus its mean log-likelihood, "
                  "and the statistic is |mean NLL - entropy|.")
    elif np.array_equal(got, ~expected):
        likely = "flags flipped: True means atypical, the distance ABOVE epsilon."
    else:
        likely = "flag where |mean NLL of the batch - entropy| > epsilon."
    fail(f"batches whose mean NLL is {offsets.tolist()} away from the entropy flagged where the distance "
         f"exceeds epsilon = {epsilon}", f"{got.tolist()}", likely)


@pytest.mark.builds_on("test_flag_batches_is_two_sided",
                       "test_entropy_comes_from_one_part_of_the_validation_data",
                       "test_typicality_false_alarms_on_fresh_clean_batches")
def test_typicality_detects_shifted_digits(outliers, digits):
    """Fitted on the validation digits, batches of 25: clean test digits (not fitted on) are rarely
    flagged; noisy digits (too unlikely) and the more likely half of the test digits (too likely)
    are flagged almost always."""
    entropy, epsilon = fit(outliers, digits["valid"], 25, seed=0)
    rng = np.random.default_rng(5)
    noisy_x = digits["data"].test + 0.1 * rng.standard_normal(digits["data"].test.shape).astype(np.float32)
    noisy = log_lik(digits["model"], digits["prior"], noisy_x)
    test = digits["test"]
    likely_half = test[test > np.median(test)]
    rates = {}
    for name, values in (("clean", test), ("noisy", noisy), ("too likely", likely_half)):
        batches = values[rng.choice(len(values), (400, 25))]
        rates[name] = float(np.mean(as_array(outliers.flag_batches(batches, entropy, epsilon))))
    seen = ", ".join(f"{rate:.0%} of {name}" for name, rate in rates.items())
    expect(rates["clean"] <= 0.15, "at most 15 % of clean test batches of 25 flagged", seen,
           "epsilon from the validation data's batch statistic at the (1 - false_alarm_rate)-quantile.")
    expect(rates["noisy"] >= 0.9, "at least 90 % of batches of noisy digits (std 0.1) flagged", seen,
           "flag batches whose mean NLL is far from the entropy: noisy digits have a much larger NLL.")
    expect(rates["too likely"] >= 0.9,
           "at least 90 % of the batches drawn from the more likely half of the test digits flagged", seen,
           "a one-sided test: batches that are too LIKELY (mean NLL far below the entropy) are atypical too.")


#: "Predict, then check" (the end of the lesson page): how the check computes each answer.
QUESTIONS = {
    # Per-example NLL standard deviation 20 nats, false-alarm rate 5 %, batches of 25, the mean of a
    # batch taken as Gaussian: epsilon = z_{0.975} * 20 / sqrt(25).
    "epsilon_for_batches_of_25": lambda: float(norm.ppf(1 - 0.05 / 2) * 20.0 / math.sqrt(25)),
    # The batch size that halves epsilon for batches of 10 (epsilon ~ 1 / sqrt(M)).
    "batch_size_halving_epsilon_of_10": lambda: 10 * 2 ** 2,
    # NICE's log|det df/dx| = sum(log_scale) is the same at x and at 0.8 x: its share of
    # log p(0.8 x) - log p(x).
    "log_det_share_of_dimming": lambda: 0.0,
}


@pytest.mark.parametrize("key", sorted(QUESTIONS))
def test_prediction(outliers, key):
    expect_answer(outliers, key, QUESTIONS[key](), PAGE)
