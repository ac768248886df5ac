"""What ``nicelab inpaint`` and ``nicelab outliers`` share: the model options (the same as
``nicelab train``'s, so the same options find the same saved weights), loading the
implementation's own stages and reusing ``nicelab train``'s model or training one.

No TensorFlow at import time: the command modules import this at their top (and ``--help``
imports every command).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from nicelab.core import data as data_mod
from nicelab.core import flows
from nicelab.core import impl as impl_mod
from nicelab.core.config import TrainConfig
from nicelab.core.mnist import with_arch
from nicelab.core.table import table_lines


def add_model_arguments(parser: argparse.ArgumentParser,
                        title: str = "model (as in nicelab train: the same options reuse its weights)",
                        out_help: str = "folder for the figures and tables "
                                        "(default: a folder beside the model under runs/)") -> None:
    """``nicelab train``'s options that choose the model (and so its saved weights)."""
    group = parser.add_argument_group(title)
    group.add_argument("--arch", choices=("paper", "small"),
                       help="coupling networks: the NICE paper's 5 x 1000 ReLU or the small preset")
    group.add_argument("--epochs", type=int, help="training epochs (default: the data set's preset)")
    group.add_argument("--lr", type=float, help="Adam's learning rate")
    group.add_argument("--batch-size", type=int)
    group.add_argument("--couplings", type=int, help="number of coupling layers")
    group.add_argument("--hidden-units", type=int)
    group.add_argument("--hidden-layers", type=int)
    group.add_argument("--prior", choices=("logistic", "gaussian"))
    group.add_argument("--seed", type=int, help="training seed")
    parser.add_argument("--out", type=Path, help=out_help)
    parser.add_argument("--quiet", action="store_true", help="no training progress bar")


def add_flow_argument(parser: argparse.ArgumentParser) -> None:
    """``--flow {nice,realnvp,glow}``: which flow to train (:mod:`nicelab.core.flows`)."""
    parser.add_argument("--flow", choices=flows.FLOW_NAMES, default=flows.DEFAULT_FLOW,
                        help="the flow to train: nice (stages 1-3, the default), realnvp (stage 6's "
                             "affine couplings) or glow (stage 7's mixing and affine couplings); "
                             "each from --impl, ending in the same diagonal scaling layer")


def config_from_args(args: argparse.Namespace, name: str) -> TrainConfig:
    """The training config: the preset of the data set (for ``--flow``, that flow's: see
    :func:`nicelab.core.flows.preset`), ``--arch``, then the explicit options."""
    overrides = {
        "epochs": args.epochs, "learning_rate": args.lr, "batch_size": args.batch_size,
        "num_couplings": args.couplings, "hidden_units": args.hidden_units,
        "hidden_layers": args.hidden_layers, "prior": args.prior, "seed": args.seed,
    }
    for key in ("epochs", "batch_size", "num_couplings", "hidden_units", "hidden_layers"):
        if overrides[key] is not None and overrides[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be at least 1.")
    if args.lr is not None and not args.lr > 0:
        raise ValueError("--lr must be positive.")
    base = flows.preset(getattr(args, "flow", None) or flows.DEFAULT_FLOW, name)
    return dataclasses.replace(with_arch(base, getattr(args, "arch", None)),
                               **{k: v for k, v in overrides.items() if v is not None})


def load(args: argparse.Namespace, stages: tuple[str, ...], name: str):
    """``(modules, data, trained, out)``: the implementation's own ``stages`` (with stages 1-3),
    the data, ``nicelab train``'s model for this config (trained now when there is none) and the
    output folder (created)."""
    from nicelab.core import runs  # imports TensorFlow: only once a command runs

    config = config_from_args(args, name)
    modules = impl_mod.load_all(args.impl, (*runs.TRAINED_STAGES, *stages))
    data = data_mod.load(name)
    print(f"NICE ({config.num_couplings} couplings, {config.hidden_layers} x {config.hidden_units} ReLU, "
          f"{config.prior} prior) on {name} with {impl_mod.resolve(args.impl)}")
    directory = runs.run_dir(name, config, args.impl)
    reused = (directory / runs.WEIGHTS).exists()
    trained, directory = runs.load_or_train(modules, data, config, args.impl, verbose=not args.quiet)
    if args.quiet:
        print(f"{'using the trained model in' if reused else 'trained and saved a model in'} {directory}")
    out = Path(args.out) if args.out else directory / args.command
    out.mkdir(parents=True, exist_ok=True)
    return modules, data, trained, out


def log_likelihoods(modules, trained, x, batch: int = 2000):
    """log p(x) of every row of ``x`` with the implementation's stage 3, in batches, as float64."""
    lik = modules["likelihood"]
    parts = [np.asarray(lik.log_likelihood(trained.model, trained.prior, x[i:i + batch]))
             for i in range(0, len(x), batch)]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)


def print_table(header: tuple[str, ...], rows: list[tuple], formats: tuple[str, ...]) -> None:
    """A plain-text table: one header line, then one line per row (each value in its format)."""
    cells = [[format(v, f) for v, f in zip(row, formats, strict=True)] for row in rows]
    print("\n".join(table_lines(cells, ">" * len(header), header)))
