"""Classic mistakes of stages 1-2 (coupling layer, model)."""

from mutation_support import Mutant

NET = "self.m = coupling_network(len(self.keep), len(self.change), hidden_units, hidden_layers)"
FORWARD_SHIFT = "return self.merge(x_keep, x_change + self.m(x_keep))"
COUPLINGS_LIST = """        self.couplings = [
            AdditiveCoupling(dim, parity=i % 2, hidden_units=hidden_units,
                             hidden_layers=hidden_layers, name=f"coupling_{i}")
            for i in range(num_couplings)
        ]"""

MUTANTS = [
    # Stage 1 - coupling.py
    Mutant("coupling_weight_sharing", "coupling", "coupling.py",
           ((NET, "self.m = _shared_network(len(self.keep), len(self.change), hidden_units, hidden_layers)"),
            ("class AdditiveCoupling(", "_CACHE = {}\n\n\ndef _shared_network(*shape):\n"
             "    if shape not in _CACHE:\n        _CACHE[shape] = coupling_network(*shape)\n"
             "    return _CACHE[shape]\n\n\nclass AdditiveCoupling(")),
           "owns_its_network", "weight sharing"),
    Mutant("coupling_numpy_inside", "coupling", "coupling.py",
           ((FORWARD_SHIFT, "return self.merge(x_keep, x_change + np.asarray(self.m(x_keep)))"),),
           "gradients_reach", "gradients cut"),
    Mutant("coupling_batchnorm", "coupling", "coupling.py",
           (('layers.append(tf.keras.layers.Dense(out_dim, kernel_initializer="zeros"))',
             'layers.append(tf.keras.layers.BatchNormalization())\n'
             '    layers.append(tf.keras.layers.Dense(out_dim, kernel_initializer="zeros"))'),
            (FORWARD_SHIFT, "return self.merge(x_keep, x_change + self.m(x_keep, training=True))"),
            ("y_change - self.m(y_keep)", "y_change - self.m(y_keep, training=True)")),
           "depend_on_the_batch", "batch dependence"),
    Mutant("coupling_backward_adds", "coupling", "coupling.py",
           (("y_change - self.m(y_keep)", "y_change + self.m(y_keep)"),),
           "backward_undoes_forward", "subtract"),
    Mutant("coupling_m_of_changed_part", "coupling", "coupling.py",
           ((FORWARD_SHIFT, "return self.merge(x_keep, x_change + self.m(x_change))"),),
           "shift_depends_only", "m must take x_keep"),
    Mutant("coupling_keeps_nothing", "coupling", "coupling.py",
           ((FORWARD_SHIFT,
             "return self.merge(x_keep + self.m(x_keep)[:, :1], x_change + self.m(x_keep))"),),
           "exactly_one_part", "pass through unchanged"),
    # Stage 2 - model.py
    Mutant("model_no_alternation", "model", "model.py",
           (("parity=i % 2", "parity=0"),), "every_coordinate", "no alternation"),
    Mutant("model_wrong_order", "model", "model.py",
           (("for coupling in reversed(self.couplings):", "for coupling in self.couplings:"),),
           "reverse_order", "wrong order"),
    Mutant("model_weight_sharing", "model", "model.py",
           ((COUPLINGS_LIST, "        pair = [AdditiveCoupling(dim, parity=p, hidden_units=hidden_units,\n"
             "                                 hidden_layers=hidden_layers) for p in (0, 1)]\n"
             "        self.couplings = pair * (num_couplings // 2)"),),
           "no_weight_sharing", "weight sharing"),
    Mutant("model_log_det_sign", "model", "model.py",
           (("return tf.reduce_sum(self.log_scale)", "return -tf.reduce_sum(self.log_scale)"),),
           "sum_of_log_scale", "wrong sign"),
    Mutant("model_missing_scale", "model", "model.py",
           (("return h * tf.exp(self.log_scale)", "return h"),),
           "forward_is_the_composition", "skips the scaling layer"),
    Mutant("model_erratum_original_input", "model", "model.py",
           (("        for coupling in self.couplings:\n            h = coupling.forward(h)",
             "        x0 = h\n        for coupling in self.couplings:\n"
             "            h = h + coupling.forward(x0) - x0"),),
           "forward_is_the_composition", "section 5 erratum"),
    Mutant("model_batch_statistics", "model", "model.py",
           (("        h = as_batch(x, self.dim)\n",
             "        h = as_batch(x, self.dim)\n        h = h - tf.reduce_mean(h, axis=0)\n"),),
           "depend_on_the_batch", "batch dependence"),
]

