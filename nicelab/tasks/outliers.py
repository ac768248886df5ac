"""Stage 5's computations on a trained model, apart from printing and plotting (``nicelab
outliers`` prints and plots them): each corruption kind at increasing levels scored by the
implementation's stage 5, and the known failure's remedy, the two-sided typicality test on
batches (Nalisnick et al. 2019b).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

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


def evaluate(stage, ll_clean, ll_corrupt, tau):
    """Precision, recall (the implementation's functions) and AUROC of the 1:1 mix."""
    scores = np.concatenate([ll_clean, ll_corrupt])
    is_outlier = np.r_[np.zeros(len(ll_clean), bool), np.ones(len(ll_corrupt), bool)]
    flags = np.asarray(stage.flag_outliers(scores, tau))
    precision, recall = (float(v) for v in stage.precision_recall(flags, is_outlier))
    return precision, recall, float(roc_auc_score(is_outlier, -scores))


def batches_of(values, m: int, rng, n_batches: int = N_BATCHES):
    """``(n_batches, m)``: batches of ``m`` values drawn with replacement (independent draws)."""
    values = np.asarray(values, dtype=np.float64)
    return values[rng.integers(0, len(values), (n_batches, m))]


def typicality(stage, ll_valid, ll_test, ll_failure, rate, batch, seed=0) -> dict:
    """The remedy with the implementation's ``fit_typicality`` and ``flag_batches``: fitted on the
    validation log-likelihoods for batches of ``batch`` (the entropy H_hat and epsilon from two
    disjoint parts), then applied to batches of clean test data (never fitted on) and of the
    failure case. Also the one-sided batch test (mean log-likelihood below the rate-quantile of
    validation batch means) and the two-sided test on single examples, for comparison."""
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
    entropy, epsilon = (float(v) for v in stage.fit_typicality(ll_valid, m, rate, seed=seed))
    rng = np.random.default_rng(seed + 1)
    clean, failure = batches_of(ll_test, m, rng), batches_of(ll_failure, m, rng)
    return {"batch_size": m, "epsilon": epsilon,
            "detection": float(np.mean(np.asarray(stage.flag_batches(failure, entropy, epsilon)))),
            "false_alarms": float(np.mean(np.asarray(stage.flag_batches(clean, entropy, epsilon))))}


def corruption_rows(stage, test, ll_test, tau: float, kinds, levels: dict, log_lik, targets,
                    two_d: bool) -> tuple[list[dict], dict, dict]:
    """Every kind at every level: ``(rows, shown, lls)``: a row per (kind, level) with the mean
    log-likelihood, precision, recall and AUROC of the 1:1 mix; per kind the level shown in the
    figures and its log-likelihoods; and ``(kind, level) -> (log-likelihoods, corrupted)``."""
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
        pick = SHOWN.get(kind) if not two_d else 1.0
        if pick not in levels[kind]:
            pick = levels[kind][len(levels[kind]) // 2]
        shown[kind] = (pick, lls[(kind, pick)][0])
    return rows, shown, lls
