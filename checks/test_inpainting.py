"""Stage 4 - inpainting (lessons/inpainting.py).

Spec: inpaint(model, prior, x, known, steps, step_size, noise, bounds, seed) runs projected
gradient ascent on log p(x) over the unobserved entries (known False) only, with the step
alpha_i = step_size * 100 / (100 + i), the noise term scaled by ``noise``, and clipping to
``bounds`` after every step. Observed entries come back bit for bit. The models are the
reference NICE trained (once, cached) on the parabola and on digits.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import tensorflow as tf

from nicelab import fixtures
from nicelab.checking import expect, fail

pytestmark = pytest.mark.inpainting

#: The digits check: top half of 100 test digits hidden, filled from the mean training image.
DIGITS = {"n": 100, "steps": 100, "step_size": 0.03}
#: The inpainted pixels must have at most this fraction of the mean fill's squared error.
MSE_BAR = 0.85
#: On the parabola, the median distance |x1 - x2^2 / 4| of the filled x1 must be below this
#: (the data's own median is 0.67; the mode of p(x1 | x2) is on the curve).
CURVE_BAR = 0.3


def log_lik(model, prior, x) -> np.ndarray:
    return importlib.import_module("solutions.likelihood").log_likelihood(model, prior, x).numpy()


def run_inpaint(inpainting, *args, **kwargs) -> np.ndarray:
    """inpaint(...) as a float NumPy array, or a failed check that says what went wrong."""
    try:
        result = inpainting.inpaint(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001 - a crash becomes one sentence
        fail("inpaint to run on a trained model", f"{type(err).__name__}: {err}",
             "inpaint must return an array shaped like x (see the docstring for every argument).")
    if isinstance(result, tf.Tensor | tf.Variable):
        result = result.numpy()
    return np.asarray(result)


def mask_mistake(x, known, result) -> str:
    """The likely mistake when observed entries moved."""
    hidden_moved = np.any(result[~known] != x[~known])
    if not hidden_moved:
        return ("inverted mask: the observed entries (known True) moved and the hidden ones did not. "
                "known is True where the value is OBSERVED: keep x there, update the rest.")
    return ("updating observed entries: the gradient is non-zero on every coordinate; apply the step to the "
            "hidden entries only (tf.where(known, x, stepped)), so observed values stay exactly x.")


@pytest.fixture(scope="module")
def digits_run(inpainting):
    """Top half of test digits hidden (started from the mean training image), inpainted with the
    paper's step size and clipping to [0, 1]."""
    model, prior, data = fixtures.trained_reference("digits")
    truth = data.test[:DIGITS["n"]]
    known = np.ones_like(truth, dtype=bool)
    known[:, :32] = False
    start = np.where(known, truth, data.train.mean(axis=0)).astype(np.float32)
    result = run_inpaint(inpainting, model, prior, start, known, steps=DIGITS["steps"],
                         step_size=DIGITS["step_size"],
                         bounds=(0.0, 1.0))
    return {"model": model, "prior": prior, "truth": truth, "known": known, "start": start, "result": result}


@pytest.fixture(scope="module")
def parabola_run(inpainting):
    """x1 hidden and x2 observed for test points of the parabola, x1 started at its mean."""
    model, prior, data = fixtures.trained_reference("parabola")
    truth = data.test[:500]
    known = np.zeros_like(truth, dtype=bool)
    known[:, 1] = True
    start = truth.copy()
    start[:, 0] = data.train[:, 0].mean()
    result = run_inpaint(inpainting, model, prior, start, known, steps=200, step_size=0.1)
    return {"model": model, "prior": prior, "truth": truth, "known": known, "start": start, "result": result}


def check_observed_untouched(run):
    start, known, result = run["start"], run["known"], run["result"]
    expect(result.shape == start.shape, f"inpaint to return x's shape {start.shape}", f"{result.shape}",
           "return the whole array (observed and filled entries), not only the hidden entries.")
    same = result[known].astype(np.float32) == start[known]
    if not np.all(same):
        fail("the observed entries (known True) returned bit for bit unchanged",
             f"{int(np.sum(~same))} of {int(known.sum())} observed entries changed "
             f"(by up to {np.max(np.abs(result[known] - start[known])):.3g})",
             mask_mistake(start, known, result))


def test_observed_entries_unchanged_digits(digits_run):
    check_observed_untouched(digits_run)


def test_observed_entries_unchanged_parabola(parabola_run):
    check_observed_untouched(parabola_run)


def test_observed_entries_unchanged_random_mask(inpainting):
    model, prior, data = fixtures.trained_reference("digits")
    x = data.test[100:120]
    known = np.random.default_rng(3).uniform(size=x.shape) < 0.5
    start = np.where(known, x, 0.5).astype(np.float32)
    result = run_inpaint(inpainting, model, prior, start, known, steps=20, step_size=0.1, bounds=(0.0, 1.0))
    check_observed_untouched({"start": start, "known": known, "result": result})


def test_hidden_entries_are_filled(digits_run):
    start, known, result = digits_run["start"], digits_run["known"], digits_run["result"]
    moved = np.mean(np.abs(result[~known] - start[~known]) > 1e-6)
    expect(moved > 0.5, "most hidden entries to move away from their starting values",
           f"{moved:.0%} of them moved",
           "no-op: inpaint returned its input. Take `steps` ascent steps, each updating the current "
           "estimate z (z = step(z, ...)), and return the final z.")


