"""``nicelab outliers DATA``: detect corrupted data by its likelihood with the implementation's
stage 5 (``corrupt``, ``choose_threshold``, ``flag_outliers``, ``precision_recall``) and a
trained model (``nicelab train``'s, or trained now).

The threshold comes from the validation split only (false-alarm rate ``--rate``). Each
corruption kind (noise for every data set; rotate, contrast and morph for images) is applied
to the test set at increasing levels; the test set mixed 1:1 with its corrupted copy gives
precision, recall and AUROC. Then the known failure (Nalisnick et al. 2019): the corruption
the likelihood ranks *above* clean data, and a remedy, the two-sided typicality test on
batches (Nalisnick et al. 2019b) with the implementation's ``fit_typicality`` and
``flag_batches`` (``--typicality-batch`` sets the batch size).

Writes ``outliers_histograms.png``, ``outliers_levels.png``, ``outliers_roc.png``,
``outliers_typicality.png`` (images, when a failure case is found) and ``outliers.json``.
"""

from __future__ import annotations

import argparse
import json

from nicelab.cli.commands import add_data_argument, add_impl_argument, data_name
from nicelab.cli.options import add_model_arguments
from nicelab.core.toy import NAMES as TOY_NAMES

#: Levels per kind: noise std (pixels in [0, 1], parabola raw units), degrees, fractions.
LEVELS = {
    "noise": (0.01, 0.02, 0.05, 0.1, 0.2),
    "rotate": (5, 15, 30, 60, 90),
    "contrast": (0.1, 0.2, 0.4, 0.6, 0.8, 1.0),
    "morph": (0.1, 0.2, 0.4, 0.6, 0.8, 1.0),
}
PARABOLA_LEVELS = {"noise": (0.25, 0.5, 1.0, 2.0, 4.0)}  # every 2-D set: parabola and toy sets
TWO_D = ("parabola", *TOY_NAMES)
#: The level of each kind shown in the histograms and the ROC / precision-recall curves.
SHOWN = {"noise": 0.05, "rotate": 15, "contrast": 0.4, "morph": 0.4}
TYPICALITY_BATCH = 10
BATCH_SWEEP = (1, 5, 10, 25, 50)
#: Batches of clean test data and of the failure case the typicality test is applied to.
N_BATCHES = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_argument(parser, default="digits")
    add_impl_argument(parser)
    parser.add_argument("--rate", type=float, default=0.05,
                        help="false-alarm rate the threshold is chosen for, on validation data "
                             "(default 0.05)")
    parser.add_argument("--kinds", nargs="+", metavar="KIND",
                        help="corruption kinds (default: noise, and rotate, contrast, morph for images)")
    parser.add_argument("--examples", type=int, help="test examples (default: all; MNIST 2000)")
    parser.add_argument("--typicality-batch", type=int, default=TYPICALITY_BATCH,
                        help="batch size of the typicality test (default 10)")
    add_model_arguments(parser)


def evaluate(stage, ll_clean, ll_corrupt, tau):
    """Precision, recall (the implementation's functions) and AUROC of the 1:1 mix."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    scores = np.concatenate([ll_clean, ll_corrupt])
    is_outlier = np.r_[np.zeros(len(ll_clean), bool), np.ones(len(ll_corrupt), bool)]
    flags = np.asarray(stage.flag_outliers(scores, tau))
    precision, recall = (float(v) for v in stage.precision_recall(flags, is_outlier))
    return precision, recall, float(roc_auc_score(is_outlier, -scores))


def batches_of(values, m: int, rng, n_batches: int = N_BATCHES):
    """``(n_batches, m)``: batches of ``m`` values drawn with replacement (independent draws)."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    return values[rng.integers(0, len(values), (n_batches, m))]


