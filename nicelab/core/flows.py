"""The flows ``nicelab train --flow`` trains: one small registry, flow name -> the stages of the
implementation it needs, its model and its log-likelihood.

* ``nice``: stages 1-3, the course's NICE (additive couplings, then a diagonal scaling layer),
  trained exactly as ``nicelab train`` always has (same modules, same run folders).
* ``realnvp``: stage 6's ``RealNVP`` (affine couplings, Dinh et al. 2017) and stage 6's
  ``log_likelihood``.
* ``glow``: stage 7's ``Glow`` (a learned invertible linear mixing before every affine coupling,
  Kingma and Dhariwal 2018) and stage 6's ``log_likelihood``.

Each comes from the chosen implementation (``--impl lessons``, ``solutions`` or a folder), with
its stage 3 ``make_prior`` and ``sample``. The training driver (:mod:`nicelab.core.training`)
expects stage 2's and stage 3's modules; :func:`load_modules` hands it, for RealNVP and Glow,
stand-ins with the same names: a ``model`` whose ``NICE(dim, couplings, units, layers)`` builds
the chosen flow followed by the same diagonal scaling layer NICE ends with
(:class:`nicelab.core.flow_models.ScaledFlow`), and a ``likelihood`` whose ``log_likelihood`` and
``train_step`` are stage 6's change of variables. So the three flows train under one driver,
one data-dependent start of the scale and one optimizer, and differ only in their layers.

No TensorFlow at import time (the command line imports this for ``--help``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from nicelab.core import impl as impl_mod
from nicelab.core.config import PRESETS, TrainConfig
from nicelab.core.course import TRAINED_STAGES
from nicelab.core.validate import check_choice


@dataclass(frozen=True)
class Flow:
    """One entry of the registry.

    Attributes:
        name: the ``--flow`` value.
        title: how tables and figures name it.
        stages: the implementation's stage modules it loads.
        model: ``(stage, class)``: the model class, called as ``cls(dim, layers, units, depth)``.
        likelihood: the stage whose ``log_likelihood(model, prior, x)`` scores it.
    """

    name: str
    title: str
    stages: tuple[str, ...]
    model: tuple[str, str]
    likelihood: str


FLOWS: dict[str, Flow] = {
    "nice": Flow("nice", "NICE", TRAINED_STAGES, ("model", "NICE"), "likelihood"),
    "realnvp": Flow("realnvp", "RealNVP", ("likelihood", "affine"), ("affine", "RealNVP"), "affine"),
    "glow": Flow("glow", "Glow", ("likelihood", "affine", "mixing"), ("mixing", "Glow"), "affine"),
}
FLOW_NAMES: tuple[str, ...] = tuple(FLOWS)
DEFAULT_FLOW = "nice"

#: Per data set, how a flow's preset differs from the data set's NICE preset
#: (:data:`nicelab.core.config.PRESETS`); a flow with no entry uses NICE's preset as it is.
#: MNIST, a same-time budget: on 2 cores an epoch of RealNVP costs 2 to 3 times one of NICE of
#: the same size (two heads per network, and stage 6's log-likelihood runs every network twice:
#: once in ``forward``, once in ``log_det_jacobian``), so RealNVP gets 40 epochs to NICE's 100,
#: about NICE's training time; Glow's epoch costs about 10 of NICE's (at D = 784 every mixing
#: layer multiplies out W = P L U, two 784^3 products, at each call), so it gets 10. Neither
#: has weight decay: on MNIST it held RealNVP back (2115 against 2238 nats per image at 34
#: epochs). Measured in docs/beyond-nice.md and docs/benchmarks.md.
FLOW_PRESETS: dict[tuple[str, str], dict] = {
    (flow, data): changes
    for data in ("mnist", "fashion_mnist")
    for flow, changes in (("realnvp", {"epochs": 40, "weight_decay": None}),
                          ("glow", {"epochs": 10, "weight_decay": None}))
}


def get_flow(name: str) -> Flow:
    """The registry's entry for ``name``; a clear ``ValueError`` for an unknown flow."""
    if not isinstance(name, str):
        raise TypeError(f"the flow must be a name (one of {', '.join(FLOW_NAMES)}), "
                        f"got {type(name).__name__}.")
    return FLOWS[check_choice(name, FLOW_NAMES, "flow")]


