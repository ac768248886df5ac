"""Classic mistakes of stage 3 (the logistic log-density, the prior, the likelihood, training,
sampling, the page's predictions)."""

from mutation_support import Mutant

LOG_LIK = "return prior.log_prob(h) + model.log_det_jacobian()"
LOGISTIC = "return tf.reduce_sum(-a - 2.0 * tf.math.softplus(-a), axis=-1)"
SAMPLE = "return model.backward(prior.sample(n, seed=seed))"
LOSS = "loss = -tf.reduce_mean(log_likelihood(model, prior, x))"
APPLY = "optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))"
PRIOR = 'base = tfd.Logistic(loc, scale) if kind == "logistic" else tfd.Normal(loc, scale)'


def logistic(name: str, new: str, check: str, message: str) -> Mutant:
    """A mistake in logistic_log_density: its return line replaced by ``new``."""
    return Mutant(f"likelihood_logistic_{name}", "likelihood", "likelihood.py", ((LOGISTIC, new),), check,
                  message)


MUTANTS = [
    # logistic_log_density, written by hand
    logistic("naive", "return tf.reduce_sum(-tf.math.log(1.0 + tf.exp(h)) - tf.math.log(1.0 + tf.exp(-h)), "
             "axis=-1)", "logistic_log_density_matches", "overflow"),
    logistic("one_sided", "return tf.reduce_sum(-h - 2.0 * tf.math.log(1.0 + tf.exp(-h)), axis=-1)",
             "logistic_log_density_matches", "overflow"),
    logistic("naive_sigmoid", "return tf.reduce_sum(tf.math.log(tf.sigmoid(h)) + "
             "tf.math.log(tf.sigmoid(-h)), axis=-1)", "logistic_log_density_matches", "underflows"),
    logistic("not_summed", "return -a - 2.0 * tf.math.softplus(-a)", "logistic_log_density_matches",
             "not summed over dimensions"),
    logistic("averaged", "return tf.reduce_mean(-a - 2.0 * tf.math.softplus(-a), axis=-1)",
             "logistic_log_density_matches", "averaged over dimensions"),
    logistic("one_term", "return tf.reduce_sum(-a - tf.math.softplus(-a), axis=-1)",
             "logistic_log_density_matches", "term too few"),
    logistic("where_nan", "return tf.reduce_sum(tf.where(h > 0, -h - 2.0 * tf.math.log(1.0 + tf.exp(-h)), "
             "h - 2.0 * tf.math.log(1.0 + tf.exp(h))), axis=-1)", "finite_gradients", "tf.where"),
    logistic("stop_gradient", "return tf.reduce_sum(-a - 2.0 * tf.stop_gradient(tf.math.softplus(-a)), "
             "axis=-1)", "finite_gradients", "gradients off"),
    logistic("numpy", "return tf.constant(tf.reduce_sum(-a - 2.0 * tf.math.softplus(-a), axis=-1).numpy())",
             "finite_gradients", "NumPy cuts the gradient"),
    logistic("tfp", "return tf.reduce_sum(tfd.Logistic(0.0, 1.0).log_prob(h), axis=-1)",
             "written_by_hand", "by hand"),
    # make_prior
    Mutant("likelihood_prior_not_summed", "likelihood", "likelihood.py",
           (("return tfd.Independent(base, reinterpreted_batch_ndims=1)", "return base"),),
           "factorised", "not summed over dimensions"),
    Mutant("likelihood_prior_kinds_swapped", "likelihood", "likelihood.py",
           ((PRIOR, 'base = tfd.Normal(loc, scale) if kind == "logistic" else tfd.Logistic(loc, scale)'),),
           "factorised", "location 0, scale 1"),
    # log_likelihood
    Mutant("likelihood_log_det_sign", "likelihood", "likelihood.py",
           ((LOG_LIK, "return prior.log_prob(h) - model.log_det_jacobian()"),),
           "change_of_variables", "wrong sign"),
    Mutant("likelihood_missing_log_det", "likelihood", "likelihood.py",
           ((LOG_LIK, "return prior.log_prob(h)"),), "change_of_variables", "missing scaling term"),
    Mutant("likelihood_prior_at_x", "likelihood", "likelihood.py",
           ((LOG_LIK, "return prior.log_prob(x) + model.log_det_jacobian()"),),
           "change_of_variables", "evaluated at x"),
    Mutant("likelihood_backward", "likelihood", "likelihood.py",
           (("h = model.forward(x)", "h = model.backward(x)"),), "change_of_variables", "not backward"),
    Mutant("likelihood_ignores_prior", "likelihood", "likelihood.py",
           ((LOG_LIK, "return make_prior(model.dim).log_prob(h) + model.log_det_jacobian()"),),
           "change_of_variables", "ignores the prior it is given"),
    Mutant("likelihood_prior_term_averaged", "likelihood", "likelihood.py",
           ((LOG_LIK, "return prior.log_prob(h) / model.dim + model.log_det_jacobian()"),),
           "change_of_variables", "averaged over dimensions"),
    Mutant("likelihood_naive_logistic", "likelihood", "likelihood.py",
           ((LOG_LIK, "return tf.reduce_sum(-h - 2.0 * tf.math.log(1.0 + tf.exp(-h)), axis=1)"
                      " + model.log_det_jacobian()"),),
           "log_likelihood_is_finite_far_out", "overflow",
           first="ignores the prior it is given"),  # a hand-made logistic: the prior is ignored first
    # train_step
    Mutant("likelihood_gradient_ascent", "likelihood", "likelihood.py",
           ((LOSS, "loss = tf.reduce_mean(log_likelihood(model, prior, x))"),),
           "train_step_returns", "instead of the NLL"),
    Mutant("likelihood_climbs_the_gradient", "likelihood", "likelihood.py",
           ((APPLY, "optimizer.apply_gradients(zip([-g for g in grads], model.trainable_variables, "
             "strict=False))"),),
           "train_step_returns", "gradient ascent"),
    Mutant("likelihood_loss_summed", "likelihood", "likelihood.py",
           ((LOSS, "loss = -tf.reduce_sum(log_likelihood(model, prior, x))"),),
           "train_step_returns", "summed over the batch"),
    # the student trial's mistakes: the loss leaves TensorFlow (NumPy on the tape's tensors)
    Mutant("likelihood_numpy_loss", "likelihood", "likelihood.py",
           ((LOSS, "loss = -__import__('numpy').mean(log_likelihood(model, prior, x))"),),
           "train_step_returns", "the loss left TensorFlow"),
    Mutant("likelihood_float_loss", "likelihood", "likelihood.py",
           ((LOSS, "loss = -float(tf.reduce_mean(log_likelihood(model, prior, x)))"),),
           "train_step_returns", "the loss left TensorFlow"),
    Mutant("likelihood_returns_log_likelihood", "likelihood", "likelihood.py",
           (("    return loss\n", "    return -loss\n"),), "train_step_returns", "instead of the NLL"),
    Mutant("likelihood_updates_one_variable", "likelihood", "likelihood.py",
           ((APPLY, "optimizer.apply_gradients(zip(grads[-1:], model.trainable_variables[-1:], "
                    "strict=False))"),),
           "train_step_returns", "every trainable variable"),
    # sample
    Mutant("likelihood_sample_forward", "likelihood", "likelihood.py",
           ((SAMPLE, "return model.forward(prior.sample(n, seed=seed))"),),
           "given_prior", "backward, not forward"),
    Mutant("likelihood_sample_no_backward", "likelihood", "likelihood.py",
           ((SAMPLE, "return prior.sample(n, seed=seed)"),), "given_prior", "returned as they are"),
    Mutant("likelihood_sample_ignores_prior", "likelihood", "likelihood.py",
           ((SAMPLE, "return model.backward(make_prior(model.dim).sample(n, seed=seed))"),),
           "given_prior", "ignores the prior it is given"),
    Mutant("likelihood_sample_ignores_seed", "likelihood", "likelihood.py",
           ((SAMPLE, "return model.backward(prior.sample(n))"),), "shape_and_seed", "ignore the seed"),
    # the page's predictions
    Mutant("likelihood_prediction_is_the_entropy", "likelihood", "likelihood.py",
           (('"untrained_nll_parabola": 8.140', '"untrained_nll_parabola": 4.224'),),
           "prediction", "re-read the question"),
    Mutant("likelihood_prediction_nats_not_bits", "likelihood", "likelihood.py",
           (('"uniform_bits_per_dim_digits": 4.087', '"uniform_bits_per_dim_digits": 2.83'),),
           "prediction", "re-read the question"),
    # the page asks for the value computed with code: the rough estimate no longer passes
    Mutant("likelihood_prediction_rough_estimate", "likelihood", "likelihood.py",
           (('"untrained_nll_parabola": 8.140', '"untrained_nll_parabola": 8.1'),),
           "prediction", "4 significant digits"),
]
