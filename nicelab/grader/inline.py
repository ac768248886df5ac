"""The checks of a stage, run from a notebook cell: ``nicelab.check("coupling")``.

It runs the same checks as ``pytest checks -m coupling`` in the running Python process (with
:func:`nicelab.grader.runner.run_checks`), prints one line per check, ``PASSED name`` or
``FAILED name - message`` (the message ``pytest checks`` prints), then a summary line; and when a
check did not pass it raises :class:`ChecksFailed`, whose message is the first failure's, so
that "Run all" stops at the check cell of an unfinished stage. In IPython the exception shows
as that one line, with no traceback.

The student's lesson modules are loaded afresh on every call, so an edit to ``lessons/`` counts
at once (as in the notebooks, which also use autoreload for their own imports).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from nicelab.core.course import STAGE_NAMES, STAGES
from nicelab.core.impl import default_impl, resolve

__all__ = ["ChecksFailed", "Verdicts", "check", "verdict_lines"]


class ChecksFailed(AssertionError):
    """Some checks of a stage did not pass; the message is the first failure's."""

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        return [f"ChecksFailed: {self}"]


class Verdicts(list):
    """The :class:`nicelab.grader.runner.CheckResult` of every check run, shown as a summary line."""

    def __repr__(self) -> str:
        return f"<{len(self)} checks: {_summary(self)}>"


def verdict_lines(results) -> list[str]:
    """One line per :class:`nicelab.grader.runner.CheckResult`, as ``pytest checks`` words them:
    ``PASSED checks/test_x.py::test_y[0]`` or ``FAILED checks/... - message``."""
    lines = []
    for result in results:
        word = {"passed": "PASSED", "skipped": "SKIPPED"}.get(result.outcome, "FAILED")
        if result.outcome == "error":
            word = "ERROR"
        lines.append(f"{word} {result.nodeid}" + (f" - {result.message}" if result.message else ""))
    return lines


def _summary(results) -> str:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    order = ("failed", "error", "passed", "skipped")
    return ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k)) or "no checks ran"


def check(*stages: str, impl: str | None = None, keyword: str | None = None, out=None) -> Verdicts:
    """Run the checks of ``stages`` (names like ``"coupling"``; all five when none are given) on
    ``impl`` (default: ``$NICELAB_IMPL`` or ``lessons``), print the verdicts and return them
    (:class:`Verdicts`, a list of :class:`nicelab.grader.runner.CheckResult`); raise
    :class:`ChecksFailed` unless all passed.

    ``keyword``: only the checks whose name matches (pytest's ``-k``).
    """
    from nicelab.grader.runner import run_checks  # imports pytest and, through the checks, TensorFlow

    out = sys.stdout if out is None else out
    unknown = [s for s in stages if s not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown stage {unknown[0]!r}; stages: {', '.join(STAGE_NAMES)}.")
    chosen: Sequence[str] = stages or STAGE_NAMES
    impl = impl or default_impl()
    titles = {name: title for name, title in STAGES}
    print(f"checking {resolve(impl)}: " + "; ".join(titles[s] for s in chosen), file=out)
    results = Verdicts(run_checks(impl, tuple(chosen), keyword=keyword, capture="sys"))
    for line in verdict_lines(results):
        print(line, file=out)
    print(f"== {_summary(results)} ==", file=out)
    bad = [r for r in results if r.outcome in ("failed", "error")]
    if bad:
        raise ChecksFailed(f"{len(bad)} of {len(results)} checks did not pass; first: "
                           f"{bad[0].name} - {bad[0].message}")
    if not results:
        raise ChecksFailed(f"no checks ran for {', '.join(chosen)}"
                           + (f" matching {keyword!r}" if keyword else "") + ".")
    return results
