"""Stage 3 - likelihood, training and sampling (lessons/likelihood.py).

Spec: make_prior gives a factorised logistic (default) or Gaussian with event shape [D];
log_likelihood(x) = log p_H(f(x)) + log|det df/dx|, one number per example, equal to an
independent computation and to TFP's TransformedDistribution, finite for |h| = 100;
train_step lowers the NLL of the parabola to near its exact entropy; sample draws f^-1(h).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from nicelab import cache
from nicelab import data as data_mod
from nicelab import impl as impl_mod
from nicelab.checking import expect, fail, numpy, random_batch, randomize
from nicelab.training import compile_step, mean_nll

pytestmark = pytest.mark.likelihood
tfd, tfb = tfp.distributions, tfp.bijectors

DIM = 4
SMALL = {"hidden_units": 16, "hidden_layers": 2}
#: The short training run of these checks, and how close to the entropy it must end.
TRAIN = {"steps": 700, "batch": 256, "lr": 1e-2, "hidden_units": 32, "hidden_layers": 2}
ENTROPY_BAR = 0.15


def reference_nice():
    return importlib.import_module("solutions.model").NICE


def make_flow(dim=DIM, seed=0):
    flow = reference_nice()(dim, 4, **SMALL)
    randomize(flow.trainable_variables, seed, scale=0.3)
    return flow


def logistic_log_density(h: np.ndarray) -> np.ndarray:
    """sum_d log p(h_d) of the standard logistic, computed stably: -|h| - 2 log(1 + e^-|h|)."""
    a = np.abs(h)
    return np.sum(-a - 2.0 * np.log1p(np.exp(-a)), axis=-1)


def gaussian_log_density(h: np.ndarray) -> np.ndarray:
    return np.sum(-0.5 * h**2 - 0.5 * np.log(2 * np.pi), axis=-1)


class NiceBijector(tfb.Bijector):
    """A flow as a TFP bijector. TFP's forward is latent -> data, i.e. NICE's *backward*."""

    def __init__(self, flow):
        super().__init__(forward_min_event_ndims=1, is_constant_jacobian=True, name="nice")
        self.flow = flow

    def _forward(self, h):
        return self.flow.backward(h)

    def _inverse(self, x):
        return self.flow.forward(x)

    def _inverse_log_det_jacobian(self, x):
        return self.flow.log_det_jacobian()


@pytest.mark.parametrize("kind", ["logistic", "gaussian"])
def test_prior_is_factorised_over_dimensions(likelihood, kind):
    prior = likelihood.make_prior(DIM, kind)
    expect(isinstance(prior, tfd.Distribution), "make_prior to return a tfp Distribution",
           type(prior).__name__)
    event, batch = list(prior.event_shape), list(prior.batch_shape)
    if event != [DIM] or batch != []:
        likely = ("prior log-density not summed over dimensions: wrap the per-dimension distribution in "
                  "tfd.Independent(..., reinterpreted_batch_ndims=1)." if batch == [DIM] else
                  "one factorised distribution over all D latent dimensions.")
        fail(f"event_shape [{DIM}] and batch_shape []", f"event_shape {event} and batch_shape {batch}",
             likely)
    h = random_batch(5, DIM)
    expected = (logistic_log_density if kind == "logistic" else gaussian_log_density)(h)
    got = numpy(prior.log_prob(h))
    expect(got.shape == (5,) and np.allclose(got, expected, atol=1e-4),
           f"the standard {kind} log-density summed over dimensions",
           f"values off by up to {np.max(np.abs(got - expected)) if got.shape == (5,) else got.shape}",
           f"a standard {kind} (location 0, scale 1) in every dimension.")


def test_prior_default_and_unknown_kind(likelihood):
    h = random_batch(5, DIM)
    default = numpy(likelihood.make_prior(DIM).log_prob(h))
    expect(np.allclose(default, logistic_log_density(h), atol=1e-4), "the default prior to be logistic",
           "another density", "kind='logistic' is the default (the NICE paper's prior).")
    with pytest.raises(ValueError):
        likelihood.make_prior(DIM, "cauchy")


def test_logistic_prior_is_finite_far_out(likelihood):
    prior = likelihood.make_prior(DIM, "logistic")
    h = np.array([[100.0, -100.0, 0.0, 30.0]], dtype=np.float32)
    got = numpy(prior.log_prob(h))
    expect(bool(np.all(np.isfinite(got))) and np.allclose(got, logistic_log_density(h), atol=1e-3),
           f"log p(h) = {logistic_log_density(h)[0]:.3f} for h = (100, -100, 0, 30)", f"{got}",
           "a naive logistic log-density overflows: exp(100) is inf in float32. Use tfd.Logistic or "
           "-softplus(h) - softplus(-h).")


def test_log_likelihood_is_change_of_variables(likelihood):
    flow, x = make_flow(), random_batch(16, DIM)
    prior = likelihood.make_prior(DIM, "logistic")
    got = numpy(likelihood.log_likelihood(flow, prior, x))
    prior_term = logistic_log_density(numpy(flow.forward(x)))
    log_det = float(np.sum(numpy(flow.log_scale)))
    expected = prior_term + log_det
    if got.shape != expected.shape:
        likely = ("prior log-density not summed over dimensions (one value per example and dimension)."
                  if got.shape == (16, DIM) else "return one log-likelihood per example.")
        fail("shape (16,)", f"shape {got.shape}", likely)
    if not np.allclose(got, expected, atol=1e-3):
        if np.allclose(got, prior_term - log_det, atol=1e-3):
            likely = "wrong sign of the log-determinant: log p(x) = log p_H(f(x)) + log|det df/dx|."
        elif np.allclose(got, prior_term, atol=1e-3):
            likely = "missing scaling term: add model.log_det_jacobian() (the scaling layer's log-det)."
        elif np.allclose(got, logistic_log_density(x) + log_det, atol=1e-3):
            likely = "the prior is evaluated at x instead of h = model.forward(x)."
        elif np.allclose(got, logistic_log_density(numpy(flow.backward(x))) + log_det, atol=1e-3):
            likely = "h must be model.forward(x) (data -> latent), not model.backward(x)."
        else:
            likely = "log p(x) = prior.log_prob(model.forward(x)) + model.log_det_jacobian()."
        fail("log p(x) = log p_H(f(x)) + sum(log_scale)",
             f"values off by up to {np.max(np.abs(got - expected)):.3g}", likely)


def test_log_likelihood_agrees_with_tfp(likelihood):
    flow, x = make_flow(seed=3), random_batch(16, DIM, seed=3)
    for kind in ("logistic", "gaussian"):
        prior = likelihood.make_prior(DIM, kind)
        reference = tfd.TransformedDistribution(prior, NiceBijector(flow)).log_prob(x)
        got = numpy(likelihood.log_likelihood(flow, prior, x))
        gap = np.max(np.abs(got - numpy(reference))) if got.shape == (16,) else got.shape
        expect(got.shape == (16,) and np.allclose(got, numpy(reference), atol=1e-3),
               f"log_likelihood to equal TFP's TransformedDistribution.log_prob ({kind} prior)",
               f"a difference of up to {gap}",
               "log p(x) = prior.log_prob(model.forward(x)) + model.log_det_jacobian().")


def test_log_likelihood_is_finite_far_out(likelihood):
    flow = reference_nice()(DIM, 4, **SMALL)  # a fresh NICE is the identity map: h = x
    prior = likelihood.make_prior(DIM, "logistic")
    x = np.array([[100.0, -100.0, 50.0, -60.0]], dtype=np.float32)
    got = numpy(likelihood.log_likelihood(flow, prior, x))
    expected = logistic_log_density(numpy(flow.forward(x)))
    expect(bool(np.all(np.isfinite(got))) and np.allclose(got, expected, atol=1e-2),
           f"log p(x) = {expected[0]:.2f} for h = (100, -100, 50, -60)", f"{got}",
           "a naive logistic log-density (log(1 + exp(h))) overflows at |h| = 100; use "
           "prior.log_prob or tf.math.softplus.")


def test_train_step_returns_the_mean_nll_and_updates(likelihood):
    flow = make_flow(dim=2, seed=4)
    prior = likelihood.make_prior(2, "gaussian")
    x = data_mod.parabola(256, seed=0)
    before = [numpy(v) for v in flow.trainable_variables]
    expected = -float(np.mean(numpy(likelihood.log_likelihood(flow, prior, x))))
    optimizer = tf.keras.optimizers.Adam(1e-3)
    loss = numpy(likelihood.train_step(flow, prior, optimizer, x))
    expect(loss.shape == () and abs(float(loss) - expected) < 1e-3 * max(1.0, abs(expected)),
           f"train_step to return the batch's mean NLL before the step ({expected:.4f})",
           f"{loss}", "return -mean(log_likelihood), a scalar (the loss you minimise).")
    moved = [not np.allclose(b, numpy(v)) for b, v in zip(before, flow.trainable_variables, strict=True)]
    expect(all(moved), "one step to update every trainable variable",
           f"{moved.count(False)} of {len(moved)} variables unchanged",
           "apply the gradients of the loss with respect to model.trainable_variables.")
    for _ in range(4):
        likelihood.train_step(flow, prior, optimizer, x)
    after = -float(np.mean(numpy(likelihood.log_likelihood(flow, prior, x))))
    expect(after < expected, "five steps on one batch to lower its NLL",
           f"{expected:.4f} before and {after:.4f} after",
           "train_step must minimise the NLL = -mean(log_likelihood); a dropped minus sign is "
           "gradient ascent.")


def _reference_step(likelihood, flow, prior, optimizer, x):
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(likelihood.log_likelihood(flow, prior, x))
    grads = tape.gradient(loss, flow.trainable_variables)
    optimizer.apply_gradients(zip(grads, flow.trainable_variables, strict=True))
    return loss


@pytest.fixture(scope="module")
def parabola_run(likelihood, graded):
    """A short, seeded training run on the parabola with your make_prior and train_step.

    Deterministic, so its result is cached on disk under a key that hashes your lesson files,
    the reference underneath and these settings: change any of them and it trains again.
    """
    data = data_mod.load_parabola()
    flow = reference_nice()(2, 4, TRAIN["hidden_units"], TRAIN["hidden_layers"])
    prior = likelihood.make_prior(2, "gaussian")
    key = cache.key("likelihood-run", TRAIN, cache.source_digest(impl_mod.resolve(graded)),
                    cache.source_digest(impl_mod.PROJECT_ROOT / "solutions"))
    result = cache.cached_arrays("parabola-run", key,
                                 lambda: _train_on_parabola(likelihood, flow, prior, data))
    for i, variable in enumerate(flow.weights):
        variable.assign(result[f"w{i}"])
    return {"flow": flow, "prior": prior, "data": data, "losses": result["losses"],
            "initial_nll": float(result["initial_nll"]), "test_nll": float(result["test_nll"])}


def _train_on_parabola(likelihood, flow, prior, data) -> dict[str, np.ndarray]:
    tf.keras.utils.set_random_seed(1)
    schedule = tf.keras.optimizers.schedules.CosineDecay(TRAIN["lr"], TRAIN["steps"], 0.01)
    optimizer = tf.keras.optimizers.Adam(schedule)
    optimizer.build(flow.trainable_variables)
    step = compile_step(lambda x: likelihood.train_step(flow, prior, optimizer, x), notice=lambda m: None)
    evaluate = tf.function(lambda x: likelihood.log_likelihood(flow, prior, x))
    initial_nll = mean_nll(evaluate, data.test)
    rng = np.random.default_rng(1)
    losses = []
    for i in range(TRAIN["steps"]):
        batch = data.train[rng.integers(0, len(data.train), TRAIN["batch"])]
        losses.append(float(step(tf.constant(batch))))
        if i == 0 and not step.is_compiled():
            # Your train_step runs only eagerly (too slow for 1000 steps here): the run goes on with
            # a compiled step on your log_likelihood. test_train_step_* still checks your train_step.
            step = tf.function(lambda x: _reference_step(likelihood, flow, prior, optimizer, x))
    arrays = {f"w{i}": w.numpy() for i, w in enumerate(flow.weights)}
    return {**arrays, "losses": np.array(losses), "initial_nll": np.array(initial_nll),
            "test_nll": np.array(mean_nll(evaluate, data.test))}


def test_training_lowers_the_nll(parabola_run):
    before, after = parabola_run["initial_nll"], parabola_run["test_nll"]
    if not np.isfinite(after) or after > before - 1.0:
        fail("the test NLL (-mean log_likelihood) to fall during training",
             f"{before:.3f} before and {after:.3f} after {TRAIN['steps']} steps",
             "train_step must minimise the NLL = -mean(log_likelihood): a dropped minus sign is "
             "gradient ascent. (NaN can also come from an unstable log-density.)")
    losses = parabola_run["losses"]
    expect(bool(np.all(np.isfinite(losses))), "a finite loss at every step",
           f"NaN or inf from step {int(np.argmin(np.isfinite(losses)))}",
           "a numerically unstable log-density (use the prior's log_prob).")


def test_training_gets_near_the_entropy(parabola_run):
    gap = parabola_run["test_nll"] - data_mod.PARABOLA_ENTROPY
    expect(gap < ENTROPY_BAR and gap > -0.05,
           f"a test NLL within {ENTROPY_BAR} nats of the parabola's entropy "
           f"{data_mod.PARABOLA_ENTROPY:.3f} after {TRAIN['steps']} steps",
           f"{parabola_run['test_nll']:.3f} (gap {gap:+.3f})",
           "a log-likelihood that is not the exact change of variables (sign or missing log-det), "
           "or a train_step that does not follow the gradient of the mean NLL.")


def test_samples_have_the_right_shape_and_seed(likelihood):
    flow, prior = make_flow(), likelihood.make_prior(DIM, "logistic")

    def draw(seed):
        tf.keras.utils.set_random_seed(0)  # same global state: only the seed argument differs
        return numpy(likelihood.sample(flow, prior, 50, seed=seed))

    first = draw(7)
    expect(first.shape == (50, DIM), f"sample(n=50) to have shape (50, {DIM})",
           f"{first.shape}", "draw n points from the prior and map them to data space.")
    expect(np.array_equal(first, draw(7)) and not np.allclose(first, draw(8)),
           "the same seed to give the same samples and another seed others",
           "samples that ignore the seed", "pass seed to prior.sample(n, seed=seed).")


def test_samples_are_backward_of_prior_samples(likelihood):
    flow, prior = make_flow(seed=5), likelihood.make_prior(DIM, "gaussian")
    h = numpy(flow.forward(likelihood.sample(flow, prior, 4000, seed=0)))
    mean, std = np.abs(h.mean(axis=0)).max(), np.abs(h.std(axis=0) - 1.0).max()
    expect(mean < 0.15 and std < 0.15,
           "forward(samples) to look like the prior (mean 0, std 1 per dimension)",
           f"means off by {mean:.2f} and stds off by {std:.2f}",
           "samples are model.backward(prior samples): latent -> data is backward, not forward.")


def test_samples_match_the_data(parabola_run, likelihood):
    run = parabola_run
    samples = numpy(likelihood.sample(run["flow"], run["prior"], 5000, seed=0))
    data = run["data"].test[:5000]
    residual = np.median(np.abs(samples[:, 0] - samples[:, 1] ** 2 / 4))
    expect(abs(np.std(samples[:, 1]) - 4.0) < 0.6 and residual < 1.2,
           "samples of the trained model to follow the parabola (std of x2 ~ 4, |x1 - x2^2/4| ~ 0.67)",
           f"std of x2 {np.std(samples[:, 1]):.2f}, median |x1 - x2^2/4| {residual:.2f} "
           f"(data: {np.std(data[:, 1]):.2f}, {np.median(np.abs(data[:, 0] - data[:, 1] ** 2 / 4)):.2f})",
           "sample must map prior draws through model.backward.")
