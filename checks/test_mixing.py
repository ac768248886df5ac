"""Stage 7 - learned mixing: Glow's invertible 1x1 convolution for vectors (lessons/mixing.py).

Spec: InvertibleLinear's matrix() is W = P L (U + diag(s)), s = sign_s * exp(log_abs_s), with P a
fixed permutation, L lower-triangular with ones on its diagonal and U strictly upper-triangular
whatever values its trainable variables take (all of them at zero: W = P diag(sign_s)); forward
is x @ W^T; backward undoes it by a permutation and triangular solves (no general inverse, read
from the source); log_det_jacobian() is sum(log_abs_s) = log|det W| (the slogdet of the matrix
it returns, and of the Jacobian of forward itself), computed without a determinant; a new layer
is a random rotation (orthogonal, not the identity), the same for the same seed; gradients reach
every variable. Glow: steps of (mixing, coupling), each step mixing first, undone last first;
its per-example log-det is the sum of its steps' (each coupling's at its own input) and the
log|det| of the Jacobian of its forward; stage 6's log_likelihood works with it.

Every verdict comes from what the grader computes itself from the graded code's answers (W's
slogdet and LU factors here, in float64, finite differences of forward) or reads from the
graded source file. Layers are called once before their variables are looked at.
"""

from __future__ import annotations

import ast
import importlib
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

from nicelab.checking import (
    attempt,
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
    weight_matrices,
)
from nicelab.core import impl as impl_mod
from nicelab.grader.evidence import _imported_names
from nicelab.grader.recipes import likelihood as recipes

pytestmark = pytest.mark.mixing

DIM = 5
STEPS = 2
SMALL = {"hidden_units": 8, "hidden_layers": 1}
#: Round trips and forward are compared relative to the size of the values they go through.
TOL = 1e-4
#: Entries of W below this (in absolute value) count as zero when a pattern is read from it.
ZERO = 1e-5
PAGE = "docs/lessons/7-mixing.md (Predict, then check)"
#: The code-level fix of a diagnosed mistake (shown after several failed runs, never at first).
FIXES = {
    "not by its transpose": "tf.matmul(x, self.matrix(), transpose_b=True).",
    "L's diagonal is not 1": "the mask of L is np.tril(np.ones((D, D)), k=-1); L = weight * mask + "
                             "tf.eye(D).",
    "U's diagonal is counted twice": "the mask of U is np.triu(np.ones((D, D)), k=1); U + diag(s) = "
                                     "weight * mask + tf.linalg.diag(s).",
    "in the wrong order": "z = P^T h^T, then tf.linalg.triangular_solve(L, z, lower=True), then "
                          "tf.linalg.triangular_solve(U + diag(s), ..., lower=False).",
}


def fix_for(mistake: str) -> str | None:
    return next((fix for key, fix in FIXES.items() if key in mistake), None)


# ---------------------------------------------------------------------------------------------
# Calling the graded code: every answer's shape is checked before it is used


def fwd(layer, x, what="forward"):
    out = attempt(layer.forward, x, doing=f"{what} on a {tuple(np.shape(x))} batch")
    return shaped(out, np.shape(x), what, "return one (batch, D) tensor, like its input.")


def bwd(layer, h, what="backward"):
    out = attempt(layer.backward, h, doing=f"{what} on a {tuple(np.shape(h))} batch")
    return shaped(out, np.shape(h), what, "return one (batch, D) tensor, like its input.")


def matrix_of(layer, dim: int | None = DIM) -> np.ndarray:
    """``layer.matrix()``, shaped ``(dim, dim)`` (with ``dim`` None: any square shape)."""
    out = attempt(layer.matrix, doing="matrix()")
    if dim is None:
        shape = np.shape(out)
        dim = int(shape[0]) if len(shape) == 2 and shape[0] == shape[1] else -1
    return shaped(out, (dim, dim), "matrix()", "return W itself, one (D, D) tensor.")


def layer_log_det(layer) -> float:
    """The layer's log_det_jacobian(), checked to be one number."""
    value = numpy(attempt(layer.log_det_jacobian, doing="log_det_jacobian()"))
    expect(value.shape == (), "log_det_jacobian() to return a scalar (the same for every x)",
           f"shape {value.shape}", "sum over all D entries of log_abs_s: one number.")
    return float(value)


def new_layer(mixing, dim=DIM, seed=0):
    """A layer as built, called once (so variables built lazily exist)."""
    layer = attempt(lambda: mixing.InvertibleLinear(dim, seed=seed),
                    doing=f"InvertibleLinear({dim}, seed={seed})")
    fwd(layer, random_batch(2, dim, seed=99))
    return layer


def make_layer(mixing, dim=DIM, seed=0):
    """A layer whose trainable variables all have random values, as after some training."""
    layer = new_layer(mixing, dim, seed)
    variables = trainable(layer)
    expect(len(variables) > 0, "InvertibleLinear to have trainable variables (L, U and log_abs_s)",
           "none", "create them in __init__ as trainable weights of the layer, so that Keras tracks them.")
    randomize(variables, seed, scale=0.3)
    return layer


# ---------------------------------------------------------------------------------------------
# W's factors, found by the grader from W itself


