"""NICE, RealNVP and Glow trained on the same data, in one process, under one budget: the
comparison ``nicelab bench --section 5`` prints and ``nicelab figures`` draws for the page
"Beyond NICE" (docs/beyond-nice.md).

Budgets (:data:`BUDGETS`):

* ``params``, the same parameter count: every flow gets the data set's NICE preset (epochs,
  learning rate, batch, couplings, hidden layers) at the comparison's size (:data:`SIZES`), and
  RealNVP and Glow the largest hidden width (at most NICE's) at which they have no more
  trainable parameters than NICE;
* ``preset``, each flow's own preset (:func:`nicelab.core.flows.preset`): on MNIST, RealNVP's
  is a same-time budget (about NICE's training time, measured in the same process).

Wall times come from the same process, one flow after the other, so the ratio to NICE's time
is what to read when other jobs share the machine.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nicelab.core import flows
from nicelab.core.config import TrainConfig
from nicelab.core.dataset import Dataset, bits_per_dim
from nicelab.core.validate import check_choice

BUDGETS = ("params", "preset")
#: The comparison's size where it differs from NICE's preset: on the 2-D toy sets, 4 couplings
#: of 3 x 64 for 40 epochs. NICE's own preset there (8 x 3 x 128, 80 epochs) is large enough for
#: additive couplings to catch up with affine ones; a small flow shows what one layer can do.
SIZES: dict[str, dict] = {name: {"num_couplings": 4, "hidden_units": 64, "hidden_layers": 3, "epochs": 40}
                          for name in ("rings", "moons", "gaussian_grid")}


@dataclass
class FlowRun:
    """One flow's result: test and validation NLL (nats per example), bits per dimension for
    images (of the discrete levels, the papers' convention; None for other data), trainable
    parameters, training seconds and ``time_ratio`` = seconds / NICE's seconds in the same run."""

    flow: str
    title: str
    data: str
    budget: str
    config: dict
    parameters: int
    seconds: float
    epochs: int
    best_epoch: int
    steps: int
    test_nll: float
    valid_nll: float
    bits_per_dim: float | None = None
    time_ratio: float | None = None

    @property
    def test_log_likelihood(self) -> float:
        return -self.test_nll


@dataclass
class Comparison:
    """The runs, in the order trained, and (``keep``) each flow's trained model and modules."""

    data: Dataset
    budget: str
    runs: list[FlowRun]
    trained: dict = field(default_factory=dict)  # flow -> nicelab.core.training.Trained
    modules: dict = field(default_factory=dict)  # flow -> the modules it trained with

    def run(self, flow: str) -> FlowRun:
        return next(r for r in self.runs if r.flow == flow)


def image_levels(data: Dataset) -> int | None:
    """The discrete levels of an image data set's pixels (digits 17, MNIST 256), else None."""
    if data.image_shape is None:
        return None
    return data.levels or 256


def matched_config(flow: str, modules, dim: int, config: TrainConfig, target: int) -> TrainConfig:
    """``config`` with the largest ``hidden_units`` (at most ``config.hidden_units``) at which
    ``flow`` has no more than ``target`` trainable parameters (a bisection; parameters grow with
    the width); a ``ValueError`` when even one hidden unit is too many."""
    def count(units: int) -> int:
        return flows.count_parameters(flow, modules, dim, dataclasses.replace(config, hidden_units=units))

    low, high = 1, config.hidden_units
    if count(high) <= target:
        return config
    if count(low) > target:
        raise ValueError(f"{flows.FLOWS[flow].title} has more than {target} parameters (NICE's) at any "
                         f"width on {dim} dimensions: compare with the 'preset' budget instead.")
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if count(middle) <= target else (low, middle - 1)
    return dataclasses.replace(config, hidden_units=low)


def log_density(modules, trained) -> Callable:
    """``x (n, D) -> log p(x) (n,)`` of a trained flow with its modules' ``log_likelihood``,
    as a ``tf.function``."""
    import tensorflow as tf  # lazy: TensorFlow's start-up cost

    lik = modules["likelihood"]
    return tf.function(lambda x: lik.log_likelihood(trained.model, trained.prior, x), reduce_retracing=True)


def base_config(flow: str, data_name: str, budget: str, overrides: dict | None = None) -> TrainConfig:
    """The config a flow starts from under ``budget``: NICE's preset at :data:`SIZES` (``params``;
    the other flows' widths are then matched) or the flow's own preset (``preset``), then
    ``overrides`` (TrainConfig fields)."""
    check_choice(budget, BUDGETS, "budget")
    if budget == "params":
        config = dataclasses.replace(flows.preset("nice", data_name), **SIZES.get(data_name, {}))
    else:
        config = flows.preset(flow, data_name)
    return dataclasses.replace(config, **(overrides or {}))


def compare(data: Dataset, flow_names: Sequence[str] = flows.FLOW_NAMES, impl="solutions",
            budget: str = "params", overrides: dict | None = None, keep: bool = False,
            log: Callable[[str], None] | None = None) -> Comparison:
    """Train each flow of ``flow_names`` (NICE first when it is one) on ``data`` with ``impl``
    under ``budget`` (:func:`base_config`; ``overrides``: TrainConfig fields, e.g. the bench's
    quick size), one after the other in this process, and score each on the test and
    validation sets."""
    from nicelab.core.training import mean_nll, train  # lazy: TensorFlow's start-up cost

    check_choice(budget, BUDGETS, "budget")
    names = [flows.get_flow(name).name for name in flow_names]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"name each flow once, at least one, got {list(flow_names)}.")
    names.sort(key=lambda name: name != "nice")
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    nice_config = base_config("nice", data.name, budget, overrides)
    target = None
    result = Comparison(data, budget, [])
    for name in names:
        modules = flows.load_modules(name, impl)
        if budget == "preset":
            config = base_config(name, data.name, budget, overrides)
        elif name == "nice":
            config = nice_config
        else:
            if target is None:
                nice_modules = flows.load_modules("nice", impl)
                target = flows.count_parameters("nice", nice_modules, data.dim, nice_config)
            config = matched_config(name, modules, data.dim, nice_config, target)
        parameters = flows.count_parameters(name, modules, data.dim, config)
        log(f"{data.name}: training {flows.FLOWS[name].title} ({config.num_couplings} x "
            f"{config.hidden_layers} x {config.hidden_units}, {parameters} parameters, "
            f"{config.epochs} epochs at most)")
        trained = train(modules, data, config, verbose=False)
        evaluate = log_density(modules, trained)
        test_nll, valid_nll = mean_nll(evaluate, data.test), mean_nll(evaluate, data.valid)
        levels = image_levels(data)
        result.runs.append(FlowRun(
            name, flows.FLOWS[name].title, data.name, budget, dataclasses.asdict(config), parameters,
            trained.history.seconds, len(trained.history.train_nll), trained.history.best_epoch + 1,
            trained.history.steps, test_nll, valid_nll,
            bits_per_dim(-test_nll, data.dim, levels) if levels else None))
        if keep:
            result.trained[name], result.modules[name] = trained, modules
    if result.runs[0].flow == "nice":
        for run in result.runs:
            run.time_ratio = run.seconds / max(result.runs[0].seconds, 1e-9)
    return result


