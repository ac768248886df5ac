"""Classic mistakes of stage 6 (affine coupling, RealNVP)."""

from mutation_support import Mutant

FILE = "affine.py"
LOG_DET = "return tf.reduce_sum(s, axis=1)"
FORWARD_ST = "s, t = self.scale_and_shift(x_keep)"
BACKWARD_ST = "s, t = self.scale_and_shift(y_keep)"
UNDO = "(y_change - t) * tf.exp(-s)"
BOUND = "return self.scale * tf.tanh(raw), t"
NET = "self.net = coupling_network(len(self.keep), 2 * len(self.change), hidden_units, hidden_layers)"
COUPLINGS_LIST = """        self.couplings = [
            AffineCoupling(dim, parity=i % 2, hidden_units=hidden_units,
                           hidden_layers=hidden_layers, name=f"affine_coupling_{i}")
            for i in range(num_couplings)
        ]"""

MUTANTS = [
    # The coupling's log-determinant
    Mutant("affine_log_det_sign", "affine", FILE, ((LOG_DET, "return -tf.reduce_sum(s, axis=1)"),),
           "log_det_matches_autodiff_per_example", "wrong sign"),
    Mutant("affine_log_det_summed_over_batch", "affine", FILE, ((LOG_DET, "return tf.reduce_sum(s)"),),
           "one_value_per_example", "summed (or averaged) over the batch"),
    Mutant("affine_log_det_batch_mean", "affine", FILE,
           ((LOG_DET, "return tf.reduce_mean(tf.reduce_sum(s, axis=1)) * tf.ones(tf.shape(s)[:1])"),),
           "one_value_per_example", "averaged or summed over the batch and spread back"),
    Mutant("affine_log_det_mean_over_coordinates", "affine", FILE,
           ((LOG_DET, "return tf.reduce_mean(s, axis=1)"),),
           "log_det_matches_autodiff_per_example", "averaged over the changed coordinates"),
    Mutant("affine_log_det_of_exp", "affine", FILE, ((LOG_DET, "return tf.reduce_sum(tf.exp(s), axis=1)"),),
           "log_det_matches_autodiff_per_example", "the sum of exp(s)"),
    Mutant("affine_log_det_numpy", "affine", FILE,
           ((LOG_DET, "return tf.constant(np.sum(np.asarray(s), axis=1))"),),
           "test_gradients_reach_every_variable and not realnvp", "computed with TensorFlow operations"),
    # The inverse
    Mutant("affine_backward_multiplies", "affine", FILE, ((UNDO, "(y_change - t) * tf.exp(s)"),),
           "backward_undoes_forward", "multiplies by exp(s) again"),
    Mutant("affine_backward_wrong_order", "affine", FILE, ((UNDO, "y_change * tf.exp(-s) - t"),),
           "backward_undoes_forward", "wrong order: subtract t first"),
    Mutant("affine_backward_s_from_wrong_part", "affine", FILE,
           ((BACKWARD_ST,
             "s, _ = self.scale_and_shift(y_change)\n        _, t = self.scale_and_shift(y_keep)"),),
           "backward_undoes_forward", "recompute s and t from y_keep"),
    # s and t, and their bound
    Mutant("affine_s_from_changed_part", "affine", FILE,
           ((FORWARD_ST, "s, t = self.scale_and_shift(x_change)"),),
           "come_from_the_kept_part", "computed from the changed part"),
    Mutant("affine_s_from_all_of_x", "affine", FILE,
           ((FORWARD_ST,
             "s, t = self.scale_and_shift(x_keep + tf.reduce_mean(x_change, axis=1, keepdims=True))"),),
           "come_from_the_kept_part", "computed from the changed part (or from all of x)"),
    Mutant("affine_unbounded_scale", "affine", FILE, ((BOUND, "return self.scale * raw, t"),),
           "no_overflow", "s is unbounded"),
    Mutant("affine_starts_away_from_identity", "affine", FILE,
           ((BOUND, "return self.scale * tf.tanh(raw + 1.0), t"),),
           "new_layer_is_the_identity", "start the network's last layer at zero"),
    Mutant("affine_shared_network", "affine", FILE,
           ((NET, NET.replace("coupling_network", "_shared_network")),
            ("class AffineCoupling(", "_CACHE = {}\n\n\ndef _shared_network(*shape):\n"
             "    if shape not in _CACHE:\n        _CACHE[shape] = coupling_network(*shape)\n"
             "    return _CACHE[shape]\n\n\nclass AffineCoupling(")),
           "owns_its_network", "weight sharing"),
    # RealNVP
    Mutant("realnvp_backward_forward_order", "affine", FILE,
           (("for coupling in reversed(self.couplings):", "for coupling in self.couplings:"),),
           "realnvp_round_trips", "wrong order"),
    Mutant("realnvp_log_det_at_x", "affine", FILE,
           (("log_det += coupling.log_det_jacobian(h)", "log_det += coupling.log_det_jacobian(x)"),),
           "sums_its_couplings", "taken at x"),
    Mutant("realnvp_log_det_sign", "affine", FILE,
           (("log_det += coupling.log_det_jacobian(h)", "log_det -= coupling.log_det_jacobian(h)"),),
           "sums_its_couplings", "wrong sign"),
    Mutant("realnvp_parities_not_alternating", "affine", FILE, (("parity=i % 2", "parity=0"),),
           "every_coordinate", "no alternation"),
    Mutant("realnvp_shared_layers", "affine", FILE,
           ((COUPLINGS_LIST, "        pair = [AffineCoupling(dim, parity=p, hidden_units=hidden_units,\n"
             "                               hidden_layers=hidden_layers) for p in (0, 1)]\n"
             "        self.couplings = pair * (num_couplings // 2)"),),
           "realnvp_no_weight_sharing", "weight sharing"),
    # log_likelihood
    Mutant("affine_log_likelihood_without_log_det", "affine", FILE,
           (("return prior.log_prob(model.forward(x)) + model.log_det_jacobian(x)",
             "return prior.log_prob(model.forward(x))"),),
           "change_of_variables", "missing the log-determinant"),
    Mutant("affine_log_likelihood_sign", "affine", FILE,
           (("return prior.log_prob(model.forward(x)) + model.log_det_jacobian(x)",
             "return prior.log_prob(model.forward(x)) - model.log_det_jacobian(x)"),),
           "change_of_variables", "wrong sign"),
]
