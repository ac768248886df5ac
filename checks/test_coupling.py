"""Stage 1 - the additive coupling layer (lessons/coupling.py).

Spec: forward keeps one part of x and adds m(x_keep) to the other; backward undoes it exactly;
layers of parity 0 and 1 change complementary parts (any split: halves, even/odd, ...); the
Jacobian has log|det| = 0; every layer owns its network, of the sizes asked for; gradients reach
every variable; examples do not see each other. A layer is called once before its variables are
looked at, so a network that builds on its first call passes like one that declares its input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

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
    trainable,
    weight_matrices,
)

pytestmark = pytest.mark.coupling

DIM = 6
SMALL = {"hidden_units": 16, "hidden_layers": 1}
PAGE = "docs/lessons/1-coupling.md (Predict, then check)"
SHAPES_HINT = ("m takes the kept part and returns a shift as wide as the changed part, and forward "
               "merges both parts back into one (batch, D) tensor")


def shapes_hint(dim: int) -> str:
    if dim % 2:
        return (f"for odd D = {dim} one part has one more coordinate than the other ({dim // 2} "
                f"and {dim - dim // 2}, {dim} in all): {SHAPES_HINT}; check which part you feed m "
                "and the sizes you build it with.")
    return SHAPES_HINT + "."


def _same_shape(out, x, method: str):
    """Fail in one line when ``method`` returned a shape other than its input's."""
    shape = tuple(np.shape(out))
    expect(shape == tuple(np.shape(x)), f"{method} to return shape {tuple(np.shape(x))}", f"{shape}",
           shapes_hint(int(np.shape(x)[1])))
    return out


def fwd(layer, x):
    """``layer.forward(x)``, checked for shape; an exception in it becomes a one-line verdict."""
    out = attempt(layer.forward, x, doing=f"forward on a ({len(x)}, {x.shape[1]}) batch",
                  likely=shapes_hint(x.shape[1]))
    return _same_shape(out, x, "forward")


def bwd(layer, y):
    """``layer.backward(y)``, checked for shape; an exception in it becomes a one-line verdict."""
    out = attempt(layer.backward, y, doing=f"backward on a ({len(y)}, {y.shape[1]}) batch",
                  likely=shapes_hint(y.shape[1]))
    return _same_shape(out, y, "backward")


def make_layer(coupling, dim=DIM, parity=0, seed=0, sizes=None):
    """A layer, called once (so a lazily built network exists), with random weights."""
    sizes = SMALL if sizes is None else sizes
    layer = attempt(lambda: coupling.AdditiveCoupling(dim, parity, **sizes),
                    doing=f"AdditiveCoupling({dim}, parity={parity}, ...)", likely=shapes_hint(dim))
    fwd(layer, random_batch(2, dim, seed=99))
    variables = trainable(layer)
    expect(len(variables) > 0,
           "AdditiveCoupling to own trainable variables (its network m) after a first call", "none",
           "store the network on the layer as an attribute, so that Keras tracks its variables, "
           "and use it in forward.")
    randomize(variables, seed)
    return layer


def moved_columns(x, y) -> list[tuple[int, int]]:
    """(i, j) pairs where column i of x comes out unchanged as column j != i of y."""
    return [(i, j) for i in range(x.shape[1]) for j in range(y.shape[1])
            if i != j and not np.allclose(x[:, i], x[:, j]) and np.array_equal(x[:, i], y[:, j])]


def changed_by(layer, x):
    return changed_columns(x, fwd(layer, x))


@pytest.mark.parametrize("parity", [0, 1])
def test_forward_keeps_shape_and_dtype(coupling, parity):
    x = random_batch(8, DIM).astype(np.float64)  # NumPy float64 in, float32 tensor out
    y = fwd(make_layer(coupling, parity=parity), x)
    expect(tuple(y.shape) == (8, DIM), f"forward to return shape (8, {DIM})", f"{tuple(y.shape)}",
           "merge the two parts back into one (batch, D) tensor.")
    expect(tf.as_dtype(y.dtype) == tf.float32, "a float32 result", f"{y.dtype}")


