"""Classic mistakes of stage 3 (likelihood, training, sampling)."""

from mutation_support import Mutant

LOG_LIK = "return prior.log_prob(h) + model.log_det_jacobian()"

MUTANTS = [
    # Stage 3 - likelihood.py
    Mutant("likelihood_log_det_sign", "likelihood", "likelihood.py",
           ((LOG_LIK, "return prior.log_prob(h) - model.log_det_jacobian()"),),
           "change_of_variables", "wrong sign"),
    Mutant("likelihood_missing_log_det", "likelihood", "likelihood.py",
           ((LOG_LIK, "return prior.log_prob(h)"),), "change_of_variables", "missing scaling term"),
    Mutant("likelihood_prior_not_summed", "likelihood", "likelihood.py",
           (("return tfd.Independent(base, reinterpreted_batch_ndims=1)", "return base"),),
           "factorised", "not summed over dimensions"),
    Mutant("likelihood_naive_logistic", "likelihood", "likelihood.py",
           ((LOG_LIK, "return tf.reduce_sum(-h - 2.0 * tf.math.log(1.0 + tf.exp(-h)), axis=1)"
                      " + model.log_det_jacobian()"),),
           "log_likelihood_is_finite_far_out", "overflow"),
    Mutant("likelihood_gradient_ascent", "likelihood", "likelihood.py",
           (("loss = -tf.reduce_mean(log_likelihood(model, prior, x))",
             "loss = tf.reduce_mean(log_likelihood(model, prior, x))"),),
           "training_lowers", "minimise"),
    Mutant("likelihood_sample_forward", "likelihood", "likelihood.py",
           (("return model.backward(prior.sample(n, seed=seed))",
             "return model.forward(prior.sample(n, seed=seed))"),),
           "backward_of_prior", "backward"),
]
