"""Stage 1's verdicts decided in the grader's process, from the arrays a child answers with.

A prototype of issue 10, section 1 (see :mod:`nicelab.grader.remote`): the same properties the
public stage 1 checks establish (round trips, one complementary part changed per layer, unit
Jacobian, odd dimensions, own variables per layer, gradients reaching every variable, examples
independent of the batch), each decided here from the student's answers to inputs drawn with
a secret seed, so that nothing the student's code patches in its own process changes them.

``stage1_verdicts(module, seed)`` returns one :class:`~nicelab.grader.runner.CheckResult` per
property (``nodeid``: ``remote/coupling::NAME``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import numpy as np

from nicelab.grader.remote import Handle, ProtocolError, RemoteError
from nicelab.grader.runner import CheckResult

DIM = 6
SMALL = {"hidden_units": 16, "hidden_layers": 2}


class Verdict(Exception):
    """A failed property: the message says what was expected and what was seen."""


def _expect(ok: bool, expected: str, seen: str) -> None:
    if not ok:
        raise Verdict(f"Expected {expected}; saw {seen}.")


def _finite_log_det(forward: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                    h: float = 1e-2) -> np.ndarray:
    """log|det J| per example from central differences of ``forward``'s answers (in the parent)."""
    n, d = x.shape
    columns = []
    for i in range(d):
        step = np.zeros_like(x)
        step[:, i] = h
        columns.append((forward(x + step) - forward(x - step)) / (2 * h))
    jacobian = np.stack(columns, axis=2).astype(np.float64)  # (n, out, in)
    return np.linalg.slogdet(jacobian)[1]


NAMES = ("round_trips", "one_part_changes", "unit_jacobian", "odd_dimensions", "own_variables",
         "gradients_reach", "batch_independent")


class _Stage1:
    """Stage 1's properties, one method each (raising :class:`Verdict`), asked of the child's
    ``coupling`` module; ``rng`` draws their inputs and weights."""

    def __init__(self, module: Handle, rng: np.random.Generator):
        self.module, self.rng = module, rng

    def batch(self, n=16, d=DIM):
        return (self.rng.normal(size=(n, d)) * 1.5).astype(np.float32)

    def layer(self, dim=DIM, parity=0):
        made = self.module.AdditiveCoupling(dim, parity, **SMALL)
        made.forward(self.batch(2, dim))  # build it (lazily built networks are allowed)
        self.module.client.probe("randomize", made, int(self.rng.integers(2**31)))
        return made

    def round_trips(self):
        for parity in (0, 1):
            made, x = self.layer(parity=parity), self.batch()
            back = made.backward(made.forward(x))
            _expect(back.shape == x.shape, f"backward(forward(x)) shaped {x.shape}", f"{back.shape}")
            err = float(np.max(np.abs(back - x)))
            _expect(err < 1e-4, "backward(forward(x)) == x",
                    f"a largest error of {err:.3g} (parity {parity})")
            y = self.batch()
            err = float(np.max(np.abs(made.forward(made.backward(y)) - y)))
            _expect(err < 1e-4, "forward(backward(y)) == y",
                    f"a largest error of {err:.3g} (parity {parity})")

    def one_part_changes(self):
        changed = []
        for parity in (0, 1):
            made, x = self.layer(parity=parity), self.batch()
            changed.append(np.any(np.abs(made.forward(x) - x) > 1e-6, axis=0))
            _expect(0 < changed[-1].sum() < DIM, "one part of the coordinates to change",
                    f"{int(changed[-1].sum())} of {DIM} changed (parity {parity})")
        _expect(not np.any(changed[0] & changed[1]) and np.all(changed[0] | changed[1]),
                "parities 0 and 1 to change complementary parts",
                f"{np.flatnonzero(changed[0]).tolist()} and {np.flatnonzero(changed[1]).tolist()}")

    def unit_jacobian(self):
        made, x = self.layer(), self.batch(6)
        claimed = np.asarray(self.module.client.probe("log_det", made, "forward", x), dtype=np.float64)
        measured = _finite_log_det(made.forward, x.astype(np.float64).astype(np.float32))
        _expect(claimed.shape == (6,) and np.all(np.abs(claimed) < 1e-4),
                "log|det J| == 0 from autodiff", f"{np.round(claimed, 4).tolist()}")
        _expect(np.all(np.abs(measured) < 5e-2), "log|det J| == 0 by finite differences of forward",
                f"{np.round(measured, 3).tolist()}")

    def odd_dimensions(self):
        for dim in (2, 3, 5):
            for parity in (0, 1):
                made, x = self.layer(dim, parity), self.batch(8, dim)
                err = float(np.max(np.abs(made.backward(made.forward(x)) - x)))
                _expect(err < 1e-4, f"an exact round trip for D = {dim}", f"an error of {err:.3g}")

    def own_variables(self):
        first, second = self.layer(parity=0), self.layer(parity=1)
        a, b = self.module.client.probe("variables", first), self.module.client.probe("variables", second)
        _expect(len(a) > 0, "a layer to own trainable variables", "none")
        _expect(not {v[1] for v in a} & {v[1] for v in b}, "no variable shared between layers",
                "shared variables")

    def gradients_reach(self):
        made = self.layer()
        reached = self.module.client.probe("gradients", made, "forward", self.batch())
        _expect(len(reached) > 0 and all(reached), "gradients to reach every variable",
                f"{sum(map(bool, reached))} of {len(reached)} reached")

    def batch_independent(self):
        made, x = self.layer(), self.batch()
        alone = np.concatenate([made.forward(x[i:i + 1]) for i in range(4)])
        err = float(np.max(np.abs(made.forward(x)[:4] - alone)))
        _expect(err < 1e-5, "one example's output not to depend on the rest of the batch", f"{err:.3g}")


def _verdict(name: str, check: Callable[[], None]) -> CheckResult:
    """Run one property: passed, or failed / error with what was expected and seen."""
    start = time.perf_counter()
    outcome, kind, message = "passed", "passed", ""
    try:
        check()
    except Verdict as err:
        outcome, kind, message = "failed", "failed", str(err)
    except RemoteError as err:
        not_done = err.kind == "NotImplementedError"
        outcome, kind = "failed", "not_implemented" if not_done else "error"
        message = (f"Not implemented yet - {err.message}" if not_done
                   else f"your code raised {err.kind}: {err.message}")
    except (ProtocolError, TimeoutError) as err:
        outcome, kind, message = "error", "crashed", f"the grading process stopped answering ({err})"
    except Exception as err:  # noqa: BLE001 - an answer of the wrong kind (a forged frame, a list...)
        outcome, kind = "failed", "error"
        message = f"Your code answered with something the check cannot use ({type(err).__name__}: {err})."
    return CheckResult(f"remote/coupling::{name}", "coupling", outcome, message,
                       time.perf_counter() - start, kind)


def stage1_verdicts(module: Handle, seed: int | None = None) -> list[CheckResult]:
    """Decide stage 1 on the child's ``coupling`` module (a :class:`Handle`)."""
    stage = _Stage1(module, np.random.default_rng(secrets.randbits(64) if seed is None else seed))
    return [_verdict(name, getattr(stage, name)) for name in NAMES]