def read_matrix_at(layer, variables, values) -> np.ndarray:
    """W with the trainable ``variables`` set to ``values``; their values are restored after."""
    saved = [numpy(v) for v in variables]
    try:
        for variable, value in zip(variables, values, strict=True):
            variable.assign(np.asarray(value, dtype=np.float32))
        return matrix_of(layer, None)
    finally:
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value.astype(np.float32))


def zeros_like(variables) -> list[np.ndarray]:
    return [np.zeros(tuple(int(n) for n in v.shape), dtype=np.float32) for v in variables]


def signed_permutation(w: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(P, signs)`` when ``w`` = P diag(signs), a permutation matrix times a diagonal of +-1."""
    magnitude = np.abs(w)
    if not np.all((magnitude < ZERO) | (np.abs(magnitude - 1.0) < ZERO)):
        return None
    p = (magnitude > 0.5).astype(np.float64)
    if not (np.all(p.sum(axis=0) == 1) and np.all(p.sum(axis=1) == 1)):
        return None
    return p, np.sign(np.sum(w * p, axis=0))  # column j of W is sign_j times column j of P


def is_permutation(value: np.ndarray) -> bool:
    return value.ndim == 2 and value.shape[0] == value.shape[1] and signed_permutation(value) is not None \
        and bool(np.all(value >= -ZERO))


def lu_without_pivoting(m: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(L, U)`` with m = L U, L unit lower-triangular, U upper-triangular (Doolittle, float64);
    None when a pivot is zero."""
    n = len(m)
    lower, upper = np.eye(n), np.array(m, dtype=np.float64)
    for k in range(n):
        if abs(upper[k, k]) < 1e-12:
            return None
        for i in range(k + 1, n):
            lower[i, k] = upper[i, k] / upper[k, k]
            upper[i, :] -= lower[i, k] * upper[k, :]
    return lower, np.triu(upper)


def permutation_and_signs(layer):
    """``(P, signs)`` of ``layer``: W with every trainable variable at zero, which is
    P diag(sign_s) (L = I, U = 0, log_abs_s = 0); None when it is not of that form."""
    variables = trainable(layer)
    return signed_permutation(read_matrix_at(layer, variables, zeros_like(variables)))


def factors(layer) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(P, L, U + diag(s))`` of the layer's W as it is now: P from the zero state, L and
    U + diag(s) the LU decomposition of P^T W without pivoting (unique). None when W has no
    such form."""
    found = permutation_and_signs(layer)
    if found is None:
        return None
    p = found[0]
    lu = lu_without_pivoting(p.T @ matrix_of(layer, None))
    return None if lu is None else (p, *lu)


def triangle(m: np.ndarray) -> str:
    """"diagonal", "lower", "upper" or "full": where the entries of ``m`` are not zero."""
    below = np.abs(np.tril(m, -1)).max(initial=0.0) > ZERO
    above = np.abs(np.triu(m, 1)).max(initial=0.0) > ZERO
    names = {(False, False): "diagonal", (True, False): "lower", (False, True): "upper"}
    return names.get((below, above), "full")


# ---------------------------------------------------------------------------------------------
# What a method calls, read from the graded source on the grader's side

#: General inverses and solves, and the decompositions that make one: O(D^3) each time.
GENERAL_INVERSES = frozenset({"inv", "pinv", "solve", "lstsq", "matrix_inverse", "matrixinverse",
                              "matrixsolve", "matrixsolvels", "lu_matrix_inverse", "tensorinv",
                              "tensorsolve", "lu", "lu_factor", "matrix_solve", "matrix_solve_ls"})
#: Determinants (and the same decompositions and inverses).
DETERMINANTS = GENERAL_INVERSES | {"det", "slogdet", "logdet", "matrix_determinant", "matrixdeterminant",
                                   "log_matrix_determinant", "logmatrixdeterminant"}
LIBRARIES = ("tensorflow", "numpy", "scipy", "keras", "tensorflow_probability", "jax", "torch")
#: Built-ins that look a name up at run time, where this reading cannot follow.
DYNAMIC = ("eval", "exec", "__import__", "importlib")


def _dotted(node: ast.AST, origins: dict[str, str]) -> str | None:
    """``tf.linalg.inv`` as ``tensorflow.linalg.inv``, through the module's imports and aliases."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([origins.get(node.id, node.id), *reversed(parts)])


def _members(tree: ast.Module) -> dict[str, ast.AST]:
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}


def _method(classes: dict[str, ast.AST], class_name: str, name: str) -> ast.AST | None:
    """The method ``name`` of ``class_name`` or of a base class defined in the same module."""
    seen = set()
    while class_name in classes and class_name not in seen:
        seen.add(class_name)
        node = classes[class_name]
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == name:
                return item
        bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
        class_name = bases[0] if bases else ""
    return None


