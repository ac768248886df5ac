"""Section 2 of the bench: training throughput against two peers and the compute limit.

Contenders, all training the same model (the reference NICE: 4 additive couplings, ReLU MLPs)
with Adam at batch 256 on the same data, timed in the same process, round-robin:

* ``driver``: nicelab's training driver (:class:`nicelab.core.training.EpochRunner`, the object
  :func:`nicelab.core.training.train` runs): a whole block of steps in one XLA-compiled call;
* ``tf.function per step``: the plain loop, one ``tf.function`` call per step;
* ``PyTorch eager``: the same model and optimizer in PyTorch (:mod:`benchmarks.torch_nice`),
  skipped with a one-line reason when torch is not installed;
* ``compute limit``: FLOPs per step (:func:`train_step_flops`) divided by this machine's dense
  float32 matmul rate (:func:`matmul_rate`): no implementation can run faster.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: The two throughput settings of the issue: (data set, hidden units); 4 couplings, 3 layers.
SETTINGS = (("parabola", 64), ("digits", 256))
BATCH = 256


def coupling_sizes(dim: int, parity: int, hidden_units: int, hidden_layers: int) -> list[int]:
    """Layer widths of one coupling's MLP, input to output: ``[|keep|, H, ..., H, |change|]``.

    Parity 0 keeps the ceil(D/2) even coordinates; parity 1 the floor(D/2) odd ones.
    """
    n_even, n_odd = (dim + 1) // 2, dim // 2
    keep, change = (n_even, n_odd) if parity == 0 else (n_odd, n_even)
    return [keep] + [hidden_units] * hidden_layers + [change]


def forward_flops(dim: int, num_couplings: int, hidden_units: int, hidden_layers: int,
                  batch: int) -> int:
    """Matmul FLOPs of one forward pass of a batch: sum over every Dense layer of every
    coupling of 2 * batch * n_in * n_out (a multiply and an add per weight and example)."""
    total = 0
    for i in range(num_couplings):
        sizes = coupling_sizes(dim, i % 2, hidden_units, hidden_layers)
        total += sum(2 * batch * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return total


def train_step_flops(dim: int, num_couplings: int, hidden_units: int, hidden_layers: int,
                     batch: int) -> int:
    """Matmul FLOPs of one training step: forward + backward = 3 x forward (the backward pass of
    a Dense layer is two matmuls of the forward's size: the gradients of its input and of its
    kernel). Element-wise work (ReLU, prior, Adam) is left out: it is a few percent here."""
    return 3 * forward_flops(dim, num_couplings, hidden_units, hidden_layers, batch)


def matmul_rate(shapes: tuple[tuple[int, int, int], ...] = ((1024, 1024, 1024),),
                seconds: float = 0.5, repeats: int = 3) -> float:
    """This machine's dense float32 matmul rate in FLOP/s: the best of ``repeats`` timings of a
    compiled loop of ``(n, k) @ (k, m)`` products (2 n k m FLOPs each), summed over ``shapes``.

    With several shapes, the rate is total FLOPs over total time (the mix a model runs)."""
    import tensorflow as tf

    best = 0.0
    rng = np.random.default_rng(0)
    loops = []
    for n, k, m in shapes:
        a = tf.constant(rng.standard_normal((n, k)), tf.float32)
        b = tf.constant(rng.standard_normal((k, m)), tf.float32)
        reps = max(2, int(seconds * 5e10 / (2 * n * k * m)) // len(shapes))

        @tf.function
        def loop(a, b, reps=reps):
            acc = tf.zeros((), tf.float32)
            for _ in tf.range(reps):
                c = tf.matmul(a, b)
                acc += c[0, 0]
                a = a + 1e-12 * acc  # a data dependence, so no product can be skipped
            return acc

        loop(a, b).numpy()
        loops.append((loop, a, b, 2 * n * k * m * reps))
    for _ in range(repeats):
        flops, elapsed = 0, 0.0
        for loop, a, b, f in loops:
            start = time.perf_counter()
            loop(a, b).numpy()
            elapsed += time.perf_counter() - start
            flops += f
        best = max(best, flops / elapsed)
    return best


def model_matmul_shapes(dim: int, num_couplings: int, hidden_units: int, hidden_layers: int,
                        batch: int) -> tuple[tuple[int, int, int], ...]:
    """The distinct forward matmul shapes ``(batch, n_in, n_out)`` of the model's Dense layers."""
    shapes = []
    for i in range(min(2, num_couplings)):
        sizes = coupling_sizes(dim, i % 2, hidden_units, hidden_layers)
        shapes += [(batch, a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return tuple(dict.fromkeys(shapes))


def matmul_probe(n: int = 1024, flops: float = 2e9) -> tuple[Callable[[], None], float]:
    """A compiled loop of ``(n, n) @ (n, n)`` products worth about ``flops`` FLOPs, to race beside
    the training loops (so the compute limit sees the same machine load they see). Returns the
    callable and its exact FLOPs."""
    import tensorflow as tf

    reps = max(1, int(flops / (2 * n ** 3)))
    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((n, n)), tf.float32)
    b = tf.constant(rng.standard_normal((n, n)), tf.float32)

    @tf.function
    def loop(a, b):
        acc = tf.zeros((), tf.float32)
        for _ in tf.range(reps):
            acc += tf.matmul(a + 1e-12 * acc, b)[0, 0]
        return acc

    return (lambda: loop(a, b).numpy()), float(2 * n ** 3 * reps)


@dataclass
class Contender:
    """One way of training: ``run(rows)`` does ``len(rows)`` steps (returns nothing).
    ``steps`` is how many steps one call makes (for the matmul probe: its FLOPs)."""

    name: str
    run: Callable[[np.ndarray], None]
    seconds: list[float] = field(default_factory=list)
    steps: int = 0


def race(contenders: list[Contender], rows: np.ndarray, rounds: int) -> None:
    """Time ``contenders`` round-robin, ``rounds`` times each on the same index ``rows``, after
    one untimed warm-up call each (tracing, compiling): each gets the same share of the noise
    of a shared machine."""
    for c in contenders:
        c.run(rows)
    for _ in range(rounds):
        for c in contenders:
            start = time.perf_counter()
            c.run(rows)
            c.seconds.append(time.perf_counter() - start)
            c.steps = c.steps or len(rows)


def steps_per_second(c: Contender) -> float:
    """Median over rounds of steps per second."""
    return c.steps / statistics.median(c.seconds)


def build_contenders(data_name: str, hidden_units: int, with_torch: bool = True,
                     learning_rate: float = 1e-3) -> tuple[list[Contender], object, str | None]:
    """The driver, the per-step loop and (if installed) PyTorch, each with its own copy of the
    same freshly initialised model (seed 0) and its own Adam. Returns ``(contenders, data,
    torch_skip_reason)``."""
    import tensorflow as tf

    from nicelab.core import data as data_mod
    from nicelab.core import impl
    from nicelab.core.training import EpochRunner

    modules = impl.load_all("solutions", ("coupling", "model", "likelihood"))
    lik = modules["likelihood"]
    data = data_mod.load(data_name)
    x_np = data.train
    x_tf = tf.constant(x_np)

    def fresh():
        tf.keras.utils.set_random_seed(0)
        model = modules["model"].NICE(data.dim, 4, hidden_units, 3)
        prior = lik.make_prior(data.dim, "logistic")
        optimizer = tf.keras.optimizers.Adam(learning_rate)
        optimizer.build(model.trainable_variables)
        return model, prior, optimizer

    model, prior, optimizer = fresh()
    runner = EpochRunner(lambda x: lik.train_step(model, prior, optimizer, x),
                         list(model.weights) + list(optimizer.variables), notice=lambda m: None)
    contenders = [Contender("driver", lambda rows: runner(x_tf, rows))]

    model_b, prior_b, optimizer_b = fresh()
    step = tf.function(lambda x: lik.train_step(model_b, prior_b, optimizer_b, x))

    def per_step(rows):
        losses = [step(x_np[r]) for r in rows]
        float(tf.add_n(losses))

    contenders.append(Contender("tf.function per step", per_step))

    skip = None
    if with_torch:
        try:
            import torch

            from benchmarks.torch_nice import TorchNICE, copy_from_keras, make_train_step
        except ImportError:
            skip = "PyTorch is not installed (pip install -e .[bench])"
        else:
            torch.manual_seed(0)
            x_t = torch.from_numpy(x_np)
            # PyTorch's own default uses every core; on a busy machine one thread can be faster:
            # both are raced.
            for threads in sorted({1, torch.get_num_threads()}):
                tmodel = copy_from_keras(TorchNICE(data.dim, 4, hidden_units, 3, "logistic"), fresh()[0])
                tstep = make_train_step(tmodel, learning_rate)

                def torch_steps(rows, tstep=tstep, threads=threads):
                    torch.set_num_threads(threads)
                    losses = [tstep(x_t[torch.from_numpy(r.astype(np.int64))]) for r in rows]
                    float(torch.stack(losses).sum())

                contenders.append(Contender(f"PyTorch eager, {threads} thread{'s' if threads > 1 else ''}",
                                            torch_steps))
    else:
        skip = "left out (--no-torch)"
    return contenders, data, skip
