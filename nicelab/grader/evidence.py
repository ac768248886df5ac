"""Evidence the grader computes itself, from the graded code's answers (issue 21).

In a graded run whatever runs in the student's process (their functions and the recipes run
beside them) is theirs, whatever it claims. The checks therefore decide from what this module
derives in the grader's own process:

* :func:`numerical_jacobian` / :func:`numerical_log_det`: the Jacobian of ``fn`` from the answers
  of ``fn`` itself (central differences in float64 of its float32 answers, at two step sizes; an
  example whose two estimates disagree straddles a ReLU kink and is left out, as NaN);
  :func:`verified_log_det`: the graded process's own tape Jacobian, used only where it agrees
  with those differences;
* :func:`verify_gradients`: a gradient the graded process reports is checked against how the
  answers move when the grader moves that variable (a directional finite difference along the
  claimed gradient and along a random direction);
* :func:`assign_random`: random weights set variable by variable, as requests;
* :func:`names_from` : which names a function of a lesson module takes from a package, read
  from the module's source file on the grader's side (never from the graded process).

A submission that answers every request consistently with a correct implementation is one; one
that does not fails the check that caught it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

#: The two step sizes of the central differences (in the units of x, float32 answers).
STEPS = (1e-2, 4e-3)
#: Two estimates of one example's log|det J| further apart than this straddle a kink.
KINK_GAP = 2e-3
#: A reported directional derivative must match the finite difference within this fraction.
GRADIENT_RTOL = 0.05


def _array(value) -> np.ndarray:
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    return np.asarray(value, dtype=np.float64)


class AnswerShapeError(ValueError):
    """The graded code answered with an array of another shape than the one asked for."""

    def __init__(self, what: str, seen: tuple[int, ...], shape: tuple[int, ...]):
        super().__init__(f"{what} returned shape {seen} for shape {shape}")
        self.seen = seen


def shaped(value, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``value`` as a float64 array, or :class:`AnswerShapeError` when its shape is not ``shape``
    (checked before any computation, so a huge answer is never broadcast)."""
    array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    if tuple(array.shape) != tuple(shape):
        raise AnswerShapeError(what, tuple(array.shape), tuple(shape))
    return array.astype(np.float64)


def numerical_jacobian(fn, x: np.ndarray, step: float) -> np.ndarray:
    """``(batch, D_out, D_in)``: d fn(x) / dx per example by central differences of ``fn``'s
    own answers, ``J[:, :, j] = (fn(x + h e_j) - fn(x - h e_j)) / (2h)``, all in one call of
    ``fn`` on a ``(2 D batch, D)`` batch. The differences are divided by the float32 steps
    actually taken, and computed in float64."""
    x = np.asarray(x, dtype=np.float32)
    batch, dim = x.shape
    offsets = (step * np.eye(dim)).astype(np.float32)[:, None, :]  # (D, 1, D)
    plus, minus = x[None] + offsets, x[None] - offsets  # (D, batch, D), float32
    taken = (plus.astype(np.float64) - minus)[np.arange(dim), :, np.arange(dim)]  # (D, batch)
    stacked = np.concatenate([plus, minus]).reshape(2 * dim * batch, dim)
    out = shaped(fn(stacked), (2 * dim * batch, dim), "forward")
    out = out.reshape(2, dim, batch, dim)
    jacobian = (out[0] - out[1]) / taken[:, :, None]  # (D_in, batch, D_out)
    return jacobian.transpose(1, 2, 0)


def numerical_log_det(fn, x: np.ndarray) -> np.ndarray:
    """``(batch,)``: log|det d fn(x)/dx| per example from :func:`numerical_jacobian` at the two
    :data:`STEPS`; NaN for an example whose two estimates disagree (a kink of a ReLU network
    between x - h and x + h), so that only smooth neighbourhoods decide."""
    estimates = [np.linalg.slogdet(numerical_jacobian(fn, x, step))[1] for step in STEPS]
    coarse, fine = estimates
    agree = np.abs(coarse - fine) <= KINK_GAP * np.maximum(1.0, np.abs(fine))
    both_infinite = np.isneginf(coarse) & np.isneginf(fine)  # a singular Jacobian at both steps
    return np.where(agree | both_infinite, fine, np.nan)


