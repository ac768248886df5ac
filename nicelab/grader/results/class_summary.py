"""What a graded class did, from its results file: the figures behind the class report.

:func:`summarize` reads a results document (``nicelab grade SUBS --json``, merged shards
included) and gives a :class:`ClassSummary`:

* ``totals`` / ``stage_points``: each submission's points, in total and per stage (the
  distributions the report draws);
* ``checks``: per check (stage and name, parametrizations together), how many submissions
  failed it, and of those how many had not started (a stub's NotImplementedError) or were cut
  short (a crash, a time or memory limit);
* ``mistakes``: the likely mistakes the checks named (the ``Likely mistake:`` part of a
  failure's message), grouped across the class by stage and wording (numbers in the wording
  set aside, so "sizes 2 and 3" and "sizes 3 and 4" are one mistake), each with the checks
  that named it and the submissions that made it, a submission counted once however many of
  its checks named it;
* ``apart``: the rows to read by hand: not graded to the end (crashed, timed out, out of
  memory, error) or flagged (a copy of the reference, a pair in the similarity report), each
  with its reasons.

:func:`format_summary` is the short text the command prints.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from nicelab.core.course import STAGE_NAMES
from nicelab.grader.results.integrity import clean_value
from nicelab.grader.results.report import split_message

#: Check kinds that mean the submission never got to the check (not a mistake in it).
NOT_STARTED_KINDS = {"not_implemented", "missing"}
CUT_SHORT_KINDS = {"crashed", "timeout", "memory_limit", "not_run"}
#: Row statuses that mean grading did not finish normally.
ABNORMAL = {
    "timeout": "timed out",
    "memory": "out of memory",
    "crashed": "crashed",
    "error": "not graded (error)",
}
#: A flag every row of a --no-sandbox batch carries: said once for the class, not per row.
_NO_SANDBOX = "graded WITHOUT the sandbox"
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


@dataclass
class CheckCount:
    """One check across the class: graded in ``graded`` submissions, failed in ``failed``,
    of which ``not_started`` were stubs and ``cut_short`` were stopped by a crash or a limit."""

    stage: str
    name: str
    hidden: bool
    graded: int = 0
    failed: int = 0
    not_started: int = 0
    cut_short: int = 0


@dataclass
class Mistake:
    """A likely mistake named by the checks: its stage, its wording (the first seen), the
    checks that named it and the submissions that made it."""

    stage: str
    text: str
    checks: set[str] = field(default_factory=set)
    students: set[str] = field(default_factory=set)


@dataclass
class Apart:
    """A row to read by hand: its name, status and reasons."""

    name: str
    status: str
    reasons: list[str]


@dataclass
class ClassSummary:
    """See the module docstring. ``stages``: the stages graded (teaching order);
    ``max_points``: the most points a submission could earn (per stage in ``stage_max``)."""

    stages: list[str]
    totals: dict[str, float]
    max_points: float
    stage_points: dict[str, dict[str, float]]
    stage_max: dict[str, float]
    stage_passed: dict[str, int]
    checks: list[CheckCount]
    mistakes: list[Mistake]
    apart: list[Apart]
    warnings: list[str]

    @property
    def size(self) -> int:
        return len(self.totals)


def check_name(nodeid: str) -> str:
    """A check's name without its parametrization: ``test_x[3-1]`` -> ``test_x``."""
    return nodeid.rsplit("::", 1)[-1].split("[", 1)[0]


def mistake_key(text: str) -> str:
    """The wording of a mistake with its numbers set aside (one mistake, whatever the sizes)."""
    return _NUMBER.sub("#", " ".join(text.split())).rstrip(".").lower()


def _apart(row: dict) -> Apart | None:
    reasons = []
    if row["status"] in ABNORMAL:
        reasons.append(row["message"] or ABNORMAL[row["status"]])
    reasons += [flag for flag in row.get("flags", []) if _NO_SANDBOX not in flag]
    if not reasons:
        return None
    return Apart(row["name"], ABNORMAL.get(row["status"], "flagged"), reasons)


def _count_checks(rows: list[dict]) -> list[CheckCount]:
    counts: dict[tuple[str, str], CheckCount] = {}
    for row in rows:
        failed_here: dict[tuple[str, str], set[str]] = {}
        for stage in row["stages"]:
            for check in stage["checks"]:
                key = (stage["stage"], check_name(check["nodeid"]))
                count = counts.setdefault(key, CheckCount(*key, hidden=bool(check.get("hidden"))))
                if key not in failed_here:
                    failed_here[key] = set()
                    count.graded += 1
                if not check["passed"] and check["outcome"] != "skipped":
                    failed_here[key].add(check.get("kind", "failed"))
        for key, kinds in failed_here.items():  # a parametrized check fails once per submission
            if kinds:
                count = counts[key]
                count.failed += 1
                count.not_started += kinds <= NOT_STARTED_KINDS
                count.cut_short += bool(kinds & CUT_SHORT_KINDS)
    order = {s: i for i, s in enumerate(STAGE_NAMES)}
    return sorted(counts.values(), key=lambda c: (order.get(c.stage, 99), -c.failed, c.name))


