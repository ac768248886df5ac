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

from nicelab.cli.commands import add_data_argument, add_impl_argument, data_name
from nicelab.cli.options import add_model_arguments
from nicelab.core.toy import NAMES as TOY_NAMES

IMAGE_MASKS = ("top", "bottom", "left", "right", "centre", "random25", "random50", "random75", "random90")
PARABOLA_MASKS = ("x1", "x2")  # for every 2-D data set: the parabola and the toy sets
TWO_D = ("parabola", *TOY_NAMES)
#: Candidate step sizes (alpha_0), the paper's first; --step-size overrides the choice.
STEP_SIZES = (0.1, 0.03, 0.01, 0.003, 0.001)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_argument(parser, default="digits")
    add_impl_argument(parser)
    parser.add_argument("--masks", nargs="+", metavar="MASK",
                        help=f"mask kinds (images: {', '.join(IMAGE_MASKS)}; parabola: x1, x2)")
    parser.add_argument("--examples", type=int, help="test examples per mask kind (default: digits 270, "
                        "MNIST 100, parabola 2000)")
    parser.add_argument("--show", type=int, default=8, help="examples per mask kind in the figure")
    parser.add_argument("--steps", type=int, default=300, help="ascent steps (default 300)")
    parser.add_argument("--step-size", type=float,
                        help="alpha_0 of alpha_i = step_size * 100 / (100 + i) (0.1 is the paper's); "
                             f"default: chosen among {', '.join(map(str, STEP_SIZES))} by the log-likelihood "
                             "it reaches on validation examples (a sharp density needs a smaller step)")
    parser.add_argument("--noise", type=float, default=0.0, help="scale of the paper's Gaussian term")
    add_model_arguments(parser)


