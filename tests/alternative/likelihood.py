"""Alternative stage 3: an int seed passed straight to TFP; a train_step that calls .numpy()."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def make_prior(dim, kind="logistic"):
    if kind == "logistic":
        return tfd.Independent(tfd.Logistic(tf.zeros(dim), 1.0), 1)
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
