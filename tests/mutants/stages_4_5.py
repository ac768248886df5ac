"""Classic mistakes of stages 4-5 (inpainting, outlier detection)."""

from mutation_support import Mutant

WHERE = "return tf.where(known, x, stepped)"
UPHILL = "stepped = z + alpha * (grad + eps)"
LOOP = "        z = step(z, alpha, eps)\n"
QUANTILE = "return float(np.quantile(valid, false_alarm_rate))"
FLAGS = "return np.asarray(log_liks < threshold)"
PR = "return float(precision), float(recall)"
NOISE = "return (x + level * rng.standard_normal(x.shape)).astype(np.float32)"
CLIP = "stepped = tf.clip_by_value(stepped, bounds[0], bounds[1])"
SCHEDULE = "alpha = step_size * 100.0 / (100.0 + i)"
EPS = "eps = noise * rng.standard_normal(x.shape).astype(np.float32) if noise else no_noise"
RETURN = "return np.asarray(z, dtype=np.float32)"
PARTS = "part_a, part_b = valid[order[: len(valid) // 2]], valid[order[len(valid) // 2:]]"
ENTROPY = "entropy = float(-np.mean(part_a))"
BATCHES = "batches = rng.choice(part_b, size=(TYPICALITY_BATCHES, int(batch_size)), replace=True)"
STATISTIC = "statistic = np.abs(-batches.mean(axis=1) - entropy)"
EPSILON = "return entropy, float(np.quantile(statistic, 1 - false_alarm_rate))"
FLAG_BATCHES = "return np.asarray(np.abs(-batches.mean(axis=1) - entropy) > epsilon)"