def make_masks(kind: str, n: int, dim: int, image_shape, rng):
    """Boolean ``(n, dim)``, True = observed, for one mask kind."""
    import numpy as np

    if image_shape is None:
        known = np.ones((n, dim), dtype=bool)
        known[:, {"x1": 0, "x2": 1}[kind]] = False
        return known
    h, w = image_shape
    if kind.startswith("random"):
        return rng.uniform(size=(n, dim)) >= int(kind.removeprefix("random")) / 100
    hidden = np.zeros((h, w), dtype=bool)
    if kind == "top":
        hidden[: h // 2] = True
    elif kind == "bottom":
        hidden[h // 2:] = True
    elif kind == "left":
        hidden[:, : w // 2] = True
    elif kind == "right":
        hidden[:, w // 2:] = True
    else:  # centre: a square of half the side
        top, left = h // 4, w // 4
        hidden[top:top + h // 2, left:left + w // 2] = True
    return np.broadcast_to(~hidden.ravel(), (n, dim)).copy()


def inpaint_all(modules, trained, data, masks, n: int, args, step_size: float, seed: int = 0,
                split: str = "test") -> dict:
    """Run the implementation's inpaint once on every mask kind stacked; return the arrays."""
    import numpy as np

    rng = np.random.default_rng(seed)
    truth = getattr(data, split)[:n]
    images = data.image_shape is not None
    known = np.concatenate([make_masks(kind, n, data.dim, data.image_shape, rng) for kind in masks])
    stacked = np.tile(truth, (len(masks), 1))
    mean_fill = np.broadcast_to(data.train.mean(axis=0), stacked.shape)
    if images:
        start = np.where(known, stacked, mean_fill)
    else:
        random_fill = data.train[rng.integers(0, len(data.train), len(stacked))]
        start = np.where(known, stacked, random_fill)
    start = start.astype(np.float32)
    result = modules["inpainting"].inpaint(trained.model, trained.prior, start, known, steps=args.steps,
                                           step_size=step_size, noise=args.noise,
                                           bounds=data.bounds, seed=seed)
    result = np.asarray(result, dtype=np.float32)
    if not np.all(np.isfinite(result)):
        raise ValueError(f"inpainting diverged (NaN or infinite values) with step size {step_size}: "
                         "lower --step-size (or give the data bounds).")
    return {"truth": stacked, "known": known, "start": start,
            "mean_fill": np.where(known, stacked, mean_fill), "result": result}


def choose_step_size(modules, trained, data, masks, args, log_lik) -> tuple[float, list[tuple]]:
    """The candidate step size whose ascent reaches the highest mean log-likelihood on a few
    validation examples per mask kind (a diverging one scores -inf; near-ties go to the smaller
    step); and every candidate's score."""
    import numpy as np

    budget = 400 if data.dim <= 64 else 60  # validation rows in all
    n = min(len(data.valid), max(3, budget // len(masks)))
    scores = []
    for step_size in STEP_SIZES:
        try:
            arrays = inpaint_all(modules, trained, data, masks, n, args, step_size, seed=1, split="valid")
            score = float(np.mean(log_lik(arrays["result"])))
        except ValueError:  # diverged
            score = -np.inf
        scores.append((step_size, score if np.isfinite(score) else -np.inf))
    best = max(score for _, score in scores)
    near = [size for size, score in scores if score >= best - 0.01 * max(1.0, abs(best))]
    return min(near), scores


def curvature(modules, trained, x, known) -> dict | None:
    """How sharp the model's log-density is where the ascent starts: per example, the largest
    eigenvalue of the negative Hessian of log p_X over the hidden entries (autodiff). A noiseless
    step along that direction multiplies the distance to the mode by (1 - alpha * lambda), so it
    overshoots and grows once alpha > 2 / lambda. Computed for D <= 64 only (a D x D Hessian per
    example); None otherwise."""
    import numpy as np
    import tensorflow as tf

    if x.shape[1] > 64:
        return None
    log_likelihood = modules["likelihood"].log_likelihood
    z = tf.constant(x, tf.float32)
    with tf.GradientTape() as outer:
        outer.watch(z)
        with tf.GradientTape() as inner:
            inner.watch(z)
            total = tf.reduce_sum(log_likelihood(trained.model, trained.prior, z))
        gradient = inner.gradient(total, z)
    hessians = outer.batch_jacobian(gradient, z).numpy()
    largest = np.array([np.linalg.eigvalsh(-h[np.ix_(~k, ~k)]).max()
                        for h, k in zip(hessians, known, strict=True) if (~k).any()])
    median = float(np.median(largest))
    return {"examples": len(largest), "median": median, "min": float(largest.min()),
            "max": float(largest.max()), "stable_step": 2.0 / median if median > 0 else None}


def summarize(arrays: dict, masks, n: int, log_lik) -> list[dict]:
    """Per mask kind: squared error of the hidden entries, inpainted and mean fill, and the
    mean log-likelihood of the start, the result and the truth."""
    import numpy as np

    before, after, true = log_lik(arrays["start"]), log_lik(arrays["result"]), log_lik(arrays["truth"])
    rows = []
    for i, kind in enumerate(masks):
        part = slice(i * n, (i + 1) * n)
        hidden = ~arrays["known"][part]
        error = (arrays["result"][part] - arrays["truth"][part])[hidden]
        baseline = (arrays["mean_fill"][part] - arrays["truth"][part])[hidden]
        rows.append({"mask": kind, "hidden_fraction": float(hidden.mean()),
                     "mse_inpainted": float(np.mean(error ** 2)),
                     "mse_mean_fill": float(np.mean(baseline ** 2)),
                     "log_lik_before": float(before[part].mean()), "log_lik_after": float(after[part].mean()),
                     "log_lik_truth": float(true[part].mean())})
    return rows


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from nicelab.cli import options as stagerun
    from nicelab.core.validate import check_choice, check_positive_int
    from nicelab.plots import stages as stageplots

    name = data_name(args)
    masks = tuple(args.masks or (PARABOLA_MASKS if name in TWO_D else IMAGE_MASKS))
    for kind in masks:
        check_choice(kind, PARABOLA_MASKS if name in TWO_D else IMAGE_MASKS, f"mask kind for {name}")
    check_positive_int(args.steps, "--steps", minimum=0)
    check_positive_int(args.show, "--show")
    modules, data, trained, out = stagerun.load(args, ("inpainting",), name)
    default_n = {"digits": len(data.test), **dict.fromkeys(TWO_D, 2000)}.get(name, 100)
    n = min(len(data.test), check_positive_int(args.examples or default_n, "--examples"))
    step_size, scores = args.step_size, []
    if step_size is not None and not step_size > 0:
        raise ValueError(f"--step-size must be positive, got {step_size}.")
    if step_size is None:
        step_size, scores = choose_step_size(modules, trained, data, masks, args,
                                             lambda x: stagerun.log_likelihoods(modules, trained, x))
        print("step size chosen on validation examples (mean log-likelihood reached): "
              + ", ".join(f"{size:g}: {score:.2f}" for size, score in scores) + f" -> {step_size:g}")
    rng = np.random.default_rng(1)
    probe = data.valid[:60]
    probe_known = make_masks(masks[0], len(probe), data.dim, data.image_shape, rng)
    fill = (data.train.mean(axis=0) if data.image_shape is not None
            else data.train[rng.integers(0, len(data.train), len(probe))])
    probe_start = np.where(probe_known, probe, fill).astype(np.float32)
    sharpness = curvature(modules, trained, probe_start, probe_known)
    if sharpness:
        print(f"curvature of -log p over the hidden entries ({masks[0]} mask, {sharpness['examples']} "
              f"validation examples at their start): largest eigenvalue median {sharpness['median']:.0f} "
              f"(from {sharpness['min']:.0f} to {sharpness['max']:.0f}); a step overshoots along it once "
              f"alpha > 2 / lambda = {sharpness['stable_step']:.2g}")
    print(f"inpainting {n} test examples per mask kind ({len(masks)} kinds), {args.steps} steps, "
          f"step size {step_size} (alpha_i = {step_size} * 100 / (100 + i)), noise {args.noise}")
    fallbacks = [] if args.step_size is not None else [size for size in STEP_SIZES if size < step_size]
    while True:
        try:
            arrays = inpaint_all(modules, trained, data, masks, n, args, step_size)
            break
        except ValueError:
            if not fallbacks:
                raise
            step_size = fallbacks.pop(0)
            print(f"diverged on the test examples: trying step size {step_size:g}")
    rows = summarize(arrays, masks, n, lambda x: stagerun.log_likelihoods(modules, trained, x))
    stagerun.print_table(
        ("mask", "hidden", "MSE inpainted", "MSE mean fill", "ratio", "log-lik before", "after", "truth"),
        [(r["mask"], r["hidden_fraction"], r["mse_inpainted"], r["mse_mean_fill"],
          r["mse_inpainted"] / r["mse_mean_fill"], r["log_lik_before"], r["log_lik_after"],
          r["log_lik_truth"]) for r in rows],
        ("s", ".0%", ".4f", ".4f", ".2f", ".2f", ".2f", ".2f"))
    start_note = "mean training image" if data.image_shape is not None else "random training values"
    print(f"(hidden entries start at the {start_note}; MSE on the hidden entries only; "
          "log-likelihood in nats per example)")
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