def preset(flow: str, data_name: str) -> TrainConfig:
    """The training config of ``flow`` on ``data_name``: the data set's preset with the flow's
    changes from :data:`FLOW_PRESETS` (NICE: the data set's preset itself)."""
    get_flow(flow)
    check_choice(data_name, tuple(PRESETS), "data set")
    return dataclasses.replace(PRESETS[data_name], **FLOW_PRESETS.get((flow, data_name), {}))


def _stand_in(name: str, **attributes) -> ModuleType:
    module = ModuleType(name)
    module.__dict__.update(attributes)
    return module


def load_modules(flow: str, impl) -> dict[str, ModuleType]:
    """The modules the training driver trains ``flow`` with, from the implementation ``impl``.

    NICE: the implementation's stages 1-3 as they are (``nicelab train`` unchanged). RealNVP and
    Glow: the implementation's stage 3 and the flow's stages (``affine``, ``mixing``), and under
    the keys ``model`` and ``likelihood`` the stand-ins described in the module docstring.
    """
    entry = get_flow(flow)
    loaded = impl_mod.load_all(impl, entry.stages)
    if entry.name == "nice":
        return loaded
    from nicelab.core import flow_models  # lazy: TensorFlow

    stage, class_name = entry.model
    cls = getattr(loaded[stage], class_name, None)
    log_likelihood = getattr(loaded[entry.likelihood], "log_likelihood", None)
    if cls is None or log_likelihood is None:
        missing = f"{stage}.{class_name}" if cls is None else f"{entry.likelihood}.log_likelihood"
        raise impl_mod.ImplementationError(f"the implementation has no {missing}: --flow {flow} needs it.")
    stage3 = loaded["likelihood"]

    def build(dim, num_couplings=4, hidden_units=64, hidden_layers=3):
        return flow_models.ScaledFlow(cls(dim, num_couplings, hidden_units, hidden_layers), dim)

    model = _stand_in(f"nicelab_flow_{flow}_model", NICE=build, flow=entry)
    likelihood = _stand_in(f"nicelab_flow_{flow}_likelihood", make_prior=stage3.make_prior,
                           sample=stage3.sample, log_likelihood=log_likelihood,
                           train_step=flow_models.make_train_step(log_likelihood))
    return {**loaded, "model": model, "likelihood": likelihood}


def run_dir(data_name: str, config: TrainConfig, impl, flow: str = DEFAULT_FLOW) -> Path:
    """Where ``nicelab train --flow FLOW`` keeps its run: NICE's folder is
    :func:`nicelab.core.runs.run_dir`'s (keys unchanged); another flow's is
    ``runs/<data>/<impl>-<flow>-<key>``, the key hashing the data set's name, the config, the
    flow and the sources of the stages it loads (and stages 1-2, which stage 6 builds on)."""
    from nicelab.core import cache, runs  # lazy: runs imports TensorFlow

    entry = get_flow(flow)
    if entry.name == "nice":
        return runs.run_dir(data_name, config, impl)
    path = impl_mod.resolve(impl)
    stages = dict.fromkeys((*TRAINED_STAGES, *entry.stages))
    sources = [(path / f"{stage}.py") for stage in stages]
    key = cache.key(data_name, config, entry.name, *(s.read_bytes() if s.exists() else b"" for s in sources),
                    length=12, with_tensorflow=False)
    return runs.runs_dir() / data_name / f"{path.name}-{entry.name}-{key}"


def load_or_train(flow: str, modules: dict[str, ModuleType], data, config: TrainConfig, impl,
                  verbose: bool = True):
    """``(trained, folder)``: the run ``nicelab train --flow FLOW`` saved for this config and
    implementation, else a new one (trained and saved there)."""
    from nicelab.core import runs  # lazy: TensorFlow

    if get_flow(flow).name == "nice":
        return runs.load_or_train(modules, data, config, impl, verbose=verbose)
    directory = run_dir(data.name, config, impl, flow)
    trained = runs.restore(modules, data, config, directory)
    if trained is None:
        from nicelab.core.training import train

        trained = train(modules, data, config, verbose=verbose)
        runs.save(trained, directory)
    elif verbose:
        print(f"using the trained model in {directory}")
    return trained, directory


def count_parameters(flow: str, modules: dict[str, ModuleType], dim: int, config: TrainConfig) -> int:
    """Trainable parameters of ``flow`` built with ``config``'s sizes on ``dim`` dimensions
    (the final scaling layer's D log-scales included, as NICE's)."""
    from nicelab.core import flow_models
    from nicelab.core.training import build_model

    get_flow(flow)
    model, _ = build_model(modules, dim, config)
    return flow_models.count_parameters(model, dim)
