"""Stage 3 - likelihood, training and sampling (lessons/likelihood.py).

Spec: logistic_log_density(h) is the standard logistic log-density summed per example, written
by hand, exact and finite (values and gradients) in float32 for |h| up to 1e4; make_prior gives
a factorised logistic (default) or Gaussian with event shape [D]; log_likelihood(x) =
log p_H(f(x)) + log|det df/dx| with the prior it is given, one number per example, equal to an
independent computation and to TFP's TransformedDistribution of a bijector chain built from the
model; train_step lowers the NLL of the parabola to near its exact entropy; sample draws f^-1(h)
with h from the prior it is given, whatever its kind. The page's predictions are graded last.

The log-likelihood and sampling checks build their priors themselves (a standard logistic, and
a shifted, scaled Laplace the lesson never mentions), so a mistake in make_prior never shows up
as a failure of log_likelihood or sample.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from nicelab.checking import (
    attempt,
    changed_columns,
    expect,
    expect_answer,
    fail,
    numpy,
    random_batch,
    shaped,
)
from nicelab.core import cache
from nicelab.core import data as data_mod
from nicelab.core import impl as impl_mod
from nicelab.core.source_key import used_source_key
from nicelab.grader import evidence
from nicelab.grader.recipes import likelihood as recipes
from nicelab.grader.remote import beside, build, local_of, remote_exception, remote_of, twin

pytestmark = pytest.mark.likelihood
tfd, tfb = tfp.distributions, tfp.bijectors

DIM = 4
SMALL = {"hidden_units": 16, "hidden_layers": 2}
#: The short training run of these checks, and how close to the entropy it must end.
TRAIN = {"steps": 150, "batch": 256, "lr": 3e-2, "hidden_units": 32, "hidden_layers": 2}
ENTROPY_BAR = 0.15
#: The functions of likelihood.py the run calls (with what they call, they key its cache).
RUN_USES = ("train_step", "log_likelihood", "make_prior", "logistic_log_density")
#: How much the test NLL must fall in that run (an untrained NICE starts near 34 nats, 30 above
#: the entropy; a correct run falls by all of that).
FALL_BAR = 1.0
PAGE = "docs/lessons/3-likelihood.md"
#: The likely mistake when train_step or the training run raises inside TensorFlow.
LEFT_TENSORFLOW = ("the loss left TensorFlow (a NumPy call, .numpy() or float() on a tensor inside "
                   "train_step or log_likelihood): keep every step of the loss in TensorFlow ops so "
                   "the tape can differentiate it.")
#: Where the logistic log-density is compared with TFP's: up to |h| = 1e4, both signs.
FAR = (1e-3, 0.5, 3.0, 20.0, 60.0, 88.0, 89.0, 90.0, 100.0, 500.0, 1e3, 1e4)


def make_flow(dim=DIM, seed=0, couplings=4, hidden_layers=SMALL["hidden_layers"]):
    """A reference NICE with random weights (the check's own copy, and one for the graded code)."""
    return twin(recipes.nice, dim, couplings, SMALL["hidden_units"], hidden_layers, seed)


@pytest.fixture(scope="module")
def flow():
    """The seed-0 reference NICE of :func:`make_flow`, built once per run for the checks that only
    evaluate it (log_likelihood and sample, which leave its weights as they are)."""
    return make_flow()


def logistic_log_density(h: np.ndarray) -> np.ndarray:
    """sum_d log p(h_d) of the standard logistic, in float64, stably: -|h| - 2 log(1 + e^-|h|)."""
    a = np.abs(np.asarray(h, dtype=np.float64))
    return np.sum(-a - 2.0 * np.log1p(np.exp(-a)), axis=-1)


def gaussian_log_density(h: np.ndarray) -> np.ndarray:
    return np.sum(-0.5 * np.asarray(h, dtype=np.float64) ** 2 - 0.5 * np.log(2 * np.pi), axis=-1)


def standard_logistic(dim=DIM):
    return twin(recipes.standard_logistic, dim)


def unseen_prior(dim=DIM):
    """A prior of a kind the lesson never builds (a shifted, scaled Laplace), with its mean and
    standard deviation per dimension: log_likelihood and sample must use whatever they are given."""
    return twin(recipes.unseen_prior, dim)


def nice_as_tfp_chain(flow) -> tfb.Bijector:
    """``flow`` as a chain of TFP bijectors: shift-only RealNVP couplings between permutations,
    then a ``tfb.Scale``. TFP's forward is latent -> data, i.e. NICE's *backward*, so the chain
    divides by the scale first and undoes the couplings last to first (tfb.Chain applies its
    list from the end).

    Works for any split: each coupling's kept and changed columns are found by running it, and its
    network m(x_keep) is read off as ``forward`` of (x_keep, zeros) in the changed columns.
    """
    dim = int(flow.log_scale.shape[0])
    probe = random_batch(8, dim, seed=11)
    bijectors = []
    for coupling in flow.couplings:
        change = np.flatnonzero(changed_columns(probe, coupling.forward(probe)))
        keep = np.setdiff1d(np.arange(dim), change)
        order = np.concatenate([keep, change])
        back = np.argsort(order)

        def shift_fn(x_keep, units, coupling=coupling, change=change, back=back):
            zeros = tf.zeros(tf.concat([tf.shape(x_keep)[:-1], [units]], axis=0), x_keep.dtype)
            full = tf.gather(tf.concat([x_keep, zeros], axis=-1), back, axis=-1)
            return -tf.gather(coupling.forward(full), change, axis=-1), None  # x_change = h_change - m

        coupling_bijector = tfb.RealNVP(len(keep), shift_and_log_scale_fn=shift_fn)
        bijectors.append(tfb.Chain([tfb.Permute(back), coupling_bijector, tfb.Permute(order)]))
    return tfb.Chain([*bijectors, tfb.Scale(log_scale=-flow.log_scale)])


# ---------------------------------------------------------------------------------------------
# logistic_log_density, written by hand


def far_batch() -> np.ndarray:
    """Rows of 4 values from 0 out to |h| = 1e4, both signs, as float32 (batch, 4)."""
    values = np.array([0.0, *FAR, *(-v for v in FAR)], dtype=np.float64)
    rng = np.random.default_rng(0)
    rows = [np.array([v, -0.5 * v, 0.25, rng.normal()]) for v in values]
    rows += [rng.normal(0.0, 5.0, 4) for _ in range(8)]
    return np.array(rows, dtype=np.float32)


def tfp_logistic_log_density(h: np.ndarray) -> np.ndarray:
    """TFP's standard logistic log-density in float64, summed over dimensions."""
    return numpy(tf.reduce_sum(tfd.Logistic(np.float64(0.0), np.float64(1.0)).log_prob(
        np.asarray(h, dtype=np.float64)), axis=-1))


def test_logistic_log_density_matches_tfp(likelihood):
    h = far_batch()
    expected = tfp_logistic_log_density(h)
    got = numpy(likelihood.logistic_log_density(h))
    if got.shape != expected.shape:
        likely = ("not summed over dimensions: return one number per example, the sum of the "
                  "per-dimension log-densities." if got.shape == h.shape else "return shape (batch,).")
        fail(f"shape {expected.shape} for h of shape {h.shape}", f"shape {got.shape}", likely)
    small = np.max(np.abs(h), axis=1) < 50
    if not np.allclose(got[small], expected[small], rtol=1e-5, atol=1e-4):
        per_dim = h[small]
        if np.allclose(got[small] * h.shape[1], expected[small], rtol=1e-5, atol=1e-3):
            likely = "averaged over dimensions instead of summed."
        elif np.allclose(got[small], np.sum(-np.abs(per_dim) - np.log1p(np.exp(-np.abs(per_dim))), axis=1),
                         atol=1e-3):
            likely = "one log(1 + e^-|h|) term too few: the density has two of them (or a factor 2)."
        else:
            likely = ("not the standard logistic (location 0, scale 1): log p(h) = -log(1 + e^h) - "
                      "log(1 + e^-h) per dimension.")
        fail("the standard logistic log-density summed over dimensions (as TFP's Logistic(0, 1) gives) "
             "for |h| < 50", f"values off by up to {np.max(np.abs(got[small] - expected[small])):.3g}",
             likely)
    bad = ~np.isfinite(got)
    if bad.any():
        first = float(np.min(np.max(np.abs(h[bad]), axis=1)))
        fail("finite values for |h| up to 1e4 (log p(1e4) = -1e4)",
             f"inf or NaN from |h| = {first:g} on",
             "overflow: the formula as written computes e^h, which is inf in float32 from h = 89 on "
             "(and a sigmoid underflows to 0 far out, whose log is -inf). Rewrite it so that every "
             "exponential is of a number <= 0.")
    far = ~small
    expect(np.allclose(got[far], expected[far], rtol=1e-5, atol=1e-3),
           "the exact value far out as well (log p(h) -> -|h| for large |h|)",
           f"values off by up to {np.max(np.abs(got[far] - expected[far])):.3g} for |h| >= 50",
           "a large term lost to rounding or clipping: keep -|h| exact and only the small "
           "correction term approximate.")


@pytest.mark.builds_on("test_logistic_log_density_matches_tfp")
def test_logistic_log_density_has_finite_gradients(likelihood):
    h = far_batch()
    taped = beside(recipes.logistic_gradients, likelihood.logistic_log_density, h)
    grad, values = taped["grad"], taped["values"]
    expect(grad is not None, "a gradient of logistic_log_density with respect to h",
           "None (no gradient flows)", "stay in TensorFlow operations: NumPy cuts the gradient.")
    grad, expected = shaped(grad, h.shape, "the gradient"), -np.tanh(numpy(h) / 2.0)  # -tanh(h / 2)
    bad = ~np.isfinite(grad)
    if bad.any() and not np.all(np.isfinite(numpy(values))):
        fail("finite gradients for |h| up to 1e4", "NaN or inf gradients where the values themselves "
             "are inf or NaN", "overflow in the values: make them finite first (the check of the "
             "values says where), and the gradients usually follow.")
    if bad.any():
        fail("finite gradients for |h| up to 1e4 (d log p / dh = -tanh(h/2), between -1 and 1)",
             f"NaN or inf gradients from |h| = {float(np.min(np.abs(numpy(h)[bad]))):g} on",
             "a branch that overflows even where it is not selected: tf.where computes both branches "
             "and their gradients, and inf * 0 is NaN. Use one formula that is stable for every h.")
    expect(np.allclose(grad, expected, atol=1e-4), "d log p / dh = -tanh(h/2) in every dimension",
           f"gradients off by up to {np.max(np.abs(grad - expected)):.3g}",
           "a formula whose values are right but whose pieces are cut or clipped (tf.stop_gradient, "
           "tf.clip_by_value).")


def test_logistic_log_density_is_written_by_hand(likelihood, graded):
    likelihood.logistic_log_density(np.zeros((1, DIM), dtype=np.float32))  # implemented at all?
    source = impl_mod.resolve(graded) / "likelihood.py"  # read here, from the graded folder
    used = evidence.names_from(source, "logistic_log_density", "tensorflow_probability")
    expect(not used, "logistic_log_density written by hand, with TensorFlow operations only",
           f"it uses TensorFlow Probability ({', '.join(sorted(set(used)))})",
           "this task is to write the density yourself (by hand, no TFP): the lesson page shows "
           "why the formula needs care. make_prior may use TFP.")


# ---------------------------------------------------------------------------------------------
# make_prior


@pytest.mark.parametrize("kind", ["logistic", "gaussian"])
def test_prior_is_factorised_over_dimensions(likelihood, kind):
    made = beside(recipes.made_prior, likelihood.make_prior, DIM, kind)
    prior = made["prior"]
    expect(made["distribution"], "make_prior to return a tfp Distribution", made["type"])
    event, batch = list(prior.event_shape), list(prior.batch_shape)
    if event != [DIM] or batch != []:
        likely = ("prior log-density not summed over dimensions: this is a batch of D scalar "
                  "distributions; make the last axis the event (an independent joint distribution)."
                  if batch == [DIM] else "one factorised distribution over all D latent dimensions.")
        fail(f"event_shape [{DIM}] and batch_shape []", f"event_shape {event} and batch_shape {batch}",
             likely)
    h = random_batch(5, DIM)
    expected = (logistic_log_density if kind == "logistic" else gaussian_log_density)(h)
    got = numpy(prior.log_prob(h))
    seen = (f"values off by up to {np.max(np.abs(got - expected)):.3g}" if got.shape == (5,)
            else f"log_prob of a (5, {DIM}) batch shaped {got.shape}")
    expect(got.shape == (5,) and np.allclose(got, expected, atol=1e-4),
           f"the standard {kind} log-density summed over dimensions", seen,
           f"a standard {kind} (location 0, scale 1) in every dimension.")


@pytest.mark.builds_on("test_prior_is_factorised_over_dimensions")
def test_prior_default_and_unknown_kind(likelihood):
    h = random_batch(5, DIM)
    default = numpy(likelihood.make_prior(DIM).log_prob(h))
    expect(default.shape == (5,), f"log_prob of a (5, {DIM}) batch to have shape (5,)",
           f"shape {default.shape}", "prior log-density not summed over dimensions.")
    expect(np.allclose(default, logistic_log_density(h), atol=1e-4), "the default prior to be logistic",
           "another density", "kind='logistic' is the default (the NICE paper's prior).")
    with pytest.raises(ValueError):
        likelihood.make_prior(DIM, "cauchy")


@pytest.mark.builds_on("test_prior_is_factorised_over_dimensions")
def test_logistic_prior_is_finite_far_out(likelihood):
    prior = likelihood.make_prior(DIM, "logistic")
    h = np.array([[100.0, -100.0, 0.0, 30.0], [1e4, -1e4, 5.0, -5.0]], dtype=np.float32)
    got = numpy(prior.log_prob(h))
    expected = logistic_log_density(h)
    expect(got.shape == (2,), f"log_prob of a (2, {DIM}) batch to have shape (2,)", f"shape {got.shape}",
           "prior log-density not summed over dimensions.")
    finite = bool(np.all(np.isfinite(got)))
    expect(finite and np.allclose(got, expected, atol=1e-2),
           f"log p(h) = {expected[0]:.3f} for h = (100, -100, 0, 30) and {expected[1]:.1f} for "
           "h = (1e4, -1e4, 5, -5)", f"{got}",
           "a hand-made prior that overflows: e^100 is inf in float32. Build the prior from TFP's "
           "logistic distribution (stable), or from a stable log-density." if not finite else
           "not the standard logistic far out (its log-density falls like -|h|).")


# ---------------------------------------------------------------------------------------------
# log_likelihood


def _diagnose_log_likelihood(got, flow, prior, x, prior_term, log_det) -> str:
    """The likely mistake behind a wrong log_likelihood (the prior is the one given)."""
    h = numpy(flow.forward(x))
    if np.allclose(got, prior_term - log_det, atol=1e-3):
        return "wrong sign of the log-determinant: log p(x) = log p_H(f(x)) + log|det df/dx|."
    if np.allclose(got, prior_term, atol=1e-3):
        return "missing scaling term: add the model's log-determinant (the scaling layer's sum of log_scale)."
    if np.allclose(got, numpy(prior.log_prob(x)) + log_det, atol=1e-3):
        return "the prior is evaluated at x instead of the latent h = model.forward(x)."
    if np.allclose(got, numpy(prior.log_prob(flow.backward(x))) + log_det, atol=1e-3):
        return "h must come from the model's forward (data -> latent), not backward."
    standard = (("standard logistic", logistic_log_density), ("standard Gaussian", gaussian_log_density))
    for name, density in standard:
        if any(np.allclose(got, density(h) + sign * log_det, atol=1e-3) for sign in (1, -1)):
            return (f"log_likelihood ignores the prior it is given and uses a {name}: score h with "
                    "the prior argument's log_prob, whatever its kind.")
    if np.allclose(got, prior_term / x.shape[1] + log_det, atol=1e-3):
        return "the prior term is averaged over dimensions instead of summed."
    return "log p(x) = the given prior's log-density of model.forward(x) plus model.log_det_jacobian()."


@pytest.mark.parametrize("which", ["logistic", "unseen"])
def test_log_likelihood_is_change_of_variables(likelihood, flow, which):
    x = random_batch(16, DIM)
    prior = standard_logistic() if which == "logistic" else unseen_prior()[0]
    got = numpy(likelihood.log_likelihood(flow, prior, x))
    prior_term = numpy(prior.log_prob(flow.forward(x)))
    log_det = float(np.sum(numpy(flow.log_scale)))
    expected = prior_term + log_det
    if got.shape != expected.shape:
        likely = ("prior log-density not summed over dimensions (one value per example and dimension)."
                  if got.shape == (16, DIM) else "return one log-likelihood per example.")
        fail("shape (16,)", f"shape {got.shape}", likely)
    if not np.allclose(got, expected, atol=1e-3):
        kind = ("a standard logistic prior" if which == "logistic" else
                "a prior of a kind the lesson never builds (a shifted, scaled Laplace)")
        fail(f"log p(x) = log p_H(f(x)) + sum(log_scale) with {kind}",
             f"values off by up to {np.max(np.abs(got - expected)):.3g}",
             _diagnose_log_likelihood(got, flow, prior, x, prior_term, log_det))


#: The TFP check's model seed and its two priors (recipes of this module's priors).
TFP_CASE = {"seed": 3, "priors": {"standard logistic": lambda: recipes.standard_logistic(DIM),
                                  "shifted Laplace": lambda: recipes.unseen_prior(DIM)[0]}}


@functools.cache
def tfp_chain_log_probs() -> dict[str, np.ndarray]:
    """``{prior name: log p(x)}`` of TFP's TransformedDistribution of the check's model as a
    bijector chain, on the check's own copies (once per process: they depend on the reference alone)."""
    flow = recipes.nice(DIM, 4, SMALL["hidden_units"], SMALL["hidden_layers"], TFP_CASE["seed"])
    chain, x = nice_as_tfp_chain(flow), random_batch(16, DIM, seed=TFP_CASE["seed"])
    return {name: numpy(tfd.TransformedDistribution(prior(), chain).log_prob(x))
            for name, prior in TFP_CASE["priors"].items()}


@pytest.mark.builds_on("test_log_likelihood_is_change_of_variables")
def test_log_likelihood_agrees_with_a_tfp_bijector_chain(likelihood):
    flow, x = make_flow(seed=TFP_CASE["seed"]), random_batch(16, DIM, seed=TFP_CASE["seed"])
    for name, prior in (("standard logistic", standard_logistic()), ("shifted Laplace", unseen_prior()[0])):
        reference = tfp_chain_log_probs()[name]
        got = numpy(likelihood.log_likelihood(flow, prior, x))
        gap = f"{np.max(np.abs(got - reference)):.3g}" if got.shape == (16,) else f"shape {got.shape}"
        expect(got.shape == (16,) and np.allclose(got, reference, atol=1e-3),
               f"log_likelihood to equal TFP's TransformedDistribution.log_prob of the same model built "
               f"from tfb.RealNVP, tfb.Permute and tfb.Scale ({name} prior)", f"a difference of {gap}",
               "log p(x) = the given prior's log-density of model.forward(x) plus "
               "model.log_det_jacobian().")


def test_log_likelihood_is_finite_far_out(likelihood):
    flow = twin(recipes.nice, DIM, 4, SMALL["hidden_units"], SMALL["hidden_layers"])  # the identity: h = x
    prior = standard_logistic()
    x = np.array([[100.0, -100.0, 50.0, -60.0]], dtype=np.float32)
    got = numpy(likelihood.log_likelihood(flow, prior, x))
    expected = logistic_log_density(numpy(flow.forward(x)))
    expect(bool(np.all(np.isfinite(got))) and np.allclose(got, expected, atol=1e-2),
           f"log p(x) = {expected[0]:.2f} for h = (100, -100, 50, -60)", f"{got}",
           "a naive logistic log-density overflows at |h| = 100 (e^100 is inf in float32): score h "
           "with the prior's own log_prob.")


# ---------------------------------------------------------------------------------------------
# train_step


def reference_nll(flow, prior, x, gradients: bool = False):
    """The mean NLL of ``x`` under the check's own reference ``flow`` and ``prior``, computed
    here: -mean(log p_H(f(x)) + sum(log_scale)); with ``gradients``, also its gradient for every
    trainable variable (the grader's own autodiff, on its own copy)."""
    x = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        nll = -tf.reduce_mean(prior.log_prob(flow.forward(x)) + tf.reduce_sum(flow.log_scale))
    if not gradients:
        return float(nll)
    return float(nll), [numpy(g) for g in tape.gradient(nll, flow.trainable_variables)]


def weights_left(flow) -> list[np.ndarray]:
    """The trainable variables of the graded process's copy of a twin ``flow``, checked against
    the shapes of the check's own copy (an answer of another shape fails here, before use)."""
    mine, theirs = local_of(flow).trainable_variables, list(remote_of(flow).trainable_variables)
    expect(len(theirs) == len(mine), f"the model to keep its {len(mine)} trainable variables",
           f"{len(theirs)}", "train_step must not add or remove variables.")
    return [shaped(t, tuple(m.shape), "a trainable variable") for m, t in zip(mine, theirs, strict=True)]


def adopt(flow, weights: list[np.ndarray]) -> None:
    """Give the check's own copy of ``flow`` these weights (to score them here)."""
    for variable, value in zip(local_of(flow).trainable_variables, weights, strict=True):
        variable.assign(value.astype(np.float32))


def diagnose_step(before, after, gradients) -> str | None:
    """None when one Adam step moved the weights down the reference gradient of the mean NLL
    (its first step moves every weight by about lr against the gradient's sign), else what it did."""
    step = np.concatenate([(a - b).ravel() for a, b in zip(after, before, strict=True)])
    grad = np.concatenate([g.ravel() for g in gradients])
    significant = np.abs(grad) > 1e-3 * np.max(np.abs(grad))
    down = float(np.mean(np.sign(step[significant]) == -np.sign(grad[significant])))
    if down >= 0.9:
        return None
    if float(np.mean(np.sign(step[significant]) == np.sign(grad[significant]))) >= 0.9:
        return ("the step went up the gradient (gradient ascent): train_step must minimise the "
                "NLL = -mean(log_likelihood); a dropped minus sign is the usual cause.")
    return (f"only {down:.0%} of the weights moved against the gradient of the mean NLL: "
            "differentiate -mean(log_likelihood(model, prior, x)) with respect to "
            "model.trainable_variables and apply those gradients with the optimizer.")


def first_step(likelihood, seed: int) -> dict:
    """One call of their train_step from a state the check knows (a random reference NICE of two
    couplings with one hidden layer each, a standard Gaussian, Adam at lr 1e-3, 256 parabola
    points): the reference NLL and its gradient before (computed here), what train_step
    returned, and the weights it left (read back)."""
    flow = make_flow(dim=2, seed=seed, couplings=2, hidden_layers=1)
    prior = twin(recipes.standard_gaussian, 2)
    x = data_mod.parabola(256, seed=0)
    before = [numpy(v) for v in local_of(flow).trainable_variables]
    expected, gradients = reference_nll(local_of(flow), local_of(prior), x, gradients=True)
    optimizer = build(recipes.adam, 1e-3)
    loss = numpy(attempt(likelihood.train_step, flow, prior, optimizer, x, doing="train_step",
                         likely=LEFT_TENSORFLOW))
    return {"flow": flow, "prior": prior, "x": x, "optimizer": optimizer, "expected": expected,
            "gradients": gradients, "loss": loss, "before": before, "after": weights_left(flow)}


@pytest.fixture(scope="module")
def one_step(likelihood) -> tuple[dict | None, BaseException | None]:
    """:func:`first_step` once per run (this check and the training run's :func:`step_mistake`
    judge the same step): ``(step, None)``, or ``(None, what stopped it)``."""
    try:
        return first_step(likelihood, seed=4), None
    except (Exception, pytest.fail.Exception) as err:
        return None, err


@pytest.mark.builds_on("test_log_likelihood_is_change_of_variables")
def test_train_step_returns_the_mean_nll_and_updates(likelihood, one_step):
    step, stopped = one_step
    if stopped is not None:
        raise stopped
    flow, prior, x, optimizer = step["flow"], step["prior"], step["x"], step["optimizer"]
    expected, gradients, loss, before = step["expected"], step["gradients"], step["loss"], step["before"]
    if loss.shape != () or abs(float(loss) - expected) > 1e-3 * max(1.0, abs(expected)):
        value = float(loss) if loss.shape == () else None
        if value is not None and abs(value - len(x) * expected) < 1e-3 * abs(len(x) * expected):
            likely = "the NLL summed over the batch: return its mean."
        elif value is not None and abs(value + expected) < 1e-3 * max(1.0, abs(expected)):
            likely = ("the mean log-likelihood instead of the NLL: the loss is minus the mean "
                      "log-likelihood, both what you differentiate and what you return.")
        else:
            likely = ("return -mean(log_likelihood), a scalar computed before the step (the loss you "
                      "minimise).")
        fail(f"train_step to return the batch's mean NLL before the step ({expected:.4f})",
             f"{loss if loss.shape else float(loss)}", likely)
    after = step["after"]  # what their train_step changed, read back and judged here
    moved = [not np.allclose(b, a) for b, a in zip(before, after, strict=True)]
    expect(all(moved), "one step to update every trainable variable",
           f"{moved.count(False)} of {len(moved)} variables unchanged",
           "apply the gradients of the loss with respect to all of model.trainable_variables "
           "(the couplings' networks and log_scale).")
    mistake = diagnose_step(before, after, gradients)
    expect(mistake is None, "one Adam step to move the weights down the gradient of the mean NLL",
           "weights that moved otherwise", mistake)
    for _ in range(4):
        attempt(likelihood.train_step, flow, prior, optimizer, x, doing="train_step", likely=LEFT_TENSORFLOW)
    adopt(flow, weights_left(flow))
    later = reference_nll(local_of(flow), local_of(prior), x)
    expect(later < expected, "five steps on one batch to lower its NLL",
           f"{expected:.4f} before and {later:.4f} after",
           "train_step must minimise the NLL = -mean(log_likelihood); a dropped minus sign is "
           "gradient ascent.")


@pytest.fixture(scope="module")
def parabola_run(likelihood, graded, one_step):
    """A short, seeded training run on the parabola with your make_prior and train_step.

    Deterministic, so its result is cached on disk under a key that hashes what the run uses of
    your likelihood.py (module-level code, the functions in RUN_USES and what they call), the
    reference underneath and these settings: change any of them and it trains again.
    """
    data = data_mod.load_parabola()
    # Made next to your code (your train_step trains that copy): a NICE and your Gaussian prior.
    setup = beside(recipes.parabola_setup, likelihood, TRAIN)
    flow, prior = setup["flow"], setup["prior"]
    graders = (Path(recipes.__file__), Path(recipes.compile_step.__code__.co_filename))  # the run's code
    key = cache.key("likelihood-run-4", TRAIN, used_source_key(impl_mod.resolve(graded) / "likelihood.py",
                                                               RUN_USES),
                    cache.source_digest(impl_mod.PROJECT_ROOT / "solutions"), cache.file_digest(*graders))
    result = cache.cached_arrays("parabola-run", key,
                                 lambda: _train_on_parabola(likelihood, flow, prior, data))
    weights = [result[f"w{i}"] for i in range(sum(name.startswith("w") for name in result))]
    initial, test = score_run(weights, data)
    beside(recipes.set_weights, flow, weights)
    return {"flow": flow, "prior": prior, "data": data, "losses": np.asarray(result["losses"]),
            "initial_nll": initial, "test_nll": test, "step_mistake": step_mistake(one_step)}


def step_mistake(one_step: tuple[dict | None, BaseException | None]) -> str | None:
    """What is wrong with one step of their train_step (None: it steps down the gradient of the
    mean NLL). The run's weights are reported by the graded process: they count only as the work
    of a train_step whose own step the check has seen go the right way."""
    step, stopped = one_step
    if isinstance(stopped, pytest.fail.Exception):
        return str(stopped.msg if hasattr(stopped, "msg") else stopped)
    if stopped is not None:
        raise stopped
    return diagnose_step(step["before"], step["after"], step["gradients"])


def from_their_train_step(run: dict) -> None:
    """Fail when the run cannot be the work of their train_step (see :func:`step_mistake`)."""
    expect(run["step_mistake"] is None, "a training run made by a train_step that steps down the "
           "gradient of the mean NLL", "a train_step whose own step does not", run["step_mistake"])


@functools.cache
def scoring_flow() -> tuple:
    """``(flow, prior, initial)``: the run's model rebuilt from the same seed (the check's own
    copy, built once per process), the grader's own standard Gaussian, and the test NLL of that
    untrained model (computed before any weights are given to it)."""
    flow, prior = recipes.parabola_flow(TRAIN), recipes.standard_gaussian(2)
    return flow, prior, reference_nll(flow, prior, data_mod.load_parabola().test)


#: The test NLL of weights already scored in this process, by a digest of the weights.
_SCORES: dict[str, float] = {}


def score_run(weights: list[np.ndarray], data) -> tuple[float, float]:
    """The test NLL before and after the run, computed here: the run's model rebuilt from the
    same seed (the check's own copy), then given the weights the run reports, scored with the
    grader's own standard Gaussian. Nothing the graded process reports about its run is taken
    as it is: the weights are judged by the NLL they give (the same weights, the same score:
    ``nicelab watch`` scores a cached run once)."""
    flow, prior, initial = scoring_flow()
    expect(len(weights) == len(flow.weights), f"the run to report {len(flow.weights)} weight arrays",
           f"{len(weights)}", "train_step must not add or remove variables.")
    weights = [shaped(value, tuple(v.shape), "the training run") for v, value in zip(flow.weights, weights,
                                                                                        strict=True)]
    if not all(np.all(np.isfinite(w)) for w in weights):
        return initial, float("nan")  # the run diverged
    data_bytes = b"".join(np.ascontiguousarray(w, np.float32).tobytes() for w in weights)
    digest = hashlib.sha256(data_bytes).hexdigest()
    if digest not in _SCORES:
        for variable, value in zip(flow.weights, weights, strict=True):
            variable.assign(value.astype(np.float32))
        _SCORES[digest] = reference_nll(flow, prior, data.test)
    return initial, _SCORES[digest]


def _train_on_parabola(likelihood, flow, prior, data) -> dict[str, np.ndarray]:
    """The run (next to your code, :func:`nicelab.grader.recipes.likelihood.train_on_parabola`);
    a step that raises fails the check as ``attempt`` says."""
    result = beside(recipes.train_on_parabola, likelihood, flow, prior, data.train, TRAIN)
    if "error" in result:
        kind, message = result["error"]

        def step():
            raise remote_exception(kind, message)

        attempt(step, doing="training with your train_step", likely=LEFT_TENSORFLOW)
    return {key: np.asarray(value) for key, value in result.items()}


TRAINING_FOUNDATIONS = ("test_prior_is_factorised_over_dimensions",
                        "test_log_likelihood_is_change_of_variables",
                        "test_train_step_returns_the_mean_nll_and_updates")


@pytest.mark.builds_on(*TRAINING_FOUNDATIONS)
def test_training_lowers_the_nll(parabola_run):
    from_their_train_step(parabola_run)
    before, after = parabola_run["initial_nll"], parabola_run["test_nll"]
    if not np.isfinite(after) or after > before - FALL_BAR:
        fail(f"the test NLL (-mean log_likelihood) to fall by at least {FALL_BAR:g} nat in "
             f"{TRAIN['steps']} steps, from {before:.3f} to below {before - FALL_BAR:.3f}",
             f"{after:.3f} after training",
             "train_step must minimise the NLL = -mean(log_likelihood): a dropped minus sign is "
             "gradient ascent. (NaN can also come from an unstable log-density.)")
    losses = parabola_run["losses"]
    expect(bool(np.all(np.isfinite(losses))), "a finite loss at every step",
           f"NaN or inf from step {int(np.argmin(np.isfinite(losses)))}",
           "a numerically unstable log-density (use the prior's log_prob).")


@pytest.mark.builds_on(*TRAINING_FOUNDATIONS, "test_training_lowers_the_nll")
def test_training_gets_near_the_entropy(parabola_run):
    from_their_train_step(parabola_run)
    gap = parabola_run["test_nll"] - data_mod.PARABOLA_ENTROPY
    expect(gap < ENTROPY_BAR and gap > -0.05,
           f"a test NLL within {ENTROPY_BAR} nats of the parabola's entropy "
           f"{data_mod.PARABOLA_ENTROPY:.3f} after {TRAIN['steps']} steps",
           f"{parabola_run['test_nll']:.3f} (gap {gap:+.3f})",
           "a log-likelihood that is not the exact change of variables (sign or missing log-det), "
           "or a train_step that does not follow the gradient of the mean NLL.")


# ---------------------------------------------------------------------------------------------
# sample


def test_samples_have_the_right_shape_and_seed(likelihood, flow):
    prior = standard_logistic()

    def draw(seed):  # from the same global random state: only the seed argument differs
        return shaped(beside(recipes.seeded_sample, likelihood.sample, flow, prior, 50, seed), (50, DIM),
                      "sample(n=50)", "draw n points from the prior and map them to data space.")

    first = draw(7)
    expect(np.array_equal(first, draw(7)) and not np.allclose(first, draw(8)),
           "the same seed to give the same samples and another seed others",
           "samples that ignore the seed", "pass the seed on to the prior's sample method.")


def _matches(h: np.ndarray, mean: np.ndarray, std: np.ndarray) -> bool:
    """Whether the columns of ``h`` have about this mean and standard deviation."""
    return bool(np.all(np.abs(h.mean(axis=0) - mean) < 0.1 * std + 0.05)
                and np.all(np.abs(h.std(axis=0) / std - 1.0) < 0.1))


@pytest.mark.builds_on("test_samples_have_the_right_shape_and_seed")
def test_samples_come_from_the_given_prior(likelihood):
    flow = make_flow(seed=5)
    prior, mean, std = unseen_prior()
    samples = numpy(likelihood.sample(flow, prior, 4000, seed=0))
    expect(samples.shape == (4000, DIM), f"sample(n=4000) to have shape (4000, {DIM})", f"{samples.shape}")
    h = numpy(flow.forward(samples))
    if _matches(h, mean, std):
        return
    if _matches(samples, mean, std):
        likely = ("the prior samples are returned as they are: map them to data space with the "
                  "model's backward.")
    elif _matches(numpy(flow.backward(samples)), mean, std):
        likely = "samples are model.backward(prior samples): latent -> data is backward, not forward."
    elif any(_matches(h, np.zeros(DIM), np.full(DIM, std)) for std in (np.pi / np.sqrt(3), 1.0)):
        likely = ("sample ignores the prior it is given and draws from a standard logistic or "
                  "Gaussian: draw from the prior argument, whatever its kind.")
    else:
        likely = "draw h from the given prior, then map it to data space with the model's backward."
    fail(f"forward(samples) to follow the given prior (here a shifted, scaled Laplace with means "
         f"{_listed(mean)} and stds {_listed(std)})",
         f"means {_listed(h.mean(axis=0))} and stds {_listed(h.std(axis=0))}", likely)


def _listed(values) -> str:
    return "[" + ", ".join(f"{float(v):.2f}" for v in values) + "]"


@pytest.mark.builds_on(*TRAINING_FOUNDATIONS, "test_training_gets_near_the_entropy",
                       "test_samples_come_from_the_given_prior")
def test_samples_match_the_data(parabola_run, likelihood):
    from_their_train_step(parabola_run)
    run = parabola_run
    expect(bool(np.isfinite(run["test_nll"])), "a trained model to sample from",
           "a training run that ended in NaN", "see the training checks above: fix them first.")
    samples = shaped(likelihood.sample(run["flow"], run["prior"], 5000, seed=0), (5000, 2), "sample(n=5000)")
    data = run["data"].test[:5000]
    residual = np.median(np.abs(samples[:, 0] - samples[:, 1] ** 2 / 4))
    expect(abs(np.std(samples[:, 1]) - 4.0) < 0.6 and residual < 1.2,
           "samples of the trained model to follow the parabola (std of x2 ~ 4, |x1 - x2^2/4| ~ 0.67)",
           f"std of x2 {np.std(samples[:, 1]):.2f}, median |x1 - x2^2/4| {residual:.2f} "
           f"(data: {np.std(data[:, 1]):.2f}, {np.median(np.abs(data[:, 0] - data[:, 1] ** 2 / 4)):.2f})",
           "sample must map prior draws through model.backward.")


# ---------------------------------------------------------------------------------------------
# Predict, then check: the questions at the end of the lesson page


def _untrained_nll_parabola() -> float:
    """An untrained NICE is the identity with log_scale 0: its NLL is -mean log p_logistic(x)."""
    return float(-np.mean(logistic_log_density(data_mod.load_parabola().test)))


def _untrained_digits_nll() -> float:
    return float(-np.mean(logistic_log_density(data_mod.load_digits().test)))


def _digits_bits(nll: float) -> float:
    """nats per image on [0, 1]^64 -> bits per dimension on the grid of 17 levels."""
    digits = data_mod.load_digits()
    return data_mod.bits_per_dim(-nll, digits.dim, digits.levels)


PREDICTIONS = {
    "untrained_nll_parabola": _untrained_nll_parabola,
    "untrained_bits_per_dim_digits": lambda: _digits_bits(_untrained_digits_nll()),
    "uniform_bits_per_dim_digits": lambda: _digits_bits(0.0),  # the uniform density on [0, 1]^64
}


@pytest.mark.parametrize("key", list(PREDICTIONS))
def test_prediction(likelihood, key):
    # The page asks to compute each value with your code: 4 significant digits, not an estimate.
    expect_answer(likelihood, key, PREDICTIONS[key](), f"{PAGE} (Predict, then check)", significant=4)