def test_log_likelihood_rises_digits(digits_run):
    run = digits_run
    before = log_lik(run["model"], run["prior"], run["start"])
    after = log_lik(run["model"], run["prior"], run["result"])
    rose = np.mean(after > before)
    if not (after.mean() > before.mean() + 0.1 and rose > 0.8):
        likely = ("descending instead of ascending: inpainting climbs log p(x), so step along "
                  "+gradient (z + alpha * grad), not -gradient." if after.mean() < before.mean() else
                  "no-op or a too-small step: take every step with alpha_i = step_size * 100 / (100 + i) "
                  "along the gradient of log_likelihood.")
        fail("the mean log-likelihood of the inpainted digits to rise above the start's",
             f"{before.mean():.2f} before and {after.mean():.2f} after ({rose:.0%} of images improved)",
             likely)


def test_log_likelihood_rises_parabola(parabola_run):
    run = parabola_run
    before = log_lik(run["model"], run["prior"], run["start"]).mean()
    after = log_lik(run["model"], run["prior"], run["result"]).mean()
    expect(after > before + 0.5, "the mean log-likelihood to rise on the parabola",
           f"{before:.2f} before and {after:.2f} after",
           "descending instead of ascending: step along +gradient of log p(x)." if after < before else
           "no-op: update z at every step and return the final z.")


def test_parabola_fill_lands_on_the_curve(parabola_run):
    truth, result = parabola_run["truth"], parabola_run["result"]
    distance = np.median(np.abs(result[:, 0] - truth[:, 1] ** 2 / 4))
    start = np.median(np.abs(parabola_run["start"][:, 0] - truth[:, 1] ** 2 / 4))
    expect(distance < CURVE_BAR,
           f"the filled x1 given x2 near the curve x1 = x2^2 / 4 (median distance < {CURVE_BAR})",
           f"a median distance of {distance:.2f} (the starting point's: {start:.2f})",
           "the ascent must move the hidden x1 uphill on log p(x1, x2) for many steps; "
           "check the step's sign and that z is updated at every step.")


def test_digits_fill_beats_the_mean_image(digits_run):
    run = digits_run
    hidden = ~run["known"]
    mse = float(np.mean((run["result"][hidden] - run["truth"][hidden]) ** 2))
    baseline = float(np.mean((run["start"][hidden] - run["truth"][hidden]) ** 2))
    expect(mse < MSE_BAR * baseline,
           f"the filled pixels' squared error below {MSE_BAR} x the mean image's ({baseline:.4f})",
           f"{mse:.4f}",
           "projected gradient ascent on log p over the hidden pixels, starting from x, with clipping "
           "to bounds after every step.")


def test_bounds_project_every_step(inpainting):
    model, prior, data = fixtures.trained_reference("digits")
    x = data.test[:20]
    known = np.ones_like(x, dtype=bool)
    known[:, 32:] = False
    start = np.where(known, x, 0.5).astype(np.float32)
    result = run_inpaint(inpainting, model, prior, start, known, steps=30, step_size=1.0,
                         bounds=(0.2, 0.6))
    hidden = result[~known]
    expect(bool(np.all((hidden >= 0.2) & (hidden <= 0.6))),
           "hidden entries inside bounds = (0.2, 0.6)",
           f"values from {hidden.min():.3f} to {hidden.max():.3f}",
           "project (tf.clip_by_value(z, low, high)) after every step when bounds is given.")


def reference_gradient(model, prior, z) -> np.ndarray:
    z = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(z)
        total = tf.reduce_sum(importlib.import_module("solutions.likelihood").log_likelihood(model, prior, z))
    return tape.gradient(total, z).numpy()


def test_steps_follow_the_schedule(inpainting):
    model, prior, data = fixtures.trained_reference("parabola")
    x = data.test[:8].copy()
    x[:, 0] = 0.0  # start x1 off the curve, where the gradient is large
    known = np.zeros_like(x, dtype=bool)
    known[:, 1] = True
    steps, step_size = 10, 0.05
    expected = x.copy()
    for i in range(steps):
        alpha = step_size * 100 / (100 + i)
        expected[:, 0] = expected[:, 0] + alpha * reference_gradient(model, prior, expected)[:, 0]
    got = run_inpaint(inpainting, model, prior, x, known, steps=steps, step_size=step_size)
    error = np.max(np.abs(got[:, 0] - expected[:, 0])) if got.shape == x.shape else np.inf
    if not error < 1e-4 * max(1.0, float(np.max(np.abs(expected[:, 0])))):
        moved, uphill = got[:, 0] - x[:, 0], expected[:, 0] - x[:, 0]
        descended = got.shape == x.shape and np.all(np.sign(moved) == -np.sign(uphill))
        likely = ("descending instead of ascending: z + alpha * gradient of log p." if descended else
                  "steps z <- z + alpha_i * d log p(z) / dz with alpha_i = step_size * 100 / (100 + i) "
                  "(alpha_0 = step_size), the gradient taken at the current z.")
        fail(f"{steps} steps with step_size = {step_size} to follow z <- z + alpha_i * grad log p(z) exactly",
             f"a difference of up to {error:.3g}", likely)


def test_noise_term_is_seeded(inpainting):
    model, prior, data = fixtures.trained_reference("parabola")
    x = data.test[:16].copy()
    known = np.zeros_like(x, dtype=bool)
    known[:, 1] = True
    runs = [run_inpaint(inpainting, model, prior, x, known, steps=5, noise=noise, seed=seed)
            for noise, seed in ((1.0, 3), (1.0, 3), (1.0, 4), (0.0, 3))]
    expect(np.array_equal(runs[0], runs[1]), "the same seed to give the same result with noise",
           "different results", "draw the noise from np.random.default_rng(seed) (it is created for you).")
    expect(not np.allclose(runs[0], runs[2]) and not np.allclose(runs[0], runs[3]),
           "noise = 1 to change the result (and another seed to change it again)", "the same result",
           "add noise * eps, eps ~ N(0, I), to the gradient at every step.")