MUTANTS = [
    # Stage 4 - inpainting.py
    Mutant("inpainting_updates_observed", "inpainting", "inpainting.py",
           ((WHERE, "return stepped"),), "observed_entries_unchanged", "updating observed entries"),
    Mutant("inpainting_inverted_mask", "inpainting", "inpainting.py",
           ((WHERE, "return tf.where(known, stepped, x)"),), "observed_entries_unchanged", "inverted mask"),
    Mutant("inpainting_descends", "inpainting", "inpainting.py",
           ((UPHILL, "stepped = z - alpha * (grad + eps)"),), "log_likelihood_rises",
           "descending instead of ascending"),
    Mutant("inpainting_descends_schedule", "inpainting", "inpainting.py",
           ((UPHILL, "stepped = z - alpha * (grad + eps)"),), "follow_the_schedule", "descending"),
    Mutant("inpainting_no_op", "inpainting", "inpainting.py",
           ((LOOP, "        step(z, alpha, eps)\n"),), "hidden_entries_are_filled", "no-op"),
    Mutant("inpainting_no_projection", "inpainting", "inpainting.py",
           (("stepped = tf.clip_by_value(stepped, bounds[0], bounds[1])", "pass"),),
           "bounds_project", "after every step"),
    Mutant("inpainting_constant_step", "inpainting", "inpainting.py",
           ((SCHEDULE, "alpha = step_size"),), "follow_the_schedule", "a constant step"),
    Mutant("inpainting_paper_schedule_ignores_step_size", "inpainting", "inpainting.py",
           ((SCHEDULE, "alpha = 10.0 / (100.0 + i)"),), "follow_the_schedule", "whatever step_size is"),
    Mutant("inpainting_schedule_off_by_one", "inpainting", "inpainting.py",
           ((SCHEDULE, "alpha = step_size * 100.0 / (101.0 + i)"),), "follow_the_schedule", "off by one"),
    Mutant("inpainting_one_step_too_few", "inpainting", "inpainting.py",
           (("for i in range(steps):", "for i in range(steps - 1):"),), "follow_the_schedule",
           "one step too few"),
    Mutant("inpainting_gradient_at_the_start", "inpainting", "inpainting.py",
           (("tape.watch(z)\n        total = tf.reduce_sum(log_likelihood(model, prior, z))",
             "tape.watch(x)\n        total = tf.reduce_sum(log_likelihood(model, prior, x))"),
            ("grad = tape.gradient(total, z)", "grad = tape.gradient(total, x)")),
           "follow_the_schedule", "taken once, at the start"),
    Mutant("inpainting_gradient_of_the_mean", "inpainting", "inpainting.py",
           (("total = tf.reduce_sum(log_likelihood(model, prior, z))",
             "total = tf.reduce_mean(log_likelihood(model, prior, z))"),),
           "follow_the_schedule", "MEAN log-likelihood"),
    Mutant("inpainting_observed_restored_at_the_end", "inpainting", "inpainting.py",
           ((WHERE, "return stepped"),
            (RETURN, "return np.where(known, x, np.asarray(z)).astype(np.float32)")),
           "follow_the_schedule", "put back only at the end"),
    Mutant("inpainting_starts_from_zeros", "inpainting", "inpainting.py",
           (("    z = x\n", "    z = np.where(known, x, 0.0).astype(np.float32)\n"),),
           "follow_the_schedule", "started from zeros"),
    Mutant("inpainting_projects_at_the_end", "inpainting", "inpainting.py",
           ((CLIP, "pass"),
            (RETURN, "return np.asarray(z if bounds is None else np.where(known, x, np.clip(z, *bounds)), "
                     "dtype=np.float32)")),
           "bounds_project", "projecting only at the end"),
    Mutant("inpainting_clips_observed", "inpainting", "inpainting.py",
           ((CLIP, "pass"),
            (WHERE, "out = tf.where(known, x, stepped)\n"
                    "    return out if bounds is None else tf.clip_by_value(out, bounds[0], bounds[1])")),
           "bounds_project", "clipping the observed entries too"),
    Mutant("inpainting_noise_ignored", "inpainting", "inpainting.py",
           ((EPS, "eps = no_noise"),), "noise_term", "noise never added"),
    Mutant("inpainting_noise_ignored_spread", "inpainting", "inpainting.py",
           ((EPS, "eps = no_noise"),), "noise_term_has", "noise never added"),
    Mutant("inpainting_langevin_noise", "inpainting", "inpainting.py",
           ((UPHILL, "stepped = z + alpha * grad + tf.sqrt(2.0 * alpha) * eps"),),
           "noise_term_has", "Langevin"),
    Mutant("inpainting_noise_outside_the_step", "inpainting", "inpainting.py",
           ((UPHILL, "stepped = z + alpha * grad + eps"),), "noise_term_has", "outside the step"),
    Mutant("inpainting_noise_drawn_once", "inpainting", "inpainting.py",
           (("no_noise = np.zeros(x.shape, np.float32)",
             "no_noise = noise * rng.standard_normal(x.shape).astype(np.float32)"), (EPS, "eps = no_noise")),
           "noise_term_has", "the same eps at every step"),
    Mutant("inpainting_noise_ignores_its_scale", "inpainting", "inpainting.py",
           ((EPS, "eps = rng.standard_normal(x.shape).astype(np.float32) if noise else no_noise"),),
           "noise_term_has", "ignores the `noise` argument"),
    Mutant("inpainting_noise_shared_by_coordinates", "inpainting", "inpainting.py",
           ((EPS, "eps = noise * np.broadcast_to(rng.standard_normal((x.shape[0], 1)), x.shape)"
                  ".astype(np.float32) if noise else no_noise"),),
           "noise_term_has", "the same noise for every coordinate"),
    # Stage 5 - outliers.py
    Mutant("outliers_wrong_tail", "outliers", "outliers.py",
           ((QUANTILE, "return float(np.quantile(valid, 1 - false_alarm_rate))"),),
           "threshold", "wrong tail"),
    Mutant("outliers_flags_flipped", "outliers", "outliers.py",
           ((FLAGS, "return np.asarray(log_liks > threshold)"),), "flags_mark_low", "flags flipped"),
    Mutant("outliers_precision_recall_swapped", "outliers", "outliers.py",
           ((PR, "return float(recall), float(precision)"),), "agree_with_sklearn", "swapped"),
    Mutant("outliers_noise_ignores_level", "outliers", "outliers.py",
           ((NOISE, "return (x + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)"),),
           "noise_has_the_requested_std", "ignores its level"),
    Mutant("outliers_noise_ignores_level_recall", "outliers", "outliers.py",
           ((NOISE, "return (x + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)"),),
           "recall_rises", "ignores its level"),
    Mutant("outliers_precision_nan_when_nothing_flagged", "outliers", "outliers.py",
           (("precision = tp / (tp + fp) if tp + fp else 0.0",
             "precision = tp / (tp + fp) if tp + fp else float('nan')"),),
           "nothing_is_flagged", "0/0"),
    Mutant("outliers_noise_clipped", "outliers", "outliers.py",
           ((NOISE, "return np.clip(x + level * rng.standard_normal(x.shape), 0, 1).astype(np.float32)"),),
           "noise_has_the_requested_std", "clipped"),
    Mutant("outliers_noise_shared_by_examples", "outliers", "outliers.py",
           ((NOISE, "return (x + level * rng.standard_normal(x.shape[1])).astype(np.float32)"),),
           "noise_is_gaussian", "across examples"),
    Mutant("outliers_noise_uniform", "outliers", "outliers.py",
           ((NOISE, "return (x + level * np.sqrt(3) * rng.uniform(-1, 1, x.shape)).astype(np.float32)"),),
           "noise_is_gaussian", "another law"),
    Mutant("typicality_same_points", "outliers", "outliers.py",
           ((PARTS, "part_a, part_b = valid, valid"),), "entropy_comes_from_one_part", "same points"),
    Mutant("typicality_entropy_is_mean_log_lik", "outliers", "outliers.py",
           ((ENTROPY, "entropy = float(np.mean(part_a))"),), "entropy_comes_from_one_part", "NEGATIVE"),
    Mutant("typicality_epsilon_wrong_tail", "outliers", "outliers.py",
           ((EPSILON, "return entropy, float(np.quantile(statistic, false_alarm_rate))"),),
           "false_alarms_on_fresh", "wrong tail"),
    Mutant("typicality_epsilon_one_sided", "outliers", "outliers.py",
           ((STATISTIC, "statistic = -batches.mean(axis=1) - entropy"),),
           "false_alarms_on_fresh", "one-sided statistic"),
    Mutant("typicality_epsilon_from_single_points", "outliers", "outliers.py",
           ((BATCHES, "batches = rng.choice(part_b, size=(TYPICALITY_BATCHES, 1), replace=True)"),),
           "epsilon_shrinks", "single points"),
    Mutant("typicality_statistic_from_sums", "outliers", "outliers.py",
           ((STATISTIC, "statistic = np.abs(-batches.sum(axis=1) - entropy)"),), "epsilon_shrinks", "SUM"),
    Mutant("typicality_unseeded", "outliers", "outliers.py",
           (("rng = np.random.default_rng(seed)\n    order", "rng = np.random.default_rng()\n    order"),),
           "fit_typicality_returns", "seeded with `seed`"),
    Mutant("flag_batches_one_sided", "outliers", "outliers.py",
           ((FLAG_BATCHES, "return np.asarray((-batches.mean(axis=1) - entropy) > epsilon)"),),
           "two_sided", "one-sided test"),
    Mutant("flag_batches_one_sided_detection", "outliers", "outliers.py",
           ((FLAG_BATCHES, "return np.asarray((-batches.mean(axis=1) - entropy) > epsilon)"),),
           "detects_shifted", "one-sided"),
    Mutant("flag_batches_log_lik_for_nll", "outliers", "outliers.py",
           ((FLAG_BATCHES, "return np.asarray(np.abs(batches.mean(axis=1) - entropy) > epsilon)"),),
           "two_sided", "taken for NLLs"),
    Mutant("answer_alpha_without_the_schedule", "inpainting", "inpainting.py",
           (('"alpha_at_step_100": 0.05,', '"alpha_at_step_100": 0.1,'),), "prediction",
           "redo the arithmetic"),
    Mutant("answer_log_det_share_nonzero", "outliers", "outliers.py",
           (('"log_det_share_of_dimming": 0.0,', '"log_det_share_of_dimming": 120.0,'),),
           "prediction", "redo the arithmetic"),
    Mutant("flag_batches_wrong_axis", "outliers", "outliers.py",
           ((FLAG_BATCHES, "return np.asarray(np.abs(-batches.mean(axis=0) - entropy) > epsilon)"),),
           "two_sided", "one flag per batch"),
]

