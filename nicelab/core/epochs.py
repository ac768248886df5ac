"""One epoch in one call: the training driver's :class:`EpochRunner` (:mod:`nicelab.core.training`
uses it), and how it chooses between XLA, a plain ``tf.function`` and eager steps.

When the XLA build of the epoch fails, the runner tries the plain ``tf.function`` build, then runs
the step eagerly, each time saying so in one line; the model's and the optimizer's variables are
restored before a retry, so a failed attempt leaves no trace.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from nicelab.core.config import TrainConfig

#: How an epoch can run, fastest first: one XLA-compiled call, one tf.function call, eagerly.
MODES = ("xla", "graph", "eager")

#: XLA pays for its compile time (a few seconds) only on long runs of small steps: below this
#: many steps, or above :data:`XLA_MAX_FLOPS` matmul FLOPs per step (where TensorFlow's own
#: matmul kernels are as fast as XLA's and per-step overhead no longer matters), the driver starts
#: with the plain tf.function build. Measured with ``nicelab bench --section 2``.
XLA_MIN_STEPS = 3000
XLA_MAX_FLOPS = 2e8


def _one_line(err: BaseException) -> str:
    """``Type: message`` on one line; of TensorFlow's "in user code: ..." stacks, the last line."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if last.startswith(f"{type(err).__name__}:"):
        last = last[len(type(err).__name__) + 1:].strip()
    return f"{type(err).__name__}: {last[:120]}" if last else type(err).__name__


def compile_step(step: Callable, notice: Callable[[str], None] = print,
                 jit_compile: bool = False) -> Callable:
    """Wrap ``step(x)`` in ``tf.function``; if the first compiled call fails (a student's step
    that uses NumPy, say), fall back to running it eagerly and say so in one line.

    The returned function has ``is_compiled()``: whether the compiled version is in use.
    """
    compiled = tf.function(step, jit_compile=jit_compile)
    state = {"fn": None}

    def run(x):
        if state["fn"] is None:
            try:
                result = compiled(x)
                state["fn"] = compiled
                return result
            except NotImplementedError:
                raise
            except Exception as err:  # noqa: BLE001 - any tracing failure means "run eagerly"
                notice(f"note: train_step could not be compiled with tf.function "
                       f"({type(err).__name__}); running it eagerly, which is slower.")
                state["fn"] = step
        return state["fn"](x)

    run.is_compiled = lambda: state["fn"] is compiled  # type: ignore[attr-defined]
    return run


class EpochRunner:
    """Runs ``step`` over the rows of an index matrix: ``runner(x, rows) -> losses``.

    ``x`` is the whole training set, a ``(n, D)`` float32 tensor; ``rows`` is an int32 array
    shaped ``(steps, batch)``; step ``i`` trains on ``x[rows[i]]``. Returns the ``steps``
    losses (each step's value, averaged if a step returns more than a scalar) as a NumPy array.

    The first call picks the fastest mode of :data:`MODES` (from ``first_mode`` on) that works
    for this ``step``; a failed attempt restores ``variables`` (the model's and the optimizer's)
    before the next one, so nothing of it remains. ``mode`` says which mode is in use.
    """

    def __init__(self, step: Callable, variables: list, notice: Callable[[str], None] = print,
                 first_mode: str = "xla"):
        if first_mode not in MODES:
            raise ValueError(f"first_mode must be one of {', '.join(MODES)}, got {first_mode!r}.")
        self.step = step
        self.variables = list(variables)
        self.notice = notice
        self.modes = list(MODES[MODES.index(first_mode):])
        self.settled = False
        self._fns = {"xla": tf.function(self._epoch, jit_compile=True),
                     "graph": tf.function(self._epoch), "eager": self._eager}

    @property
    def mode(self) -> str:
        return self.modes[0]

    def _epoch(self, x, rows):
        n = tf.shape(rows)[0]
        losses = tf.TensorArray(tf.float32, size=n)
        for i in tf.range(n):
            loss = self.step(tf.gather(x, rows[i]))
            losses = losses.write(i, tf.reduce_mean(tf.cast(loss, tf.float32)))
        return losses.stack()

    def _eager(self, x, rows):
        return tf.stack([tf.reduce_mean(tf.cast(self.step(tf.gather(x, r)), tf.float32))
                         for r in tf.unstack(rows)])

    def __call__(self, x, rows) -> np.ndarray:
        rows = tf.convert_to_tensor(rows, dtype=tf.int32)
        if self.settled:
            return self._fns[self.mode](x, rows).numpy()
        while True:
            snapshot = [v.numpy() for v in self.variables]
            try:
                losses = self._fns[self.mode](x, rows).numpy()
                self.settled = True
                return losses
            except NotImplementedError:
                raise
            except Exception as err:  # noqa: BLE001 - any build failure means "try the next mode"
                if self.mode == "eager":
                    raise
                for variable, value in zip(self.variables, snapshot, strict=True):
                    variable.assign(value)
                failed = self.modes.pop(0)
                if failed == "xla":
                    self.notice(f"note: train_step could not be compiled with XLA ({_one_line(err)}); "
                                "using tf.function without XLA.")
                else:
                    self.notice(f"note: train_step could not be compiled with tf.function "
                                f"({_one_line(err)}); running it eagerly, which is slower.")


def step_flops(dim: int, config: TrainConfig) -> int:
    """Matmul FLOPs of one training step of the reference architecture: 3 x the forward pass's
    sum over every Dense layer of 2 * batch * n_in * n_out (see :mod:`benchmarks.throughput`)."""
    total = 0
    for i in range(config.num_couplings):
        keep, change = ((dim + 1) // 2, dim // 2) if i % 2 == 0 else (dim // 2, (dim + 1) // 2)
        sizes = [keep] + [config.hidden_units] * config.hidden_layers + [change]
        total += sum(2 * config.batch_size * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return 3 * total


def choose_mode(dim: int, config: TrainConfig, total_steps: int) -> str:
    """The first mode of :data:`MODES` to try for this run: ``xla`` for long runs of small steps,
    else ``graph``."""
    if total_steps >= XLA_MIN_STEPS and step_flops(dim, config) <= XLA_MAX_FLOPS:
        return "xla"
    return "graph"