def typicality(stage, ll_valid, ll_test, ll_failure, rate, batch, seed=0) -> dict:
    """The remedy with the implementation's ``fit_typicality`` and ``flag_batches``: fitted on the
    validation log-likelihoods for batches of ``batch`` (the entropy H_hat and epsilon from two
    disjoint parts), then applied to batches of clean test data (never fitted on) and of the
    failure case. Also the one-sided batch test (mean log-likelihood below the rate-quantile of
    validation batch means) and the two-sided test on single examples, for comparison."""
    import numpy as np

    entropy, epsilon = (float(v) for v in stage.fit_typicality(ll_valid, batch, rate, seed=seed))
    rng = np.random.default_rng(seed + 1)
    clean, failure = batches_of(ll_test, batch, rng), batches_of(ll_failure, batch, rng)

    def flagged(batches, h, eps):
        return float(np.mean(np.asarray(stage.flag_batches(batches, h, eps), dtype=bool)))

    one_sided_tau = float(np.quantile(batches_of(ll_valid, batch, rng).mean(axis=1), rate))
    single_h, single_eps = (float(v) for v in stage.fit_typicality(ll_valid, 1, rate, seed=seed))
    return {
        "batch_size": batch, "entropy_estimate": entropy, "epsilon": epsilon,
        "two_sided_batch_detection": flagged(failure, entropy, epsilon),
        "two_sided_batch_false_alarms": flagged(clean, entropy, epsilon),
        "one_sided_batch_detection": float(np.mean(failure.mean(axis=1) < one_sided_tau)),
        "two_sided_single_detection": flagged(np.asarray(ll_failure)[:, None], single_h, single_eps),
        "two_sided_single_false_alarms": flagged(np.asarray(ll_test)[:, None], single_h, single_eps),
        "_stats": (np.abs(-clean.mean(axis=1) - entropy), np.abs(-failure.mean(axis=1) - entropy)),
        "by_batch_size": [sweep(stage, ll_valid, ll_test, ll_failure, rate, m, seed)
                          for m in BATCH_SWEEP if m <= len(ll_valid) // 2],
    }


def sweep(stage, ll_valid, ll_test, ll_failure, rate, m, seed=0) -> dict:
    """The two-sided typicality test on batches of ``m``, fitted on validation data: the fraction
    of failure-case batches detected and of clean test batches flagged."""
    import numpy as np

    entropy, epsilon = (float(v) for v in stage.fit_typicality(ll_valid, m, rate, seed=seed))
    rng = np.random.default_rng(seed + 1)
    clean, failure = batches_of(ll_test, m, rng), batches_of(ll_failure, m, rng)
    return {"batch_size": m, "epsilon": epsilon,
            "detection": float(np.mean(np.asarray(stage.flag_batches(failure, entropy, epsilon)))),
            "false_alarms": float(np.mean(np.asarray(stage.flag_batches(clean, entropy, epsilon))))}


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from nicelab.cli import options as stagerun
    from nicelab.core.validate import check_choice, check_positive_int
    from nicelab.plots import stages as stageplots
    from nicelab.tasks import corruptions

    name = data_name(args)
    levels = PARABOLA_LEVELS if name in TWO_D else LEVELS
    kinds = tuple(args.kinds or levels)
    for kind in kinds:
        check_choice(kind, tuple(levels), f"corruption kind for {name}")
    if not 0 < args.rate < 1:
        raise ValueError(f"--rate must be a fraction strictly between 0 and 1, got {args.rate}.")
    batch = check_positive_int(args.typicality_batch, "--typicality-batch", minimum=2)
    modules, data, trained, out = stagerun.load(args, ("outliers",), name)
    stage = modules["outliers"]
    n = min(len(data.test), check_positive_int(args.examples or (2000 if "mnist" in name else len(data.test)),
                                               "--examples"))
    test = data.test[:n]

    def log_lik(x):
        return stagerun.log_likelihoods(modules, trained, x)

    ll_valid, ll_test = log_lik(data.valid), log_lik(test)
    tau = float(stage.choose_threshold(ll_valid, args.rate))
    false_alarms = float(np.mean(np.asarray(stage.flag_outliers(ll_test, tau))))
    print(f"threshold tau = {tau:.2f} nats: the {args.rate:.0%} quantile of {len(ll_valid)} validation "
          f"log-likelihoods; it flags {false_alarms:.1%} of {n} clean test examples (false alarms)")
    targets, target_name = (corruptions.morph_targets(data.dim, name, data.levels) if "morph" in kinds
                            else (None, None))
    if target_name:
        print(f"morph targets: {target_name}")
    rows, shown, lls = [], {}, {}
    for kind in kinds:
        for i, level in enumerate(levels[kind]):
            extra = {"targets": targets} if kind == "morph" else {}
            corrupted = np.asarray(stage.corrupt(test, kind, level, seed=100 + i, **extra), dtype=np.float32)
            ll = log_lik(corrupted)
            precision, recall, auroc = evaluate(stage, ll_test, ll, tau)
            rows.append({"kind": kind, "level": level, "mean_log_lik": float(np.mean(ll)),
                         "precision": precision, "recall": recall, "auroc": auroc})
            lls[(kind, level)] = (ll, corrupted)
        pick = SHOWN.get(kind) if name not in TWO_D else 1.0
        if pick not in levels[kind]:
            pick = levels[kind][len(levels[kind]) // 2]
        shown[kind] = (pick, lls[(kind, pick)][0])
    print(f"test examples mixed 1:1 with their corrupted copies (outliers = positive class); clean test mean "
          f"log-likelihood {np.mean(ll_test):.2f}")
    stagerun.print_table(("kind", "level", "mean log-lik", "precision", "recall", "AUROC"),
                         [(r["kind"], r["level"], r["mean_log_lik"], r["precision"], r["recall"], r["auroc"])
                          for r in rows], ("s", "g", ".2f", ".3f", ".3f", ".3f"))
    figures = [stageplots.outlier_histograms(ll_test, shown, tau, out / "outliers_histograms.png"),
               stageplots.outlier_levels(rows, float(np.mean(ll_test)), out / "outliers_levels.png"),
               stageplots.roc_pr_curves(ll_test, shown, out / "outliers_roc.png")]
    summary = {"data": name, "impl": str(args.impl), "examples": n, "false_alarm_rate": args.rate,
               "threshold": tau, "test_false_alarms": false_alarms,
               "clean_mean_log_lik": float(np.mean(ll_test)),
               "morph_targets": target_name, "rows": rows}
    worst = min(rows, key=lambda r: r["auroc"])
    if worst["auroc"] < 0.5:
        ll_fail = lls[(worst["kind"], worst["level"])][0]
        label = f"{worst['kind']} {worst['level']:g}"
        print(f"\nthe known failure (Nalisnick et al. 2019): {label} has mean log-likelihood "
              f"{worst['mean_log_lik']:.2f}, ABOVE the clean test's {np.mean(ll_test):.2f}: AUROC "
              f"{worst['auroc']:.3f}, recall {worst['recall']:.3f} at the one-sided threshold")
        try:
            remedy = typicality(stage, ll_valid, ll_test, ll_fail, args.rate, batch)
        except (NotImplementedError, AttributeError) as err:
            print(f"the remedy needs the typicality test of stage 5 (fit_typicality, flag_batches): {err}")
            remedy = None
        if remedy is not None:
            clean_stats, failure_stats = remedy.pop("_stats")
            print(f"remedy, the two-sided typicality test on batches of {batch} (fit_typicality on "
                  f"validation: H_hat = {remedy['entropy_estimate']:.2f} and "
                  f"epsilon = {remedy['epsilon']:.2f} from two disjoint parts; flag_batches: "
                  f"|mean NLL - H_hat| > epsilon): flags {remedy['two_sided_batch_detection']:.1%} of "
                  f"{label} batches and {remedy['two_sided_batch_false_alarms']:.1%} of clean test "
                  f"batches; the one-sided test on the same batches flags "
                  f"{remedy['one_sided_batch_detection']:.1%}; two-sided on single examples: "
                  f"{remedy['two_sided_single_detection']:.1%} detected, "
                  f"{remedy['two_sided_single_false_alarms']:.1%} false alarms")
            print("the typicality test's power grows with the batch size (fitted on validation for each "
                  "size):")
            stagerun.print_table(("batch size", "detected", "clean batches flagged"),
                                 [(r["batch_size"], r["detection"], r["false_alarms"])
                                  for r in remedy["by_batch_size"]],
                                 ("d", ".1%", ".1%"))
            figures.append(stageplots.typicality_figure(ll_test, ll_fail, label, tau, clean_stats,
                                                        failure_stats, remedy["epsilon"], batch,
                                                        out / "outliers_typicality.png"))
        summary["failure_case"] = {"kind": worst["kind"], "level": worst["level"], **(remedy or {})}
    else:
        print(f"\nno corruption here was ranked above the clean data (lowest AUROC {worst['auroc']:.3f}, "
              f"{worst['kind']} {worst['level']:g})")
        summary["failure_case"] = None
    (out / "outliers.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {len(figures)} figures and outliers.json in {out}:")
    for figure in figures:
        print(f"  {figure}")
    return 0
