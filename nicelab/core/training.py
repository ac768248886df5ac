"""The training driver: runs *any* implementation's ``train_step`` (a student's or the
reference), keeps the best weights by validation NLL, and reports progress.

Speed: a whole epoch runs in one compiled call. The training set is handed over once as a
tensor; every epoch the driver draws a seeded permutation, cut into ``(steps, batch)`` index
rows, and one ``tf.function`` loops over them (a ``tf.range`` loop, i.e. a ``tf.while_loop``)
calling ``train_step(model, prior, optimizer, x[rows[i]])`` at each step, compiled with XLA
when it can be (``jit_compile=True``). So Python and TensorFlow meet once per epoch, not once
per step, and the loss is read back once per epoch.

Good models fast, for every implementation that keeps stage 2's contract (``model.log_scale`` of
shape (D,), ``forward``): before the first step the driver starts the scaling layer from the data
(:func:`data_dependent_log_scale`, as Glow's actnorm), so no epoch is spent growing scales from
e^0 to e^7 at Adam's pace of about one learning rate per step; ``log_scale`` then learns
``config.scale_lr_factor`` times faster than the couplings (:class:`ScaleBoostedAdam`), with
optional decoupled weight decay on the couplings only. Dequantized data (``Dataset.train_levels``)
get fresh noise every epoch. None of this is in the student's code.

How an epoch runs, and how a failed build falls back, is :mod:`nicelab.core.epochs`.
Any student step still runs: when the XLA build of the epoch fails, the driver tries the plain
``tf.function`` build, then runs the step eagerly, each time saying so in one line. The model's
and the optimizer's variables are restored before a retry, so a failed attempt leaves no trace.
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

from nicelab.core.config import TrainConfig
from nicelab.core.data import Dataset, dequantize
from nicelab.core.epochs import (  # noqa: F401 - MODES, compile_step, step_flops: re-exported
    MODES,
    EpochRunner,
    choose_mode,
    compile_step,
    step_flops,
)


class TrainingError(Exception):
    """Training cannot go on (NaN loss, a missing stage); the message says why."""


@dataclass
class History:
    """What a training run did: per-epoch mean train NLL and validation NLL (nats per example),
    the best epoch (0-based), wall seconds, optimizer steps, and how the steps ran."""

    train_nll: list[float] = field(default_factory=list)
    valid_nll: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0
    steps: int = 0
    compiled: bool = True
    mode: str = ""  # one of MODES ("" in records of older runs)
    epoch_seconds: list[float] = field(default_factory=list)  # each epoch's wall time, validation included


@dataclass
class Trained:
    model: tf.keras.Model
    prior: object
    history: History
    config: TrainConfig


def mean_nll(log_likelihood: Callable, x: np.ndarray, batch: int = 4096) -> float:
    """Mean negative log-likelihood of ``x`` (nats per example), evaluated in batches:
    -1/N sum_n log p(x_n)."""
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


def _train_sampler(data: Dataset, rng: np.random.Generator) -> Callable[[], np.ndarray]:
    """The training set as the driver sees it each epoch: dequantized afresh from its integer
    levels, x = (level + u) / levels with a new u ~ U(0, 1) per call, when the data set has them
    (digits, MNIST); else the fixed ``data.train``."""
    if data.train_levels is None or not data.levels:
        return lambda: data.train
    return lambda: dequantize(data.train_levels, data.levels, rng)


def _check_inputs(modules, data, config) -> None:
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a nicelab.core.config.TrainConfig, got {type(config).__name__}.")
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a nicelab.core.data.Dataset, got {type(data).__name__}.")
    missing = [name for name in ("model", "likelihood") if name not in modules]
    if missing:
        raise TrainingError(f"the implementation has no {' or '.join(missing)} module to train with.")
    for key in ("epochs", "batch_size", "num_couplings", "hidden_units", "hidden_layers"):
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"config.{key} must be an integer >= 1, got {value!r}.")
    if not config.learning_rate > 0:
        raise ValueError(f"config.learning_rate must be positive, got {config.learning_rate!r}.")
    if config.batch_size > len(data.train):
        raise ValueError(f"config.batch_size = {config.batch_size} is larger than the training set "
                         f"({len(data.train)} examples).")


class ScaleBoostedAdam(tf.keras.optimizers.Adam):
    """Adam whose steps on ``boosted`` variables (the scaling layer's ``log_scale``) use
    ``factor`` times the learning rate of every other variable.

    Adam moves each parameter by about the learning rate per step, whatever its gradient's size:
    ``log_scale`` holds one number per dimension that the couplings' shifts keep asking to move
    by whole units (a narrower conditional spread), so it gets a larger rate than the network
    weights, whose every step is amplified by the scale in latent space.
    """

    def __init__(self, learning_rate, boosted=(), factor: float = 1.0, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self._boosted = {self._var_key(v) for v in boosted}
        self._factor = float(factor)

    def update_step(self, gradient, variable, learning_rate):
        if self._factor != 1.0 and self._var_key(variable) in self._boosted:
            learning_rate = learning_rate * self._factor
        super().update_step(gradient, variable, learning_rate)


#: Standard deviation of each prior kind's unit-scale component: the spread the data-dependent
#: start gives every latent dimension (standard logistic: pi / sqrt(3); standard normal: 1).
PRIOR_STD = {"logistic": math.pi / math.sqrt(3.0), "gaussian": 1.0}
#: Examples of the training set the data-dependent start looks at, and the smallest spread it
#: believes (a constant coordinate would otherwise ask for an infinite scale).
INIT_EXAMPLES = 2048
MIN_SPREAD = 1e-6


def data_dependent_log_scale(model, x: np.ndarray, prior_kind: str) -> np.ndarray:
    """The data-dependent start of the scaling layer (as Glow's actnorm): with ``log_scale``
    zeroed, pass ``x`` (``(n, D)`` training examples) through ``model.forward`` (the couplings
    alone), and return the ``(D,)`` log-scales that give each latent dimension the prior's spread:
    log_scale_d = log(std_prior) - log(std_d), std_d the standard deviation of coupling output d.

    Calling ``model.forward`` first also builds a model whose layers build lazily. The model's
    ``log_scale`` is left at zero; the caller assigns the result.
    """
    x = tf.constant(x, dtype=tf.float32)
    model.forward(x[:2])  # builds lazily built layers, and log_scale if it is made in build()
    log_scale = getattr(model, "log_scale", None)
    if not hasattr(log_scale, "assign") or tuple(log_scale.shape) != (x.shape[1],):
        raise TrainingError(f"the model has no trainable log_scale variable of shape ({x.shape[1]},) "
                            "(stage 2's contract): the driver cannot start the scaling layer.")
    log_scale.assign(tf.zeros(log_scale.shape, tf.float32))
    h = np.asarray(model.forward(x), dtype=np.float64)
    spread = np.maximum(h.std(axis=0), MIN_SPREAD)
    return (math.log(PRIOR_STD[prior_kind]) - np.log(spread)).astype(np.float32)


def _start_scale(model, data: Dataset, config: TrainConfig, rng: np.random.Generator, draw_train) -> None:
    """Build the model and, with ``config.init_scale``, start its scaling layer from the data."""
    if config.init_scale:
        sample = draw_train()[rng.permutation(len(data.train))[:INIT_EXAMPLES]]
        model.log_scale.assign(data_dependent_log_scale(model, sample, config.prior))
    else:
        model.forward(tf.constant(data.train[:2]))  # build a lazily built model before the optimizer


def _make_optimizer(model, config: TrainConfig, total_steps: int) -> ScaleBoostedAdam:
    """Adam with a cosine-decayed learning rate, ``config.scale_lr_factor`` times larger for
    ``log_scale``, and ``config.weight_decay`` on the coupling networks only; built."""
    schedule = tf.keras.optimizers.schedules.CosineDecay(config.learning_rate, total_steps, 0.01)
    optimizer = ScaleBoostedAdam(schedule, boosted=[model.log_scale], factor=config.scale_lr_factor,
                                 weight_decay=config.weight_decay)
    if config.weight_decay:  # decoupled decay of the coupling networks only, never of the scale
        optimizer.exclude_from_weight_decay(var_list=[model.log_scale])
    optimizer.build(model.trainable_variables)
    return optimizer


def _check_finite(epoch: int, train_nll: float, valid_nll: float) -> None:
    if not (math.isfinite(train_nll) and math.isfinite(valid_nll)):
        raise TrainingError(
            f"the loss became NaN or infinite at epoch {epoch + 1}: check the log-density "
            "(is it numerically stable?) or lower --lr."
        )


def _out_of_patience(config: TrainConfig, epoch: int, history: History, verbose: bool, out) -> bool:
    """True when ``config.patience`` epochs have passed without a better validation NLL."""
    if config.patience and epoch - history.best_epoch >= config.patience:
        if verbose:
            print(f"no better validation NLL for {config.patience} epochs: stopping.", file=out)
        return True
    return False


def _finish(history: History, start: float, steps_per_epoch: int, mode: str) -> None:
    history.seconds = time.perf_counter() - start
    history.steps = len(history.train_nll) * steps_per_epoch
    history.mode = mode
    history.compiled = mode != "eager"


def build_model(modules: dict[str, ModuleType], dim: int, config: TrainConfig):
    """``(model, prior)``: the implementation's NICE of ``config``'s sizes on ``dim`` dimensions
    (fresh weights) and its prior of ``config.prior``'s kind."""
    model = modules["model"].NICE(dim, config.num_couplings, config.hidden_units, config.hidden_layers)
    return model, modules["likelihood"].make_prior(dim, config.prior)


def train(modules: dict[str, ModuleType], data: Dataset, config: TrainConfig,
          verbose: bool = True, out=None, first_mode: str | None = None) -> Trained:
    """Train the implementation in ``modules`` (keys ``model`` and ``likelihood``) on ``data``
    by minimising the mean NLL -1/B sum_b log p(x_b) with Adam (cosine-decayed learning rate,
    ``config.scale_lr_factor`` times larger for ``log_scale``, ``config.weight_decay`` on the rest),
    from the data-dependent start of ``log_scale`` when ``config.init_scale``.

    Each epoch visits ``len(data.train) // batch_size`` batches of a fresh seeded permutation
    (the last partial batch is dropped), then measures the validation NLL. Returns the model
    restored to its best epoch by validation NLL. ``first_mode`` (see :data:`MODES`) is the
    fastest way of running an epoch to try (default: :func:`choose_mode`); the driver falls
    back from there.
    The same ``config.seed`` gives the same run.
    """
    _check_inputs(modules, data, config)
    out = sys.stdout if out is None else out
    tf.keras.utils.set_random_seed(config.seed)
    lik = modules["likelihood"]
    model, prior = build_model(modules, data.dim, config)
    rng = np.random.default_rng(config.seed)
    draw_train = _train_sampler(data, rng)
    _start_scale(model, data, config, rng, draw_train)
    steps_per_epoch = max(1, len(data.train) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = _make_optimizer(model, config, total_steps)
    notice = (lambda msg: print(msg, file=out)) if verbose else (lambda msg: None)
    if first_mode is None:
        first_mode = choose_mode(data.dim, config, total_steps)
    runner = EpochRunner(lambda x: lik.train_step(model, prior, optimizer, x),
                         list(model.weights) + list(optimizer.variables), notice, first_mode)
    evaluate = tf.function(lambda x: lik.log_likelihood(model, prior, x), reduce_retracing=True)

    history = History()
    best_weights, best_valid = None, math.inf
    start = time.perf_counter()
    for epoch in range(config.epochs):
        epoch_start = time.perf_counter()
        x_train = tf.constant(draw_train(), dtype=tf.float32)
        order = rng.permutation(len(data.train))[:steps_per_epoch * config.batch_size]
        losses = runner(x_train, order.reshape(steps_per_epoch, config.batch_size).astype(np.int32))
        train_nll = float(np.mean(losses))
        valid_nll = mean_nll(evaluate, data.valid)
        _check_finite(epoch, train_nll, valid_nll)
        history.train_nll.append(train_nll)
        history.valid_nll.append(valid_nll)
        improved = valid_nll < best_valid
        if improved:
            best_valid, history.best_epoch = valid_nll, epoch
            best_weights = [w.numpy() for w in model.weights]
        history.epoch_seconds.append(time.perf_counter() - epoch_start)
        if verbose:
            _progress(epoch, config.epochs, train_nll, valid_nll, improved, out)
        if _out_of_patience(config, epoch, history, verbose, out):
            break
    _finish(history, start, steps_per_epoch, runner.mode)
    if best_weights is not None:
        model.set_weights(best_weights)
    return Trained(model, prior, history, config)