def verified_log_det(fn, x: np.ndarray, claimed) -> np.ndarray:
    """``(batch,)``: log|det d fn(x)/dx| per example, from the Jacobian the graded process
    ``claimed`` (its tape's, ``(batch, D, D)``) where that Jacobian agrees with the finite
    differences of ``fn``'s answers (within 1 % plus three times the differences' own spread
    between the two :data:`STEPS`, their rounding and kinks); elsewhere (or without a claim: no
    gradient flows) :func:`numerical_log_det`'s, NaN where neither holds. The tape's float32 Jacobian is exact
    where float32 finite differences are not (large outputs); the check makes it evidence."""
    x = np.asarray(x, dtype=np.float32)
    if claimed is None:
        return numerical_log_det(fn, x)
    coarse, fine = (numerical_jacobian(fn, x, step) for step in STEPS)
    claimed = shaped(claimed, fine.shape, "the Jacobian")
    spread = np.linalg.norm((coarse - fine).reshape(len(x), -1), axis=1)
    error = np.linalg.norm((claimed - fine).reshape(len(x), -1), axis=1)
    agree = error <= 1e-2 * np.linalg.norm(fine.reshape(len(x), -1), axis=1) + 3.0 * spread + 1e-6
    coarse_ld, fine_ld = np.linalg.slogdet(coarse)[1], np.linalg.slogdet(fine)[1]
    smooth = np.abs(coarse_ld - fine_ld) <= KINK_GAP * np.maximum(1.0, np.abs(fine_ld))
    return np.where(agree, np.linalg.slogdet(claimed)[1], np.where(smooth, fine_ld, np.nan))


def assign_random(variables, seed: int = 0, scale: float = 0.5) -> None:
    """Give every variable reproducible N(0, scale^2) values, one ``assign`` request each."""
    rng = np.random.default_rng(seed)
    for variable in variables:
        variable.assign(scale * rng.standard_normal(tuple(int(n) for n in variable.shape)).astype(np.float32))


def _loss(fn, x: np.ndarray, extra) -> float:
    """sum(fn(x)^2) (+ extra()) in float64, from the answers."""
    value = float(np.sum(shaped(fn(x), x.shape, "forward") ** 2))
    return value + (float(_array(extra())) if extra is not None else 0.0)


def _moves_as_claimed(fn, x, extra, loss: float, moves: list[tuple]) -> bool:
    """Whether the loss moves as the claimed gradients say when every ``(variable, base,
    claimed, direction)`` of ``moves`` steps along its direction at once (central differences)."""
    steps = []
    for _, base, _, direction in moves:
        size = 1e-3 * max(float(np.sqrt(np.mean(base ** 2))), 0.1)  # a zero bias still moves
        unit = direction / max(float(np.sqrt(np.mean(direction ** 2))), 1e-30)
        steps.append(((base + size * unit).astype(np.float32), (base - size * unit).astype(np.float32)))
    try:
        for (variable, *_), (plus, _) in zip(moves, steps, strict=True):
            variable.assign(plus)
        up = _loss(fn, x, extra)
        for (variable, *_), (_, minus) in zip(moves, steps, strict=True):
            variable.assign(minus)
        down = _loss(fn, x, extra)
    finally:
        for variable, base, _, _ in moves:
            variable.assign(base.astype(np.float32))
    change = up - down
    predicted = sum(float(np.sum(claimed * (plus.astype(np.float64) - minus)))
                    for (_, _, claimed, _), (plus, minus) in zip(moves, steps, strict=True))
    noise = 1e-6 * (1.0 + abs(loss))  # float32 answers: the loss is good to about 1e-7
    return abs(change - predicted) <= GRADIENT_RTOL * max(abs(change), abs(predicted)) + noise


