"""``nicelab train DATA``: train NICE with an implementation, keep the best weights by
validation NLL, save them and write figures. ``--flow realnvp`` or ``--flow glow`` trains the
advanced track's flows instead (stage 6's RealNVP, stage 7's Glow: :mod:`nicelab.core.flows`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from nicelab.cli.commands import add_data_argument, add_impl_argument, data_name
from nicelab.cli.options import add_flow_argument, add_model_arguments, config_from_args
from nicelab.core import data as data_mod
from nicelab.core import flows
from nicelab.core import impl as impl_mod
from nicelab.core.data import bits_per_dim
from nicelab.plots import training as plots


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_argument(parser, default="parabola")
    add_impl_argument(parser)
    add_flow_argument(parser)
    add_model_arguments(parser, title="model and training (defaults: the data set's preset)",
                        out_help="output folder (default runs/DATA/IMPL-KEY; another flow than "
                                 "nice: runs/DATA/IMPL-FLOW-KEY)")


def write_figures(trained, modules, data, out: Path) -> list[Path]:
    """Loss curves, learned density (2-D) and samples beside the data."""
    import tensorflow as tf  # lazy: TensorFlow's start-up cost

    lik = modules["likelihood"]
    figures = [plots.loss_curves(trained.history, out / "loss.png", floor=data.entropy)]
    samples = np.asarray(lik.sample(trained.model, trained.prior, 2000, seed=0))
    if data.dim == 2:
        log_density = tf.function(lambda x: lik.log_likelihood(trained.model, trained.prior, x))
        figures.append(plots.density_2d(lambda x: log_density(x).numpy(), data.test,
                                        out / "density.png"))
        figures.append(plots.samples_2d(samples, data.test, out / "samples.png"))
    elif data.image_shape is not None:
        figures.append(plots.samples_images(samples, data.test, data.image_shape,
                                            out / "samples.png"))
    return figures


def report(trained, modules, data) -> dict:
    """Test NLL (and, with an exact entropy, the gap to it; for images, bits per dim)."""
    import tensorflow as tf  # lazy: TensorFlow's start-up cost

    from nicelab.core.training import mean_nll  # lazy: TensorFlow's start-up cost

    lik = modules["likelihood"]
    evaluate = tf.function(lambda x: lik.log_likelihood(trained.model, trained.prior, x))
    nll = mean_nll(evaluate, data.test)
    result = {"test_nll": nll, "best_epoch": trained.history.best_epoch + 1}
    print(f"test NLL: {nll:.4f} nats per example (best epoch {result['best_epoch']})")
    if data.entropy is not None:
        result["gap"] = nll - data.entropy
        print(f"exact entropy: {data.entropy:.4f} nats; gap: {result['gap']:+.4f} nats")
    if data.image_shape is not None:
        result["test_log_likelihood"] = -nll
        levels = data.levels or (256 if data.name in ("mnist", "fashion_mnist") else None)
        if levels:  # the papers' convention: bits per dimension of the discrete pixel levels

            result["bits_per_dim"] = bits_per_dim(-nll, data.dim, levels)
        else:
            result["bits_per_dim"] = nll / (data.dim * np.log(2.0))
        print(f"test log-likelihood: {-nll:.2f} nats per image, "
              f"{result['bits_per_dim']:.3f} bits per dimension")
    return result


def describe(flow: str, config) -> str:
    """How the run announces its model: ``NICE (4 couplings, 3 x 64 ReLU, gaussian prior)``."""
    entry = flows.get_flow(flow)
    layers = {"nice": "couplings", "realnvp": "affine couplings", "glow": "steps of mixing + affine coupling"}
    scale = "" if entry.name == "nice" else ", then a diagonal scaling layer"
    return (f"{entry.title} ({config.num_couplings} {layers[entry.name]}, {config.hidden_layers} x "
            f"{config.hidden_units} ReLU{scale}, {config.prior} prior)")


def run(args: argparse.Namespace) -> int:
    from nicelab.core import mnist, runs  # lazy: TensorFlow's start-up cost
    from nicelab.core.training import train  # lazy: TensorFlow's start-up cost

    name = data_name(args)
    flow = getattr(args, "flow", None) or flows.DEFAULT_FLOW
    config = config_from_args(args, name)
    modules = flows.load_modules(flow, args.impl)
    if name in mnist.NAMES:
        mnist.fetch(name)  # with network, Keras' own loader downloads it the first time
    data = data_mod.load(name)
    out = args.out or flows.run_dir(name, config, args.impl, flow)
    print(f"training {describe(flow, config)} on {name} "
          f"({len(data.train)} train / {len(data.valid)} valid / {len(data.test)} test, "
          f"D = {data.dim}) with {impl_mod.resolve(args.impl)}")
    trained = train(modules, data, config, verbose=not args.quiet)
    steps_per_s = trained.history.steps / max(trained.history.seconds, 1e-9)
    print(f"trained {trained.history.steps} steps in {trained.history.seconds:.1f} s "
          f"({steps_per_s:.0f} steps/s{'' if trained.history.compiled else ', eager'})")
    result = report(trained, modules, data)
    if flow != flows.DEFAULT_FLOW:  # NICE's records stay as they were
        result["flow"] = flow
    runs.save(trained, out, extra={"data": name, "impl": str(args.impl), **result})
    figures = write_figures(trained, modules, data, out)
    print(f"saved weights and {len(figures)} figures in {out}:")
    for figure in figures:
        print(f"  {figure}")
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return 0
