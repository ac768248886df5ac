"""The figures and numbers of the page "Beyond NICE" (docs/beyond-nice.md), made by
``nicelab figures --only beyond`` (and ``--only beyond-mnist``) into ``docs/figures/beyond/``:

* ``beyond.json``: NICE, RealNVP and Glow compared on :data:`TOYS` and :data:`IMAGES` with the
  same parameter count, one entry per data set (:func:`nicelab.core.comparison.summary`; the
  page reads ``fig.beyond.rings.realnvp.test_nll``), and on rings again at NICE's own, larger
  preset (``rings_large``, :data:`LARGE`);
* ``flows.png``: their densities and samples side by side on the toy sets;
* ``mnist.json`` (``beyond-mnist``, only when MNIST is cached: the page reads
  ``fig.beyond.mnist...``): the same on MNIST, each flow with its own MNIST preset.

Everything is trained afresh with the reference (``--impl solutions``), seeded: the same code
gives the same numbers, the wall times apart.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from nicelab.core import comparison
from nicelab.core import data as data_mod
from nicelab.core.flows import preset as flows_preset

#: The 2-D sets of the figure, and the image set of the table (same parameter count).
TOYS = ("rings", "moons")
IMAGES = ("digits",)
#: The toy set compared again at NICE's own preset for it (8 x 3 x 128, 80 epochs): a big enough
#: NICE catches up.
LARGE = "rings"
IMPL = "solutions"
#: Samples drawn from each flow for the figure.
SAMPLES = 3000


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"


def _write(path: Path, entry: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entry, indent=2, sort_keys=True) + "\n")
    return path


def _panels(result: comparison.Comparison) -> list:
    from nicelab.plots.flows import FlowPanel

    panels = []
    for run in result.runs:
        trained, modules = result.trained[run.flow], result.modules[run.flow]
        log_density = comparison.log_density(modules, trained)
        samples = np.asarray(modules["likelihood"].sample(trained.model, trained.prior, SAMPLES, seed=1))
        panels.append(FlowPanel(run.title, run.test_nll, lambda x, f=log_density: f(x).numpy(), samples))
    return panels


def make(docs: Path, verbose: bool = True) -> list[Path]:
    """Train the three flows on :data:`TOYS` and :data:`IMAGES` (same parameter count, the
    comparison's size otherwise: :func:`nicelab.core.comparison.base_config`), and on
    :data:`LARGE` at NICE's preset; write ``beyond.json`` and ``flows.png``."""
    from nicelab.plots.flows import side_by_side

    target = docs / "figures" / "beyond"
    log = print if verbose else (lambda msg: None)
    preset = flows_preset("nice", LARGE)
    large = {k: getattr(preset, k) for k in ("num_couplings", "hidden_units", "hidden_layers", "epochs")}
    runs = []  # (key in beyond.json, data set, overrides): the large rings beside the small ones
    for name in (*TOYS, *IMAGES):
        runs.append((name, name, None))
        if name == LARGE:
            runs.append((f"{LARGE}_large", LARGE, large))
    entries, rows = {}, []
    for key, name, overrides in runs:
        data = data_mod.load(name)
        toy = data.dim == 2
        result = comparison.compare(data, impl=IMPL, budget="params", overrides=overrides, keep=toy, log=log)
        entries[key] = comparison.summary(result)
        if toy:
            size = f"{result.runs[0].config['num_couplings']} x {result.runs[0].config['hidden_units']}"
            rows.append((f"{name} ({size})", data.test, _panels(result)))
    entries["load_average"] = _load()
    made = [_write(target / "beyond.json", entries)]
    made.append(side_by_side(rows, target / "flows.png"))
    return made


def make_mnist(docs: Path, verbose: bool = True) -> list[Path]:
    """NICE and RealNVP (and Glow) on MNIST, each with its own MNIST preset, in one process:
    ``mnist.json``. Nothing without the MNIST file (the figures never download it)."""
    from nicelab.core import mnist

    if not mnist.cached("mnist"):
        print("== beyond-mnist: no MNIST file (see docs/mnist.md); docs/figures/beyond/mnist.json "
              "stays as it is.")
        return []
    data = data_mod.load("mnist")
    result = comparison.compare(data, impl=IMPL, budget="preset",
                                log=print if verbose else (lambda msg: None))
    entry = comparison.summary(result)
    entry["load_average"] = _load()
    return [_write(docs / "figures" / "beyond" / "mnist.json", entry)]
