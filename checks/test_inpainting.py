"""Stage 4 - inpainting (lessons/inpainting.py).

Spec: inpaint(model, prior, x, known, steps, step_size, noise, bounds, seed) runs projected
gradient ascent on log p(x) over the unobserved entries (known False) only, starting from x,
with the step alpha_i = step_size * 100 / (100 + i), the noise term alpha_i * noise * eps
(eps ~ N(0, I), fresh at every step) and clipping to ``bounds`` after every step. Observed
entries come back bit for bit.

Two kinds of model: the reference NICE trained (shipped fixtures) on the parabola and on
digits, for what inpainting achieves; and a NICE built here whose couplings are zero, so that
f(x) = x * exp(log_scale) and, with a Gaussian prior, grad log p(x) = -S^2 x exactly: every
iterate of the ascent is known, and so is the distribution of the noisy result.
"""

from __future__ import annotations

import functools
import importlib
import math
import types

import numpy as np
import pytest
import tensorflow as tf

from nicelab.checking import attempt, expect, expect_answer, fail
from nicelab.grader import fixtures
from nicelab.grader.recipes import inpainting as recipes
from nicelab.grader.remote import local_of, twin
from nicelab.tasks.inpaint import curvature

pytestmark = pytest.mark.inpainting

PAGE = "docs/lessons/4-inpainting.md"
#: The likely mistakes when inpaint raises (a None gradient is the classic one).
INPAINT_CRASH = ("a gradient of None, when NumPy (np.*, .numpy()) cut the tape between z and log p: keep "
                 "the log-likelihood in TensorFlow ops on the watched z. Otherwise, see the docstring for "
                 "every argument: inpaint returns an array shaped like x.")
#: The digits check: top half of 100 test digits hidden, filled from the mean training image, with
#: step_size = min(0.03, 3 / lambda), lambda the median largest curvature of -log p over the hidden
#: pixels at the start (a sharper reference model needs a smaller step: see the lesson page).
DIGITS = {"n": 100, "steps": 100, "step_size": 0.03}
#: The parabola check: x1 hidden for 500 test points, started at its training mean, with
#: step_size = min(0.1, 3 / lambda) (0.1 unless a sharper fixture needs less).
PARABOLA = {"n": 500, "steps": 200, "step_size": 0.1}
#: The inpainted pixels must have at most this fraction of the mean fill's squared error.
MSE_BAR = 0.85
#: On the parabola, the median distance |x1 - x2^2 / 4| of the filled x1 must be below this
#: (the data's own median is 0.67; the mode of p(x1 | x2) is on the curve).
CURVE_BAR = 0.3
#: The linear model's curvatures S_d^2 (grad log p = -S^2 x); the last column is observed.
CURVATURES = (16.0, 4.0, 1.0, 1.0)


def reference(stage: str):
    return importlib.import_module(f"solutions.{stage}")


def trained_reference(data_name: str):
    """``(model, prior, data)``: the trained reference fixture; the model and the prior are built
    on both sides when graded remotely (the check computes its values on its own copy)."""
    model, prior = twin(recipes.trained_flow, data_name)
    return model, prior, fixtures.trained_reference(data_name)[2]


def log_lik(model, prior, x) -> np.ndarray:
    """The reference log-likelihood, on the check's own copy of the model."""
    return reference("likelihood").log_likelihood(local_of(model), local_of(prior), x).numpy()


def sharpness(model, prior, x, known) -> dict:
    """The median largest curvature of -log p over the hidden entries (the check's own copy)."""
    flow = types.SimpleNamespace(model=local_of(model), prior=local_of(prior))
    return curvature({"likelihood": reference("likelihood")}, flow, x, known)


#: ``(data_name, cap)`` -> the step size of that fixture's run: it depends on the reference model and
#: the data alone, so a process (``nicelab watch``) computes it once.
_STEP_SIZES: dict[tuple[str, float], float] = {}


def capped_step_size(data_name: str, cap: float, model, prior, start, known) -> float:
    """``min(cap, 3 / lambda)``, lambda the median largest curvature of -log p at the first 60
    starting points (a sharper reference model gets a step it can take)."""
    key = (data_name, cap)
    if key not in _STEP_SIZES:
        _STEP_SIZES[key] = min(cap, 3.0 / sharpness(model, prior, start[:60], known[:60])["median"])
    return _STEP_SIZES[key]


