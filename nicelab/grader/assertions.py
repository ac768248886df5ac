"""Tools for the checks in ``checks/`` (and for instructors' hidden checks).

``fail`` gives the student one or two sentences - what was expected, what was seen, the
likely mistake - instead of a traceback. The numeric helpers make random but reproducible
inputs and weights, and derive Jacobians and gradients as evidence the grader computes itself
(:mod:`nicelab.grader.evidence`): in a graded run nothing computed in the student's process is
taken on trust.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from nicelab.core.stubs import STUB_MESSAGE
from nicelab.grader import evidence
from nicelab.grader.recipes import common
from nicelab.grader.remote import NotSendable, Remote, beside

__all__ = [
    "attempt", "autodiff_log_det", "changed_columns", "describe", "error_line", "expect", "expect_answer",
    "expect_true_gradients",
    "fail", "gradient_report", "max_error", "numerical_log_det", "numpy", "random_batch", "randomize",
    "shaped", "trainable", "type_name", "weight_matrices",
]


def fail(expected: str, seen: str, likely: str | None = None, fix: str | None = None) -> None:
    """Fail the current check with a plain-words message (no traceback): what was expected,
    what was seen, and the ``likely`` mistake (named, with where to look, never the code).
    ``fix``, the code-level fix, is shown only after the check has failed several runs in a row
    on the student's machine (:mod:`nicelab.grader.hints`), never in a graded batch."""
    message = f"Expected {expected}; saw {seen}."
    if likely:
        message += f" Likely mistake: {likely}"
    try:
        pytest.fail(message, pytrace=False)
    except BaseException as error:  # pytest's Failed: carry the fix for the plugin
        error.fix = fix
        raise


def expect(condition: bool, expected: str, seen: str, likely: str | None = None,
           fix: str | None = None) -> None:
    """``fail(expected, seen, likely, fix)`` unless ``condition`` holds."""
    if not condition:
        fail(expected, seen, likely, fix)


def numpy(value) -> np.ndarray:
    """A tensor, variable or array-like as a float64 NumPy array."""
    if isinstance(value, tf.Tensor | tf.Variable):
        value = value.numpy()
    return np.asarray(value, dtype=np.float64)


def max_error(a, b) -> float:
    return float(np.max(np.abs(numpy(a) - numpy(b))))


def random_batch(n: int, dim: int, seed: int = 0, scale: float = 2.0) -> np.ndarray:
    """A reproducible ``(n, dim)`` float32 batch of normal values with std ``scale``."""
    return (scale * np.random.default_rng(seed).standard_normal((n, dim))).astype(np.float32)


def randomize(variables, seed: int = 0, scale: float = 0.5) -> None:
    """Give every variable reproducible N(0, scale^2) values, so that no layer is the identity
    (a zero-initialised output layer would hide most mistakes). Set from here, one ``assign``
    each, also for the variables of a remotely graded module."""
    evidence.assign_random(list(variables), seed, scale)


def shaped(value, shape: tuple[int, ...], what: str, likely: str | None = None) -> np.ndarray:
    """``value`` as a float64 array of exactly ``shape``, or a one-line failure naming the shape
    seen (checked before any computation with it: an answer of another shape is never broadcast)."""
    try:
        return evidence.shaped(value, shape, what)
    except evidence.AnswerShapeError as err:
        error = err
    fail(f"{what} to return shape {tuple(shape)}", f"shape {error.seen}", likely)


def type_name(value) -> str:
    """The class name of ``value`` (of the object itself when it lives in the graded process)."""
    if isinstance(value, Remote):
        return value._type.rsplit(".", 1)[-1]
    return type(value).__name__


def trainable(layer) -> list[tf.Variable]:
    return list(getattr(layer, "trainable_variables", []))


def autodiff_log_det(fn, x: np.ndarray) -> np.ndarray:
    """log|det d fn(x) / dx| per example, shape ``(batch,)``, from an autodiff Jacobian taken
    where ``fn`` lives; NaN where no gradient flows from the output back to ``x``. In a graded
    run that is the graded process's claim: decide with :func:`numerical_log_det`."""
    return np.asarray(beside(common.autodiff_log_det, fn, np.asarray(x, dtype=np.float32)))


def numerical_log_det(fn, x: np.ndarray) -> np.ndarray:
    """log|det d fn(x) / dx| per example, shape ``(batch,)``, from evidence checked here: the
    tape's Jacobian where ``fn`` lives, used only where it agrees with central differences of
    ``fn``'s own answers (else those differences; NaN where neither holds, e.g. at a ReLU kink).
    ``fn``: a function, or a method of a remotely graded object."""
    x = np.asarray(x, dtype=np.float32)
    return evidence.verified_log_det(fn, x, beside(common.autodiff_jacobian, fn, x))


