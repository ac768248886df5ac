"""Classic mistakes of stage 7 (the invertible linear layer in LU form, the Glow flow)."""

from mutation_support import Mutant

LOG_DET = "return tf.reduce_sum(self.log_abs_s)"
FORWARD = "return tf.matmul(x, self.matrix(), transpose_b=True)"
SOLVES = """        z = tf.linalg.triangular_solve(lower, z, lower=True)
        z = tf.linalg.triangular_solve(upper, z, lower=False)"""
GLOW_TERMS = "log_det = log_det + mixing.log_det_jacobian() + coupling.log_det_jacobian(h)"
GLOW_BACKWARD = "for mixing, coupling in reversed(self.steps):"
START = "lu_factors(random_rotation(dim, seed))"


def mixing(name: str, replacements: tuple[tuple[str, str], ...], check: str, message: str) -> Mutant:
    return Mutant(f"mixing_{name}", "mixing", "mixing.py", replacements, check, message)


MUTANTS = [
    # InvertibleLinear: the log-determinant
    mixing("log_det_slogdet", ((LOG_DET, "return tf.linalg.slogdet(self.matrix())[1]"),),
           "computes_no_determinant", "O(D^3)"),
    mixing("log_det_of_signed_s", ((LOG_DET, "return tf.reduce_sum(tf.math.log(self.sign_s * "
                                             "tf.exp(self.log_abs_s)))"),),
           "sum_of_log_abs_s", "log of a negative number"),
    mixing("log_det_sum_of_s", ((LOG_DET, "return tf.reduce_sum(self.sign_s * tf.exp(self.log_abs_s))"),),
           "sum_of_log_abs_s", "sum of s itself"),
    mixing("log_det_sign", ((LOG_DET, "return -tf.reduce_sum(self.log_abs_s)"),),
           "sum_of_log_abs_s", "wrong sign"),
    # InvertibleLinear: the factors
    mixing("lower_mask_with_diagonal", (("np.tril(ones, k=-1)", "np.tril(ones, k=0)"),),
           "matrix_is_p_l_u", "L's diagonal is not 1"),
    mixing("upper_mask_with_diagonal", (("np.triu(ones, k=1)", "np.triu(ones, k=0)"),),
           "matrix_is_p_l_u", "U's diagonal is counted twice"),
    mixing("permutation_trainable", (('self.permutation = self.add_weight(name="permutation", shape=dim_2, '
                                      'initializer="zeros",\n                                           '
                                      'trainable=False)',
                                      'self.permutation = self.add_weight(name="permutation", shape=dim_2, '
                                      'initializer="zeros")'),),
           "matrix_is_p_l_u", "P is trainable"),
    mixing("identity_start", ((START, "lu_factors(np.eye(dim))"),),
           "starts_as_a_random_rotation", "starts as the identity"),
    mixing("gaussian_start", (("q, r = np.linalg.qr(generator.standard_normal((dim, dim)))\n"
                               "    return q * np.sign(np.diag(r))",
                               "return generator.standard_normal((dim, dim))"),),
           "starts_as_a_random_rotation", "orthogonal factor Q"),
    # InvertibleLinear: forward and backward
    mixing("forward_not_transposed", ((FORWARD, "return tf.matmul(x, self.matrix())"),),
           "x_times_w_transpose", "not by its transpose"),
    mixing("backward_general_inverse",
           (("        z = tf.matmul(permutation, h, transpose_a=True, transpose_b=True)  # P^T h, "
             "(D, batch)\n" + SOLVES + "\n        return tf.transpose(z)",
             "        return tf.matmul(h, tf.linalg.inv(permutation @ lower @ upper), transpose_b=True)"),),
           "no_general_inverse", "general inverse"),
    mixing("backward_solves_in_wrong_order",
           ((SOLVES, """        z = tf.linalg.triangular_solve(upper, z, lower=False)
        z = tf.linalg.triangular_solve(lower, z, lower=True)"""),),
           "backward_undoes_forward", "wrong order"),
    mixing("backward_forgets_permutation",
           (("z = tf.matmul(permutation, h, transpose_a=True, transpose_b=True)", "z = tf.transpose(h)"),),
           "backward_undoes_forward", "forgets the permutation"),
    mixing("log_det_numpy", ((LOG_DET, "return tf.reduce_sum(self.log_abs_s.numpy())"),),
           "gradients_reach_every_variable", "gradients cut in log_det_jacobian()"),
    # Glow
    mixing("glow_backward_not_reversed", ((GLOW_BACKWARD, "for mixing, coupling in self.steps:"),),
           "glow_backward_undoes_forward", "wrong order"),
    mixing("glow_backward_inner_order", (("x = mixing.backward(coupling.backward(x))",
                                          "x = coupling.backward(mixing.backward(x))"),),
           "glow_backward_undoes_forward", "undo the coupling first"),
    mixing("glow_coupling_first", (("h = coupling.forward(mixing.forward(h))",
                                    "h = mixing.forward(coupling.forward(h))"),),
           "glow_forward_is_the_composition", "mixes first"),
    mixing("glow_forgets_mixing_log_det",
           ((GLOW_TERMS, "log_det = log_det + coupling.log_det_jacobian(h)"),),
           "glow_log_det_sums_its_steps", "forgets the mixing layers"),
    mixing("glow_forgets_coupling_log_det",
           ((GLOW_TERMS, "log_det = log_det + mixing.log_det_jacobian()"),),
           "glow_log_det_sums_its_steps", "forgets the couplings"),
    mixing("glow_mixing_log_det_split_over_batch",
           ((GLOW_TERMS, "log_det = log_det + mixing.log_det_jacobian() "
                         "/ tf.cast(tf.shape(h)[0], tf.float32) + coupling.log_det_jacobian(h)"),),
           "glow_log_det_sums_its_steps", "split across the batch"),
    mixing("glow_log_det_not_per_example",
           (("            h = coupling.forward(h)\n        return log_det",
             "            h = coupling.forward(h)\n        return tf.reduce_sum(log_det)"),),
           "glow_log_det_sums_its_steps", "one value per example"),
    mixing("glow_coupling_term_before_mixing",
           (("            h = mixing.forward(h)\n            " + GLOW_TERMS,
             "            log_det = log_det + coupling.log_det_jacobian(h)\n"
             "            h = mixing.forward(h)\n"
             "            log_det = log_det + mixing.log_det_jacobian()"),),
           "glow_log_det_sums_its_steps", "the coupling's own input"),
    mixing("glow_ignores_sizes", (("hidden_units=hidden_units, hidden_layers=hidden_layers,\n"
                                   '                            name=f"coupling_{k}"',
                                   'name=f"coupling_{k}"'),),
           "sizes_asked_for", "does not pass hidden_units"),
]