def run_inpaint(inpainting, *args, **kwargs) -> np.ndarray:
    """inpaint(...) as a float NumPy array, or a failed check that says what went wrong."""
    result = attempt(lambda: inpainting.inpaint(*args, **kwargs), doing="inpaint on a trained model",
                     likely=INPAINT_CRASH)
    if isinstance(result, tf.Tensor | tf.Variable):
        result = result.numpy()
    result = np.asarray(result)
    x = args[2] if len(args) > 2 else kwargs["x"]
    expect(result.shape == np.shape(x), f"inpaint to return x's shape {np.shape(x)}", f"shape {result.shape}",
           "return the whole array (observed and filled entries), not only the hidden entries.")
    return result


def mask_mistake(x, known, result) -> str:
    """The likely mistake when observed entries moved."""
    hidden_moved = np.any(result[~known] != x[~known])
    if not hidden_moved:
        return ("inverted mask: the observed entries (known True) moved and the hidden ones did not. "
                "known is True where the value is OBSERVED: keep x there, update the rest.")
    return ("updating observed entries: the gradient is non-zero on every coordinate; apply the step to the "
            "hidden entries only and take the observed ones from x, so that they stay exactly x's.")


def linear_flow(curvatures=CURVATURES):
    """A reference NICE with every coupling weight zero and log_scale = log(S), S^2 = curvatures,
    and a standard Gaussian prior: log p(x) = const - sum_d S_d^2 x_d^2 / 2, so
    grad log p(x) = -S^2 x, coordinate by coordinate."""
    return twin(recipes.linear_flow, tuple(curvatures))


@pytest.fixture(scope="module")
def linear():
    """The linear model of :func:`linear_flow`, built once per run for the checks that use it."""
    return linear_flow()


def schedule(step_size: float, i: int) -> float:
    return step_size * 100.0 / (100.0 + i)


def ascend(x, known, gradient, steps, step_size, bounds=None, *, alphas=None, sign=1.0, every=True,
           at_end=False, clip_observed=False, restore="every", start=None, frozen_gradient=False):
    """The ascent z <- Pi(z + alpha_i * gradient(z)) on the hidden entries, noiselessly, and the
    classic ways of getting it wrong (each keyword one mistake)."""
    z = (x if start is None else np.where(known, x, start)).astype(np.float64)
    g0 = gradient(z)
    for i in range(steps):
        alpha = schedule(step_size, i) if alphas is None else alphas(i)
        stepped = z + sign * alpha * (g0 if frozen_gradient else gradient(z))
        if bounds is not None and every:
            stepped = np.clip(stepped, *bounds)
        if restore == "every":
            z = np.where(known, np.clip(x, *bounds) if clip_observed else x, stepped)
        else:
            z = stepped
    if restore == "end":
        z = np.where(known, x, z)
    if at_end and bounds is not None:
        z = np.where(known, x, np.clip(z, *bounds))
    return z


def diagnose(got, expected, variants, tolerance) -> tuple[float, str | None]:
    """The largest difference from ``expected``, and the mistake whose trajectory ``got`` matches."""
    error = float(np.max(np.abs(got - expected)))
    for likely, trajectory in variants:
        if np.all(np.isfinite(trajectory)) and np.max(np.abs(got - trajectory)) < tolerance \
                and np.max(np.abs(trajectory - expected)) > 10 * tolerance:
            return error, likely
    return error, None


def check_observed_untouched(run):
    start, known, result = run["start"], run["known"], run["result"]
    same = result[known].astype(np.float32) == start[known]
    if not np.all(same):
        fail("the observed entries (known True) returned bit for bit unchanged",
             f"{int(np.sum(~same))} of {int(known.sum())} observed entries changed "
             f"(by up to {np.max(np.abs(result[known] - start[known])):.3g})",
             mask_mistake(start, known, result))


@pytest.fixture(scope="module")
def digits_run(inpainting):
    """Top half of test digits hidden (started from the mean training image), inpainted with
    clipping to [0, 1]."""
    model, prior, data = trained_reference("digits")
    truth = data.test[:DIGITS["n"]]
    known = np.ones_like(truth, dtype=bool)
    known[:, :32] = False
    start = np.where(known, truth, data.train.mean(axis=0)).astype(np.float32)
    step_size = capped_step_size("digits", DIGITS["step_size"], model, prior, start, known)
    result = run_inpaint(inpainting, model, prior, start, known, steps=DIGITS["steps"], step_size=step_size,
                         bounds=(0.0, 1.0))
    return {"model": model, "prior": prior, "truth": truth, "known": known, "start": start, "result": result,
            "step_size": step_size}