def names_used(source_file: Path, qualname: str, forbidden: frozenset[str]) -> list[str]:
    """The names of ``forbidden`` (last parts of dotted names, lower case, of the LIBRARIES)
    that the method or function ``qualname`` ("Class.method" or "function") of the module in
    ``source_file`` uses, with what it calls: methods of its class called on ``self``, the
    module's own functions and classes, and those imported from sibling modules
    (``from .helpers import f``). Run-time lookups (``eval``, ``__import__``, ``importlib``,
    ``getattr`` on a library) count too: this reading cannot follow them."""
    found: list[str] = []
    seen: set[tuple[Path, str]] = set()
    todo = [(Path(source_file), qualname)]
    while todo:
        file, name = todo.pop()
        if (file, name) in seen or not file.is_file():
            continue
        seen.add((file, name))
        tree = ast.parse(file.read_text(encoding="utf-8", errors="replace"))
        origins, members = _imported_names(tree), _members(tree)
        owner, _, method = name.rpartition(".")
        node = _method(members, owner, method) if owner else members.get(name)
        if node is None:
            continue
        for child in ast.walk(node):
            on_self = isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name) \
                and child.value.id == "self"
            if on_self:
                if owner and _method(members, owner, child.attr) is not None:
                    todo.append((file, f"{owner}.{child.attr}"))
                continue
            lookup = isinstance(child, ast.Call) and isinstance(child.func, ast.Name) \
                and child.func.id == "getattr" and bool(child.args)
            if lookup and (_dotted(child.args[0], origins) or "").startswith(LIBRARIES):
                found.append(f"getattr({ast.unparse(child.args[0])}, ...)")
            dotted = _dotted(child, origins) if isinstance(child, ast.Attribute | ast.Name) else None
            if dotted is None:
                continue
            root, last = dotted.split(".")[0], dotted.rsplit(".", 1)[-1]
            if root in LIBRARIES and last.lower() in forbidden:
                found.append(dotted)
            elif isinstance(child, ast.Name) and (child.id in DYNAMIC or dotted.startswith("importlib")):
                found.append(child.id)
            elif isinstance(child, ast.Name) and child.id in members:
                target = members[child.id]
                if isinstance(target, ast.ClassDef):
                    todo.extend((file, f"{child.id}.{item.name}") for item in target.body
                                if isinstance(item, ast.FunctionDef))
                else:
                    todo.append((file, child.id))
            elif isinstance(child, ast.Name) and dotted.startswith(".") and not dotted.startswith(".."):
                module, _, imported = dotted[1:].rpartition(".")
                todo.append((file.parent / f"{module.replace('.', '/')}.py", imported))
    return sorted(set(found))


def graded_source(graded) -> Path:
    return impl_mod.resolve(graded) / "mixing.py"  # read here, from the graded folder


# ---------------------------------------------------------------------------------------------
# InvertibleLinear


def test_forward_is_x_times_w_transpose(mixing):
    layer, x = make_layer(mixing), random_batch(16, DIM)
    w = matrix_of(layer)
    got = fwd(layer, x)
    error = max_error(got, x @ w.T) / max(1.0, float(np.max(np.abs(got))))
    if error < TOL:
        return
    candidates = [
        (x @ w, "forward multiplies by W, not by its transpose: h = W x holds for one column vector, "
                "and the examples are the rows of x, so the batch needs x times W transposed."),
        (x @ np.linalg.inv(w).T, "forward applies W^-1 (backward's map): forward is h = W x."),
        (x, "forward returns x unchanged: multiply every example by W."),
    ]
    likely = next((text for value, text in candidates if np.allclose(got, value, atol=1e-3)),
                  "forward must multiply every example by matrix() itself, h = W x, and nothing else.")
    fail("forward(x) == x @ W^T with W = matrix() (h = W x for every example)",
         f"a difference of {error:.3g}", likely, fix_for(likely))


def test_starts_as_a_random_rotation(mixing):
    w = matrix_of(new_layer(mixing, seed=3))
    error = float(np.max(np.abs(w @ w.T - np.eye(DIM))))
    if np.allclose(w, np.eye(DIM), atol=1e-6):
        fail("a new layer to start as a random rotation, not the identity", "W = I",
             "the layer starts as the identity: start from the LU factors of a random rotation, so "
             "that every coordinate is mixed from the first step on.")
    expect(error < 1e-4, "a new layer's W to be orthogonal (W W^T = I, log|det W| = 0)",
           f"W W^T off the identity by up to {error:.3g}",
           "start from a rotation: the orthogonal factor Q of the QR decomposition of a random "
           "Gaussian matrix, not the Gaussian matrix itself.")
    expect(signed_permutation(w) is None, "a new layer to mix coordinates (a rotation, not a permutation)",
           "W is a permutation (with signs): each output is one input",
           "start from the LU factors of a random rotation, not of the identity or a permutation.")
    expect(np.allclose(w, matrix_of(new_layer(mixing, seed=3)), atol=1e-6)
           and not np.allclose(w, matrix_of(new_layer(mixing, seed=4)), atol=1e-3),
           "the same seed to give the same W, and another seed another W", "W ignores the seed",
           "draw the random matrix from a generator seeded with the seed argument.")


