"""Stage 4 - inpainting: fill in unobserved entries by projected gradient ascent on log p(x).

NICE paper, section 5.2; lesson page docs/lessons/4-inpainting.md. Split x into observed
entries x_O (``known`` True) and hidden ones x_H. Starting from the values given in x, for
i = 0, 1, ..., steps - 1:

    alpha_i   = step_size * 100 / (100 + i)            (step_size = 0.1: the paper's 10 / (100 + i))
    x_H      <- Pi( x_H + alpha_i * (d log p_X(x_O, x_H) / d x_H + noise * eps_i) ),
                eps_i ~ N(0, I), drawn afresh at every step, independently for every entry

where Pi clips to the box ``bounds = (low, high)`` after every step (no projection when
``bounds`` is None). The observed entries x_O never move: they are returned bit for bit as
given. The noise enters as alpha_i * noise * eps (not Langevin's sqrt(2 alpha_i) * eps): an
annealed, perturbed ascent towards a mode, not a sampler.

``log_likelihood`` is stage 3's; log|det df/dx| does not depend on x, so the gradient comes
from the prior term log p_H(f(x)) alone, back-propagated through f.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import tensorflow as tf

from nicelab.validate import as_batch, check_positive_int

from .likelihood import log_likelihood  # noqa: F401 - the stub's ascent_step uses it

#: Default number of ascent steps and the paper's step size (alpha_0 = 0.1).
DEFAULT_STEPS = 300
PAPER_STEP_SIZE = 0.1


def ascent_step(model, prior, z, x, known, alpha, eps, bounds=None):
    """One projected gradient ascent step on the unobserved entries of ``z``.

    Args:
        z: the current estimate, a float32 tensor ``(batch, D)``.
        x: the given values ``(batch, D)``; its observed entries are the truth.
        known: boolean tensor ``(batch, D)``, True where observed.
        alpha: the step size alpha_i (scalar tensor).
        eps: the noise term already scaled by ``noise``, ``(batch, D)`` (zeros without noise).
        bounds: ``(low, high)`` or None.

    Returns ``(batch, D)``: observed entries exactly x's; hidden entries

        clip(z + alpha * (g + eps), low, high),   g = d/dz sum_batch log p_X(z)

    (row b of g is example b's own gradient: examples do not interact). ``log_likelihood``
    (stage 3, imported above) gives log p_X.
    """
    # BEGIN SOLUTION: ascent_step
    # > The gradient of the batch's log-likelihood with respect to the current estimate, one
    # > step uphill with the noise term, the projection, and the observed entries kept as given.
    with tf.GradientTape() as tape:
        tape.watch(z)
        total = tf.reduce_sum(log_likelihood(model, prior, z))
    grad = tape.gradient(total, z)
    stepped = z + alpha * (grad + eps)
    if bounds is not None:
        stepped = tf.clip_by_value(stepped, bounds[0], bounds[1])
    return tf.where(known, x, stepped)
    # END SOLUTION


#: Compiled steps per model, reused across calls (any batch size, any bounds): (prior, step) pairs.
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def make_step(model, prior, x, known, bounds=None):
    """``step(z, alpha, eps)``: ``ascent_step`` for this model, data, mask and bounds.

    Compiled with tf.function once per (model, prior) for every batch size and box (bounds
    None becomes the box (-inf, inf), where clipping changes nothing); run eagerly, if it
    cannot be compiled (NumPy inside the step, say)."""
    cached = _COMPILED.setdefault(model, [])
    compiled = next((fn for p, fn in cached if p is prior), None)
    if compiled is None:
        def eager(z, x, known, alpha, eps, low, high):
            return ascent_step(model, prior, z, x, known, alpha, eps, (low, high))

        matrix, mask = (tf.TensorSpec([None, x.shape[1]], dtype) for dtype in (tf.float32, tf.bool))
        scalar = tf.TensorSpec([], tf.float32)
        traced = tf.function(eager, input_signature=[matrix, matrix, mask, scalar, matrix, scalar, scalar])
        state = {"fn": traced}

        def compiled(*args):
            if state["fn"] is traced:
                try:
                    return traced(*args)
                except Exception:  # noqa: BLE001 - e.g. NumPy inside the step: run it eagerly
                    state["fn"] = eager
            return state["fn"](*args)

        cached.append((prior, compiled))
    low, high = (-np.inf, np.inf) if bounds is None else bounds
    low, high = tf.constant(low, tf.float32), tf.constant(high, tf.float32)

    def step(z, alpha, eps):
        return compiled(tf.convert_to_tensor(z, tf.float32), x, known, tf.constant(alpha, tf.float32),
                        tf.convert_to_tensor(eps, tf.float32), low, high)

    return step


def _validated(model, x, known, steps, step_size, noise, bounds, seed):
    x = as_batch(x, getattr(model, "dim", None))
    mask = known.numpy() if isinstance(known, tf.Tensor | tf.Variable) else np.asarray(known)
    if mask.dtype != bool:
        if mask.dtype.kind in "iu" and np.isin(mask, (0, 1)).all():
            mask = mask.astype(bool)
        else:
            raise TypeError(f"known must be a boolean array (True = observed), got dtype {mask.dtype}.")
    if mask.shape != tuple(x.shape):
        raise ValueError(f"known must have x's shape {tuple(x.shape)}, got {mask.shape}.")
    steps = check_positive_int(steps, "steps", minimum=0)
    for name, value, low in (("step_size", step_size, 0.0), ("noise", noise, 0.0)):
        if isinstance(value, bool) or not isinstance(value, int | float | np.number) \
                or not math.isfinite(value) or value < low or (name == "step_size" and value == 0):
            raise ValueError(f"{name} must be a finite number {'> 0' if name == 'step_size' else '>= 0'}, "
                             f"got {value!r}.")
    if bounds is not None:
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise ValueError(f"bounds must be a (low, high) pair of numbers or None, "
                             f"got {bounds!r}.") from None
        if not low < high:
            raise ValueError(f"bounds must satisfy low < high, got {bounds!r}.")
        bounds = (low, high)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise TypeError(f"seed must be an integer or None, got {seed!r}.")
    return x, mask, steps, float(step_size), float(noise), bounds


def inpaint(model, prior, x, known, steps=DEFAULT_STEPS, step_size=PAPER_STEP_SIZE, noise=0.0,
            bounds=None, seed=None):
    """Fill in the unobserved entries of ``x`` by projected gradient ascent on log p(x).

    Args:
        model, prior: a trained NICE and its prior.
        x: ``(batch, D)`` starting values: observed entries are the truth, hidden ones are where
            the ascent starts (e.g. the mean image, or noise).
        known: boolean ``(batch, D)``, True where observed.
        steps: number of ascent steps, i = 0 .. steps - 1; ``step_size``: alpha_0, the schedule
            is alpha_i = step_size * 100 / (100 + i) (0.1: the paper's).
        noise: scale of the paper's Gaussian term: each step adds alpha_i * noise * eps_i,
            eps_i ~ N(0, I) of shape ``(batch, D)``, fresh at every step (0: no noise).
        bounds: ``(low, high)``: the box hidden entries are clipped to after every step.
        seed: integer seed of the noise (the same seed, the same result).

    Returns a float32 NumPy array ``(batch, D)``; observed entries bit for bit those of x;
    hidden entries the estimate after ``steps`` steps (the equation in the module docstring).
    """
    x, known, steps, step_size, noise, bounds = _validated(model, x, known, steps, step_size, noise,
                                                           bounds, seed)
    # BEGIN SOLUTION: inpaint
    # > Seeded noise, the compiled step (make_step, or your ascent_step called directly), then
    # > `steps` updates of the current estimate with the schedule of the module docstring.
    rng = np.random.default_rng(seed)
    step = make_step(model, prior, x, tf.constant(known), bounds)
    no_noise = np.zeros(x.shape, np.float32)
    z = x
    for i in range(steps):
        alpha = step_size * 100.0 / (100.0 + i)
        eps = noise * rng.standard_normal(x.shape).astype(np.float32) if noise else no_noise
        z = step(z, alpha, eps)
    return np.asarray(z, dtype=np.float32)
    # END SOLUTION


# BEGIN ANSWERS
ANSWERS = {
    "alpha_at_step_100": 0.05,  # 0.1 * 100 / (100 + 100)
    "sum_of_alphas_300_steps": 13.9,  # 10 * (1/100 + ... + 1/399), about 10 * ln(4) = 13.86
    "largest_stable_alpha": 0.005,  # |1 - alpha * 400| > 1 once alpha > 2 / 400
}
# END ANSWERS