@pytest.fixture(scope="module")
def parabola_run(inpainting):
    """x1 hidden and x2 observed for test points of the parabola, x1 started at its mean."""
    model, prior, data = trained_reference("parabola")
    truth = data.test[:PARABOLA["n"]]
    known = np.zeros_like(truth, dtype=bool)
    known[:, 1] = True
    start = truth.copy()
    start[:, 0] = data.train[:, 0].mean()
    step_size = capped_step_size("parabola", PARABOLA["step_size"], model, prior, start, known)
    result = run_inpaint(inpainting, model, prior, start, known, steps=PARABOLA["steps"], step_size=step_size)
    return {"model": model, "prior": prior, "truth": truth, "known": known, "start": start, "result": result}


def test_observed_entries_unchanged_random_mask(inpainting):
    model, prior, data = trained_reference("digits")
    x = data.test[100:120]
    known = np.random.default_rng(3).uniform(size=x.shape) < 0.5
    start = np.where(known, x, 0.5).astype(np.float32)
    result = run_inpaint(inpainting, model, prior, start, known, steps=20, step_size=0.1, bounds=(0.0, 1.0))
    check_observed_untouched({"start": start, "known": known, "result": result})


@pytest.mark.builds_on("test_observed_entries_unchanged_random_mask")
def test_observed_entries_unchanged_digits(digits_run):
    check_observed_untouched(digits_run)


@pytest.mark.builds_on("test_observed_entries_unchanged_random_mask")
def test_observed_entries_unchanged_parabola(parabola_run):
    check_observed_untouched(parabola_run)


@pytest.mark.builds_on("test_observed_entries_unchanged_random_mask")
def test_hidden_entries_are_filled(digits_run):
    start, known, result = digits_run["start"], digits_run["known"], digits_run["result"]
    moved = np.mean(np.abs(result[~known] - start[~known]) > 1e-6)
    expect(moved > 0.5, "most hidden entries to move away from their starting values",
           f"{moved:.0%} of them moved",
           "no-op: inpaint returned its input. Take `steps` ascent steps, each from the current "
           "estimate (not from x again), and return the last estimate.")