def _group_mistakes(rows: list[dict]) -> list[Mistake]:
    groups: dict[tuple[str, str], Mistake] = {}
    for row in rows:
        for stage in row["stages"]:
            for check in stage["checks"]:
                if check["passed"]:
                    continue
                _, likely = split_message(check.get("message", ""))
                text = likely.removeprefix("Likely mistake:").strip()
                if not text:
                    continue
                mistake = groups.setdefault(
                    (stage["stage"], mistake_key(text)), Mistake(stage["stage"], text)
                )
                mistake.checks.add(check_name(check["nodeid"]))
                mistake.students.add(row["name"])
    order = {s: i for i, s in enumerate(STAGE_NAMES)}
    return sorted(groups.values(), key=lambda m: (-len(m.students), order.get(m.stage, 99), m.text))


def summarize(document: dict) -> ClassSummary:
    """The :class:`ClassSummary` of a results document (every text in it cleaned)."""
    rows = clean_value(document.get("submissions", []))
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "name" in r for r in rows):
        raise ValueError(
            "the results file holds no list of submission rows (is it a nicelab grade results file?)."
        )
    seen = {st["stage"] for row in rows for st in row.get("stages", [])}
    stages = [s for s in STAGE_NAMES if s in seen]
    points = document.get("points", {}).get("stages", {})
    stage_max = {s: float(points.get(s, 0.0)) for s in stages}
    stage_points: dict[str, dict[str, float]] = {s: {} for s in stages}
    stage_passed = dict.fromkeys(stages, 0)
    for row in rows:
        for st in row.get("stages", []):
            stage_points[st["stage"]][row["name"]] = float(st["points"])
            stage_passed[st["stage"]] += st["status"] == "passed"
            stage_max[st["stage"]] = float(st["max_points"])
    apart = [a for a in map(_apart, rows) if a is not None]
    warnings = [w for w in document.get("warnings", []) if isinstance(w, str)]
    return ClassSummary(
        stages,
        {r["name"]: float(r["points"]) for r in rows},
        sum(stage_max.values()),
        stage_points,
        stage_max,
        stage_passed,
        _count_checks(rows),
        _group_mistakes(rows),
        apart,
        warnings,
    )


def _stats(values: Iterable[float]) -> str:
    values = list(values)
    if not values:
        return "no submissions"
    return (
        f"mean {statistics.fmean(values):.1f}, median {statistics.median(values):.1f}, "
        f"min {min(values):.1f}, max {max(values):.1f}"
    )


def _names(names: Iterable[str], at_most: int = 8) -> str:
    names = sorted(names)
    shown = ", ".join(n[:40] for n in names[:at_most])
    return shown + (f" and {len(names) - at_most} more" if len(names) > at_most else "")


def students(count: int) -> str:
    return f"{count} student" + ("" if count == 1 else "s")


def format_summary(summary: ClassSummary, pairs: list | None = None, at_most: int = 10) -> str:
    """The short text summary: points, stages, the most common mistakes, similar pairs, rows apart."""
    lines = [
        f"{summary.size} submissions, graded on "
        + ", ".join(f"{STAGE_NAMES.index(s) + 1} {s}" for s in summary.stages)
        + f"; {summary.max_points:g} points",
        f"points: {_stats(summary.totals.values())}",
    ]
    for stage in summary.stages:
        lines.append(
            f"  stage {STAGE_NAMES.index(stage) + 1} {stage} ({summary.stage_max[stage]:g} points): "
            f"{_stats(summary.stage_points[stage].values())}; passed by {summary.stage_passed[stage]}"
        )
    if summary.mistakes:
        lines.append("likely mistakes the checks named:")
        for mistake in summary.mistakes[:at_most]:
            lines.append(
                f"  {students(len(mistake.students))}, stage {STAGE_NAMES.index(mistake.stage) + 1}: "
                f"{mistake.text} ({_names(mistake.students)})"
            )
        if len(summary.mistakes) > at_most:
            lines.append(f"  ... and {len(summary.mistakes) - at_most} more in the report")
    if pairs is not None:
        lines.append(f"similar pairs: {len(pairs)}")
        for pair in pairs[:at_most]:
            stages = ", ".join(f"{m.stage} {m.score:.0%}" for m in pair.matches.values())
            lines.append(f"  {pair.a} ~ {pair.b}: {stages}")
    counts = {}
    for row in summary.apart:
        counts[row.status] = counts.get(row.status, 0) + 1
    if summary.apart:
        lines.append(
            "to read by hand: "
            + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            + f" ({_names(a.name for a in summary.apart)})"
        )
    lines += [f"WARNING: {w}" for w in summary.warnings]
    return "\n".join(lines)
