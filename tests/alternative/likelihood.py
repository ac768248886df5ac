"""Alternative stage 3: the logistic density from softplus on both sides (no absolute value), a
prior made with tfd.Sample, an int seed passed straight to TFP, a train_step that calls .numpy(),
and predictions written with more digits."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def logistic_log_density(h):
    h = tf.convert_to_tensor(h, dtype=tf.float32)
    # log p(h) = -softplus(h) - softplus(-h): tf.math.softplus is stable for any h.
    return tf.reduce_sum(-tf.math.softplus(h) - tf.math.softplus(-h), axis=1)


def make_prior(dim, kind="logistic"):
    if kind == "logistic":
        return tfd.Sample(tfd.Logistic(0.0, 1.0), sample_shape=[dim])
    if kind == "gaussian":
        return tfd.MultivariateNormalDiag(loc=tf.zeros(dim))
    raise ValueError(kind)


def log_likelihood(model, prior, x):
    return prior.log_prob(model.forward(x)) + model.log_det_jacobian()


def train_step(model, prior, optimizer, x):
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(log_likelihood(model, prior, x))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return float(np.asarray(loss.numpy()))  # leaves TensorFlow: cannot be compiled


def sample(model, prior, n, seed=None):
    return model.backward(prior.sample(n, seed=seed))


ANSWERS = {
    "untrained_nll_parabola": 8.1399,
    "untrained_bits_per_dim_digits": 6.167,
    "uniform_bits_per_dim_digits": float(np.log2(17)),
}