def reference_gradient(model, prior, z) -> np.ndarray:
    z = tf.constant(np.asarray(z, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(z)
        total = tf.reduce_sum(reference("likelihood").log_likelihood(local_of(model), local_of(prior), z))
    return tape.gradient(total, z).numpy().astype(np.float64)


#: The schedule check: 8 parabola test points, x1 hidden and started at -1, 10 noiseless steps.
SCHEDULE_CASE = {"n": 8, "start": -1.0, "steps": 10, "step_size": 0.05}


@functools.cache
def schedule_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, known, expected)`` of the schedule check, the iterates computed here on the check's own
    copy of the reference model (once per process: they depend on the reference alone)."""
    model, prior, data = trained_reference("parabola")
    x = data.test[:SCHEDULE_CASE["n"]].copy()
    x[:, 0] = SCHEDULE_CASE["start"]  # start x1 off the curve x1 = x2^2 / 4 >= 0, where the gradient is large
    known = np.zeros_like(x, dtype=bool)
    known[:, 1] = True
    expected = ascend(x, known, lambda z: reference_gradient(model, prior, z), SCHEDULE_CASE["steps"],
                      SCHEDULE_CASE["step_size"])
    for array in (x, known, expected):
        array.flags.writeable = False
    return x, known, expected


@pytest.mark.builds_on("test_observed_entries_unchanged_random_mask")
def test_steps_follow_the_schedule(inpainting):
    """10 noiseless steps on the trained parabola model (x2 observed, x1 hidden, coupled through
    the flow) against the iterates computed here, step by step."""
    model, prior, _ = trained_reference("parabola")
    x, known, expected = schedule_case()
    steps, step_size = SCHEDULE_CASE["steps"], SCHEDULE_CASE["step_size"]

    def gradient(z):
        return reference_gradient(model, prior, z)

    got = run_inpaint(inpainting, model, prior, x.copy(), known.copy(), steps=steps, step_size=step_size)
    tolerance = 1e-4 * max(1.0, float(np.max(np.abs(expected))))
    if np.max(np.abs(got - expected)) < tolerance:
        return
    variants = [
        ("descending instead of ascending: step along +gradient of log p(x), z + alpha_i * gradient.",
         ascend(x, known, gradient, steps, step_size, sign=-1.0)),
        ("a constant step: alpha_i = step_size * 100 / (100 + i) shrinks with i; the step must follow it.",
         ascend(x, known, gradient, steps, step_size, alphas=lambda i: step_size)),
        ("the paper's 10 / (100 + i) whatever step_size is: alpha_i = step_size * 100 / (100 + i), so that "
         "alpha_0 = step_size.",
         ascend(x, known, gradient, steps, step_size, alphas=lambda i: 10 / (100 + i))),
        ("the schedule off by one: the first step is i = 0, with alpha_0 = step_size.",
         ascend(x, known, gradient, steps, step_size, alphas=lambda i: schedule(step_size, i + 1))),
        ("one step too few or too many: take exactly `steps` steps, i = 0, ..., steps - 1.",
         ascend(x, known, gradient, steps - 1, step_size)),
        ("one step too few or too many: take exactly `steps` steps, i = 0, ..., steps - 1.",
         ascend(x, known, gradient, steps + 1, step_size)),
        ("the gradient taken once, at the start: take it at the current estimate at every step.",
         ascend(x, known, gradient, steps, step_size, frozen_gradient=True)),
        ("the gradient of the batch's MEAN log-likelihood, which is 1/batch of each example's own: "
         "differentiate the sum over the batch (examples do not interact).",
         ascend(x, known, gradient, steps, step_size, alphas=lambda i: schedule(step_size, i) / len(x))),
        ("observed entries that drift during the ascent and are put back only at the end: keep them at x's "
         "values at every step, since the gradient of the hidden ones depends on them.",
         ascend(x, known, gradient, steps, step_size, restore="end")),
        ("the hidden entries started from zeros: the ascent starts from the values given in x.",
         ascend(x, known, gradient, steps, step_size, start=np.zeros_like(x))),
    ]
    error, likely = diagnose(got, expected, variants, tolerance)
    fail(f"{steps} noiseless steps with step_size = {step_size} to follow "
         "z <- z + alpha_i * grad log p(z), alpha_i = step_size * 100 / (100 + i), on the hidden x1",
         f"a difference of up to {error:.3g} from those iterates",
         likely or "every step from the current estimate, along the gradient of log p at that estimate "
         "(observed entries in place), with alpha_i = step_size * 100 / (100 + i) for i = 0 .. steps - 1.")


@pytest.mark.builds_on("test_observed_entries_unchanged_random_mask", "test_steps_follow_the_schedule")
def test_bounds_project_every_step(inpainting, linear):
    """A step too large for the density's curvature overshoots (here 16 * alpha_0 = 2.4: each step
    maps z to about -1.4 z); the projection after every step keeps the ascent in the box, which
    projecting only at the end does not. Observed entries lie outside the box and stay as given."""
    model, prior = linear
    x = np.array([[0.4, -0.1, 0.45, 0.9], [0.3, 0.2, -0.15, -0.7], [0.1, 0.4, 0.3, 2.0]], np.float32)
    known = np.zeros_like(x, dtype=bool)
    known[:, 3] = True
    steps, step_size, bounds = 12, 0.15, (-0.2, 0.5)
    curvature = np.asarray(CURVATURES)

    def gradient(z):
        return -curvature * z

    got = run_inpaint(inpainting, model, prior, x, known, steps=steps, step_size=step_size, bounds=bounds)
    if not np.array_equal(got[known], x[known]):
        clipped = np.allclose(got[known], np.clip(x[known], *bounds))
        fail("the observed entries returned as given, even where they lie outside bounds = (-0.2, 0.5)",
             f"{got[:, 3].round(4).tolist()} for the observed {x[:, 3].tolist()}",
             "clipping the observed entries too: project only the hidden entries." if clipped else
             mask_mistake(x, known, got))
    expected = ascend(x, known, gradient, steps, step_size, bounds)
    hidden = got[~known]
    if np.all((hidden >= bounds[0]) & (hidden <= bounds[1])) and np.max(np.abs(got - expected)) < 1e-4:
        return
    variants = [
        ("projecting only at the end: clip to bounds after EVERY step, so that an overshooting step is "
         "pulled back into the box before the next gradient is taken.",
         ascend(x, known, gradient, steps, step_size, bounds, every=False, at_end=True)),
        ("no projection: clip the hidden entries to bounds after every step when bounds is given.",
         ascend(x, known, gradient, steps, step_size, bounds, every=False)),
    ]
    error, likely = diagnose(got, expected, variants, 1e-4)
    fail(f"{steps} steps with step_size = {step_size} and bounds = {bounds} to clip the hidden entries after "
         "every step (here grad log p = -S^2 z is known exactly)",
         f"hidden values from {hidden.min():.3f} to {hidden.max():.3f}, up to {error:.3g} from the projected "
         "iterates", likely or "z <- clip(z + alpha_i * grad log p(z), low, high) on the hidden entries at "
         "every step.")


@pytest.mark.builds_on("test_observed_entries_unchanged_random_mask")
def test_bounds_hold_on_digits(inpainting):
    model, prior, data = trained_reference("digits")
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
           "no projection: clip the hidden entries to bounds after every step when bounds is given.")


def noise_moments(steps: int, step_size: float, noise: float, curvature: np.ndarray):
    """Mean factor and standard deviation of z_N on the linear model: z_N = m * z_0 + sum_i
    alpha_i * noise * eps_i * prod_{j > i} (1 - alpha_j c); returns (m, std) per coordinate."""
    alphas = np.array([schedule(step_size, i) for i in range(steps)])
    factors = 1.0 - alphas[:, None] * curvature[None, :]
    mean = np.prod(factors, axis=0)
    after = np.array([np.prod(factors[i + 1:], axis=0) for i in range(steps)])
    return mean, noise * np.sqrt(np.sum((alphas[:, None] * after) ** 2, axis=0))


@pytest.mark.builds_on("test_observed_entries_unchanged_random_mask", "test_steps_follow_the_schedule")
def test_noise_term_has_the_stated_distribution(inpainting, linear):
    """On the linear model the noisy result is Gaussian with a known mean and spread:
    z_N = prod(1 - alpha_j c) z_0 + sum_i alpha_i * noise * eps_i * prod_{j > i}(1 - alpha_j c)."""
    model, prior = linear
    n, steps, step_size, noise = 3000, 20, 0.02, 0.5
    x = np.tile(np.array([[0.3, -0.2, 0.1, 0.5]], np.float32), (n, 1))
    known = np.zeros_like(x, dtype=bool)
    known[:, 3] = True
    got = run_inpaint(inpainting, model, prior, x, known, steps=steps, step_size=step_size, noise=noise,
                      seed=7)
    curvature = np.asarray(CURVATURES)
    factor, std = noise_moments(steps, step_size, noise, curvature)
    z = (got[:, :3] - factor[:3] * x[:, :3]) / std[:3]  # standard normal, column by column
    spread = z.std(axis=0)
    correlation = float(np.max(np.abs(np.corrcoef(z.T)[np.triu_indices(3, 1)])))
    if np.all(np.abs(spread - 1) < 0.1) and np.all(np.abs(z.mean(axis=0)) < 0.1) and correlation < 0.1:
        return
    ratio = float(np.mean(spread))
    alphas = np.array([schedule(step_size, i) for i in range(steps)])
    if np.all(spread < 0.05):
        likely = ("noise never added, or the same noise for every example: add alpha_i * noise * eps with "
                  "eps ~ N(0, I) drawn for every entry of the batch.")
    elif correlation > 0.5:
        likely = "the same noise for every coordinate of an example: draw eps with the shape (batch, D)."
    elif abs(ratio - math.sqrt(2 / alphas.mean())) < 0.3 * math.sqrt(2 / alphas.mean()):
        likely = ("Langevin's noise sqrt(2 alpha_i) * eps: the paper's term is alpha_i * noise * eps, inside "
                  "the step, z + alpha_i * (gradient + noise * eps).")
    elif abs(ratio - 1 / alphas.mean()) < 0.3 / alphas.mean():
        likely = ("the noise added outside the step, z + alpha_i * gradient + noise * eps: it is scaled by "
                  "alpha_i too, z + alpha_i * (gradient + noise * eps).")
    elif abs(ratio - 1 / noise) < 0.15 / noise:
        likely = "noise that ignores the `noise` argument: eps ~ N(0, I) is multiplied by `noise`."
    elif ratio > 2.5:
        likely = ("the same eps at every step: draw fresh noise at every step (the spread of a sum of "
                  "independent terms grows slower).")
    elif abs(ratio - noise) < 0.15 * noise:
        likely = "noise scaled twice by `noise`: the term is alpha_i * noise * eps with eps ~ N(0, 1)."
    else:
        likely = ("the noise term of the contract: at step i add alpha_i * noise * eps_i, eps_i ~ N(0, I) "
                  "(mean 0, standard deviation 1), to the hidden entries, fresh at every step.")
    fail(f"with noise = {noise}, {steps} steps from fixed starting values: hidden entries spread with the "
         "standard deviation the term alpha_i * noise * eps (eps ~ N(0, I), fresh each step) gives, "
         "independently across coordinates",
         f"{ratio:.3g} times that spread (per coordinate {np.round(spread, 3).tolist()}), mean offset "
         f"{np.round(z.mean(axis=0), 3).tolist()} standard deviations, correlation up to {correlation:.2f}",
         likely)


@pytest.mark.builds_on("test_observed_entries_unchanged_random_mask")
def test_noise_term_is_seeded(inpainting):
    model, prior, data = trained_reference("parabola")
    x = data.test[:16].copy()
    known = np.zeros_like(x, dtype=bool)
    known[:, 1] = True
    runs = [run_inpaint(inpainting, model, prior, x, known, steps=5, noise=noise, seed=seed)
            for noise, seed in ((1.0, 3), (1.0, 3), (1.0, 4), (0.0, 3))]
    expect(np.array_equal(runs[0], runs[1]), "the same seed to give the same result with noise",
           "different results", "draw the noise from a generator seeded with `seed`, created once per call.")
    expect(not np.allclose(runs[0], runs[2]) and not np.allclose(runs[0], runs[3]),
           "noise = 1 to change the result (and another seed to change it again)", "the same result",
           "noise never added: each step adds alpha_i * noise * eps, eps ~ N(0, I).")


@pytest.mark.builds_on("test_observed_entries_unchanged_digits", "test_steps_follow_the_schedule")
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


@pytest.mark.builds_on("test_observed_entries_unchanged_parabola", "test_steps_follow_the_schedule")
def test_log_likelihood_rises_parabola(parabola_run):
    run = parabola_run
    before = log_lik(run["model"], run["prior"], run["start"]).mean()
    after = log_lik(run["model"], run["prior"], run["result"]).mean()
    expect(after > before + 0.5, "the mean log-likelihood to rise on the parabola",
           f"{before:.2f} before and {after:.2f} after",
           "descending instead of ascending: step along +gradient of log p(x)." if after < before else
           "no-op: update the current estimate at every step and return the last one.")


@pytest.mark.builds_on("test_observed_entries_unchanged_parabola", "test_steps_follow_the_schedule")
def test_parabola_fill_lands_on_the_curve(parabola_run):
    truth, result = parabola_run["truth"], parabola_run["result"]
    distance = np.median(np.abs(result[:, 0] - truth[:, 1] ** 2 / 4))
    start = np.median(np.abs(parabola_run["start"][:, 0] - truth[:, 1] ** 2 / 4))
    expect(distance < CURVE_BAR,
           f"the filled x1 given x2 near the curve x1 = x2^2 / 4 (median distance < {CURVE_BAR})",
           f"a median distance of {distance:.2f} (the starting point's: {start:.2f})",
           "the ascent must move the hidden x1 uphill on log p(x1, x2) for many steps; "
           "check the step's sign and that the estimate is updated at every step.")


@pytest.mark.builds_on("test_observed_entries_unchanged_digits", "test_steps_follow_the_schedule",
                       "test_bounds_project_every_step")
def test_digits_fill_beats_the_mean_image(digits_run):
    run = digits_run
    hidden = ~run["known"]
    mse = float(np.mean((run["result"][hidden] - run["truth"][hidden]) ** 2))
    baseline = float(np.mean((run["start"][hidden] - run["truth"][hidden]) ** 2))
    expect(mse < MSE_BAR * baseline,
           f"the filled pixels' squared error below {MSE_BAR} x the mean image's ({baseline:.4f})",
           f"{mse:.4f}",
           f"projected gradient ascent on log p over the hidden pixels, starting from x (here "
           f"{DIGITS['steps']} steps of step_size = {run['step_size']:.3g}), with clipping to bounds after "
           "every step.")


#: "Predict, then check" (the end of the lesson page): the questions' data, and how the check
#: computes each answer from them.
QUESTIONS = {
    "alpha_at_step_100": lambda: schedule(0.1, 100),
    "sum_of_alphas_300_steps": lambda: sum(schedule(0.1, i) for i in range(300)),
    "largest_stable_alpha": lambda: 2.0 / 400.0,
}


@pytest.mark.parametrize("key", sorted(QUESTIONS))
def test_prediction(inpainting, key):
    # The sum is asked to three significant digits; the others are worked out on paper.
    digits = {"sum_of_alphas_300_steps": 3}.get(key)
    expect_answer(inpainting, key, QUESTIONS[key](), PAGE, significant=digits)
