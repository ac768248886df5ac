"""``nicelab inpaint DATA``: hide part of test examples, fill them in with the implementation's
``inpaint`` (stage 4) and a trained model (``nicelab train``'s, or trained now), and report.

Images (digits, MNIST): masks top, bottom, left and right half, centre square, and random
25/50/75/90 % of the pixels; the hidden pixels start at the mean training image (the
baseline). The parabola: x1 hidden (given x2) and x2 hidden (given x1), started from random
training values: p(x2 | x1) is bimodal (x2 = +-2 sqrt(x1)) and the mean of x2, 0, is the local
minimum between its two modes, where the gradient vanishes and an ascent would stay.

Prints per mask kind the squared error of the hidden entries (inpainted vs the mean fill)
and the mean log-likelihood before and after; writes ``inpainting.png`` (original | masked |
inpainted, one block per mask kind), ``inpainting_mse.png`` and ``inpainting.json``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from nicelab.cli import options as stagerun
from nicelab.cli.commands import add_data_argument, add_impl_argument, data_name
from nicelab.cli.options import add_model_arguments
from nicelab.core import data as data_mod
from nicelab.core.validate import check_choice, check_positive_int
from nicelab.plots import stages as stageplots
from nicelab.tasks.inpaint import (  # noqa: F401 - make_masks: re-exported
    IMAGE_MASKS,
    PARABOLA_MASKS,
    STEP_SIZES,
    TWO_D,
    choose_step_size,
    inpaint_with_fallback,
    make_masks,
    probe_curvature,
    summarize,
)

#: Test examples per mask kind without ``--examples``: all of digits' test set, the first
#: ``OTHER_EXAMPLES`` of MNIST's, the first ``TWO_D_EXAMPLES`` of a 2-D set's.
TWO_D_EXAMPLES, OTHER_EXAMPLES = 2000, 100


def default_examples(name: str, test_size: int) -> int:
    """How many test examples ``nicelab inpaint NAME`` fills in when ``--examples`` is not given."""
    if name == "digits":
        return test_size
    return min(test_size, TWO_D_EXAMPLES if name in TWO_D else OTHER_EXAMPLES)


def _examples_help() -> str:
    """``--examples``'s help, with the numbers :func:`default_examples` actually uses (digits'
    test set counted from its split, not written by hand)."""
    digits = default_examples("digits", len(data_mod.load_digits().test))
    return (f"test examples per mask kind (default: digits {digits}, its whole test set; "
            f"MNIST {OTHER_EXAMPLES}; parabola and the other 2-D sets {TWO_D_EXAMPLES})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_argument(parser, default="digits")
    add_impl_argument(parser)
    parser.add_argument("--masks", nargs="+", metavar="MASK",
                        help=f"mask kinds (images: {', '.join(IMAGE_MASKS)}; parabola: x1, x2)")
    parser.add_argument("--examples", type=int, help=_examples_help())
    parser.add_argument("--show", type=int, default=8, help="examples per mask kind in the figure")
    parser.add_argument("--steps", type=int, default=300, help="ascent steps (default 300)")
    parser.add_argument("--step-size", type=float,
                        help="alpha_0 of alpha_i = step_size * 100 / (100 + i) (0.1 is the paper's); "
                             f"default: chosen among {', '.join(map(str, STEP_SIZES))} by the log-likelihood "
                             "it reaches on validation examples (a sharp density needs a smaller step)")
    parser.add_argument("--noise", type=float, default=0.0, help="scale of the paper's Gaussian term")
    add_model_arguments(parser)


def _step_size(args, modules, trained, data, masks) -> tuple[float, list[tuple]]:
    """``--step-size``, or the candidate chosen on validation examples (and every score)."""
    if args.step_size is not None:
        if not args.step_size > 0:
            raise ValueError(f"--step-size must be positive, got {args.step_size}.")
        return args.step_size, []
    step_size, scores = choose_step_size(modules, trained, data, masks, args,
                                         lambda x: stagerun.log_likelihoods(modules, trained, x))
    print("step size chosen on validation examples (mean log-likelihood reached): "
          + ", ".join(f"{size:g}: {score:.2f}" for size, score in scores) + f" -> {step_size:g}")
    return step_size, scores


def _print_rows(rows: list[dict], images: bool) -> str:
    stagerun.print_table(
        ("mask", "hidden", "MSE inpainted", "MSE mean fill", "ratio", "log-lik before", "after", "truth"),
        [(r["mask"], r["hidden_fraction"], r["mse_inpainted"], r["mse_mean_fill"],
          r["mse_inpainted"] / r["mse_mean_fill"], r["log_lik_before"], r["log_lik_after"],
          r["log_lik_truth"]) for r in rows],
        ("s", ".0%", ".4f", ".4f", ".2f", ".2f", ".2f", ".2f"))
    start_note = "mean training image" if images else "random training values"
    print(f"(hidden entries start at the {start_note}; MSE on the hidden entries only; "
          "log-likelihood in nats per example)")
    return start_note


def run(args: argparse.Namespace) -> int:
    name = data_name(args)
    masks = tuple(args.masks or (PARABOLA_MASKS if name in TWO_D else IMAGE_MASKS))
    for kind in masks:
        check_choice(kind, PARABOLA_MASKS if name in TWO_D else IMAGE_MASKS, f"mask kind for {name}")
    check_positive_int(args.steps, "--steps", minimum=0)
    check_positive_int(args.show, "--show")
    modules, data, trained, out = stagerun.load(args, ("inpainting",), name)
    default_n = default_examples(name, len(data.test))
    n = min(len(data.test), check_positive_int(args.examples or default_n, "--examples"))
    step_size, scores = _step_size(args, modules, trained, data, masks)
    sharpness = probe_curvature(modules, trained, data, masks[0])
    if sharpness:
        print(f"curvature of -log p over the hidden entries ({masks[0]} mask, {sharpness['examples']} "
              f"validation examples at their start): largest eigenvalue median {sharpness['median']:.0f} "
              f"(from {sharpness['min']:.0f} to {sharpness['max']:.0f}); a step overshoots along it once "
              f"alpha > 2 / lambda = {sharpness['stable_step']:.2g}")
    print(f"inpainting {n} test examples per mask kind ({len(masks)} kinds), {args.steps} steps, "
          f"step size {step_size} (alpha_i = {step_size} * 100 / (100 + i)), noise {args.noise}")
    fallbacks = [] if args.step_size is not None else [size for size in STEP_SIZES if size < step_size]
    arrays, step_size = inpaint_with_fallback(modules, trained, data, masks, n, args, step_size, fallbacks)
    rows = summarize(arrays, masks, n, lambda x: stagerun.log_likelihoods(modules, trained, x))
    start_note = _print_rows(rows, data.image_shape is not None)
    figures = [stageplots.inpainting_figure(arrays, masks, n, data, out / "inpainting.png", show=args.show),
               stageplots.inpainting_errors(rows, out / "inpainting_mse.png")]
    summary = {"data": name, "impl": str(args.impl), "examples_per_mask": n, "steps": args.steps,
               "step_size": step_size,
               "step_size_scores": [{"step_size": a, "mean_log_lik": b if np.isfinite(b) else None}
                                    for a, b in scores],
               "noise": args.noise, "start": start_note, "curvature": sharpness, "masks": rows}
    (out / "inpainting.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {len(figures)} figures and inpainting.json in {out}:")
    for figure in figures:
        print(f"  {figure}")
    return 0
