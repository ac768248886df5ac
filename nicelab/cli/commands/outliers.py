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

import numpy as np

from nicelab.cli import options as stagerun
from nicelab.cli.commands import add_data_argument, add_impl_argument, data_name
from nicelab.cli.options import add_model_arguments
from nicelab.core.validate import check_choice, check_positive_int
from nicelab.plots import stages as stageplots
from nicelab.tasks import corruptions
from nicelab.tasks.outliers import (  # noqa: F401 - the names the command had: re-exported
    BATCH_SWEEP,
    LEVELS,
    N_BATCHES,
    PARABOLA_LEVELS,
    SHOWN,
    TWO_D,
    TYPICALITY_BATCH,
    batches_of,
    corruption_rows,
    evaluate,
    sweep,
    typicality,
)


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


def _threshold(stage, ll_valid, ll_test, rate: float) -> tuple[float, float]:
    """The threshold (from validation only) and the fraction of clean test examples it flags."""
    tau = float(stage.choose_threshold(ll_valid, rate))
    false_alarms = float(np.mean(np.asarray(stage.flag_outliers(ll_test, tau))))
    print(f"threshold tau = {tau:.2f} nats: the {rate:.0%} quantile of {len(ll_valid)} validation "
          f"log-likelihoods; it flags {false_alarms:.1%} of {len(ll_test)} clean test examples "
          "(false alarms)")
    return tau, false_alarms


def _remedy(stage, ll_valid, ll_test, ll_fail, label: str, tau: float, rate: float, batch: int,
            out) -> tuple[dict | None, list]:
    """The typicality test on the failure case, printed; its figure (when stage 5 has it)."""
    try:
        remedy = typicality(stage, ll_valid, ll_test, ll_fail, rate, batch)
    except (NotImplementedError, AttributeError) as err:
        print(f"the remedy needs the typicality test of stage 5 (fit_typicality, flag_batches): {err}")
        return None, []
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
    print("the typicality test's power grows with the batch size (fitted on validation for each size):")
    stagerun.print_table(("batch size", "detected", "clean batches flagged"),
                         [(r["batch_size"], r["detection"], r["false_alarms"])
                          for r in remedy["by_batch_size"]],
                         ("d", ".1%", ".1%"))
    figure = stageplots.typicality_figure(ll_test, ll_fail, label, tau, clean_stats, failure_stats,
                                          remedy["epsilon"], batch, out / "outliers_typicality.png")
    return remedy, [figure]


def _failure_case(stage, rows, lls, ll_valid, ll_test, tau, rate, batch, out) -> tuple[dict | None, list]:
    """The corruption ranked most above the clean data, when one is (AUROC < 0.5), and its remedy."""
    worst = min(rows, key=lambda r: r["auroc"])
    if worst["auroc"] >= 0.5:
        print(f"\nno corruption here was ranked above the clean data (lowest AUROC {worst['auroc']:.3f}, "
              f"{worst['kind']} {worst['level']:g})")
        return None, []
    ll_fail = lls[(worst["kind"], worst["level"])][0]
    label = f"{worst['kind']} {worst['level']:g}"
    print(f"\nthe known failure (Nalisnick et al. 2019): {label} has mean log-likelihood "
          f"{worst['mean_log_lik']:.2f}, ABOVE the clean test's {np.mean(ll_test):.2f}: AUROC "
          f"{worst['auroc']:.3f}, recall {worst['recall']:.3f} at the one-sided threshold")
    remedy, figures = _remedy(stage, ll_valid, ll_test, ll_fail, label, tau, rate, batch, out)
    return {"kind": worst["kind"], "level": worst["level"], **(remedy or {})}, figures


def run(args: argparse.Namespace) -> int:
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
    tau, false_alarms = _threshold(stage, ll_valid, ll_test, args.rate)
    targets, target_name = (corruptions.morph_targets(data.dim, name, data.levels) if "morph" in kinds
                            else (None, None))
    if target_name:
        print(f"morph targets: {target_name}")
    rows, shown, lls = corruption_rows(stage, test, ll_test, tau, kinds, levels, log_lik, targets,
                                       name in TWO_D)
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
    summary["failure_case"], more = _failure_case(stage, rows, lls, ll_valid, ll_test, tau, args.rate,
                                                  batch, out)
    figures += more
    (out / "outliers.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {len(figures)} figures and outliers.json in {out}:")
    for figure in figures:
        print(f"  {figure}")
    return 0
