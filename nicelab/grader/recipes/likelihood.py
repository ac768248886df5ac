"""Recipes of the stage 3 checks (checks/test_likelihood.py): the priors and reference NICE
models the checks hand to the student's functions (built with ``twin``, so that reference values
come from the check's own copy), and what must run next to the student's functions: autodiff
through ``logistic_log_density``, the type of what ``make_prior`` returns, a seeded ``sample``
and the short training run with their ``train_step``. Everything a recipe returns is a claim of
the graded process: the checks judge it against what they compute themselves."""

from __future__ import annotations

import importlib

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from nicelab.core.training import compile_step
from nicelab.grader.recipes import common, recipe

tfd = tfp.distributions


def _reference_nice():
    return importlib.import_module("solutions.model").NICE


# ---------------------------------------------------------------------------------------------
# What the checks hand to the student's functions


@recipe
def nice(dim: int, num_couplings: int, hidden_units: int, hidden_layers: int, seed=None, scale: float = 0.3):
    """A reference NICE; with ``seed``, every trainable variable drawn from N(0, scale^2)."""
    flow = _reference_nice()(dim, num_couplings, hidden_units, hidden_layers)
    if seed is not None:
        common.randomize(flow.trainable_variables, seed, scale)
    return flow


def parabola_flow(settings: dict):
    """The reference NICE of the training run, initialised from the global seed 1 (the same
    weights wherever it is built: the checks rebuild it to score the run's weights)."""
    tf.keras.utils.set_random_seed(1)
    return _reference_nice()(2, 4, settings["hidden_units"], settings["hidden_layers"])


@recipe
def parabola_setup(likelihood, settings: dict) -> dict:
    """What the training run hands to the module ``likelihood``'s ``train_step``:
    :func:`parabola_flow` and ``likelihood.make_prior(2, "gaussian")``."""
    return {"flow": parabola_flow(settings), "prior": likelihood.make_prior(2, "gaussian")}


@recipe
def set_weights(flow, arrays: list) -> None:
    """Give ``flow.weights`` these values, in order."""
    for variable, value in zip(flow.weights, arrays, strict=True):
        variable.assign(value)


@recipe
def standard_logistic(dim: int):
    return tfd.Independent(tfd.Logistic(tf.zeros(dim), tf.ones(dim)), reinterpreted_batch_ndims=1)


@recipe
def standard_gaussian(dim: int):
    return tfd.Independent(tfd.Normal(tf.zeros(dim), tf.ones(dim)), reinterpreted_batch_ndims=1)


@recipe
def unseen_prior(dim: int):
    """A shifted, scaled Laplace, with its mean and standard deviation per dimension."""
    loc = np.linspace(-1.5, 2.0, dim).astype(np.float32)
    scale = np.linspace(0.4, 1.6, dim).astype(np.float32)
    prior = tfd.Independent(tfd.Laplace(loc, scale), reinterpreted_batch_ndims=1)
    return prior, loc, np.sqrt(2.0) * scale


@recipe
def adam(learning_rate: float):
    return tf.keras.optimizers.Adam(learning_rate)


# ---------------------------------------------------------------------------------------------
# Next to the student's functions


@recipe
def logistic_gradients(fn, h: np.ndarray) -> dict:
    """``fn(h)`` and the gradient of its sum with respect to ``h`` (None when none flows)."""
    h = tf.constant(h)
    with tf.GradientTape() as tape:
        tape.watch(h)
        values = fn(h)
        total = tf.reduce_sum(values)
    grad = tape.gradient(total, h)
    return {"values": np.asarray(values, dtype=np.float64),
            "grad": None if grad is None else np.asarray(grad, dtype=np.float64)}


@recipe
def made_prior(make_prior, *args) -> dict:
    """``make_prior(*args)``, whether it is a tfp Distribution and its type's name."""
    prior = make_prior(*args)
    return {"prior": prior, "distribution": isinstance(prior, tfd.Distribution), "type": type(prior).__name__}


@recipe
def seeded_sample(sample, flow, prior, n: int, seed):
    """``sample(flow, prior, n, seed=seed)`` from the global random state of seed 0."""
    tf.keras.utils.set_random_seed(0)  # same global state: only the seed argument differs
    return sample(flow, prior, n, seed=seed)


def _reference_step(likelihood, flow, prior, optimizer, x):
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(likelihood.log_likelihood(flow, prior, x))
    grads = tape.gradient(loss, flow.trainable_variables)
    optimizer.apply_gradients(zip(grads, flow.trainable_variables, strict=True))
    return loss


@recipe
def train_on_parabola(likelihood, flow, prior, train: np.ndarray, settings: dict) -> dict:
    """A short, seeded run of the module ``likelihood``'s ``train_step`` on the parabola:
    ``{"error": [type, message]}`` when a step raises, else the trained weights ``w0, w1, ...``
    and the losses (the checks score the weights themselves).

    The run starts from a better point than the random NICE: its scaling layer whitens the
    data (``log_scale = -log std`` per dimension), so that a short run at a high learning rate
    gets near the entropy (the steps are their ``train_step``'s all the same)."""
    tf.keras.utils.set_random_seed(1)
    flow.log_scale.assign(-np.log(np.std(train, axis=0)).astype(np.float32))
    schedule = tf.keras.optimizers.schedules.CosineDecay(settings["lr"], settings["steps"], 0.01)
    optimizer = tf.keras.optimizers.Adam(schedule)
    optimizer.build(flow.trainable_variables)
    step = compile_step(lambda x: likelihood.train_step(flow, prior, optimizer, x), notice=lambda m: None)
    rng = np.random.default_rng(1)
    losses = []
    for i in range(settings["steps"]):
        batch = train[rng.integers(0, len(train), settings["batch"])]
        try:
            losses.append(float(step(tf.constant(batch))))
        except Exception as err:  # noqa: BLE001 - the check reports it as attempt() does
            return {"error": [type(err).__name__, str(err)[:20000]]}
        if i == 0 and not step.is_compiled():
            # Their train_step runs only eagerly (too slow for the whole run): the run goes on
            # with a compiled step on their log_likelihood.
            step = tf.function(lambda x: _reference_step(likelihood, flow, prior, optimizer, x))
    arrays = {f"w{i}": w.numpy() for i, w in enumerate(flow.weights)}
    return {**arrays, "losses": np.array(losses)}
