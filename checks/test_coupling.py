"""Stage 1 - the additive coupling layer (lessons/coupling.py).

Spec: forward keeps one part of x and adds m(x_keep) to the other; backward undoes it exactly;
layers of parity 0 and 1 change complementary parts; the Jacobian has log|det| = 0; every
layer owns its network; gradients reach every variable; examples do not see each other.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nicelab.checking import (
    autodiff_log_det,
    changed_columns,
    describe,
    expect,
    fail,
    max_error,
    numpy,
    random_batch,
    randomize,
    trainable,
)

pytestmark = pytest.mark.coupling

DIM = 6
SMALL = {"hidden_units": 16, "hidden_layers": 2}


def make_layer(coupling, dim=DIM, parity=0, seed=0):
    layer = coupling.AdditiveCoupling(dim, parity, **SMALL)
    variables = trainable(layer)
    expect(len(variables) > 0, "AdditiveCoupling to own trainable variables (its network m)",
           "none", "build m in __init__ (coupling_network) and store it on the layer.")
    randomize(variables, seed)
    return layer


def changed_by(layer, x):
    return changed_columns(x, layer.forward(x))


@pytest.mark.parametrize("parity", [0, 1])
def test_forward_keeps_shape_and_dtype(coupling, parity):
    x = random_batch(8, DIM).astype(np.float64)  # NumPy float64 in, float32 tensor out
    y = make_layer(coupling, parity=parity).forward(x)
    expect(tuple(y.shape) == (8, DIM), f"forward to return shape (8, {DIM})", f"{tuple(y.shape)}",
           "merge the two parts back into one (batch, D) tensor.")
    expect(tf.as_dtype(y.dtype) == tf.float32, "a float32 result", f"{y.dtype}")


@pytest.mark.parametrize("parity", [0, 1])
def test_backward_undoes_forward(coupling, parity):
    layer, x = make_layer(coupling, parity=parity), random_batch(16, DIM)
    error = max_error(layer.backward(layer.forward(x)), x)
    expect(error < 1e-4, "backward(forward(x)) == x", f"a maximum error of {error:.3g}",
           "backward must subtract m(y_keep) from exactly the coordinates forward changed, "
           "computing m from the kept part (which forward left equal to x_keep).")


@pytest.mark.parametrize("parity", [0, 1])
def test_forward_undoes_backward(coupling, parity):
    layer, y = make_layer(coupling, parity=parity), random_batch(16, DIM, seed=1)
    error = max_error(layer.forward(layer.backward(y)), y)
    expect(error < 1e-4, "forward(backward(y)) == y", f"a maximum error of {error:.3g}",
           "forward and backward must use the same split and the same network m, with opposite signs.")


@pytest.mark.parametrize("parity", [0, 1])
def test_exactly_one_part_changes(coupling, parity):
    layer, x = make_layer(coupling, parity=parity), random_batch(16, DIM)
    y = numpy(layer.forward(x))
    changed = changed_columns(x, y)
    n = int(changed.sum())
    if n == 0:
        fail("forward to change one part of x", "y == x in every column",
             "add m(x_keep) to x_change (is the network's output used?).")
    if n == DIM:
        fail("one part of x to pass through unchanged", "every column changed",
             "y_keep must be x_keep exactly; only x_change gets m(x_keep) added.")
    expect(n in (DIM // 2, DIM - DIM // 2), f"{DIM // 2} changed columns (half of D = {DIM})",
           f"{n} changed columns {describe(changed)}", "split x into two halves of D // 2 and D - D // 2.")


def test_parities_change_complementary_parts(coupling):
    x = random_batch(16, DIM)
    first, second = (changed_by(make_layer(coupling, parity=p, seed=p), x) for p in (0, 1))
    expect(not np.any(first & second), "parity 0 and parity 1 to change different columns",
           f"both change {describe(first & second)}", "parity 1 must swap the roles of the two parts.")
    expect(np.all(first | second), "parity 0 and 1 together to change every column",
           f"columns {describe(~(first | second))} never change",
           "parity 1 must swap the roles of the parts.")


def test_shift_depends_only_on_the_kept_part(coupling):
    layer, x = make_layer(coupling), random_batch(16, DIM)
    changed = changed_by(layer, x)
    shift = numpy(layer.forward(x)) - x
    moved = x.copy()
    moved[:, changed] += 1.0  # move only the coordinates the layer changes
    new_shift = numpy(layer.forward(moved)) - moved
    expect(np.allclose(shift, new_shift, atol=1e-4), "the added shift m(x_keep) to ignore x_change",
           "the shift changes when only x_change changes",
           "m must take x_keep as input; a network of x_change cannot be inverted.")
    moved = x.copy()
    moved[:, ~changed] += 1.0  # move only the kept coordinates
    new_shift = numpy(layer.forward(moved)) - moved
    expect(not np.allclose(shift, new_shift, atol=1e-4), "the shift to depend on x_keep",
           "the same shift whatever x_keep is", "feed x_keep (not a constant) into the network m.")


@pytest.mark.parametrize("parity", [0, 1])
def test_log_det_of_jacobian_is_zero(coupling, parity):
    layer = make_layer(coupling, parity=parity)
    log_det = autodiff_log_det(layer.forward, random_batch(8, DIM))
    expect(np.all(np.isfinite(log_det)), "a Jacobian TensorFlow can differentiate",
           "no gradient from forward's output to its input",
           "keep forward in TensorFlow ops (no .numpy() or np.* calls).")
    worst = float(np.max(np.abs(log_det)))
    expect(worst < 1e-3, "log|det J| = 0 (an additive coupling preserves volume)",
           f"log|det J| up to {worst:.3g} (autodiff Jacobian)",
           "forward must only add m(x_keep); scaling or mixing the changed part changes the volume.")


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_odd_and_small_dimensions(coupling, dim):
    x = random_batch(8, dim)
    layers = [make_layer(coupling, dim=dim, parity=p, seed=p) for p in (0, 1)]
    for layer in layers:
        error = max_error(layer.backward(layer.forward(x)), x)
        expect(error < 1e-4, f"backward(forward(x)) == x for D = {dim}",
               f"a maximum error of {error:.3g}", "size the parts D // 2 and D - D // 2, not D / 2.")
    first, second = (changed_by(layer, x) for layer in layers)
    sizes = sorted((int(first.sum()), int(second.sum())))
    expect(sizes == [dim // 2, dim - dim // 2] and np.all(first ^ second),
           f"for D = {dim}, parts of sizes {dim // 2} and {dim - dim // 2} that cover every column",
           f"parities change {describe(first)} and {describe(second)}",
           "for odd D one part has one more coordinate than the other.")


def test_each_layer_owns_its_network(coupling):
    first, second = make_layer(coupling, seed=1), make_layer(coupling, seed=2)
    shared = {id(v) for v in trainable(first)} & {id(v) for v in trainable(second)}
    expect(not shared, "two AdditiveCoupling layers to have separate variables",
           f"{len(shared)} shared variables",
           "weight sharing: create a new network m inside __init__ for every layer "
           "(not one network at module level or as a default argument).")
    x = random_batch(8, DIM)
    before = numpy(second.forward(x))
    randomize(trainable(first), seed=99)
    expect(np.allclose(before, numpy(second.forward(x))),
           "changing one layer's weights to leave another alone",
           "the second layer's output changed", "weight sharing between coupling layers.")


@pytest.mark.parametrize("parity", [0, 1])
def test_gradients_reach_every_variable(coupling, parity):
    layer, x = make_layer(coupling, parity=parity), tf.constant(random_batch(16, DIM))
    variables = trainable(layer)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer.forward(x)))
    grads = tape.gradient(loss, variables)
    missing = [v.name for v, g in zip(variables, grads, strict=True) if g is None]
    expect(not missing, "a gradient for every variable of the layer",
           f"no gradient for {', '.join(missing)}",
           "gradients cut: forward leaves TensorFlow (a .numpy() call, np.* math or a Python float) "
           "between the network and the output, or a variable is never used.")
    zero = [v.name for v, g in zip(variables, grads, strict=True) if not np.any(numpy(g))]
    expect(not zero, "non-zero gradients", f"all-zero gradients for {', '.join(zero)}",
           "the network's output must be added to the changed part.")


def test_one_example_does_not_depend_on_the_batch(coupling):
    layer, x = make_layer(coupling), random_batch(32, DIM)
    alone = numpy(layer.forward(x[:1]))
    other = x.copy()
    other[1:] = 10.0 * random_batch(31, DIM, seed=5)
    error = max(max_error(alone, numpy(layer.forward(x))[:1]),
                max_error(alone, numpy(layer.forward(other))[:1]))
    expect(error < 1e-4, "the output for one example to be the same whatever else is in the batch",
           f"it changes by up to {error:.3g}",
           "batch dependence: a BatchNormalization (or batch statistics) inside m; use no normalisation "
           "or LayerNormalization.")