#: The structure the round trips build on: when the parts or the shift are wrong, those checks
#: run first and name the mistake; the round trip then says to fix them first.
STRUCTURE = ("test_forward_keeps_shape_and_dtype", "test_exactly_one_part_changes",
             "test_shift_depends_only_on_the_kept_part")


@pytest.mark.builds_on(*STRUCTURE)
@pytest.mark.parametrize("parity", [0, 1])
def test_backward_undoes_forward(coupling, parity):
    layer, x = make_layer(coupling, parity=parity), random_batch(16, DIM)
    error = max_error(bwd(layer, fwd(layer, x)), x)
    expect(error < 1e-4, "backward(forward(x)) == x", f"a maximum error of {error:.3g}",
           "backward must subtract the shift m(y_keep) from exactly the coordinates forward "
           "changed, computing m from the kept part (which forward left equal to x_keep).")


@pytest.mark.builds_on(*STRUCTURE)
@pytest.mark.parametrize("parity", [0, 1])
def test_forward_undoes_backward(coupling, parity):
    layer, y = make_layer(coupling, parity=parity), random_batch(16, DIM, seed=1)
    error = max_error(fwd(layer, bwd(layer, y)), y)
    expect(error < 1e-4, "forward(backward(y)) == y", f"a maximum error of {error:.3g}",
           "forward and backward must use the same split and the same network m, with opposite signs.")


