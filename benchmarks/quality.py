"""Section 3 of the bench: how good the trained models are, against limits and baselines.

* parabola: test NLL minus the exact differential entropy H = log(2 pi e) + log 4 (nats), the
  lowest expected NLL any model can reach;
* digits: test log-likelihood (nats per image, in the [0, 1] dequantized space) of NICE against
  a full-covariance Gaussian fitted by maximum likelihood on the training set, and against
  scikit-learn's best :class:`~sklearn.mixture.GaussianMixture` (components and covariance type
  chosen on the validation set): the same split, the same units;
* MNIST in the NICE paper's protocol when the file is cached (paper: 1980.50 nats on full MNIST),
  against a per-pixel (diagonal) Gaussian and a 20-component diagonal GaussianMixture, both fitted
  on the same training images in the same run.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np

#: The GaussianMixture grid searched on the validation set.
GMM_COMPONENTS = (1, 2, 4, 8, 16, 32, 64)
GMM_COVARIANCES = ("full", "tied", "diag", "spherical")
#: The NICE paper's MNIST test log-likelihood (table 2), nats per image.
PAPER_MNIST = 1980.50
#: The mixture fitted on MNIST (a grid search of full covariances in 784 dimensions would take
#: hours): 20 diagonal components.
MNIST_GMM = (20, "diag")


@dataclass
class Baseline:
    """A fitted density baseline: its name, settings and mean log-likelihoods (nats per example)."""

    name: str
    settings: str
    valid_log_likelihood: float
    test_log_likelihood: float


def gaussian_baseline(train: np.ndarray, valid: np.ndarray, test: np.ndarray) -> Baseline:
    """The maximum-likelihood full-covariance Gaussian N(mean, cov) of ``train`` (``(n, D)``):
    log N(x; mu, Sigma) = -1/2 [D log 2 pi + log det Sigma + (x - mu)^T Sigma^-1 (x - mu)]."""
    from scipy.stats import multivariate_normal

    mean = train.mean(axis=0, dtype=np.float64)
    cov = np.cov(train, rowvar=False, bias=True)
    dist = multivariate_normal(mean, cov)
    return Baseline("full-covariance Gaussian", "maximum likelihood on train",
                    float(dist.logpdf(valid).mean()), float(dist.logpdf(test).mean()))


def diagonal_gaussian_baseline(train: np.ndarray, valid: np.ndarray, test: np.ndarray) -> Baseline:
    """An independent Gaussian per dimension (per pixel), fitted by maximum likelihood on
    ``train``: log p(x) = sum_d log N(x_d; mu_d, sigma_d^2)."""
    from scipy.stats import norm

    mean = train.mean(axis=0, dtype=np.float64)
    std = train.std(axis=0, dtype=np.float64)

    def score(x):
        return float(norm.logpdf(x, mean, std).sum(axis=1).mean())

    return Baseline("per-pixel Gaussian", "maximum likelihood on train", score(valid), score(test))


def gmm(train: np.ndarray, valid: np.ndarray, test: np.ndarray, components: int, covariance: str,
        seed: int = 0) -> Baseline:
    """scikit-learn's GaussianMixture with the given settings, fitted on ``train``."""
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(components, covariance_type=covariance, random_state=seed, n_init=1,
                            max_iter=200).fit(train)
    return Baseline("GaussianMixture", f"{components} x {covariance}", float(model.score(valid)),
                    float(model.score(test)))


def best_gmm(train: np.ndarray, valid: np.ndarray, test: np.ndarray,
             components: tuple[int, ...] = GMM_COMPONENTS,
             covariances: tuple[str, ...] = GMM_COVARIANCES, seed: int = 0) -> tuple[Baseline, list]:
    """scikit-learn's GaussianMixture with the (n_components, covariance_type) of the grid that
    has the best *validation* log-likelihood; returns it and every grid point's
    ``(n, type, valid, test)``. The test set is only read for the reporting."""
    from sklearn.mixture import GaussianMixture

    grid = []
    for n, kind in itertools.product(components, covariances):
        if n > len(train) // 10:
            continue
        gmm = GaussianMixture(n, covariance_type=kind, random_state=seed, n_init=1, max_iter=200)
        gmm.fit(train)
        grid.append((n, kind, float(gmm.score(valid)), float(gmm.score(test))))
    n, kind, valid_ll, test_ll = max(grid, key=lambda row: row[2])
    return Baseline("GaussianMixture (best on valid)", f"{n} x {kind}", valid_ll, test_ll), grid


def nice_quality(data_name: str, config, impl: str = "solutions") -> dict:
    """Train NICE (``impl``) on ``data_name`` with ``config``; its test NLL and timing."""
    import tensorflow as tf

    from nicelab.core import data as data_mod
    from nicelab.core import impl as impl_mod
    from nicelab.core.training import mean_nll, train

    modules = impl_mod.load_all(impl, ("coupling", "model", "likelihood"))
    data = data_mod.load(data_name)
    start = time.perf_counter()
    trained = train(modules, data, config, verbose=False)
    seconds = time.perf_counter() - start
    lik = modules["likelihood"]
    evaluate = tf.function(lambda x: lik.log_likelihood(trained.model, trained.prior, x))
    return {"data": data, "test_nll": mean_nll(evaluate, data.test),
            "valid_nll": mean_nll(evaluate, data.valid), "seconds": seconds,
            "epochs": len(trained.history.train_nll), "best_epoch": trained.history.best_epoch + 1,
            "steps": trained.history.steps, "mode": trained.history.mode}
