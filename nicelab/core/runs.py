"""Where trained models live: ``runs/<data>/<impl>-<key>/`` holds ``weights.npz``,
``run.json`` (config, history, test NLL) and the figures. The key hashes the training config
and the sources of the implementation's stages 1-3, so a changed implementation never reuses
a stale model."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from nicelab.core import cache
from nicelab.core import impl as impl_mod
from nicelab.core.config import PRESETS, TrainConfig
from nicelab.core.course import TRAINED_STAGES
from nicelab.core.data import Dataset
from nicelab.core.training import History, Trained, build_model, train

__all__ = ["PRESETS", "load_or_train", "restore", "run_dir", "save"]

RUNS_DIR = Path("runs")  # default; the NICELAB_RUNS environment variable overrides it


def runs_dir() -> Path:
    return Path(os.environ.get("NICELAB_RUNS", RUNS_DIR))

WEIGHTS = "weights.npz"


def save_weights(model, path: Path) -> None:
    """Every variable of ``model`` (in ``model.weights`` order) into one ``.npz`` file."""
    np.savez(path, *[w.numpy() for w in model.weights])


def load_weights(model, path: Path) -> None:
    """Assign the arrays ``save_weights`` wrote back to a freshly built model of the same shape."""
    with np.load(path) as arrays:
        values = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    if len(values) != len(model.weights) or any(
            tuple(v.shape) != a.shape for v, a in zip(model.weights, values, strict=True)):
        raise ValueError(f"{path} does not match this model's variables; retrain it.")
    for variable, value in zip(model.weights, values, strict=True):
        variable.assign(value)


def run_key(data_name: str, config: TrainConfig, impl_path: Path) -> str:
    """The config and the implementation's stage 1-3 sources (:func:`nicelab.core.cache.key`)."""
    sources = [(impl_path / f"{stage}.py") for stage in TRAINED_STAGES]
    return cache.key(data_name, config, *(s.read_bytes() if s.exists() else b"" for s in sources),
                     length=12, with_tensorflow=False)


def run_dir(data_name: str, config: TrainConfig, impl: str) -> Path:
    path = impl_mod.resolve(impl)
    return runs_dir() / data_name / f"{path.name}-{run_key(data_name, config, path)}"


def save(trained: Trained, directory: Path, extra: dict | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(trained.model, directory / WEIGHTS)
    record = {"config": dataclasses.asdict(trained.config),
              "history": dataclasses.asdict(trained.history), **(extra or {})}
    (directory / "run.json").write_text(json.dumps(record, indent=2))


def restore(modules: dict[str, ModuleType], data: Dataset, config: TrainConfig,
            directory: Path) -> Trained | None:
    """The saved model of ``directory``, or None when there is none."""
    weights, record = directory / WEIGHTS, directory / "run.json"
    if not (weights.exists() and record.exists()):
        return None

    model, prior = build_model(modules, data.dim, config)
    load_weights(model, weights)
    history = History(**json.loads(record.read_text())["history"])
    return Trained(model, prior, history, config)


def load_or_train(modules: dict[str, ModuleType], data: Dataset, config: TrainConfig,
                  impl: str, verbose: bool = True) -> tuple[Trained, Path]:
    """Reuse the weights ``nicelab train`` saved for this implementation and config, else train."""
    directory = run_dir(data.name, config, impl)
    trained = restore(modules, data, config, directory)
    if trained is not None:
        if verbose:
            print(f"using the trained model in {directory}")
        return trained, directory
    if verbose:
        print(f"no trained model in {directory}: training one now", file=sys.stdout)
    trained = train(modules, data, config, verbose=verbose)
    save(trained, directory)
    return trained, directory