def test_matrix_is_p_l_u(mixing):
    layer = new_layer(mixing)
    variables = trainable(layer)
    expect(len(variables) > 0, "InvertibleLinear to have trainable variables (L, U and log_abs_s)", "none",
           "create them in __init__ as trainable weights of the layer, so that Keras tracks them.")
    fresh = [numpy(v) for v in variables]
    zero = read_matrix_at(layer, variables, zeros_like(variables))
    found = signed_permutation(zero)
    if found is None:
        trained_permutation = any(is_permutation(value) for value in fresh)
        seen = "W = 0" if np.all(np.abs(zero) < ZERO) else "a matrix that is no permutation"
        fail("with every trainable variable at zero, W = P diag(sign_s): a permutation with signs "
             "(L = I, U = 0, log_abs_s = 0)", seen,
             "P is trainable: training changes it into a matrix that is no permutation. P is fixed: keep "
             "it as a constant or a weight that is not trainable." if trained_permutation else
             "the trainable variables must be exactly L's entries below the diagonal, U's entries above "
             "it and log_abs_s (L's diagonal ones, s = sign_s * exp(log_abs_s)); P and sign_s are fixed.")
    p, signs = found
    rng = np.random.default_rng(0)
    for index in range(len(variables)):
        values = zeros_like(variables)
        values[index] = (0.5 * rng.standard_normal(values[index].shape)).astype(np.float32)
        w = read_matrix_at(layer, variables, values)
        m = p.T @ w  # = L (U + diag(s)) when the factors are what they should be
        if triangle(m) == "diagonal":
            continue  # log_abs_s (or a variable W does not use): the log-det checks judge it
        log_abs_det = float(np.linalg.slogdet(w)[1])
        if abs(log_abs_det) < 1e-4:
            continue
        shape = tuple(values[index].shape)
        if triangle(m) == "lower":
            likely = ("L's diagonal is not 1: its mask keeps the diagonal too. Mask L's weight to the "
                      "entries strictly below the diagonal and put fixed ones on it.")
        elif triangle(m) == "upper":
            likely = ("U's diagonal is counted twice: its mask keeps the diagonal, which then adds to s. "
                      "Mask U's weight to the entries strictly above the diagonal: the diagonal is s alone.")
        else:
            likely = ("a trainable variable changes |det W| without being log_abs_s: L's diagonal must "
                      "be ones, U's zeros, and P fixed.")
        fail(f"|det W| = 1 when only a variable of L or U is not zero (here the variable of shape {shape}): "
             "L has ones on its diagonal and U zeros, whatever their values",
             f"log|det W| = {log_abs_det:.3f}", likely, fix_for(likely))


def log_det_mistake(layer, got: float, truth: float) -> str:
    """The likely mistake behind a log_det_jacobian() that is not log|det W|."""
    found = factors(layer)
    s = np.diag(found[2]) if found is not None else None
    if not math.isfinite(got) and s is not None and np.any(s < 0):
        return ("the log of a negative number: s = sign_s * exp(log_abs_s) has negative entries, and "
                "log|det W| needs the logs of their magnitudes, which are log_abs_s.")
    candidates = [
        (-truth, "wrong sign: forward multiplies by W, whose log|det| is +sum(log_abs_s)."),
        (0.0, "a log-det of zero: W's volume change is sum(log_abs_s), which training moves away from 0."),
        (math.exp(truth), "|det W| itself instead of its log."),
    ]
    if s is not None:
        candidates += [
            (float(np.sum(s)), "the sum of s itself instead of the sum of the logs of its magnitudes: "
                               "the log|det| of a triangular matrix is the sum of log|diagonal|."),
            (float(np.sum(np.abs(s))), "the sum of |s| instead of the sum of log|s| (= log_abs_s)."),
            (float(np.sum(np.sign(s) * np.log(np.abs(s)))),
             "the signs of s multiplied into its logs: log|s| = log_abs_s, whatever sign_s is."),
            (truth / len(s), "the mean of log_abs_s instead of its sum."),
        ]
    for value, text in candidates:
        if math.isfinite(got) and abs(got - value) < 1e-4 * max(1.0, abs(value)):
            return text
    return ("log|det W| = sum(log_abs_s): |det P| = 1, det L = 1, and U + diag(s) is triangular, so its "
            "determinant is the product of s.")


@pytest.mark.builds_on("test_matrix_is_p_l_u")
def test_log_det_is_sum_of_log_abs_s(mixing):
    for seed in (0, 1, 2):  # three rotations: some of their s are negative
        layer = make_layer(mixing, seed=seed)
        got = layer_log_det(layer)
        truth = float(np.linalg.slogdet(matrix_of(layer))[1])
        if not (math.isfinite(got) and abs(got - truth) < 1e-4 * max(1.0, abs(truth))):
            fail(f"log_det_jacobian() == log|det W| = {truth:.4f} (computed here from matrix())",
                 f"{got:.4f}", log_det_mistake(layer, got, truth))


@pytest.mark.builds_on("test_forward_is_x_times_w_transpose", "test_log_det_is_sum_of_log_abs_s")
def test_log_det_matches_autodiff(mixing):
    layer, x = make_layer(mixing, seed=5), random_batch(8, DIM)
    numeric = attempt(numerical_log_det, layer.forward, x, doing="forward on a batch of nearby points")
    got = layer_log_det(layer)
    worst = float(np.max(np.abs(numeric - got)))
    expect(worst < 1e-3, "log_det_jacobian() to equal log|det dh/dx| of forward",
           f"{got:.4f}, but the Jacobian of forward (finite differences) gives {float(np.mean(numeric)):.4f}",
           "forward and log_det_jacobian disagree: forward must multiply by the same W whose log-det "
           "is sum(log_abs_s).")