@pytest.mark.parametrize("parity", [0, 1])
def test_exactly_one_part_changes(coupling, parity):
    layer, x = make_layer(coupling, parity=parity), random_batch(16, DIM)
    y = numpy(fwd(layer, x))
    changed = changed_columns(x, y)
    n = int(changed.sum())
    if n == 0:
        fail("forward to change one part of x", "y == x in every column",
             "add m(x_keep) to x_change (is the network's output used?).")
    moved = moved_columns(x, y)
    if moved:
        fail("every column of y at the index it had in x", "column(s) of x coming out at other indices: "
             + ", ".join(f"x[:, {i}] at y[:, {j}]" for i, j in moved),
             "the parts are merged back in the wrong order: merge must put every column back at "
             "its own index (merging the parts side by side only does that for some splits).")
    if n == DIM:
        fail("one part of x to pass through unchanged", "every column changed",
             "y_keep must be x_keep exactly; only x_change gets m(x_keep) added.")
    expect(n in (DIM // 2, DIM - DIM // 2), f"{DIM // 2} changed columns (half of D = {DIM})",
           f"{n} changed columns {describe(changed)}", "split x into two halves of D // 2 and D - D // 2.")


@pytest.mark.builds_on("test_exactly_one_part_changes")
def test_parities_change_complementary_parts(coupling):
    x = random_batch(16, DIM)
    first, second = (changed_by(make_layer(coupling, parity=p, seed=p), x) for p in (0, 1))
    expect(not np.any(first & second), "parity 0 and parity 1 to change different columns",
           f"both change {describe(first & second)}", "parity 1 must swap the roles of the two parts.")
    expect(np.all(first | second), "parity 0 and 1 together to change every column",
           f"columns {describe(~(first | second))} never change",
           "parity 1 must swap the roles of the parts.")


@pytest.mark.builds_on("test_exactly_one_part_changes")
def test_shift_depends_only_on_the_kept_part(coupling):
    layer, x = make_layer(coupling), random_batch(16, DIM)
    changed = changed_by(layer, x)
    shift = numpy(fwd(layer, x)) - x
    moved = x.copy()
    moved[:, changed] += 1.0  # move only the coordinates the layer changes
    new_shift = numpy(fwd(layer, moved)) - moved
    expect(np.allclose(shift, new_shift, atol=1e-4), "the added shift m(x_keep) to ignore x_change",
           "the shift changes when only x_change changes",
           "m must take x_keep as input; a network of x_change cannot be inverted.")
    moved = x.copy()
    moved[:, ~changed] += 1.0  # move only the kept coordinates
    new_shift = numpy(fwd(layer, moved)) - moved
    expect(not np.allclose(shift, new_shift, atol=1e-4), "the shift to depend on x_keep",
           "the same shift whatever x_keep is", "feed x_keep (not a constant) into the network m.")


@pytest.mark.builds_on("test_shift_depends_only_on_the_kept_part",
                       "test_one_example_does_not_depend_on_the_batch")
@pytest.mark.parametrize("parity", [0, 1])
def test_log_det_of_jacobian_is_zero(coupling, parity):
    layer = make_layer(coupling, parity=parity)
    log_det = attempt(numerical_log_det, layer.forward, random_batch(8, DIM),
                      doing="forward on a batch of nearby points", likely=shapes_hint(DIM))
    smooth = log_det[np.isfinite(log_det) | np.isneginf(log_det)]
    expect(len(smooth) >= 4, "forward to be a smooth function of x near most points",
           f"{len(log_det) - len(smooth)} of {len(log_det)} points where it jumps",
           "forward must be x_change + m(x_keep) with m a Keras network, nothing rounded or clipped.")
    worst = float(np.max(np.abs(smooth)))
    expect(worst < 1e-2, "log|det J| = 0 (an additive coupling preserves volume)",
           f"log|det J| up to {worst:.3g} (Jacobian from finite differences of forward)",
           "forward must only add m(x_keep); scaling or mixing the changed part changes the volume.")


@pytest.mark.builds_on("test_backward_undoes_forward", "test_forward_undoes_backward",
                       "test_exactly_one_part_changes", "test_parities_change_complementary_parts")
@pytest.mark.parametrize("dim", [2, 3, 5])
def test_odd_and_small_dimensions(coupling, dim):
    x = random_batch(8, dim)
    layers = [make_layer(coupling, dim=dim, parity=p, seed=p) for p in (0, 1)]
    first, second = (changed_by(layer, x) for layer in layers)
    sizes = sorted((int(first.sum()), int(second.sum())))
    likely = (f"for odd D one part has one more coordinate than the other: sizes {dim // 2} and "
              f"{dim - dim // 2}, every coordinate in exactly one part." if dim % 2 else
              "each parity changes one half of the coordinates and keeps the other.")
    expect(sizes == [dim // 2, dim - dim // 2] and np.all(first ^ second),
           f"for D = {dim}, parts of sizes {dim // 2} and {dim - dim // 2} that cover every column",
           f"parities change {describe(first)} and {describe(second)}", likely)
    for parity, layer in enumerate(layers):
        error = max_error(bwd(layer, fwd(layer, x)), x)
        expect(error < 1e-4, f"backward(forward(x)) == x for D = {dim} (parity {parity})",
               f"a maximum error of {error:.3g}",
               "backward must subtract the shift m(y_keep) from exactly the coordinates forward "
               "changed, with the same split and the same network.")


def test_each_layer_owns_its_network(coupling):
    first, second = make_layer(coupling, seed=1), make_layer(coupling, seed=2)
    shared = {id(v) for v in trainable(first)} & {id(v) for v in trainable(second)}
    expect(not shared, "two AdditiveCoupling layers to have separate variables",
           f"{len(shared)} shared variables",
           "weight sharing: create a new network m inside __init__ for every layer "
           "(not one network at module level or as a default argument).")
    x = random_batch(8, DIM)
    before = numpy(fwd(second, x))
    randomize(trainable(first), seed=99)
    expect(np.allclose(before, numpy(fwd(second, x))),
           "changing one layer's weights to leave another alone",
           "the second layer's output changed", "weight sharing between coupling layers.")


@pytest.mark.builds_on("test_forward_keeps_shape_and_dtype")
@pytest.mark.parametrize("parity", [0, 1])
def test_gradients_reach_every_variable(coupling, parity):
    layer, x = make_layer(coupling, parity=parity), random_batch(16, DIM)
    report = attempt(gradient_report, layer.forward, trainable(layer), x,
                     doing="forward under a GradientTape", likely=shapes_hint(DIM))
    missing = [r["name"] for r in report if not r["has"]]
    expect(not missing, "a gradient for every variable of the layer",
           f"no gradient for {', '.join(missing)}",
           "gradients cut: forward leaves TensorFlow (a .numpy() call, np.* math or a Python float) "
           "between the network and the output, or a variable is never used.")
    zero = [r["name"] for r in report if not r["nonzero"]]
    expect(not zero, "non-zero gradients", f"all-zero gradients for {', '.join(zero)}",
           "the network's output must be added to the changed part.")
    expect_true_gradients(report)


def test_one_example_does_not_depend_on_the_batch(coupling):
    layer, x = make_layer(coupling), random_batch(32, DIM)
    alone = numpy(fwd(layer, x[:1]))
    other = x.copy()
    other[1:] = 10.0 * random_batch(31, DIM, seed=5)
    error = max(max_error(alone, numpy(fwd(layer, x))[:1]),
                max_error(alone, numpy(fwd(layer, other))[:1]))
    expect(error < 1e-4, "the output for one example to be the same whatever else is in the batch",
           f"it changes by up to {error:.3g}",
           "batch dependence: a BatchNormalization (or batch statistics) inside m; use no normalisation "
           "or LayerNormalization.")


@pytest.mark.parametrize("units, layers", [(7, 1), (5, 4)])
def test_network_has_the_sizes_asked_for(coupling, units, layers):
    layer = make_layer(coupling, sizes={"hidden_units": units, "hidden_layers": layers})
    shapes = weight_matrices(layer)
    asked = f"hidden_units={units}, hidden_layers={layers}"
    expect(len(shapes) == layers + 1,
           f"{layers + 1} weight matrices for {asked} ({layers} hidden Dense layer(s), then the "
           "output layer)",
           f"{len(shapes)}, of shapes {shapes}",
           "the network ignores hidden_layers: build as many hidden layers as asked (pass the "
           "layer's hidden_layers on to coupling_network), not a fixed number.")
    hidden = sum(1 for shape in shapes if shape[1] == units)
    expect(hidden == layers, f"{layers} hidden layer(s) {units} units wide for {asked}",
           f"weight matrices of shapes {shapes}",
           "the network ignores hidden_units: every hidden layer is hidden_units wide (pass the "
           "layer's hidden_units on to coupling_network).")


def mlp_parameters(in_dim: int, hidden_units: int, hidden_layers: int, out_dim: int) -> int:
    """Weights and biases of a Dense network in_dim -> hidden_units^hidden_layers -> out_dim."""
    sizes = [in_dim] + [hidden_units] * hidden_layers + [out_dim]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))


#: The page's questions, each answer computed here from the question's numbers.
PREDICTIONS = {
    # h = f(x) = 3x + 1, standard normal prior: log p_X(0) = log p_H(f(0)) + log|f'(0)|.
    "log_density_at_zero": lambda: -0.5 * 1.0 ** 2 - 0.5 * math.log(2 * math.pi) + math.log(3.0),
    # D = 6, m maps the 3 kept coordinates to the 3 changed ones through 2 hidden layers of 10.
    "coupling_parameters": lambda: mlp_parameters(3, 10, 2, 3),
    # D = 6, split 3 + 3: entries of the Jacobian that are zero whatever m is. The kept rows are
    # rows of the identity, the changed rows hold the identity in the changed columns.
    "jacobian_zero_entries": lambda: 3 * (6 - 1) + 3 * (3 - 1),
}

COUNTS = ("coupling_parameters", "jacobian_zero_entries")


@pytest.mark.parametrize("key", list(PREDICTIONS))
def test_prediction(coupling, key):
    exact = {"rel_tol": 0.0, "abs_tol": 0.5} if key in COUNTS else {}  # a count is exact
    expect_answer(coupling, key, PREDICTIONS[key](), PAGE, **exact)
