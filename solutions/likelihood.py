"""Stage 3 - the exact log-likelihood, training by maximum likelihood, and sampling.

Change of variables (NICE paper, equation 3), with h = f(x):

    log p_X(x) = log p_H(f(x)) + log|det df/dx|
               = sum_d log p_H_d(h_d) + sum_d log_scale_d

The prior p_H is factorised: the paper's standard logistic, log p(h) = -log(1 + e^h) -
log(1 + e^-h) per dimension, or a standard Gaussian. Lesson page: docs/lessons/3-likelihood.md.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

from nicelab.validate import as_batch, check_choice, check_positive_int

tfd = tfp.distributions

PRIOR_KINDS = ("logistic", "gaussian")


def logistic_log_density(h):
    """Sum over dimensions of the standard logistic log-density, one number per example.

    ``h``: ``(batch, D)``, a NumPy array or a tensor. Returns a float32 tensor of shape ``(batch,)``:

        sum_d log p(h_d),   log p(h) = -log(1 + e^h) - log(1 + e^-h) = log sigmoid(h) + log sigmoid(-h)

    Written by hand (no TensorFlow Probability), exact and finite in float32 for |h| up to 1e4,
    and with finite gradients there. The formula as written overflows: e^h is inf in float32
    from h = 89 on. See "Writing the logistic by hand" in docs/lessons/3-likelihood.md.
    """
    h = as_batch(h, name="h", allow_nan=True)
    # BEGIN SOLUTION: logistic_log_density
    # > Rewrite the formula so that nothing in it can overflow for any h (the page's section
    # > shows the two facts you need), then sum over the dimensions. No TensorFlow Probability
    # > here, and no NumPy: stay in TensorFlow operations so that gradients flow.
    a = tf.abs(h)
    return tf.reduce_sum(-a - 2.0 * tf.math.softplus(-a), axis=-1)
    # END SOLUTION


def make_prior(dim, kind="logistic"):
    """A factorised prior over ``dim`` latent dimensions: p_H(h) = prod_d p(h_d).

    ``kind`` "logistic" (the paper's standard logistic, location 0, scale 1) or "gaussian"
    (standard normal). Returns a tfp Distribution with ``event_shape [dim]`` and
    ``batch_shape []``, so that ``log_prob`` of a ``(batch, dim)`` tensor has shape ``(batch,)``:
    log p_H(h) = sum_d log p(h_d), summed over dimensions. See "The prior" in
    docs/lessons/3-likelihood.md.
    """
    dim = check_positive_int(dim, "dim")
    check_choice(kind, PRIOR_KINDS, "prior kind")
    # BEGIN SOLUTION: make_prior
    # > Start from one standard scalar distribution per dimension (TFP has a logistic and a
    # > normal). That is a *batch* of dim distributions, whose log_prob keeps one value per
    # > dimension. Ask TFP to treat the last batch axis as the event (an independent joint
    # > distribution), so that log_prob sums over it.
    loc, scale = tf.zeros(dim), tf.ones(dim)
    base = tfd.Logistic(loc, scale) if kind == "logistic" else tfd.Normal(loc, scale)
    return tfd.Independent(base, reinterpreted_batch_ndims=1)
    # END SOLUTION


def log_likelihood(model, prior, x):
    """log p(x) for each example, shape ``(batch,)``: log p_H(f(x)) + log|det df/dx|.

    ``model`` is a stage 2 NICE (``forward`` = f, data -> latent; ``log_det_jacobian()`` the
    scalar sum_d log_scale_d), ``prior`` any distribution over ``(batch, D)`` latents with
    ``log_prob`` of shape ``(batch,)`` (use the one given, whatever its kind), ``x`` ``(batch, D)``.
    NICE paper, equation 3; see "The change of variables" in docs/lessons/3-likelihood.md.
    """
    x = as_batch(x, model.dim)
    # BEGIN SOLUTION: log_likelihood
    # > Map the data to the latent space with the model, score the latents with the prior you
    # > were given (one number per example), and add the model's log-determinant (a scalar,
    # > the same for every example). Mind the sign: this is f's Jacobian, data -> latent.
    h = model.forward(x)
    return prior.log_prob(h) + model.log_det_jacobian()
    # END SOLUTION


def train_step(model, prior, optimizer, x):
    """One gradient step on the mean negative log-likelihood of the batch ``x``:

        loss = -(1/B) sum_b log p(x_b),   every trainable variable moves along -d loss / d theta

    Returns the batch's mean NLL (a scalar tensor) computed before the step. See "Training" in
    docs/lessons/3-likelihood.md.
    """
    x = as_batch(x, model.dim)
    # BEGIN SOLUTION: train_step
    # > Record the loss (the mean NLL of the batch, computed with your log_likelihood) on a
    # > gradient tape, differentiate it with respect to all of the model's trainable variables,
    # > let the optimizer apply those gradients, and return the loss.
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(log_likelihood(model, prior, x))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
    return loss
    # END SOLUTION


def sample(model, prior, n, seed=None):
    """``n`` samples from the model, shape ``(n, D)``: x = f^-1(h) with h ~ p_H drawn from ``prior``
    (the one given, whatever its kind).

    The same integer ``seed`` gives the same samples. See "Sampling" in docs/lessons/3-likelihood.md.
    """
    n = check_positive_int(n, "n")
    # An integer seed becomes a stateless seed pair: the same seed, the same samples.
    seed = None if seed is None else tf.constant([int(seed), 0], dtype=tf.int32)
    # BEGIN SOLUTION: sample
    # > Draw n latent points from the prior, passing the seed on, then map them to data space
    # > (latent -> data is the model's backward direction).
    return model.backward(prior.sample(n, seed=seed))
    # END SOLUTION


# Predict, then check: the questions at the end of docs/lessons/3-likelihood.md. Work out your
# prediction first, then run your code to confirm it, and write the number in (a float).
# BEGIN ANSWERS
ANSWERS = {
    "untrained_nll_parabola": 8.140,
    "untrained_bits_per_dim_digits": 6.167,
    "uniform_bits_per_dim_digits": 4.087,
}
# END ANSWERS
