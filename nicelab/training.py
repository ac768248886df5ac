"""The training driver: runs *any* implementation's ``train_step`` (a student's or the
reference), compiled with ``tf.function`` when possible, keeps the best weights by validation
NLL, and reports progress.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
import tensorflow as tf

from nicelab.config import TrainConfig
from nicelab.data import Dataset


class TrainingError(Exception):
    """Training cannot go on (NaN loss, a missing stage); the message says why."""


@dataclass
class History:
    train_nll: list[float] = field(default_factory=list)
    valid_nll: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0
    steps: int = 0
    compiled: bool = True


@dataclass
class Trained:
    model: tf.keras.Model
    prior: object
    history: History
    config: TrainConfig


def compile_step(step: Callable, notice: Callable[[str], None] = print) -> Callable:
    """Wrap ``step(x)`` in ``tf.function``; if the first compiled call fails (a student's step
    that uses NumPy, say), fall back to running it eagerly and say so in one line."""
    compiled = tf.function(step)
    state = {"fn": None}

    def run(x):
        if state["fn"] is None:
            try:
                result = compiled(x)
                state["fn"] = compiled
                return result
            except Exception as err:  # noqa: BLE001 - any tracing failure means "run eagerly"
                notice(f"note: train_step could not be compiled with tf.function "
                       f"({type(err).__name__}); running it eagerly, which is slower.")
                state["fn"] = step
        return state["fn"](x)

    run.is_compiled = lambda: state["fn"] is compiled  # type: ignore[attr-defined]
    return run


def mean_nll(log_likelihood: Callable, x: np.ndarray, batch: int = 4096) -> float:
    """Mean negative log-likelihood of ``x`` (nats per example), evaluated in batches."""
    total = 0.0
    for start in range(0, len(x), batch):
        total += float(tf.reduce_sum(log_likelihood(x[start:start + batch])))
    return -total / len(x)


def _progress(epoch: int, epochs: int, train: float, valid: float, best: bool, out) -> None:
    """A progress bar redrawn in place on a terminal; in a log, one line per improvement."""
    interactive = getattr(out, "isatty", lambda: False)()
    if not interactive and not best and (epoch + 1) % 10 and epoch + 1 != epochs:
        return
    width = 24
    filled = int(width * (epoch + 1) / epochs)
    bar = "#" * filled + "." * (width - filled)
    mark = " *" if best else ""
    start = "\r" if interactive else ""
    out.write(f"{start}[{bar}] epoch {epoch + 1:3d}/{epochs}  train NLL {train:8.4f}  "
              f"valid NLL {valid:8.4f}{mark}")
    out.write("\n" if best or epoch + 1 == epochs or not interactive else "")
    out.flush()


def train(modules: dict[str, ModuleType], data: Dataset, config: TrainConfig,
          verbose: bool = True, out=None) -> Trained:
    """Train the implementation in ``modules`` (keys ``model`` and ``likelihood``) on ``data``.

    Returns the model restored to its best epoch by validation NLL.
    """
    out = out or sys.stdout
    tf.keras.utils.set_random_seed(config.seed)
    lik = modules["likelihood"]
    model = modules["model"].NICE(data.dim, config.num_couplings, config.hidden_units,
                                  config.hidden_layers)
    prior = lik.make_prior(data.dim, config.prior)
    steps_per_epoch = max(1, len(data.train) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    schedule = tf.keras.optimizers.schedules.CosineDecay(config.learning_rate, total_steps, 0.01)
    optimizer = tf.keras.optimizers.Adam(schedule)
    optimizer.build(model.trainable_variables)
    notice = (lambda msg: print(msg, file=out)) if verbose else (lambda msg: None)
    step = compile_step(lambda x: lik.train_step(model, prior, optimizer, x), notice)
    evaluate = tf.function(lambda x: lik.log_likelihood(model, prior, x))

    history = History()
    best_weights, best_valid = None, math.inf
    rng = np.random.default_rng(config.seed)
    start = time.perf_counter()
    for epoch in range(config.epochs):
        order = rng.permutation(len(data.train))
        losses = []
        for i in range(steps_per_epoch):
            batch = data.train[order[i * config.batch_size:(i + 1) * config.batch_size]]
            losses.append(float(step(tf.constant(batch))))
        train_nll = float(np.mean(losses))
        valid_nll = mean_nll(evaluate, data.valid)
        if not (math.isfinite(train_nll) and math.isfinite(valid_nll)):
            raise TrainingError(
                f"the loss became NaN or infinite at epoch {epoch + 1}: check the log-density "
                "(is it numerically stable?) or lower --lr."
            )
        history.train_nll.append(train_nll)
        history.valid_nll.append(valid_nll)
        improved = valid_nll < best_valid
        if improved:
            best_valid, history.best_epoch = valid_nll, epoch
            best_weights = [w.numpy() for w in model.weights]
        if verbose:
            _progress(epoch, config.epochs, train_nll, valid_nll, improved, out)
        if config.patience and epoch - history.best_epoch >= config.patience:
            if verbose:
                print(f"no better validation NLL for {config.patience} epochs: stopping.", file=out)
            break
    history.seconds = time.perf_counter() - start
    history.steps = (len(history.train_nll)) * steps_per_epoch
    history.compiled = bool(step.is_compiled())
    if best_weights is not None:
        model.set_weights(best_weights)
    return Trained(model, prior, history, config)
