"""Stage 2 - the NICE model (lessons/model.py).

Spec: couplings applied in order, each to the previous output, then h = x * exp(log_scale);
backward divides by the scale first and undoes the couplings in reverse order; parities
alternate so every coordinate is changed; no weight sharing; the number of couplings and the
network sizes asked for are honoured; log_det_jacobian equals sum(log_scale) and the autodiff
log|det J|; examples do not see each other. A model is called once before its variables are
looked at (a lazily built network exists only after a first call).
"""

from __future__ import annotations

import math

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

pytestmark = pytest.mark.model

DIM, COUPLINGS = 6, 4
SMALL = {"hidden_units": 16, "hidden_layers": 1}
TOL = 1e-4
PAGE = "docs/lessons/2-model.md (Predict, then check)"


def fwd(flow, x):
    """``flow.forward(x)``, checked for shape; an exception in it becomes a one-line verdict."""
    out = attempt(flow.forward, x, doing=f"NICE.forward on a {tuple(np.shape(x))} batch")
    return shaped(out, np.shape(x), "NICE.forward", "return one (batch, D) tensor, like its input.")


def bwd(flow, h):
    """``flow.backward(h)``, checked for shape; an exception in it becomes a one-line verdict."""
    out = attempt(flow.backward, h, doing=f"NICE.backward on a {tuple(np.shape(h))} batch")
    return shaped(out, np.shape(h), "NICE.backward", "return one (batch, D) tensor, like its input.")


def new_flow(model, dim=DIM, couplings=COUPLINGS, sizes=None):
    """A NICE as built, called once (so lazily built networks exist)."""
    sizes = SMALL if sizes is None else sizes
    flow = attempt(lambda: model.NICE(dim, couplings, **sizes), doing=f"NICE({dim}, {couplings}, ...)")
    fwd(flow, random_batch(2, dim, seed=99))
    return flow


#: The random NICEs of the current run, by (module, dim, couplings, seed): the checks that only
#: evaluate one share it (each build costs about 0.1 s of a save-to-verdict in ``nicelab watch``).
_FLOWS: dict[tuple, object] = {}


@pytest.fixture(scope="module", autouse=True)
def _flows_of_this_run():
    """A run starts and ends with no shared NICE (the next run grades a module saved anew)."""
    _FLOWS.clear()
    yield
    _FLOWS.clear()


def make_flow(model, dim=DIM, couplings=COUPLINGS, seed=0):
    """A NICE with random weights everywhere (log_scale included), so no step is the identity;
    built once per run and shared by the checks that ask for the same one."""
    key = (id(model), dim, couplings, seed)
    if key not in _FLOWS:
        flow = new_flow(model, dim, couplings)
        variables = trainable(flow)
        expect(len(variables) > 0, "NICE to have trainable variables after a first call", "none",
               "create the couplings and log_scale in __init__, stored as attributes of the model.")
        randomize(variables, seed, scale=0.3)
        _FLOWS[key] = flow
    return _FLOWS[key]


def chain(layers, x, method):
    for layer in layers:
        x = shaped(getattr(layer, method)(x), np.shape(x), f"a coupling's {method}")
    return numpy(x)


def scale_of(flow):
    return np.exp(shaped(flow.log_scale, (DIM,), "log_scale"))


def diagnose_forward(flow, x):
    """Name the mistake when forward differs from: couplings in order, then the scale."""
    got, couplings, s = fwd(flow, x), list(flow.couplings), scale_of(flow)
    candidates = [
        (chain(couplings, x, "forward"),
         "forward skips the scaling layer: multiply by exp(log_scale) after the couplings."),
        (chain(couplings, x, "forward") / s,
         "forward divides by the scale: h = x * exp(log_scale), so the log-det is +sum(log_scale)."),
        ((x + sum(chain([c], x, "forward") - x for c in couplings)) * s,
         "each coupling's m is applied to the original input x instead of the previous layer's "
         "output (the paper's section 5 erratum): feed every layer what the one before returned."),
        (chain(couplings[-1:], x, "forward") * s,
         "every coupling is applied to the original x, so only the last one counts (the paper's "
         "section 5 erratum): feed every layer what the one before returned."),
        (chain(reversed(couplings), x, "forward") * s,
         "forward applies the couplings in reverse order: c_1 first, c_L last."),
        (chain(couplings, x * s, "forward"),
         "forward scales first: the scaling layer comes after the couplings."),
    ]
    for candidate, mistake in candidates:
        if np.allclose(got, candidate, atol=TOL):
            return mistake
    return "forward must apply self.couplings in order, each to the previous output, then * exp(log_scale)."


