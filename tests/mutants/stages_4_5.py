"""Classic mistakes of stages 4-5 (inpainting, outlier detection)."""

from mutation_support import Mutant

WHERE = "return tf.where(known, x, stepped)"
UPHILL = "stepped = z + alpha * (grad + eps)"
LOOP = "        z = step(z, alpha, eps)\n"
QUANTILE = "return float(np.quantile(valid, false_alarm_rate))"
FLAGS = "return np.asarray(log_liks < threshold)"
PR = "return float(precision), float(recall)"
NOISE = "return (x + level * rng.standard_normal(x.shape)).astype(np.float32)"

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
           (("alpha = step_size * 100.0 / (100.0 + i)", "alpha = step_size"),),
           "follow_the_schedule", "step_size * 100 / (100 + i)"),
    Mutant("inpainting_noise_ignored", "inpainting", "inpainting.py",
           (("eps = noise * rng.standard_normal(x.shape).astype(np.float32) if noise else no_noise",
             "eps = no_noise"),), "noise_term", "noise"),
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