def verify_gradients(fn, variables, x: np.ndarray, claims: list[dict], extra=None,
                     seed: int = 0) -> list[dict]:
    """Mark each claim ``{"name", "has", "nonzero", "grad"}`` of a gradient of sum(fn(x)^2)
    (+ extra()) with ``"verified"``: whether the loss, recomputed here from ``fn``'s answers,
    moves along the claimed gradient as that gradient predicts (one variable at a time), and
    along a random direction of all of them at once; when that joint move disagrees, each
    variable is moved along a random direction of its own, to name the ones whose claim is false.
    Claims of no gradient or of a zero one are left as they are (they fail on their own)."""
    x = np.asarray(x, dtype=np.float32)
    loss = _loss(fn, x, extra)
    rng = np.random.default_rng(seed)
    moved = []
    for claim, variable in zip(claims, variables, strict=True):
        grad = claim.get("grad")
        if not (claim["has"] and claim["nonzero"]):
            claim["verified"] = True
            continue
        if grad is None:  # a gradient claimed but not shown
            claim["verified"] = False
            continue
        claimed = _array(grad)
        base = _array(variable)
        if claimed.shape != base.shape or not np.all(np.isfinite(claimed)):
            claim["verified"] = False
            continue
        claim["verified"] = _moves_as_claimed(fn, x, extra, loss, [(variable, base, claimed, claimed)])
        if claim["verified"]:
            moved.append((claim, (variable, base, claimed, rng.standard_normal(base.shape))))
    if moved and not _moves_as_claimed(fn, x, extra, loss, [move for _, move in moved]):
        for claim, move in moved:
            claim["verified"] = _moves_as_claimed(fn, x, extra, loss, [move])
    return claims


# ---------------------------------------------------------------------------------------------
# What a lesson function takes from a package, read from its source on the grader's side


def _imported_names(tree: ast.Module) -> dict[str, str]:
    """Module-level ``name -> dotted origin`` of imports and plain aliases (``tfd = tfp.distributions``)."""
    origins: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                origins[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else \
                    alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                origins[alias.asname or alias.name] = f"{'.' * node.level}{node.module or ''}.{alias.name}"
        elif isinstance(node, ast.Assign) and [type(t) for t in node.targets] == [ast.Name]:
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in origins:
                origins[node.targets[0].id] = origins[root.id] + ast.unparse(node.value)[len(root.id):]
    return origins


def _uses(node: ast.AST, package: str) -> bool:
    """Whether an import statement inside a function brings in ``package`` or a dynamic importer."""
    if isinstance(node, ast.Import):
        return any(a.name.startswith((package, "importlib")) for a in node.names)
    return isinstance(node, ast.ImportFrom) and (node.module or "").startswith((package, "importlib"))


def names_from(source_file: Path, function: str, package: str) -> list[str]:
    """The names that ``function`` of the module in ``source_file`` takes from ``package`` (a
    dotted prefix such as ``tensorflow_probability``), read from the source text, following the
    module's own functions it calls and functions imported from sibling modules
    (``from .helpers import f``); also any ``__import__`` or ``importlib`` in them (a dynamic
    import this reading cannot follow, so it counts as one)."""
    found: list[str] = []
    seen: set[tuple[Path, str]] = set()
    todo = [(Path(source_file), function)]
    while todo:
        file, name = todo.pop()
        if (file, name) in seen or not file.is_file():
            continue
        seen.add((file, name))
        tree = ast.parse(file.read_text(encoding="utf-8", errors="replace"))
        origins = _imported_names(tree)
        functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
        if name not in functions:
            continue
        for node in ast.walk(functions[name]):
            if _uses(node, package):
                found.append(ast.unparse(node))
            if not isinstance(node, ast.Name):
                continue
            origin = origins.get(node.id, "")
            if origin.startswith((package, "importlib")) or node.id in ("__import__", "importlib"):
                found.append(node.id)
            elif node.id in functions:
                todo.append((file, node.id))
            elif origin.startswith(".") and not origin.startswith(".."):
                module, _, imported = origin[1:].rpartition(".")
                todo.append((file.parent / f"{module.replace('.', '/')}.py", imported))
    return found