def summary(comparison: Comparison) -> dict:
    """The comparison as JSON-ready data: ``{flow: {fields of FlowRun}}`` plus ``budget``,
    ``data``, the split sizes and ``best`` (the flow with the lowest test NLL)."""
    data = comparison.data
    entry: dict = {"data": data.name, "budget": comparison.budget, "dim": data.dim,
                   "n_train": len(data.train), "n_valid": len(data.valid), "n_test": len(data.test)}
    for run in comparison.runs:
        row = dataclasses.asdict(run)
        row["test_log_likelihood"] = run.test_log_likelihood
        entry[run.flow] = {k: v for k, v in row.items() if v is not None}
    finite = [r for r in comparison.runs if math.isfinite(r.test_nll)]
    entry["best"] = min(finite, key=lambda r: r.test_nll).flow if finite else None
    return entry


def table_rows(comparison: Comparison) -> list[tuple[str, ...]]:
    """One text row per flow: flow, test NLL (nats), bits/dim (images), parameters, seconds,
    time / NICE's, best epoch / epochs."""
    rows = []
    for run in comparison.runs:
        bpd = "" if run.bits_per_dim is None else f"{run.bits_per_dim:.3f}"
        ratio = "" if run.time_ratio is None else f"{run.time_ratio:.2f}x"
        rows.append((run.title, f"{run.test_nll:.3f}", bpd, f"{run.parameters:,}", f"{run.seconds:.1f}",
                     ratio, f"{run.best_epoch}/{run.epochs}"))
    return rows


TABLE_HEADER = ("flow", "test NLL (nats)", "bits/dim", "parameters", "seconds", "time / NICE", "best epoch")