#: The code-level fix of a diagnosed mistake (shown after several failed runs, never at first).
FIXES = {
    "layers undone in the wrong order: backward must undo the last coupling first, the first one last.":
        "iterate over reversed(self.couplings) in backward.",
}


def diagnose_backward(flow, h):
    """Name the mistake when backward differs from: divide by the scale, couplings reversed."""
    got, couplings, s = bwd(flow, h), list(flow.couplings), scale_of(flow)
    candidates = [
        (chain(couplings, h / s, "backward"),
         "layers undone in the wrong order: backward must undo the last coupling first, the "
         "first one last."),
        (chain(reversed(couplings), h, "backward"),
         "backward forgets to undo the scaling layer: divide by exp(log_scale) first."),
        (chain(reversed(couplings), h * s, "backward"),
         "backward multiplies by the scale again: divide by exp(log_scale) instead."),
        (chain(reversed(couplings), h, "backward") / s,
         "backward undoes the scale last: it must divide by exp(log_scale) before the couplings."),
        (chain(reversed(couplings), h / s, "forward"),
         "backward calls the couplings' forward: use each coupling's backward."),
    ]
    for candidate, mistake in candidates:
        if np.allclose(got, candidate, atol=TOL):
            return mistake
    return "backward must divide by exp(log_scale), then apply each coupling's backward in reverse order."


def round_trip_error(got, expected, through) -> float:
    """The largest error of a round trip, relative to the largest value it went through (float32
    rounding grows with the size of the values a wide network produces)."""
    return max_error(got, expected) / max(1.0, float(np.max(np.abs(numpy(through)))))


#: What the round trips build on: a broken structure or batch statistics break them too, and
#: those checks run first and name the mistake.
FOUNDATIONS = ("test_structure_couplings_and_log_scale", "test_one_example_does_not_depend_on_the_batch")


def test_structure_couplings_and_log_scale(model):
    flow = new_flow(model)
    couplings = list(getattr(flow, "couplings", []))
    expect(len(couplings) == COUPLINGS, f"flow.couplings to be a list of {COUPLINGS} coupling layers",
           f"{len(couplings)}", "build num_couplings AdditiveCoupling layers in __init__.")
    log_scale = getattr(flow, "log_scale", None)
    is_variable = hasattr(log_scale, "assign") and hasattr(log_scale, "trainable")
    expect(is_variable and tuple(log_scale.shape) == (DIM,),
           f"flow.log_scale to be a variable of shape ({DIM},)",
           f"{type_name(log_scale)} {getattr(log_scale, 'shape', '')}",
           "create log_scale in __init__ as a trainable weight of shape (D,) that the model owns "
           "(a Keras layer creates its weights with add_weight).")
    expect(np.all(numpy(log_scale) == 0), "log_scale to start at zeros (the identity scale)",
           f"{numpy(log_scale)}", "initialise the weight with zeros.")
    marker = np.linspace(0.1, 0.2, DIM).astype(np.float32)
    log_scale.assign(marker)  # find it among the trainable variables by its values
    found = any(tuple(v.shape) == (DIM,) and np.array_equal(numpy(v), marker)
                for v in flow.trainable_variables)
    expect(found, "log_scale to be trainable", "it is not among flow.trainable_variables",
           "create it as a trainable weight of the model (a Keras 3 model does not track a plain "
           "tf.Variable: create it with the model's add_weight).")


@pytest.mark.builds_on(*FOUNDATIONS)
def test_backward_undoes_forward(model):
    flow, x = make_flow(model), random_batch(16, DIM)
    h = fwd(flow, x)
    error = round_trip_error(bwd(flow, h), x, h)
    if error >= TOL:
        mistake = diagnose_forward(flow, x)
        if mistake.startswith("forward must"):
            mistake = diagnose_backward(flow, numpy(h))
        fail("backward(forward(x)) == x", f"a maximum error of {error:.3g}", mistake, FIXES.get(mistake))