def test_log_det_computes_no_determinant(mixing, graded):
    layer_log_det(new_layer(mixing))  # implemented at all?
    used = names_used(graded_source(graded), "InvertibleLinear.log_det_jacobian", DETERMINANTS)
    expect(not used, "log_det_jacobian to be computed from log_abs_s alone, in O(D)",
           f"it uses {', '.join(used)}",
           "a determinant (or an inverse, or a decomposition) of W costs O(D^3) at every call: that is "
           "what the LU form avoids. log|det W| is the sum of log_abs_s.")


def backward_mistake(layer, h: np.ndarray) -> str:
    """The likely mistake behind a backward that does not undo forward."""
    got, w = bwd(layer, h), matrix_of(layer, None)
    candidates = [
        (h @ np.linalg.inv(w), "backward multiplies by W^-1 from the wrong side: forward is x @ W^T, so "
                               "backward undoes W^T, for every example (a row)."),
        (h @ w.T, "backward applies forward's W instead of undoing it."),
        (h @ w, "backward applies W (transposed) instead of undoing it."),
    ]
    found = factors(layer)
    if found is not None:
        p, lower, upper = found

        def solve(matrix, rhs, is_lower):
            return scipy.linalg.solve_triangular(matrix, rhs, lower=is_lower)

        z = p.T @ h.T  # the permutation undone: the columns of z are P^T h for every example
        candidates += [
            (solve(lower, solve(upper, z, False), True).T,
             "the triangular solves in the wrong order: W = P L (U + diag(s)), so W^-1 = "
             "(U + diag(s))^-1 L^-1 P^T: after the permutation, solve with L first, then with U + diag(s)."),
            (solve(upper, solve(lower, h.T, True), False).T,
             "backward forgets the permutation: undo P first (a permutation is undone by its transpose)."),
            (solve(upper, solve(lower, p @ h.T, True), False).T,
             "P is undone with P itself instead of its transpose (a permutation's inverse is its "
             "transpose)."),
            (solve(np.triu(upper, 1) + np.eye(len(p)), solve(lower, z, True), False).T,
             "backward solves with U without s on its diagonal: the upper factor is U + diag(s)."),
        ]
    for value, text in candidates:
        if np.allclose(got, value, atol=1e-3):
            return text
    return ("backward must undo W: the permutation by its transpose, then a triangular solve with L, then "
            "one with U + diag(s), from the same factors as matrix().")


@pytest.mark.builds_on("test_forward_is_x_times_w_transpose", "test_matrix_is_p_l_u")
@pytest.mark.parametrize("dim", [2, DIM])
def test_backward_undoes_forward(mixing, dim):
    layer, x = make_layer(mixing, dim=dim), random_batch(16, dim)
    h = fwd(layer, x)
    error = max_error(bwd(layer, h), x) / max(1.0, float(np.max(np.abs(h))))
    if error >= TOL:
        mistake = backward_mistake(layer, h.astype(np.float32))
        fail(f"backward(forward(x)) == x (D = {dim})", f"a maximum error of {error:.3g}", mistake,
             fix_for(mistake))


@pytest.mark.builds_on("test_forward_is_x_times_w_transpose", "test_matrix_is_p_l_u")
def test_forward_undoes_backward(mixing):
    layer, h = make_layer(mixing), random_batch(16, DIM, seed=1)
    x = bwd(layer, h)
    error = max_error(fwd(layer, x), h) / max(1.0, float(np.max(np.abs(x))))
    if error >= TOL:
        mistake = backward_mistake(layer, h)
        fail("forward(backward(h)) == h", f"a maximum error of {error:.3g}", mistake, fix_for(mistake))


def test_backward_uses_no_general_inverse(mixing, graded):
    bwd(new_layer(mixing), random_batch(2, DIM))  # implemented at all?
    used = names_used(graded_source(graded), "InvertibleLinear.backward", GENERAL_INVERSES)
    expect(not used, "backward to undo W with its factors: a permutation and two triangular solves",
           f"it uses {', '.join(used)}",
           "a general inverse or solve (or a fresh decomposition) of W costs O(D^3) at every call and "
           "throws the LU form away: undo P by its transpose, then solve with L, then with U + diag(s) "
           "(TensorFlow has a triangular solve).")


@pytest.mark.builds_on("test_forward_is_x_times_w_transpose")
def test_gradients_reach_every_variable(mixing):
    layer, x = make_layer(mixing), random_batch(16, DIM)
    report = attempt(gradient_report, layer.forward, trainable(layer), x, layer.log_det_jacobian,
                     doing="forward and log_det_jacobian under a GradientTape")
    missing = [r["name"] for r in report if not r["has"]]
    expect(not missing, "a gradient for every trainable variable", f"no gradient for {', '.join(missing)}",
           "gradients cut: matrix(), forward or log_det_jacobian leave TensorFlow (.numpy(), np.* math) "
           "or a variable is never used.")
    zero = [r["name"] for r in report if not r["nonzero"]]
    expect(not zero, "non-zero gradients", f"all-zero gradients for {', '.join(zero)}",
           "a variable whose every entry is masked out: L's mask keeps the entries below the diagonal, "
           "U's those above it.")
    expect_true_gradients(report)
    # At x = 0 forward's output is 0 whatever the weights: only log_det_jacobian() is left to move.
    report = attempt(gradient_report, layer.forward, trainable(layer), np.zeros((4, DIM), np.float32),
                     layer.log_det_jacobian, doing="log_det_jacobian under a GradientTape")
    expect(any(r["has"] and r["nonzero"] for r in report), "a gradient of log_det_jacobian() for log_abs_s",
           "none", "gradients cut in log_det_jacobian(): it leaves TensorFlow (.numpy(), np.* math), so "
           "training could never change log|det W| through it.")
    expect_true_gradients(report)


