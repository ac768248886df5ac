"""Stage 3 - the exact log-likelihood, training by maximum likelihood, and sampling.

Change of variables (NICE paper, equation 3), with h = f(x):

    log p_X(x) = log p_H(f(x)) + log|det df/dx|
               = sum_d log p_H_d(h_d) + sum_d log_scale_d

The prior p_H is factorised: the paper's standard logistic, log p(h) = -log(1 + e^h) -
log(1 + e^-h) per dimension, or a standard Gaussian.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

from nicelab.validate import as_batch, check_choice, check_positive_int

tfd = tfp.distributions

PRIOR_KINDS = ("logistic", "gaussian")


def make_prior(dim, kind="logistic"):
    """A factorised prior over ``dim`` latent dimensions.

    Returns a tfp Distribution with ``event_shape [dim]`` and ``batch_shape []``, so that
    ``log_prob`` of a ``(batch, dim)`` tensor has shape ``(batch,)`` (summed over dimensions).
    """
    dim = check_positive_int(dim, "dim")
    check_choice(kind, PRIOR_KINDS, "prior kind")
    # BEGIN SOLUTION: make_prior
    # > A standard tfd.Logistic or tfd.Normal with loc zeros(dim) and scale ones(dim), wrapped
    # > in tfd.Independent(..., reinterpreted_batch_ndims=1) so log_prob sums the dimensions.
    loc, scale = tf.zeros(dim), tf.ones(dim)
    base = tfd.Logistic(loc, scale) if kind == "logistic" else tfd.Normal(loc, scale)
    return tfd.Independent(base, reinterpreted_batch_ndims=1)
    # END SOLUTION


def log_likelihood(model, prior, x):
    """log p(x) for each example, shape ``(batch,)``: log p_H(f(x)) + log|det df/dx|."""
    x = as_batch(x, model.dim)
    # BEGIN SOLUTION: log_likelihood
    # > h = model.forward(x); add the prior's log-density of h (one number per example)
    # > and the model's log-determinant.
    h = model.forward(x)
    return prior.log_prob(h) + model.log_det_jacobian()
    # END SOLUTION


def train_step(model, prior, optimizer, x):
    """One gradient step on the mean negative log-likelihood of the batch ``x``.

    Returns the batch's mean NLL (a scalar tensor) computed before the step.
    """
    x = as_batch(x, model.dim)
    # BEGIN SOLUTION: train_step
    # > Record -mean(log_likelihood) under a tf.GradientTape, take its gradient with respect
    # > to model.trainable_variables, apply it with optimizer.apply_gradients, return the loss.
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(log_likelihood(model, prior, x))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
    return loss
    # END SOLUTION


def sample(model, prior, n, seed=None):
    """``n`` samples from the model, shape ``(n, D)``: x = f^-1(h) with h drawn from the prior.

    The same integer ``seed`` gives the same samples.
    """
    n = check_positive_int(n, "n")
    # An integer seed becomes a stateless seed pair: the same seed, the same samples.
    seed = None if seed is None else tf.constant([int(seed), 0], dtype=tf.int32)
    # BEGIN SOLUTION: sample
    # > Draw h = prior.sample(n, seed=seed), then map it back to data space.
    return model.backward(prior.sample(n, seed=seed))
    # END SOLUTION