@pytest.mark.builds_on(*FOUNDATIONS)
def test_forward_undoes_backward(model):
    flow, h = make_flow(model), random_batch(16, DIM, seed=1)
    x = bwd(flow, h)
    error = round_trip_error(fwd(flow, x), h, x)
    if error >= TOL:
        mistake = diagnose_backward(flow, h)
        fail("forward(backward(h)) == h", f"a maximum error of {error:.3g}", mistake, FIXES.get(mistake))


@pytest.mark.builds_on(*FOUNDATIONS)
def test_forward_is_the_composition(model):
    flow, x = make_flow(model), random_batch(16, DIM)
    expected = chain(flow.couplings, x, "forward") * scale_of(flow)
    error = max_error(fwd(flow, x), expected)
    if error >= TOL:
        fail("forward(x) == c_L(...c_1(x)) * exp(log_scale)", f"a difference of {error:.3g}",
             diagnose_forward(flow, x))


@pytest.mark.builds_on(*FOUNDATIONS)
def test_backward_undoes_layers_in_reverse_order(model):
    flow, h = make_flow(model), random_batch(16, DIM, seed=2)
    expected = chain(reversed(flow.couplings), h / scale_of(flow), "backward")
    error = max_error(bwd(flow, h), expected)
    if error >= TOL:
        mistake = diagnose_backward(flow, h)
        fail("backward(h) == c_1^-1(...c_L^-1(h / exp(log_scale)))", f"a difference of {error:.3g}",
             mistake, FIXES.get(mistake))


@pytest.mark.builds_on("test_structure_couplings_and_log_scale")
def test_every_coordinate_is_changed(model):
    flow, x = make_flow(model), random_batch(16, DIM)
    masks = [changed_columns(x, c.forward(x)) for c in flow.couplings]
    covered = np.any(masks, axis=0)
    expect(np.all(covered), "every coordinate to be changed by some coupling",
           f"coordinates {describe(~covered)} are never changed",
           "no alternation: the couplings' parities must alternate 0, 1, 0, 1, ... in the order "
           "they are built.", fix="build coupling i with parity=i % 2.")
    for i, (a, b) in enumerate(zip(masks, masks[1:], strict=False)):
        expect(not np.any(a & b), f"couplings {i} and {i + 1} to change complementary parts",
               f"both change {describe(a & b)}", "alternate the parities: 0, 1, 0, 1, ...")


def test_no_weight_sharing(model):
    flow = make_flow(model)
    couplings = list(flow.couplings)
    expect(len({id(c) for c in couplings}) == len(couplings), "a distinct layer object per coupling",
           f"{len({id(c) for c in couplings})} distinct layers in a list of {len(couplings)}",
           "weight sharing: the same layer appears twice (e.g. [layer] * n); build a new one per position.")
    seen: dict[int, int] = {}
    for i, coupling in enumerate(couplings):
        for variable in trainable(coupling):
            if id(variable) in seen:
                fail("every coupling to own its network", f"couplings {seen[id(variable)]} and {i} "
                     "share variables", "weight sharing: give every AdditiveCoupling its own network.")
            seen[id(variable)] = i


def test_log_det_jacobian_is_sum_of_log_scale(model):
    flow = make_flow(model)
    log_det = attempt(flow.log_det_jacobian, doing="log_det_jacobian()")
    expect(np.ndim(numpy(log_det)) == 0, "log_det_jacobian() to return a scalar",
           f"shape {np.shape(numpy(log_det))}", "sum log_scale over all dimensions (tf.reduce_sum).")
    expected = float(np.sum(numpy(flow.log_scale)))
    got = float(numpy(log_det))
    if abs(got - expected) > 1e-4:
        if abs(got + expected) < 1e-4:
            likely = "wrong sign of the log-determinant: forward multiplies by exp(log_scale), so it is +sum."
        elif abs(got) < 1e-6:
            likely = "missing scaling term: the scaling layer's log-det sum(log_scale) is the whole log-det."
        else:
            likely = "log|det df/dx| of h = x * exp(log_scale) is sum(log_scale); the couplings add 0."
        fail(f"log_det_jacobian() == sum(log_scale) = {expected:.4f}", f"{got:.4f}", likely)


@pytest.mark.builds_on("test_forward_is_the_composition", "test_log_det_jacobian_is_sum_of_log_scale",
                       "test_one_example_does_not_depend_on_the_batch")
