"""Stage 4's computations on a trained model, apart from printing and plotting (``nicelab
inpaint`` prints and plots them): the masks, the inpainting of every mask kind at once, the
choice of the step size, the curvature where the ascent starts, and the errors per mask kind.

Images: the hidden pixels start at the mean training image (the baseline). 2-D sets: a hidden
coordinate starts at random training values (the mean of x2 is a local minimum of p(x2 | x1)).
"""

from __future__ import annotations

import weakref

import numpy as np

from nicelab.core.toy import NAMES as TOY_NAMES

IMAGE_MASKS = ("top", "bottom", "left", "right", "centre", "random25", "random50", "random75", "random90")
PARABOLA_MASKS = ("x1", "x2")  # for every 2-D data set: the parabola and the toy sets
TWO_D = ("parabola", *TOY_NAMES)
#: Candidate step sizes (alpha_0), the paper's first; --step-size overrides the choice.
STEP_SIZES = (0.1, 0.03, 0.01, 0.003, 0.001)


def make_masks(kind: str, n: int, dim: int, image_shape, rng):
    """Boolean ``(n, dim)``, True = observed, for one mask kind."""
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


#: model -> [(prior, log_likelihood, compiled Hessian function)]: one trace per model and prior.
_HESSIANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _hessians(log_likelihood, model, prior, dim: int):
    """``z (batch, D) -> (batch, D, D)``: each example's Hessian of log p_X, compiled once per
    (model, prior, log_likelihood) and reused (a watch session probes the same model every run)."""
    import tensorflow as tf  # here, not at the top: its start-up cost only when a model is probed

    cached = _HESSIANS.setdefault(model, [])
    for known_prior, known_fn, compiled in cached:
        if known_prior is prior and known_fn is log_likelihood:
            return compiled

    def eager(z):
        with tf.GradientTape() as outer:
            outer.watch(z)
            with tf.GradientTape() as inner:
                inner.watch(z)
                summed = tf.reduce_sum(log_likelihood(model, prior, z))
            gradient = inner.gradient(summed, z)
        return outer.batch_jacobian(gradient, z)

    traced = tf.function(eager, input_signature=[tf.TensorSpec([None, dim], tf.float32)])
    state = {"fn": traced}

    def compiled(z):
        if state["fn"] is traced:
            try:
                return traced(z)
            except Exception:  # noqa: BLE001 - a log_likelihood that cannot be traced: run it eagerly
                state["fn"] = eager
        return state["fn"](tf.constant(z))

    cached.append((prior, log_likelihood, compiled))
    return compiled


def curvature(modules, trained, x, known) -> dict | None:
    """How sharp the model's log-density is where the ascent starts: per example, the largest
    eigenvalue of the negative Hessian of log p_X over the hidden entries (autodiff). A noiseless
    step along that direction multiplies the distance to the mode by (1 - alpha * lambda), so it
    overshoots and grows once alpha > 2 / lambda. Computed for D <= 64 only (a D x D Hessian per
    example); None otherwise."""
    if x.shape[1] > 64:
        return None
    hessian = _hessians(modules["likelihood"].log_likelihood, trained.model, trained.prior, x.shape[1])
    hessians = hessian(np.asarray(x, np.float32)).numpy()
    largest = np.array([np.linalg.eigvalsh(-h[np.ix_(~k, ~k)]).max()
                        for h, k in zip(hessians, known, strict=True) if (~k).any()])
    median = float(np.median(largest))
    return {"examples": len(largest), "median": median, "min": float(largest.min()),
            "max": float(largest.max()), "stable_step": 2.0 / median if median > 0 else None}


def summarize(arrays: dict, masks, n: int, log_lik) -> list[dict]:
    """Per mask kind: squared error of the hidden entries, inpainted and mean fill, and the
    mean log-likelihood of the start, the result and the truth."""
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


def probe_curvature(modules, trained, data, mask: str) -> dict | None:
    """:func:`curvature` at the start of the ascent, on 60 validation examples with ``mask``."""
    rng = np.random.default_rng(1)
    probe = data.valid[:60]
    known = make_masks(mask, len(probe), data.dim, data.image_shape, rng)
    fill = (data.train.mean(axis=0) if data.image_shape is not None
            else data.train[rng.integers(0, len(data.train), len(probe))])
    return curvature(modules, trained, np.where(known, probe, fill).astype(np.float32), known)


def inpaint_with_fallback(modules, trained, data, masks, n: int, args, step_size: float,
                          fallbacks: list[float], log=print) -> tuple[dict, float]:
    """:func:`inpaint_all` on the test examples; when it diverges, again with the next smaller
    step size of ``fallbacks`` (none: the error is raised). Returns the arrays and the step size."""
    fallbacks = list(fallbacks)
    while True:
        try:
            return inpaint_all(modules, trained, data, masks, n, args, step_size), step_size
        except ValueError:
            if not fallbacks:
                raise
            step_size = fallbacks.pop(0)
            log(f"diverged on the test examples: trying step size {step_size:g}")
