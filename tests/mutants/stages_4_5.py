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
]