# ---------------------------------------------------------------------------------------------
# Glow


def new_glow(mixing, dim=DIM, steps=STEPS, sizes=None):
    """A Glow as built, called once (so lazily built networks exist)."""
    sizes = SMALL if sizes is None else sizes
    glow = attempt(lambda: mixing.Glow(dim, steps, **sizes), doing=f"Glow({dim}, {steps}, ...)")
    fwd(glow, random_batch(2, dim, seed=99), "Glow.forward")
    return glow


def make_glow(mixing, seed=0):
    """A Glow with random weights everywhere, so that no layer is the identity."""
    glow = new_glow(mixing)
    variables = trainable(glow)
    expect(len(variables) > 0, "Glow to have trainable variables after a first call", "none",
           "store the steps' layers as attributes of the model (a list of pairs is tracked).")
    randomize(variables, seed, scale=0.3)
    return glow


def steps_of(glow, count=STEPS) -> list[tuple]:
    """glow.steps as a list of (mixing, coupling) pairs, checked for its form."""
    steps = list(getattr(glow, "steps", None) or [])
    expect(len(steps) == count, f"glow.steps to be a list of {count} (mixing, coupling) pairs",
           f"{len(steps)} entries", "build num_steps steps in __init__, each a pair (InvertibleLinear, "
           "AffineCoupling).")
    pairs = []
    for k, step in enumerate(steps):
        pair = list(step) if isinstance(step, list | tuple) else []
        expect(len(pair) == 2, f"step {k} to be a pair (mixing layer, coupling layer)", f"{step!r}",
               "store each step as a pair: the InvertibleLinear first, then the AffineCoupling.")
        pairs.append(tuple(pair))
    return pairs


def run_steps(pairs, x, order) -> np.ndarray:
    """x through the layers' own methods: ``order`` lists (step index, "mixing"/"coupling",
    "forward"/"backward") in the order they are applied."""
    for k, which, method in order:
        layer = pairs[k][0 if which == "mixing" else 1]
        x = (fwd if method == "forward" else bwd)(layer, x, f"a {which} layer's {method}").astype(np.float32)
    return x


def forward_order(n):
    return [(k, which, "forward") for k in range(n) for which in ("mixing", "coupling")]


def backward_order(n):
    return [(k, which, "backward") for k in reversed(range(n)) for which in ("coupling", "mixing")]


def test_glow_steps_are_mixing_then_coupling(mixing):
    pairs = steps_of(new_glow(mixing))
    for k, (mix, coupling) in enumerate(pairs):
        expect(hasattr(mix, "matrix") and not hasattr(coupling, "matrix"),
               f"step {k} to hold its mixing layer first, then its coupling",
               "another order or other layers",
               "each step is a pair (InvertibleLinear, AffineCoupling), in that order.")
    layers = [layer for pair in pairs for layer in pair]
    expect(len({id(layer) for layer in layers}) == len(layers), "a new layer object in every place",
           "the same layer in several places",
           "weight sharing: build a new InvertibleLinear and a new AffineCoupling for every step.")


@pytest.mark.builds_on("test_glow_steps_are_mixing_then_coupling")
def test_glow_forward_is_the_composition(mixing):
    glow, x = make_glow(mixing), random_batch(16, DIM)
    pairs = steps_of(glow)
    got = fwd(glow, x, "Glow.forward")
    expected = run_steps(pairs, x, forward_order(STEPS))
    error = max_error(got, expected) / max(1.0, float(np.max(np.abs(expected))))
    if error < TOL:
        return
    n = STEPS
    candidates = [
        ([(k, w, "forward") for k in range(n) for w in ("coupling", "mixing")],
         "each step applies its coupling first: a step mixes first, then couples."),
        ([(k, "coupling", "forward") for k in range(n)], "forward skips the mixing layers."),
        ([(k, w, "forward") for k in reversed(range(n)) for w in ("mixing", "coupling")],
         "forward applies the steps in reverse order: step 1 first."),
    ]
    likely = next((text for order, text in candidates
                   if np.allclose(got, run_steps(pairs, x, order), atol=1e-3)),
                  "forward must apply, step after step, the mixing layer then the coupling, each to the "
                  "previous output.")
    fail("Glow.forward(x) == c_K(W_K ... c_1(W_1 x)) (each step: mixing, then coupling)",
         f"a difference of {error:.3g}", likely)