MERGE = "return tf.gather(tf.concat([keep, change], axis=1), order, axis=1)"
PARTITION = """    even, odd = np.arange(0, dim, 2), np.arange(1, dim, 2)
    return (even, odd) if parity == 0 else (odd, even)"""
HIDDEN = 'tf.keras.layers.Dense(hidden_units, activation="relu") for _ in range(hidden_layers)'
MODEL_SIZES = """hidden_units=hidden_units,
                             hidden_layers=hidden_layers, name"""

MUTANTS += [
    # Stage 1: the arguments are honoured
    Mutant("coupling_ignores_hidden_layers", "coupling", "coupling.py",
           ((HIDDEN, 'tf.keras.layers.Dense(hidden_units, activation="relu") for _ in range(3)'),),
           "sizes_asked_for", "ignores hidden_layers"),
    Mutant("coupling_ignores_hidden_units", "coupling", "coupling.py",
           ((HIDDEN, 'tf.keras.layers.Dense(64, activation="relu") for _ in range(hidden_layers)'),),
           "sizes_asked_for", "ignores hidden_units"),
    # Stage 1: odd D. Halves of D // 2 each: the middle coordinate of odd D never changes.
    Mutant("coupling_odd_d_drops_middle", "coupling", "coupling.py",
           ((PARTITION, "    half = dim // 2\n"
             "    first, second = np.arange(half), np.arange(dim - half, dim)\n"
             "    return (first, second) if parity == 0 else (second, first)"),),
           "odd_and_small_dimensions and (3 or 5)", "one more coordinate than the other"),
    # m fed the changed part: for D = 3 and 5 the sizes differ, and Keras raises; the check says
    # so in one line instead of a traceback.
    Mutant("coupling_m_of_changed_part_odd_d", "coupling", "coupling.py",
           ((FORWARD_SHIFT, "return self.merge(x_keep, x_change + self.m(x_change))"),),
           "odd_and_small_dimensions and (3 or 5)", "check which part you feed m",
           first="m must take x_keep"),  # at D = 6 already: the shift check names it first
    # A sign mistake seen at D = 2 is named as the sign mistake, not as an odd-D sizing problem.
    Mutant("coupling_backward_adds_small_d", "coupling", "coupling.py",
           (("y_change - self.m(y_keep)", "y_change + self.m(y_keep)"),),
           "odd_and_small_dimensions and 2", "subtract the shift"),
    # The parts merged side by side: for even/odd that puts columns at the wrong indices.
    Mutant("coupling_merge_unordered", "coupling", "coupling.py",
           ((MERGE, "return tf.concat([keep, change], axis=1)"),),
           "exactly_one_part", "back at its own index"),
    # Stage 2: the arguments are honoured
    Mutant("model_ignores_num_couplings", "model", "model.py",
           (("for i in range(num_couplings)", "for i in range(4)"),),
           "sizes_asked_for", "ignores num_couplings"),
    Mutant("model_ignores_network_sizes", "model", "model.py",
           ((MODEL_SIZES, "name"),),
           "sizes_asked_for", "does not pass hidden_units and hidden_layers"),
]

MUTANTS += [
    # Predict, then check: a wrong number is named, and the expected value is never printed.
    Mutant("coupling_prediction_off", "coupling", "coupling.py",
           (('"coupling_parameters": 183,', '"coupling_parameters": 180,'),),
           "prediction", "to match what the code computes"),
    # The meaning of the scale reversed (issue 12): S = std instead of 1 / std.
    Mutant("model_prediction_scale_reversed", "model", "model.py",
           (('"ml_log_scale": 2.3026,', '"ml_log_scale": -2.3026,'),),
           "prediction", "to match what the code computes"),
]