#: Correct variants: written differently from the reference, each right by the contract (the
#: curriculum leaves these choices open). tests/test_variants_4_5.py checks that every one passes
#: every check of its stage.
VARIANTS = [
    Mutant("inpainting_eager_loop_without_make_step", "inpainting", "inpainting.py",
           (("    step = make_step(model, prior, x, tf.constant(known), bounds)\n",
             "    known_t = tf.constant(known)\n\n"
             "    def step(z, alpha, eps):\n"
             "        return ascent_step(model, prior, tf.convert_to_tensor(z, tf.float32), x, known_t,\n"
             "                           tf.constant(alpha, tf.float32), eps, bounds)\n"),), "", ""),
    Mutant("inpainting_noise_from_tf_random_generator", "inpainting", "inpainting.py",
           (("    rng = np.random.default_rng(seed)\n    step =",
             "    rng = (tf.random.Generator.from_seed(seed) if seed is not None\n"
             "           else tf.random.Generator.from_non_deterministic_state())\n    step ="),
            (EPS, "eps = noise * rng.normal(x.shape) if noise else no_noise")), "", ""),
    Mutant("inpainting_noise_scale_inside_the_draw", "inpainting", "inpainting.py",
           ((EPS, "eps = rng.normal(0.0, noise, size=x.shape).astype(np.float32) if noise else no_noise"),),
           "", ""),
    Mutant("inpainting_projection_in_the_loop", "inpainting", "inpainting.py",
           ((CLIP, "pass"),
            (LOOP, "        z = step(z, alpha, eps)\n"
                   "        if bounds is not None:\n"
                   "            z = tf.where(known, x, tf.clip_by_value(z, bounds[0], bounds[1]))\n")),
           "", ""),
    Mutant("inpainting_numpy_select_in_the_step", "inpainting", "inpainting.py",
           ((WHERE, "return np.where(np.asarray(known), np.asarray(x), np.asarray(stepped))"
                    ".astype(np.float32)"),),
           "", ""),
    Mutant("outliers_threshold_from_percentile", "outliers", "outliers.py",
           ((QUANTILE, "return float(np.percentile(valid, 100 * false_alarm_rate))"),), "", ""),
    Mutant("typicality_analytic_epsilon", "outliers", "outliers.py",
           ((BATCHES, "from scipy.stats import norm"),
            (STATISTIC, "spread = part_b.std(ddof=1) / math.sqrt(batch_size)"),
            (EPSILON, "return entropy, float(norm.ppf(1 - false_alarm_rate / 2) * spread)")), "", ""),
    Mutant("typicality_third_and_batches_without_replacement", "outliers", "outliers.py",
           ((PARTS, "part_a, part_b = valid[order[: len(valid) // 3]], valid[order[len(valid) // 3:]]"),
            (BATCHES, "batches = np.stack([rng.choice(part_b, int(batch_size), replace=False)\n"
                      "                        for _ in range(TYPICALITY_BATCHES)])")), "", ""),
    Mutant("flag_batches_from_log_likelihoods", "outliers", "outliers.py",
           ((FLAG_BATCHES, "return np.abs(np.mean(batches, axis=1) + entropy) > epsilon"),), "", ""),
]