def glow_backward_mistake(pairs, got, h) -> str:
    n = STEPS
    candidates = [
        ([(k, w, "backward") for k in range(n) for w in ("coupling", "mixing")],
         "steps undone in the wrong order: backward must undo the last step first, the first one last."),
        ([(k, w, "backward") for k in reversed(range(n)) for w in ("mixing", "coupling")],
         "within a step, undo the coupling first, then the mixing layer (forward mixed first)."),
        ([(k, w, "backward") for k in range(n) for w in ("mixing", "coupling")],
         "backward undoes the steps in forward's order, and within each step the mixing first: undo "
         "exactly what forward did, last thing first."),
        ([(k, w, "forward") for k in reversed(range(n)) for w in ("coupling", "mixing")],
         "backward calls the layers' forward: use each layer's backward."),
    ]
    for order, text in candidates:
        if np.allclose(got, run_steps(pairs, h, order), atol=1e-3):
            return text
    return ("backward must undo the steps last first, each by its coupling's backward, then its mixing "
            "layer's.")


@pytest.mark.builds_on("test_glow_steps_are_mixing_then_coupling", "test_glow_forward_is_the_composition")
def test_glow_backward_undoes_forward(mixing):
    glow, x = make_glow(mixing), random_batch(16, DIM)
    h = fwd(glow, x, "Glow.forward").astype(np.float32)
    got = bwd(glow, h, "Glow.backward")
    error = max_error(got, x) / max(1.0, float(np.max(np.abs(h))))
    if error >= TOL:
        fail("Glow.backward(Glow.forward(x)) == x", f"a maximum error of {error:.3g}",
             glow_backward_mistake(steps_of(glow), got, h))


@pytest.mark.builds_on("test_glow_steps_are_mixing_then_coupling", "test_glow_forward_is_the_composition")
def test_glow_forward_undoes_backward(mixing):
    glow, h = make_glow(mixing, seed=1), random_batch(16, DIM, seed=1)
    x = bwd(glow, h, "Glow.backward").astype(np.float32)
    error = max_error(fwd(glow, x, "Glow.forward"), h) / max(1.0, float(np.max(np.abs(x))))
    if error >= TOL:
        fail("Glow.forward(Glow.backward(h)) == h", f"a maximum error of {error:.3g}",
             glow_backward_mistake(steps_of(glow), numpy(x), h))


def glow_log_det(glow, x) -> np.ndarray:
    out = attempt(glow.log_det_jacobian, x, doing=f"Glow.log_det_jacobian on a {x.shape} batch")
    return shaped(out, (len(x),), "Glow.log_det_jacobian(x)",
                  "one value per example, shape (batch,): the couplings' terms differ between examples, "
                  "and every example gets the mixing layers' scalars in full.")


def step_terms(pairs, x) -> dict[str, np.ndarray]:
    """Every step's terms, from the layers' own answers: the mixing layers' log-dets, the couplings'
    at their own inputs, and the couplings' at the step's input and at x (two classic mistakes)."""
    keys = ("mixing", "coupling", "coupling_before_mixing", "coupling_at_x")
    terms = {key: np.zeros(len(x)) for key in keys}
    h = x
    for mix, coupling in pairs:
        def coupling_term(at, coupling=coupling):
            out = attempt(coupling.log_det_jacobian, at, doing="a coupling's log_det_jacobian")
            return shaped(out, (len(x),), "a coupling's log_det_jacobian")

        terms["coupling_before_mixing"] += coupling_term(h)
        terms["coupling_at_x"] += coupling_term(x)
        h = fwd(mix, h, "a mixing layer's forward").astype(np.float32)
        terms["mixing"] += layer_log_det(mix)
        terms["coupling"] += coupling_term(h)
        h = fwd(coupling, h, "a coupling's forward").astype(np.float32)
    return terms


@pytest.mark.builds_on("test_glow_steps_are_mixing_then_coupling", "test_glow_forward_is_the_composition")
def test_glow_log_det_sums_its_steps(mixing):
    glow, x = make_glow(mixing), random_batch(8, DIM)
    got = glow_log_det(glow, x)
    terms = step_terms(steps_of(glow), x)
    expected = terms["mixing"] + terms["coupling"]
    if np.allclose(got, expected, atol=1e-3, rtol=1e-4):
        return
    batch = len(x)
    candidates = [
        (terms["coupling"], "Glow's log-det forgets the mixing layers' terms: add every step's "
                            "log|det W| (the same for every example)."),
        (terms["mixing"], "Glow's log-det forgets the couplings' terms: add each coupling's per-example "
                          "log-det."),
        (terms["mixing"] + terms["coupling_before_mixing"],
         "each coupling's term is taken at the step's input: take it at the coupling's own input, the "
         "output of its mixing layer."),
        (terms["mixing"] + terms["coupling_at_x"],
         "every coupling's term is taken at x: take each at the input that coupling sees."),
        (terms["mixing"] / batch + terms["coupling"],
         "the mixing layers' log-dets are split across the batch: each is the same for every example, "
         "and every example gets it in full."),
        (-expected, "wrong sign of the log-determinant: forward's own, data -> latent."),
    ]
    likely = next((text for value, text in candidates if np.allclose(got, value, atol=1e-3, rtol=1e-4)),
                  "the sum over the steps of the mixing layer's log-det and the coupling's at its own input.")
    fail("Glow.log_det_jacobian(x) == the sum of its steps' terms (computed here from the layers)",
         f"values off by up to {float(np.max(np.abs(got - expected))):.3g}", likely)