def gradient_report(fn, variables, x, extra=None) -> list[dict]:
    """``[{"name", "has", "nonzero", "verified"}]`` per variable: whether ``sum(fn(x)^2)`` (plus
    ``extra()``, a scalar, when given) has a gradient for it, whether that gradient is non-zero
    anywhere, and whether it is the true one: the autodiff runs where ``fn`` lives, and the
    grader checks what it reports against how ``fn``'s answers move when the variable moves
    (:func:`nicelab.grader.evidence.verify_gradients`). ``fn`` and ``extra``: functions, or
    methods of a remotely graded object."""
    variables, x = list(variables), np.asarray(x, np.float32)
    claims = beside(common.gradients_of_sum_of_squares, fn, variables, x, extra)
    if not isinstance(claims, list) or len(claims) != len(variables) or \
            not all(isinstance(c, dict) and {"name", "has", "nonzero"} <= set(c) for c in claims):
        fail("a gradient report for every variable", "an answer of another form",
             "the gradients were not computed by TensorFlow's tape.")
    return evidence.verify_gradients(fn, variables, x, claims, extra)


def expect_true_gradients(report: list[dict]) -> None:
    """Fail when a gradient reported for a variable is not how the output moves with it."""
    false = [r["name"] for r in report if not r.get("verified", True)]
    expect(not false, "the gradients reported for the variables to match how forward's output moves "
           "when they move", f"gradients for {', '.join(false)} that do not",
           "the output must be computed with TensorFlow operations from the variables themselves "
           "(no copies, no values computed elsewhere), so that the tape sees the real computation.")


def changed_columns(before, after, atol: float = 0.0) -> np.ndarray:
    """Boolean ``(D,)``: which columns differ anywhere between two ``(batch, D)`` arrays."""
    return np.any(np.abs(numpy(after) - numpy(before)) > atol, axis=0)


def describe(columns: np.ndarray) -> str:
    """A boolean column mask as a short list of indices."""
    return "[" + ", ".join(str(i) for i in np.flatnonzero(columns)) + "]"


def expect_answer(module, key: str, expected: float, page: str, rel_tol: float = 0.02,
                  abs_tol: float = 1e-3, significant: int | None = None) -> None:
    """Grade one "Predict, then check" answer: ``module.ANSWERS[key]`` against ``expected``,
    the value the check computed itself. The message never prints ``expected``: the point of
    the question is to work it out, then run the code.

    An unanswered prediction (the stub's ``None``) counts as not implemented yet, like a stub's
    function, so a fresh stage stays "not started" in ``nicelab grade`` instead of "failing".
    ``page`` is the lesson page (``docs/lessons/N-stage.md``), which names the stage.
    ``significant``: a value the page asks to compute (with code, or to that many significant
    digits) must match to that many significant digits (``rel_tol`` = half a unit of the last)."""
    answers = getattr(module, "ANSWERS", None)
    if not isinstance(answers, dict) or key not in answers:
        fail(f"a module-level dict ANSWERS with the key {key!r}", "no such entry",
             f"keep the ANSWERS block at the end of the lesson module (questions on {page}).")
    value = answers[key]
    if value is None:
        found = re.search(r"(\d)-(\w+)\.md", page)
        stage = f"Stage {found[1]} ({found[2]})" if found else "Predict, then check"
        raise NotImplementedError(f"{stage}: answer ANSWERS[{key!r}], the question on {page}.")
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        fail(f"ANSWERS[{key!r}] to be a number", f"{type(value).__name__} {value!r}")
    if significant is not None:
        rel_tol, abs_tol = 0.5 * 10.0 ** (1 - significant), 0.0
    if not np.isfinite(value) or abs(value - expected) > max(abs_tol, rel_tol * abs(expected)):
        within = (f"to {significant} significant digits" if significant is not None else
                  f"within {rel_tol:.0%}" if rel_tol else "exactly")
        fail(f"ANSWERS[{key!r}] to match what the code computes ({within})",
             f"{value!r}, which does not", f"re-read the question on {page} and redo the arithmetic.")


def attempt(fn, *args, doing: str, likely: str | None = None):
    """``fn(*args)``, or a one-line failure when the student's code raises: what it was doing,
    the exception's type and first line (no traceback), and ``likely``. A stub's
    NotImplementedError passes through (the plugin reports it as "Not implemented yet")."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - any error in the student's code becomes a verdict
        if isinstance(err, NotImplementedError) and (not str(err) or STUB_MESSAGE.match(str(err))):
            raise
        if isinstance(err, NotSendable):  # the check's own mistake, not the student's
            raise
        error = err
    # Failing outside the except block: no "during handling of the above exception" traceback.
    first = error_line(error)
    fail(f"{doing} to run", f"{type(error).__name__}: {first}" if first else type(error).__name__,
         likely)


def weight_matrices(layer) -> list[tuple[int, ...]]:
    """The shapes of a layer's trainable 2-D variables (a Dense network's kernels), in order."""
    return [tuple(int(n) for n in v.shape) for v in trainable(layer) if len(v.shape) == 2]


def error_line(err: BaseException, limit: int = 200) -> str:
    """The informative line of an exception's message: for Keras' "Exception encountered when
    calling ..." wrappers the line after it, terminal colour codes removed, at most ``limit``."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Exception encountered when calling")] or lines
    first = lines[0] if lines else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."