def test_log_det_matches_autodiff(model):
    flow, x = make_flow(model), random_batch(8, DIM)
    numeric = attempt(numerical_log_det, flow.forward, x, doing="forward on a batch of nearby points")
    got = float(numpy(flow.log_det_jacobian()))
    smooth = numeric[np.isfinite(numeric)]
    expect(len(smooth) >= 4, "forward to be a smooth function of x near most points",
           f"{len(numeric) - len(smooth)} of {len(numeric)} points where it jumps",
           "forward must chain the couplings and the scale, nothing rounded or clipped.")
    worst = float(np.max(np.abs(smooth - got)))
    expect(worst < 1e-2, "log_det_jacobian() to equal log|det df/dx| of forward",
           f"log_det_jacobian() = {got:.4f} but the Jacobian of forward (finite differences) gives "
           f"{np.mean(smooth):.4f}",
           "forward and log_det_jacobian disagree: h = x * exp(log_scale) has log-det +sum(log_scale) "
           "(check the sign, and that forward applies the scale).")


def test_one_example_does_not_depend_on_the_batch(model):
    flow, x = make_flow(model), random_batch(32, DIM)
    alone = numpy(fwd(flow, x[:1]))
    other = x.copy()
    other[1:] = 10.0 * random_batch(31, DIM, seed=5)
    error = max(max_error(alone, numpy(fwd(flow, x))[:1]),
                max_error(alone, numpy(fwd(flow, other))[:1]))
    expect(error < TOL, "the output for one example to be the same whatever else is in the batch",
           f"it changes by up to {error:.3g}",
           "batch dependence: statistics over the batch (mean, std, BatchNormalization) inside the "
           "model; each example must be transformed on its own.")


@pytest.mark.builds_on("test_forward_is_the_composition")
def test_gradients_reach_every_variable(model):
    flow, x = make_flow(model), random_batch(16, DIM)
    report = attempt(gradient_report, flow.forward, trainable(flow), x, flow.log_det_jacobian,
                     doing="forward and log_det_jacobian under a GradientTape")
    missing = [r["name"] for r in report if not r["has"]]
    expect(not missing, "a gradient for every variable", f"no gradient for {', '.join(missing)}",
           "gradients cut: forward or log_det_jacobian leave TensorFlow (.numpy(), np.* math) or a "
           "layer is never used.")
    expect_true_gradients(report)


@pytest.mark.parametrize("couplings, units, layers", [(3, 7, 1), (5, 5, 2)])
def test_sizes_asked_for_are_honoured(model, couplings, units, layers):
    flow = new_flow(model, couplings=couplings, sizes={"hidden_units": units, "hidden_layers": layers})
    found = list(getattr(flow, "couplings", []))
    expect(len(found) == couplings, f"num_couplings={couplings} coupling layers in flow.couplings",
           f"{len(found)}", "the model ignores num_couplings: build as many couplings as asked, not "
           "a fixed number.")
    asked = f"hidden_units={units}, hidden_layers={layers}"
    for i, coupling in enumerate(found):
        shapes = weight_matrices(coupling)
        widths = sum(1 for shape in shapes if shape[1] == units)
        expect(len(shapes) == layers + 1 and widths == layers,
               f"coupling {i} to have {layers} hidden layer(s) of {units} units ({asked})",
               f"weight matrices of shapes {shapes}",
               "the model does not pass hidden_units and hidden_layers on to its couplings.")


#: The page's questions, each answer computed here from the question's numbers.
PREDICTIONS = {
    # D = 3, log_scale = (0.5, -1, 2): log|det df/dx| at any x.
    "log_det_of_given_scales": lambda: float(np.sum([0.5, -1.0, 2.0])),
    # NICE(6, num_couplings=4, hidden_units=10, hidden_layers=2), split 3 + 3: trainable numbers.
    "nice_parameters": lambda: 4 * sum(a * b + b for a, b in ((3, 10), (10, 10), (10, 3))) + 6,
    # A direction whose input has std 0.1 under a standard normal prior: the maximum-likelihood
    # log S_dd maximises E[log N(S x)] + log S, so S = 1 / std.
    "ml_log_scale": lambda: math.log(1.0 / 0.1),
}

COUNTS = ("nice_parameters",)


@pytest.mark.parametrize("key", list(PREDICTIONS))
def test_prediction(model, key):
    exact = {"rel_tol": 0.0, "abs_tol": 0.5} if key in COUNTS else {}  # a count is exact
    expect_answer(model, key, PREDICTIONS[key](), PAGE, **exact)