@pytest.mark.builds_on("test_glow_forward_is_the_composition", "test_glow_log_det_sums_its_steps")
def test_glow_log_det_matches_autodiff(mixing):
    glow, x = make_glow(mixing, seed=2), random_batch(8, DIM)
    numeric = attempt(numerical_log_det, glow.forward, x, doing="Glow.forward on a batch of nearby points")
    got = glow_log_det(glow, x)
    smooth = np.isfinite(numeric)
    expect(smooth.sum() >= 4, "Glow.forward to be a smooth function of x near most points",
           f"{int((~smooth).sum())} of {len(x)} points where it jumps",
           "forward must chain the layers, nothing rounded or clipped.")
    worst = float(np.max(np.abs(numeric[smooth] - got[smooth])))
    expect(worst < 1e-2, "Glow.log_det_jacobian(x) to equal log|det df/dx| of Glow.forward, per example",
           f"differences up to {worst:.3g} (Jacobian of forward from finite differences)",
           "forward and log_det_jacobian disagree: both must go through the same steps in the same order.")


@pytest.mark.builds_on("test_glow_forward_is_the_composition")
def test_glow_gradients_reach_every_variable(mixing):
    glow, x = make_glow(mixing), random_batch(16, DIM)
    report = attempt(gradient_report, glow.forward, trainable(glow), x,
                     doing="Glow.forward under a GradientTape")
    missing = [r["name"] for r in report if not r["has"]]
    expect(not missing, "a gradient for every variable of the Glow", f"no gradient for {', '.join(missing)}",
           "gradients cut: forward leaves TensorFlow somewhere (.numpy(), np.* math), or a layer is never "
           "used.")
    expect_true_gradients(report)


@pytest.mark.parametrize("steps, units, layers", [(2, 7, 2)])
def test_glow_sizes_asked_for_are_honoured(mixing, steps, units, layers):
    glow = new_glow(mixing, steps=steps, sizes={"hidden_units": units, "hidden_layers": layers})
    pairs = steps_of(glow, steps)
    for k, (_, coupling) in enumerate(pairs):
        shapes = weight_matrices(coupling)
        widths = [shape[1] for shape in shapes[:-1]] if shapes else []
        expect(shapes and all(width == units for width in widths) and len(shapes) % (layers + 1) == 0,
               f"coupling {k} to have hidden layers of {units} units ({layers} per network)",
               f"weight matrices of shapes {shapes}",
               "Glow does not pass hidden_units and hidden_layers on to its couplings.")


@pytest.mark.builds_on("test_glow_log_det_matches_autodiff")
def test_log_likelihood_works_for_glow(mixing):
    affine = importlib.import_module("solutions.affine")  # stage 6's reference, the grader's copy
    glow, x = make_glow(mixing, seed=3), random_batch(8, DIM)
    prior = recipes.standard_gaussian(DIM)  # the check's own: the reference log_likelihood runs here
    got = numpy(attempt(affine.log_likelihood, glow, prior, x,
                        doing="stage 6's log_likelihood(glow, prior, x)",
                        likely="Glow needs what log_likelihood uses: a dim attribute, forward, and "
                               "log_det_jacobian(x) of shape (batch,)."))
    expect(got.shape == (len(x),), f"log_likelihood to return shape ({len(x)},)", f"{got.shape}",
           "Glow.log_det_jacobian(x) must return one value per example.")
    h = fwd(glow, x, "Glow.forward")
    expected = numpy(prior.log_prob(h.astype(np.float32))) + numerical_log_det(glow.forward, x)
    smooth = np.isfinite(expected)
    expect(np.allclose(got[smooth], expected[smooth], atol=1e-2),
           "log_likelihood(glow, prior, x) == log p_H(f(x)) + log|det df/dx| (change of variables)",
           f"values off by up to {float(np.max(np.abs(got[smooth] - expected[smooth]))):.3g}",
           "Glow's forward and log_det_jacobian(x) must describe the same map.")


# ---------------------------------------------------------------------------------------------
# Predict, then check: the questions at the end of the lesson page

PREDICTIONS = {
    # D = 3, s = (2, -0.5, 3), any P, L, U: log|det W| = sum log|s|.
    "log_det_of_given_diagonal": lambda: float(np.sum(np.log(np.abs([2.0, -0.5, 3.0])))),
    # D = 8: entries of L below the diagonal, of U above it, and log_abs_s.
    "free_parameters": lambda: 8 * 7 // 2 * 2 + 8,
    # A new layer is a rotation: |det W| = 1.
    "fresh_log_det": lambda: 0.0,
}

COUNTS = ("free_parameters",)


@pytest.mark.parametrize("key", list(PREDICTIONS))
def test_prediction(mixing, key):
    exact = {"rel_tol": 0.0, "abs_tol": 0.5} if key in COUNTS else {}  # a count is exact
    expect_answer(mixing, key, PREDICTIONS[key](), PAGE, **exact)
