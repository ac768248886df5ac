"""Stage 6 (advanced) - the affine coupling layer and RealNVP (lessons/affine.py).

Spec: an AffineCoupling keeps one part of x and maps the other to x_change * exp(s) + t, with s
and t functions of the kept part only; backward undoes it exactly, dividing by the very
exp(s) forward multiplied by; log_det_jacobian(x) is one value per example, sum(s(x_keep)),
equal to log|det J| of forward per example (finite differences of forward's answers), with its
sign; s is bounded, so large inputs never overflow; a new layer is the identity; every layer
owns its network(s), of the sizes asked for; gradients reach every variable, through forward
and the log-det. A RealNVP chains alternating couplings; backward undoes them last first; its
log-det is the sum of its couplings' at the inputs they see; log_likelihood is the change of
variables with a per-example log-det; on two moons a short run beats NICE of the same size.

s and t are never read from the student's code: for a coupling, the check recovers them from
forward's answers (y_change = t at x_change = 0, and exp(s) + t at x_change = 1). The page's
predictions are graded last.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from nicelab.checking import (
    attempt,
    changed_columns,
    describe,
    expect,
    expect_answer,
    expect_true_gradients,
    fail,
    gradient_report,
    max_error,
    numerical_log_det,
    numpy,
    random_batch,
    randomize,
    shaped,
    trainable,
    type_name,
    weight_matrices,
)
from nicelab.core import cache, toy
from nicelab.core import impl as impl_mod
from nicelab.core.course import STAGE_NAMES
from nicelab.core.source_key import used_source_key
from nicelab.grader.recipes import affine as recipes
from nicelab.grader.recipes import likelihood as likelihood_recipes
from nicelab.grader.remote import beside, local_of, remote_exception, twin

pytestmark = pytest.mark.affine

DIM, COUPLINGS = 6, 4
SMALL = {"hidden_units": 16, "hidden_layers": 1}
TOL = 1e-4
PAGE = "docs/lessons/6-affine.md (Predict, then check)"
#: Inputs "large" for the overflow check: entries up to about 1e4.
LARGE = 2e3
#: The largest |log det| per changed coordinate a bounded s gives at any input (exp(15) ~ 3e6).
S_BOUND = 15.0
#: The short training runs on two moons: the student's RealNVP and the reference NICE, same size.
TRAIN = {"steps": 300, "batch": 256, "lr": 2e-2, "couplings": 4, "hidden_units": 32, "hidden_layers": 2,
         "train": 2000, "test": 500}
#: How much lower RealNVP's test NLL must be than NICE's (correct runs: about 0.35 nats lower).
BEAT_BAR = 0.15
#: The moons are turned by this angle, so that neither coordinate alone separates them: the run
#: does not favour one split orientation (which part the first coupling keeps) over the other.
TURN = math.pi / 4
#: What the run uses of affine.py (with what it calls, they key its cache).
RUN_USES = ("RealNVP",)
SIZES_HINT = ("the network takes the kept part and returns s and t, each as wide as the changed "
              "part, and forward merges both parts back into one (batch, D) tensor.")


# ---------------------------------------------------------------------------------------------
# Helpers: calls with one-line verdicts, and s and t read off forward's answers


def fwd(layer, x, what="forward"):
    """``layer.forward(x)``, checked for shape; an exception in it becomes a one-line verdict."""
    out = attempt(layer.forward, x, doing=f"{what} on a {tuple(np.shape(x))} batch", likely=SIZES_HINT)
    return shaped(out, np.shape(x), what, "return one (batch, D) tensor, like its input.")


def bwd(layer, y, what="backward"):
    """``layer.backward(y)``, checked for shape; an exception in it becomes a one-line verdict."""
    out = attempt(layer.backward, y, doing=f"{what} on a {tuple(np.shape(y))} batch", likely=SIZES_HINT)
    return shaped(out, np.shape(y), what, "return one (batch, D) tensor, like its input.")


def log_det(layer, x, what="log_det_jacobian(x)") -> np.ndarray:
    """``layer.log_det_jacobian(x)`` as one float64 value per example, or a verdict on its shape."""
    out = attempt(layer.log_det_jacobian, x, doing=f"{what} on a {tuple(np.shape(x))} batch")
    seen = tuple(np.shape(out))
    if seen == (len(x),):
        return numpy(out)
    if seen in ((), (1,)):
        likely = ("the log-det summed (or averaged) over the batch: an affine coupling's log-det "
                  "depends on x, so keep one value per example and reduce over the changed "
                  "coordinates only.")
    elif len(seen) == 2 and seen[0] == len(x):
        likely = "one value per coordinate: sum s over the changed coordinates, one value per example."
    else:
        likely = "return one value per example."
    fail(f"{what} to return one value per example, shape ({len(x)},)", f"shape {seen}", likely)


def new_layer(affine, dim=DIM, parity=0, sizes=None):
    """An AffineCoupling as built, called once (so that a lazily built network exists)."""
    sizes = SMALL if sizes is None else sizes
    layer = attempt(lambda: affine.AffineCoupling(dim, parity, **sizes),
                    doing=f"AffineCoupling({dim}, parity={parity}, ...)", likely=SIZES_HINT)
    fwd(layer, random_batch(2, dim, seed=99))
    return layer


def make_layer(affine, dim=DIM, parity=0, seed=0, scale=0.5):
    """An AffineCoupling with random weights everywhere, so that s and t are far from zero."""
    layer = new_layer(affine, dim, parity)
    variables = trainable(layer)
    expect(len(variables) > 0, "AffineCoupling to own trainable variables after a first call", "none",
           "store the network(s) on the layer as attributes, so that Keras tracks their variables, "
           "and use them in forward.")
    randomize(variables, seed, scale)
    return layer


def scale_and_shift(layer, x, changed) -> tuple[np.ndarray, np.ndarray]:
    """``(exp(s), t)`` at the kept part of x, each ``(batch, |change|)``, read off forward's answers:
    y_change = t at x_change = 0 and exp(s) + t at x_change = 1."""
    zero, one = x.copy(), x.copy()
    zero[:, changed], one[:, changed] = 0.0, 1.0
    t = fwd(layer, zero)[:, changed]
    return fwd(layer, one)[:, changed] - t, t


def diagnose_backward(layer, y, changed) -> str:
    """The likely mistake when backward differs from (y_change - t) * exp(-s) with the s and t
    forward uses at the kept part of y."""
    got = bwd(layer, y)[:, changed]
    exp_s, t = scale_and_shift(layer, y, changed)
    y_change = y[:, changed].astype(np.float64)
    candidates = [
        ((y_change - t) * exp_s,
         "backward multiplies by exp(s) again (exp(+s)): undoing a multiplication by exp(s) "
         "divides by it, i.e. multiplies by exp(-s)."),
        (y_change * (1.0 / exp_s) - t,
         "backward undoes the two steps in the wrong order: subtract t first, then divide by exp(s)."),
        ((y_change + t) / exp_s,
         "backward adds the shift t: subtract it (then divide by exp(s))."),
        (y_change - t, "backward forgets to undo the scale: divide by exp(s) after subtracting t."),
    ]
    for candidate, mistake in candidates:
        if np.allclose(got, candidate, atol=1e-4, rtol=1e-4):
            return mistake
    return ("backward must recompute s and t from y_keep (which forward left equal to x_keep), "
            "the very ones forward used, then subtract t and divide by exp(s) in the changed part.")


# ---------------------------------------------------------------------------------------------
# AffineCoupling: structure


def test_forward_keeps_shape_and_dtype(affine):
    x = random_batch(8, DIM).astype(np.float64)  # NumPy float64 in, float32 out
    out = attempt(make_layer(affine).forward, x, doing="forward on an (8, 6) float64 batch",
                  likely=SIZES_HINT)
    expect(tuple(np.shape(out)) == (8, DIM), f"forward to return shape (8, {DIM})",
           f"{tuple(np.shape(out))}", SIZES_HINT)
    expect(str(getattr(out, "dtype", "")) in ("float32", "<dtype: 'float32'>"), "a float32 result",
           f"{getattr(out, 'dtype', type_name(out))}", "convert the input to a float32 tensor first.")


@pytest.mark.builds_on("test_forward_keeps_shape_and_dtype")
def test_exactly_one_part_changes(affine):
    layer, x = make_layer(affine), random_batch(16, DIM)
    changed = changed_columns(x, fwd(layer, x))
    n = int(changed.sum())
    expect(n > 0, "forward to change one part of x", "y == x in every column",
           "multiply x_change by exp(s) and add t (are the network's outputs used?).")
    expect(n < DIM, "one part of x to pass through unchanged", "every column changed",
           "y_keep must be x_keep exactly; only x_change is scaled and shifted.")
    expect(n in (DIM // 2, DIM - DIM // 2), f"{DIM // 2} changed columns (half of D = {DIM})",
           f"{n} changed columns {describe(changed)}",
           "use stage 1's split: two parts of D // 2 and D - D // 2 coordinates.")


@pytest.mark.builds_on("test_exactly_one_part_changes")
def test_parities_change_complementary_parts(affine):
    x = random_batch(16, DIM)
    first, second = (changed_columns(x, fwd(make_layer(affine, parity=p, seed=p), x)) for p in (0, 1))
    expect(not np.any(first & second) and np.all(first | second),
           "parity 0 and parity 1 to change complementary parts", f"{describe(first)} and {describe(second)}",
           "parity 1 must swap the roles of the two parts (stage 1's partition does).")


@pytest.mark.builds_on("test_exactly_one_part_changes")
def test_scale_and_shift_come_from_the_kept_part(affine):
    layer, x = make_layer(affine), random_batch(16, DIM)
    changed = changed_columns(x, fwd(layer, x))
    outputs = []
    for value in (0.0, 1.0, -2.5):
        probe = x.copy()
        probe[:, changed] = value
        outputs.append(fwd(layer, probe)[:, changed])
    at_zero, at_one, at_other = outputs
    predicted = at_zero + (-2.5) * (at_one - at_zero)  # t + a exp(s) for x_change = a
    error = max_error(at_other, predicted) / max(1.0, float(np.max(np.abs(at_other))))
    expect(error < 1e-4, "y_change = x_change * exp(s) + t with s and t the same whatever x_change is",
           f"y_change is not of that form in x_change (off by {error:.3g})",
           "s or t is computed from the changed part (or from all of x): compute both from x_keep "
           "only; a scale that depends on x_change cannot be undone.")
    moved = x.copy()
    moved[:, ~changed] += 1.0
    expect(not np.allclose(fwd(layer, moved)[:, changed] - moved[:, changed],
                           fwd(layer, x)[:, changed] - x[:, changed], atol=1e-4),
           "s and t to depend on x_keep", "the same change whatever x_keep is",
           "feed x_keep (not a constant) into the network.")


def test_each_layer_owns_its_network(affine):
    first, second = make_layer(affine, seed=1), make_layer(affine, seed=2)
    shared = {id(v) for v in trainable(first)} & {id(v) for v in trainable(second)}
    expect(not shared, "two AffineCoupling layers to have separate variables",
           f"{len(shared)} shared variables",
           "weight sharing: create new networks inside __init__ for every layer (not one "
           "network at module level or as a default argument).")
    x = random_batch(8, DIM)
    before = fwd(second, x)
    randomize(trainable(first), seed=99)
    expect(np.allclose(before, fwd(second, x)), "changing one layer's weights to leave another alone",
           "the second layer's output changed", "weight sharing between coupling layers.")


@pytest.mark.builds_on("test_exactly_one_part_changes", "test_each_layer_owns_its_network")
def test_new_layer_is_the_identity(affine):
    layer, x = new_layer(affine), random_batch(16, DIM)
    error = max_error(fwd(layer, x), x) / float(np.max(np.abs(x)))
    expect(error < 0.05, "a new layer to be the identity, or close to it (forward(x) ~ x)",
           f"forward moves x by up to {error:.0%} of its size",
           "start the network's last layer at zero (as in stage 1), so that s = t = 0 at first: "
           "a flow that starts at the identity trains stably.")


# ---------------------------------------------------------------------------------------------
# AffineCoupling: the inverse

STRUCTURE = ("test_forward_keeps_shape_and_dtype", "test_exactly_one_part_changes",
             "test_scale_and_shift_come_from_the_kept_part")


@pytest.mark.builds_on(*STRUCTURE)
@pytest.mark.parametrize("parity", [0, 1])
def test_backward_undoes_forward(affine, parity):
    layer, x = make_layer(affine, parity=parity), random_batch(16, DIM)
    y = fwd(layer, x)
    error = max_error(bwd(layer, y), x) / max(1.0, float(np.max(np.abs(y))))
    if error >= TOL:
        fail("backward(forward(x)) == x", f"a maximum error of {error:.3g}",
             diagnose_backward(layer, y.astype(np.float32), changed_columns(x, y)))


@pytest.mark.builds_on(*STRUCTURE)
def test_forward_undoes_backward(affine):
    layer, y = make_layer(affine, parity=1), random_batch(16, DIM, seed=1)
    x = bwd(layer, y)
    error = max_error(fwd(layer, x.astype(np.float32)), y) / max(1.0, float(np.max(np.abs(x))))
    if error >= TOL:
        fail("forward(backward(y)) == y", f"a maximum error of {error:.3g}",
             diagnose_backward(layer, y, changed_columns(y, fwd(layer, y))))


@pytest.mark.builds_on(*STRUCTURE)
def test_backward_divides_by_the_scale_forward_multiplied_by(affine):
    layer, y = make_layer(affine, seed=3, scale=1.0), random_batch(16, DIM, seed=2)
    changed = changed_columns(y, fwd(layer, y))
    exp_s, t = scale_and_shift(layer, y, changed)
    expected = (y[:, changed] - t) / exp_s
    got = bwd(layer, y)
    error = max_error(got[:, changed], expected) / max(1.0, float(np.max(np.abs(expected))))
    expect(np.array_equal(got[:, ~changed], y[:, ~changed]), "backward to leave y_keep as it is",
           "it changes the kept part", "x_keep = y_keep: only the changed part is undone.")
    if error >= TOL:
        fail("x_change = (y_change - t) / exp(s), with the s and t forward uses at x_keep = y_keep",
             f"values off by up to {error:.3g}", diagnose_backward(layer, y, changed))


@pytest.mark.builds_on("test_backward_undoes_forward", "test_forward_undoes_backward",
                       "test_parities_change_complementary_parts")
@pytest.mark.parametrize("dim", [2, 5])
def test_odd_and_small_dimensions(affine, dim):
    x = random_batch(8, dim)
    layers = [make_layer(affine, dim=dim, parity=p, seed=p) for p in (0, 1)]
    first, second = (changed_columns(x, fwd(layer, x)) for layer in layers)
    sizes = sorted((int(first.sum()), int(second.sum())))
    expect(sizes == [dim // 2, dim - dim // 2] and np.all(first ^ second),
           f"for D = {dim}, parts of sizes {dim // 2} and {dim - dim // 2} that cover every column",
           f"parities change {describe(first)} and {describe(second)}",
           "use stage 1's partition: for odd D one part has one more coordinate than the other, and "
           "the network maps the kept part's size to twice (s and t) the changed part's size.")
    for parity, layer in enumerate(layers):
        back = bwd(layer, fwd(layer, x).astype(np.float32))
        error = max_error(back, x) / max(1.0, float(np.max(np.abs(x))))
        expect(error < TOL, f"backward(forward(x)) == x for D = {dim} (parity {parity})",
               f"a maximum error of {error:.3g}", "the same split and the same s and t in both directions.")


# ---------------------------------------------------------------------------------------------
# AffineCoupling: the log-determinant


@pytest.mark.builds_on("test_forward_keeps_shape_and_dtype")
def test_log_det_has_one_value_per_example(affine):
    layer, x = make_layer(affine), random_batch(16, DIM)
    values = log_det(layer, x)
    expect(bool(np.all(np.isfinite(values))), "finite log-dets", f"{values}",
           "sum s over the changed coordinates (s itself, not exp(s) or its log).")
    expect(float(np.std(values)) > 1e-4, "log-dets that differ from example to example (s depends on x_keep)",
           f"the same value {values[0]:.4f} for all 16 examples",
           "the log-det averaged or summed over the batch and spread back: keep each example's own sum of s.")


def _diagnose_log_det(got, numeric, exp_s, changed_count) -> str:
    s = np.log(exp_s)
    if np.allclose(got, -numeric, atol=1e-2):
        return ("wrong sign of the log-determinant: forward multiplies x_change by exp(s), so "
                "log|det df/dx| = +sum(s).")
    if np.allclose(got, numeric / changed_count, atol=1e-2):
        return "s averaged over the changed coordinates: the log-det is their sum."
    if np.allclose(got, np.sum(exp_s, axis=1), atol=1e-2):
        return "the sum of exp(s): the log of the scale exp(s) is s itself, so the log-det is sum(s)."
    if np.allclose(got, np.sum(s), atol=1e-2) or np.allclose(got, np.mean(numeric), atol=1e-2):
        return "the log-det summed or averaged over the batch: keep one value per example."
    return ("log_det_jacobian(x) must be the sum over the changed coordinates of s(x_keep), with "
            "the very s that forward uses.")


@pytest.mark.builds_on(*STRUCTURE, "test_log_det_has_one_value_per_example")
@pytest.mark.parametrize("parity", [0, 1])
def test_log_det_matches_autodiff_per_example(affine, parity):
    layer, x = make_layer(affine, parity=parity, seed=5), random_batch(12, DIM, seed=4)
    numeric = attempt(numerical_log_det, layer.forward, x, doing="forward on a batch of nearby points")
    smooth = np.isfinite(numeric)
    expect(int(smooth.sum()) >= 6, "forward to be a smooth function of x near most points",
           f"{int((~smooth).sum())} of {len(x)} points where it jumps",
           "forward must be x_change * exp(s) + t with s and t from Keras networks, nothing rounded.")
    got = log_det(layer, x)
    error = float(np.max(np.abs(got[smooth] - numeric[smooth])))
    if error > 1e-2:
        changed = changed_columns(x, fwd(layer, x))
        exp_s, _ = scale_and_shift(layer, x, changed)
        fail("log_det_jacobian(x) == log|det df/dx| of forward at every example (finite differences)",
             f"values off by up to {error:.3g} (for example {got[0]:.4f} where forward's Jacobian "
             f"gives {numeric[0]:.4f})", _diagnose_log_det(got, numeric, exp_s, int(changed.sum())))


@pytest.mark.builds_on(*STRUCTURE, "test_backward_undoes_forward",
                       "test_log_det_matches_autodiff_per_example")
def test_no_overflow_for_large_inputs(affine):
    layer = make_layer(affine, seed=6)
    x = random_batch(16, DIM, seed=6, scale=LARGE)
    x[0] = LARGE * 5.0 * np.sign(x[0])  # entries of 1e4
    y = numpy(attempt(layer.forward, x, doing="forward on inputs of size up to 1e4"))
    values = numpy(attempt(layer.log_det_jacobian, x, doing="log_det_jacobian on inputs of size up to 1e4"))
    bound = S_BOUND * (DIM // 2)
    unbounded = ("s is unbounded: it grows with the input until exp(s) overflows (inf) or vanishes "
                 "(0, and backward divides by it). Bound it, for example a learned factor per "
                 "coordinate times tanh of the network's output.")
    finite = bool(np.all(np.isfinite(y)) and np.all(np.isfinite(values)))
    expect(finite and float(np.max(np.abs(values))) <= bound,
           f"finite outputs and |log-det| below {bound:g} for inputs of size up to 1e4 (s bounded)",
           "inf or NaN" if not finite else f"|log-det| up to {float(np.max(np.abs(values))):.3g}", unbounded)
    back = numpy(attempt(layer.backward, y.astype(np.float32), doing="backward on large outputs"))
    error = float(np.max(np.abs(back - x))) / float(np.max(np.abs(y)))
    expect(bool(np.all(np.isfinite(back))) and error < 1e-4,
           "backward(forward(x)) == x for inputs of size up to 1e4",
           "inf or NaN" if not np.all(np.isfinite(back)) else f"a relative error of {error:.3g}", unbounded)


# ---------------------------------------------------------------------------------------------
# AffineCoupling: variables and gradients


@pytest.mark.builds_on("test_forward_keeps_shape_and_dtype")
def test_gradients_reach_every_variable(affine):
    layer, x = make_layer(affine, parity=1), random_batch(16, DIM)
    total = beside(recipes.log_det_total, layer, x)
    report = attempt(gradient_report, layer.forward, trainable(layer), x, total,
                     doing="forward and log_det_jacobian under a GradientTape")
    missing = [r["name"] for r in report if not r["has"]]
    expect(not missing, "a gradient for every variable of the layer", f"no gradient for {', '.join(missing)}",
           "gradients cut: forward leaves TensorFlow (a .numpy() call, np.* math or a Python float) "
           "between the network and the output, or a variable is never used.")
    zero = [r["name"] for r in report if not r["nonzero"]]
    expect(not zero, "non-zero gradients", f"all-zero gradients for {', '.join(zero)}",
           "both s and t must act on the changed part.")
    expect_true_gradients(report)


def test_one_example_does_not_depend_on_the_batch(affine):
    layer, x = make_layer(affine), random_batch(32, DIM)
    alone = fwd(layer, x[:1])
    other = x.copy()
    other[1:] = 10.0 * random_batch(31, DIM, seed=5)
    error = max(max_error(alone, fwd(layer, x)[:1]), max_error(alone, fwd(layer, other)[:1]))
    expect(error < TOL, "the output for one example to be the same whatever else is in the batch",
           f"it changes by up to {error:.3g}",
           "batch dependence: batch statistics (BatchNormalization) inside the network; use none.")


@pytest.mark.parametrize("units, layers", [(7, 2)])
def test_network_has_the_sizes_asked_for(affine, units, layers):
    shapes = weight_matrices(new_layer(affine, sizes={"hidden_units": units, "hidden_layers": layers}))
    nets = len(shapes) // (layers + 1)
    widths = sum(1 for shape in shapes if shape[1] == units)
    expect(nets in (1, 2) and len(shapes) == nets * (layers + 1) and widths == nets * layers,
           f"one network (two heads) or two, each with {layers} hidden layers of {units} units "
           f"(hidden_units={units}, hidden_layers={layers}), then its output layer",
           f"weight matrices of shapes {shapes}",
           "pass the layer's hidden_units and hidden_layers on to the network(s) it builds.")


# ---------------------------------------------------------------------------------------------
# RealNVP


def new_flow(affine, dim=DIM, couplings=COUPLINGS, sizes=None):
    """A RealNVP as built, called once (so lazily built networks exist)."""
    sizes = SMALL if sizes is None else sizes
    flow = attempt(lambda: affine.RealNVP(dim, couplings, **sizes), doing=f"RealNVP({dim}, {couplings}, ...)")
    fwd(flow, random_batch(2, dim, seed=99), "RealNVP.forward")
    return flow


def make_flow(affine, seed=0, couplings=COUPLINGS):
    """A RealNVP with random weights everywhere, so that no coupling is the identity."""
    flow = new_flow(affine, couplings=couplings)
    expect(len(trainable(flow)) > 0, "RealNVP to have trainable variables after a first call", "none",
           "store the couplings as an attribute (a list) of the model.")
    randomize(trainable(flow), seed, scale=0.3)
    return flow


def chain(layers, x, method):
    for layer in layers:
        x = shaped(getattr(layer, method)(x), np.shape(x), f"a coupling's {method}").astype(np.float32)
    return numpy(x)


def couplings_of(flow) -> list:
    found = getattr(flow, "couplings", None)
    expect(found is not None, "RealNVP to have an attribute couplings (a list of AffineCoupling layers)",
           "none", "store the list of couplings as self.couplings.")
    return list(found)


def test_realnvp_structure(affine):
    couplings = couplings_of(new_flow(affine))
    expect(len(couplings) == COUPLINGS, f"flow.couplings to hold {COUPLINGS} coupling layers",
           f"{len(couplings)}", "build num_couplings AffineCoupling layers in __init__.")
    lacking = sorted({type_name(c) for c in couplings if not hasattr(c, "log_det_jacobian")})
    expect(not lacking, "flow.couplings to hold AffineCoupling layers (with forward, backward and "
           "log_det_jacobian)", f"layers of type {', '.join(lacking)}",
           "build the couplings from this module's AffineCoupling.")


@pytest.mark.builds_on("test_realnvp_structure")
def test_realnvp_every_coordinate_is_changed(affine):
    flow, x = make_flow(affine), random_batch(16, DIM)
    masks = [changed_columns(x, fwd(c, x, "a coupling's forward")) for c in couplings_of(flow)]
    covered = np.any(masks, axis=0)
    expect(np.all(covered), "every coordinate to be changed by some coupling",
           f"coordinates {describe(~covered)} are never changed",
           "no alternation: the couplings' parities must alternate 0, 1, 0, 1, ... in the order "
           "they are built.")
    for i, (a, b) in enumerate(zip(masks, masks[1:], strict=False)):
        expect(not np.any(a & b), f"couplings {i} and {i + 1} to change complementary parts",
               f"both change {describe(a & b)}", "no alternation: parities 0, 1, 0, 1, ...")


@pytest.mark.builds_on("test_realnvp_structure")
def test_realnvp_no_weight_sharing(affine):
    couplings = couplings_of(make_flow(affine))
    expect(len({id(c) for c in couplings}) == len(couplings), "a distinct layer object per coupling",
           f"{len({id(c) for c in couplings})} distinct layers in a list of {len(couplings)}",
           "weight sharing: the same layer appears twice in the list; build a new one per position.")
    seen: dict[int, int] = {}
    for i, coupling in enumerate(couplings):
        for variable in trainable(coupling):
            if id(variable) in seen:
                fail("every coupling to own its networks", f"couplings {seen[id(variable)]} and {i} "
                     "share variables", "weight sharing: give every AffineCoupling its own network(s).")
            seen[id(variable)] = i


def diagnose_flow_forward(flow, x) -> str:
    got, couplings = fwd(flow, x, "RealNVP.forward"), couplings_of(flow)
    candidates = [
        (chain(reversed(couplings), x, "forward"), "forward applies the couplings in reverse order."),
        (chain(couplings[-1:], x, "forward"),
         "every coupling is applied to the original x, so only the last one counts: feed every "
         "coupling what the one before returned."),
    ]
    for candidate, mistake in candidates:
        if np.allclose(got, candidate, atol=TOL):
            return mistake
    return "forward must apply self.couplings in order, each to the previous one's output."


def diagnose_flow_backward(flow, h) -> str:
    got, couplings = bwd(flow, h, "RealNVP.backward"), couplings_of(flow)
    candidates = [
        (chain(couplings, h, "backward"),
         "layers undone in the wrong order: backward must undo the last coupling first, the first one last."),
        (chain(reversed(couplings), h, "forward"),
         "backward calls the couplings' forward: use each one's backward."),
    ]
    for candidate, mistake in candidates:
        if np.allclose(got, candidate, atol=TOL):
            return mistake
    return "backward must apply each coupling's backward, last coupling first."


FLOW_FOUNDATIONS = ("test_realnvp_structure", "test_realnvp_every_coordinate_is_changed")


@pytest.mark.builds_on(*FLOW_FOUNDATIONS)
def test_realnvp_forward_is_the_composition(affine):
    flow, x = make_flow(affine), random_batch(16, DIM)
    error = max_error(fwd(flow, x, "RealNVP.forward"), chain(couplings_of(flow), x, "forward"))
    if error >= TOL:
        fail("forward(x) == c_L(...c_1(x))", f"a difference of {error:.3g}", diagnose_flow_forward(flow, x))


@pytest.mark.builds_on(*FLOW_FOUNDATIONS, "test_realnvp_forward_is_the_composition")
def test_realnvp_round_trips(affine):
    flow, x = make_flow(affine, seed=1), random_batch(16, DIM)
    h = fwd(flow, x, "RealNVP.forward")
    back = bwd(flow, h.astype(np.float32), "RealNVP.backward")
    error = max_error(back, x) / max(1.0, float(np.max(np.abs(h))))
    if error >= TOL:
        fail("backward(forward(x)) == x", f"a maximum error of {error:.3g}",
             diagnose_flow_backward(flow, h.astype(np.float32)))
    h = random_batch(16, DIM, seed=1)
    x = bwd(flow, h, "RealNVP.backward")
    again = fwd(flow, x.astype(np.float32), "RealNVP.forward")
    error = max_error(again, h) / max(1.0, float(np.max(np.abs(x))))
    if error >= TOL:
        fail("forward(backward(h)) == h", f"a maximum error of {error:.3g}", diagnose_flow_backward(flow, h))


@pytest.mark.builds_on(*FLOW_FOUNDATIONS, "test_realnvp_forward_is_the_composition")
def test_realnvp_log_det_sums_its_couplings_at_their_inputs(affine):
    flow, x = make_flow(affine, seed=2), random_batch(16, DIM, seed=2)
    couplings = couplings_of(flow)
    expected, h = np.zeros(len(x)), x
    for coupling in couplings:
        expected = expected + log_det(coupling, h, "a coupling's log_det_jacobian(x)")
        h = fwd(coupling, h, "a coupling's forward").astype(np.float32)
    got = log_det(flow, x, "RealNVP.log_det_jacobian(x)")
    if np.allclose(got, expected, atol=1e-3):
        return
    at_x = sum(log_det(c, x, "a coupling's log_det_jacobian(x)") for c in couplings)
    if np.allclose(got, at_x, atol=1e-3):
        likely = ("each coupling's log-det taken at x, the flow's input: take it at the input that "
                  "coupling sees (the previous coupling's output), as forward does.")
    elif np.allclose(got, -expected, atol=1e-3):
        likely = "wrong sign: the flow's log-det is the plain sum of its couplings' log-dets."
    elif np.allclose(got, log_det(couplings[-1], chain(couplings[:-1], x, "forward").astype(np.float32)),
                     atol=1e-3):
        likely = "only the last coupling's log-det: add up every coupling's."
    else:
        likely = "add up the couplings' log-dets, each at the input it sees, one value per example."
    fail("log_det_jacobian(x) == the sum of the couplings' log-dets, each at its own input",
         f"values off by up to {float(np.max(np.abs(got - expected))):.3g}", likely)


@pytest.mark.builds_on(*FLOW_FOUNDATIONS, "test_realnvp_log_det_sums_its_couplings_at_their_inputs")
def test_realnvp_log_det_matches_autodiff(affine):
    flow, x = make_flow(affine, seed=3), random_batch(8, DIM, seed=3)
    numeric = attempt(numerical_log_det, flow.forward, x, doing="RealNVP.forward on nearby points")
    smooth = np.isfinite(numeric)
    expect(int(smooth.sum()) >= 4, "forward to be a smooth function of x near most points",
           f"{int((~smooth).sum())} of {len(x)} points where it jumps",
           "nothing rounded or clipped in forward.")
    got = log_det(flow, x, "RealNVP.log_det_jacobian(x)")
    error = float(np.max(np.abs(got[smooth] - numeric[smooth])))
    expect(error < 1e-2, "log_det_jacobian(x) == log|det df/dx| of RealNVP.forward per example",
           f"values off by up to {error:.3g}",
           "wrong sign of the log-det" if np.allclose(got[smooth], -numeric[smooth], atol=1e-2) else
           "the log-det and forward disagree: the flow's log-det is the sum of its couplings'.")


@pytest.mark.builds_on("test_realnvp_forward_is_the_composition")
def test_realnvp_gradients_reach_every_variable(affine):
    flow, x = make_flow(affine, couplings=2), random_batch(16, DIM)
    total = beside(recipes.log_det_total, flow, x)
    report = attempt(gradient_report, flow.forward, trainable(flow), x, total,
                     doing="RealNVP.forward and log_det_jacobian under a GradientTape")
    missing = [r["name"] for r in report if not r["has"]]
    expect(not missing, "a gradient for every variable", f"no gradient for {', '.join(missing)}",
           "gradients cut (.numpy() or np.* math in forward or log_det_jacobian), or a coupling is "
           "never used.")
    expect_true_gradients(report)


def test_realnvp_sizes_asked_for_are_honoured(affine):
    flow = new_flow(affine, couplings=3, sizes={"hidden_units": 7, "hidden_layers": 2})
    found = couplings_of(flow)
    expect(len(found) == 3, "num_couplings=3 coupling layers in flow.couplings", f"{len(found)}",
           "the model ignores num_couplings: build as many couplings as asked.")
    for i, coupling in enumerate(found):
        shapes = weight_matrices(coupling)
        widths = sum(1 for shape in shapes if shape[1] == 7)
        expect(len(shapes) in (3, 6) and widths == 2 * len(shapes) // 3,
               f"coupling {i} to have networks of 2 hidden layers of 7 units (hidden_units=7, "
               "hidden_layers=2)",
               f"weight matrices of shapes {shapes}",
               "the model does not pass hidden_units and hidden_layers on to its couplings.")


# ---------------------------------------------------------------------------------------------
# log_likelihood


def _diagnose_log_likelihood(got, flow, prior, x, prior_term, ld) -> str:
    if np.allclose(got, prior_term - ld, atol=1e-3):
        return "wrong sign of the log-determinant: log p(x) = log p_H(f(x)) + log|det df/dx|."
    if np.allclose(got, prior_term, atol=1e-3):
        return "missing the log-determinant: add the model's log_det_jacobian(x), one value per example."
    if np.allclose(got, prior_term + np.mean(ld), atol=1e-3):
        return "the log-det averaged over the batch: add each example's own log-det."
    if np.allclose(got, numpy(prior.log_prob(x)) + ld, atol=1e-3):
        return "the prior is evaluated at x instead of the latent h = model.forward(x)."
    return "log p(x) = the given prior's log-density of model.forward(x) plus model.log_det_jacobian(x)."


@pytest.mark.parametrize("which", ["gaussian", "unseen"])
def test_log_likelihood_is_change_of_variables(affine, which):
    flow, x = twin(recipes.tilted_nice, DIM, 7), random_batch(16, DIM, seed=7)
    prior = (twin(likelihood_recipes.standard_gaussian, DIM) if which == "gaussian" else
             twin(likelihood_recipes.unseen_prior, DIM)[0])
    mine, own_prior = local_of(flow), local_of(prior)
    prior_term = numpy(own_prior.log_prob(mine.forward(x)))
    ld = numpy(mine.log_det_jacobian(x))
    got = attempt(affine.log_likelihood, flow, prior, x, doing="log_likelihood(model, prior, x)")
    seen = tuple(np.shape(got))
    if seen != (len(x),):
        fail(f"shape ({len(x)},)", f"shape {seen}", "return one log-likelihood per example.")
    got = numpy(got)
    expected = prior_term + ld
    if not np.allclose(got, expected, atol=1e-3):
        kind = "a standard Gaussian" if which == "gaussian" else "a prior the lesson never builds (a Laplace)"
        fail(f"log p(x) = log p_H(f(x)) + log|det df/dx| per example, with {kind} and a flow whose "
             "log-det differs between examples", f"values off by up to {np.max(np.abs(got - expected)):.3g}",
             _diagnose_log_likelihood(got, mine, own_prior, x, prior_term, ld))


# ---------------------------------------------------------------------------------------------
# RealNVP against NICE on two moons


def moons_data() -> tuple[np.ndarray, np.ndarray]:
    """Train and test sets of two moons, turned by :data:`TURN`."""
    turn = np.array([[math.cos(TURN), -math.sin(TURN)], [math.sin(TURN), math.cos(TURN)]])
    return tuple((toy.moons(n, seed=toy.SEED + 2 * i) @ turn.T).astype(np.float32)
                 for i, n in enumerate((TRAIN["train"], TRAIN["test"])))


def gaussian_nll(h: np.ndarray, ld: np.ndarray) -> float:
    """-mean(log N(h; 0, I) + log-det), in float64, over the examples whose log-det is known (at
    a kink of a ReLU network it is not); NaN when most are not (a run that diverged)."""
    log_p = np.sum(-0.5 * h**2 - 0.5 * np.log(2 * np.pi), axis=1) + ld
    known = log_p[np.isfinite(log_p)]
    return float(-np.mean(known)) if 2 * len(known) > len(log_p) else float("nan")


def _run_result(result: dict, what: str) -> list[np.ndarray]:
    if "error" in result:
        kind, message = result["error"]

        def step():
            raise remote_exception(kind, message)

        attempt(step, doing=what, likely="keep forward and log_det_jacobian in TensorFlow operations, "
                "so that they run inside a compiled function and the tape can differentiate them.")
    return [np.asarray(result[f"w{i}"]) for i in range(sum(k.startswith("w") for k in result))]


def nice_baseline(test: np.ndarray, train: np.ndarray) -> float:
    """The test NLL of the reference NICE of the same size after the same run (trained here,
    in the grader's process; cached, keyed by the reference it uses and the settings)."""
    used = [impl_mod.PROJECT_ROOT / "solutions" / f"{stage}.py" for stage in ("coupling", "model")]
    key = cache.key("affine-nice-1", TRAIN, train, cache.file_digest(*used, Path(recipes.__file__)))
    result = cache.cached_arrays(
        "affine-nice", key, lambda: recipes.train_flow(recipes.reference_nice(TRAIN), False, train, TRAIN))
    flow = recipes.reference_nice(TRAIN)
    for variable, value in zip(flow.weights, _run_result(result, "the NICE run"), strict=True):
        variable.assign(value)
    return gaussian_nll(numpy(flow.forward(test)), np.full(len(test), float(flow.log_det_jacobian())))


@pytest.fixture(scope="module")
def moons_run(affine, graded):
    """A short, seeded run of your RealNVP on two moons turned by 45 degrees (Adam on the mean
    NLL under a standard Gaussian, from your forward and log_det_jacobian), and the reference
    NICE's run.

    Deterministic, so both are cached on disk under a key that hashes what the run uses of your
    affine.py, the reference and these settings. Your run's weights are scored here: the test
    NLL comes from your forward's answers and log-dets from finite differences of them."""
    train, test = moons_data()
    used = used_source_key(impl_mod.resolve(graded) / "affine.py", RUN_USES)
    earlier = STAGE_NAMES[: STAGE_NAMES.index("affine")]  # the reference it is graded on
    reference = cache.file_digest(*(impl_mod.PROJECT_ROOT / "solutions" / f"{s}.py" for s in earlier))
    key = cache.key("affine-run-1", TRAIN, train, used, reference, cache.file_digest(Path(recipes.__file__)))

    def run():
        flow = beside(recipes.realnvp, affine, TRAIN)
        result = beside(recipes.train_flow, flow, True, train, TRAIN)
        return {k: np.asarray(v) for k, v in result.items()}

    result = cache.cached_arrays("affine-run", key, run)
    weights = _run_result(result, "training your RealNVP")
    flow = beside(recipes.realnvp, affine, TRAIN)
    beside(likelihood_recipes.set_weights, flow, weights)
    h = fwd(flow, test, "RealNVP.forward")
    ld = attempt(numerical_log_det, flow.forward, test, doing="RealNVP.forward on nearby points")
    return {"nll": gaussian_nll(h, ld), "nice": nice_baseline(test, train),
            "losses": np.asarray(result["losses"])}


@pytest.mark.builds_on("test_realnvp_round_trips", "test_realnvp_log_det_sums_its_couplings_at_their_inputs",
                       "test_realnvp_log_det_matches_autodiff", "test_realnvp_gradients_reach_every_variable",
                       "test_no_overflow_for_large_inputs")
def test_realnvp_beats_nice_on_two_moons(moons_run):
    nll, nice = moons_run["nll"], moons_run["nice"]
    expect(bool(np.all(np.isfinite(moons_run["losses"]))) and np.isfinite(nll),
           "a finite loss at every step of the run", "NaN or inf",
           "an unbounded scale: exp(s) overflows once s grows; bound s.")
    expect(nll < nice - BEAT_BAR,
           f"RealNVP's test NLL on two moons to be at least {BEAT_BAR} nats below NICE's of the same "
           f"size ({nice:.3f}) after {TRAIN['steps']} steps", f"{nll:.3f}",
           "a log-det that is not forward's (sign, or a constant), or a scale that cannot move: "
           "s must come from x_keep through the network and enter forward as exp(s).")


# ---------------------------------------------------------------------------------------------
# Predict, then check


#: The page's questions, each answer computed here from the question's numbers.
PREDICTIONS = {
    # D = 2: coupling 1 keeps x1, y2 = x2 * exp(x1 / 2); coupling 2 keeps y2, z1 = y1 * exp(y2 / 4);
    # t = 0. log|det| at x = (2, 1): 1 from the first, and y2 / 4 = e / 4 from the second, at its input.
    "realnvp_log_det": lambda: 1.0 + math.e / 4.0,
    # D = 6 (3 + 3), 4 couplings, s = 2 tanh(raw) per changed coordinate: the largest log|det|.
    "max_log_det": lambda: 4 * 3 * 2.0,
    # The smallest integer s for which float32 exp(s) is inf.
    "first_overflowing_s": lambda: math.floor(math.log(float(np.finfo(np.float32).max))) + 1,
}

COUNTS = ("max_log_det", "first_overflowing_s")


@pytest.mark.parametrize("key", list(PREDICTIONS))
def test_prediction(affine, key):
    exact = {"rel_tol": 0.0, "abs_tol": 0.5} if key in COUNTS else {}
    expect_answer(affine, key, PREDICTIONS[key](), PAGE, **exact)
