"""From check results to a graded submission: stage statuses, points, hints, the progress
table, and the JSON / CSV files (``nicelab/grader/grade_schema.json`` describes the JSON).

A stage's status, in the order they are decided:

* ``no checks`` - the stage has no checks (yet); it does not count against the exit code.
* ``passed`` - every check passed.
* ``timed out`` / ``crashed`` / ``out of memory`` - (batch mode) the grading process was
  stopped, or died, while running one of this stage's checks; ``not graded`` - the time limit
  ran out before the stage was reached.
* ``missing`` - the submission has no module for the stage.
* ``imports solutions`` - the stage's module imports the reference solutions (it fails).
* ``blocked`` (shown as "blocked by stage N") - the stage cannot be judged on its own because
  of another of the student's own stage modules: either the module cannot be loaded because
  that other module fails (``from .likelihood import ...`` of a module that raises), or the
  module imports a helper from the student's own earlier module that the reference lacks (so
  it is graded on the student's earlier stages) and that earlier stage is not passing.
* ``not started`` - no check passed and every failure is a stub's NotImplementedError.
* ``failing`` - anything else.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import textwrap
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nicelab.core.atomic import write_atomic  # noqa: F401 - report.write_atomic
from nicelab.core.course import OPTIONAL_STAGES, STAGE_NAMES, STAGES
from nicelab.core.course import VERSION as __version__
from nicelab.core.stubs import docs_page
from nicelab.core.table import table_lines
from nicelab.grader.results.integrity import clean_text, clean_value, csv_cell
from nicelab.grader.runner import CheckResult

SCHEMA_ID = "nicelab-grade/1"
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "grade_schema.json"
DEFAULT_POINTS = Path(__file__).resolve().parents[1] / "points.toml"
TITLES = dict(STAGES)

#: Statuses a stage can have (see the module docstring).
STATUSES = ("passed", "failing", "not started", "blocked", "missing", "imports solutions", "no checks",
            "timed out", "crashed", "out of memory", "not graded")
#: Kinds of check results that come from a stopped grading process, and the stage status each gives.
PROCESS_KINDS = {"timeout": "timed out", "crashed": "crashed", "memory_limit": "out of memory",
                 "not_run": "not graded"}
#: Kinds that mean the stage's module could not be loaded, and the stage status each gives.
LOAD_KINDS = {"missing": "missing", "solutions": "imports solutions"}


@dataclass
class Points:
    """Points per stage (``points.toml``); ``partial_credit``: split over the checks;
    ``count_optional``: whether the optional stages (the advanced track) are graded, and so
    count in a submission's total, when no stage is asked for."""

    stages: dict[str, float]
    partial_credit: bool = True
    source: str = str(DEFAULT_POINTS)
    count_optional: bool = False

    def of(self, stage: str | None) -> float:
        return float(self.stages.get(stage, 0.0)) if stage else 0.0

    def default_stages(self) -> tuple[str, ...]:
        """The stages graded when none is asked for: the core stages, and the optional ones
        when ``count_optional`` is true (teaching order)."""
        return tuple(s for s in STAGE_NAMES if self.count_optional or s not in OPTIONAL_STAGES)


def load_points(path: str | os.PathLike | None = None) -> Points:
    """Read a points file: ``partial_credit = true``, ``count_optional = false`` and a
    ``[stages]`` table, stage = points."""
    source = Path(path) if path else DEFAULT_POINTS
    try:
        data = tomllib.loads(source.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no points file at {source}.") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"the points file {source} is not valid TOML: {err}.") from err
    stages = data.get("stages")
    if not isinstance(stages, dict):
        raise ValueError(f"the points file {source} needs a [stages] table (stage = points).")
    unknown = [name for name in stages if name not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"the points file {source} names an unknown stage {unknown[0]!r}; "
                         f"stages: {', '.join(STAGE_NAMES)}.")
    for name, value in stages.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"the points of {name!r} in {source} must be a number >= 0; saw {value!r}.")
    settings = {}
    for setting, default in (("partial_credit", True), ("count_optional", False)):
        settings[setting] = data.get(setting, default)
        if not isinstance(settings[setting], bool):
            raise ValueError(f"{setting} in {source} must be true or false; saw {settings[setting]!r}.")
    return Points({k: float(v) for k, v in stages.items()}, settings["partial_credit"], str(source),
                  settings["count_optional"])


@dataclass
class StageReport:
    """One stage of one submission: its status, counts, points and first failure."""

    stage: str
    status: str
    passed: int
    total: int
    points: float
    max_points: float
    duration: float
    blocked_by: str | None = None
    check: str | None = None  # the first failing check's name
    message: str = ""  # its message
    hint: str = ""
    checks: list[dict] = field(default_factory=list)

    @property
    def number(self) -> int:
        return STAGE_NAMES.index(self.stage) + 1

    @property
    def status_text(self) -> str:
        if self.status == "blocked" and self.blocked_by in STAGE_NAMES:
            return f"blocked by stage {STAGE_NAMES.index(self.blocked_by) + 1}"
        return self.status

    def to_dict(self) -> dict:
        return {"stage": self.stage, "number": self.number, "title": TITLES[self.stage],
                "status": self.status, "status_text": self.status_text, "blocked_by": self.blocked_by,
                "passed": self.passed, "total": self.total, "points": round(self.points, 4),
                "max_points": self.max_points, "duration": round(self.duration, 4),
                "check": self.check, "message": self.message, "hint": self.hint, "checks": self.checks}


def split_message(message: str) -> tuple[str, str]:
    """``("Expected X; saw Y.", "Likely mistake: Z")`` from a check's message."""
    head, marker, tail = message.partition("Likely mistake:")
    return (head.strip(), f"Likely mistake: {tail.strip()}") if marker else (message.strip(), "")


def hint_for(result: CheckResult, stage: str) -> str:
    """A one-line hint for a failing check: its "Likely mistake" or what to do next."""
    page = docs_page(stage)
    run = f"`pytest checks -m {stage} -k {result.name.split('[')[0]}`"
    _, likely = split_message(result.message)
    if likely:
        return f"{likely} (see {page})"
    blocker = result.blocked_by
    hints = {
        "not_implemented": f"fill in that stub, then run `pytest checks -m {stage}`; see {page}.",
        "missing": f"add {stage}.py to the folder (`nicelab stubs` writes a fresh stub).",
        "solutions": "remove the import of `solutions`: grading uses your own code.",
        "import": f"fix the error raised when {stage}.py is imported; {run} shows the traceback.",
        "exit": "remove the call to sys.exit (or exit / quit): a lesson module must return, not exit.",
        "blocked": (f"fix stage {STAGE_NAMES.index(blocker) + 1} ({blocker}.py) first."
                    if blocker in STAGE_NAMES else "fix the module it imports first."),
        "error": f"your code raised an exception; {run} shows the traceback.",
        "memory": "look for a loop that keeps allocating, or an array far larger than the batch.",
        "timeout": "look for an endless loop (a while loop whose condition never changes).",
        "memory_limit": "look for a loop that keeps allocating, or an array far larger than the batch.",
        "crashed": "the process died inside your code (os._exit, a signal, a native crash).",
        "not_run": "the time limit ran out before this stage; make the earlier stages faster.",
        "collection": "a problem in the checks themselves: tell your instructor.",
    }
    return hints.get(result.kind, f"{run} shows the details; see {page}.")


def summarize_stage(stage: str, results: list[CheckResult], points: Points,
                    statuses: dict[str, str]) -> StageReport:
    """The report of one stage from its check results. ``statuses``: already decided stages'
    statuses (a stage graded on the student's own earlier stages is blocked by a failing one)."""
    total = len(results)
    passed = sum(r.passed for r in results)
    max_points = points.of(stage)
    share = max_points / total if total else 0.0
    failing = [r for r in results if not r.passed and r.outcome != "skipped"]
    stage_ok = total > 0 and not failing
    earned = passed * share if points.partial_credit else (max_points if stage_ok else 0.0)
    checks = []
    for r in results:
        got = share if r.passed and (points.partial_credit or stage_ok) else 0.0
        checks.append({**r.to_dict(), "name": r.name, "passed": r.passed, "points": round(got, 4),
                       "max_points": round(share, 4), "duration": round(r.duration, 4)})
    report = StageReport(stage, "passed", passed, total, earned, max_points,
                         sum(r.duration for r in results), checks=checks)
    if total == 0:
        report.status = "no checks"
        report.hint = f"stage {report.number} has no checks yet."
        return report
    if not failing:
        return report
    first = next((r for r in failing if r.kind in PROCESS_KINDS), failing[0])
    report.check, report.message, report.hint = first.name, first.message, hint_for(first, stage)
    kinds = {r.kind for r in failing}
    own_failing = [s for s in (first.own_earlier or []) if statuses.get(s, "passed") != "passed"]
    if first.kind in PROCESS_KINDS:
        report.status = PROCESS_KINDS[first.kind]
    elif first.kind in LOAD_KINDS:
        report.status = LOAD_KINDS[first.kind]
    elif first.kind == "blocked":
        report.status, report.blocked_by = "blocked", first.blocked_by
    elif own_failing:
        blocker = own_failing[0]
        report.status, report.blocked_by = "blocked", blocker
        report.hint = (f"{stage}.py imports from your own {blocker}.py something the reference lacks, so it "
                       f"is graded on your stage {STAGE_NAMES.index(blocker) + 1}, which is not passing: "
                       "fix that stage first.")
    elif passed == 0 and kinds == {"not_implemented"}:
        report.status = "not started"
    else:
        report.status = "failing"
    return report


def summarize(results: list[CheckResult], stages: tuple[str, ...], points: Points) -> list[StageReport]:
    """One :class:`StageReport` per stage in ``stages`` (teaching order)."""
    by_stage: dict[str, list[CheckResult]] = {s: [] for s in stages}
    for result in results:
        if result.stage in by_stage:
            by_stage[result.stage].append(result)
    statuses: dict[str, str] = {}
    reports = []
    for stage in STAGE_NAMES:
        if stage in by_stage:
            report = summarize_stage(stage, by_stage[stage], points, statuses)
            statuses[stage] = report.status
            reports.append(report)
    return reports


def submission_row(name: str, path: str, results: list[CheckResult], stages: tuple[str, ...],
                   points: Points, **extra) -> dict:
    """The JSON row of one graded submission (``extra``: status, message, limits' details...).
    Every text in it is cleaned (:func:`~nicelab.grader.results.integrity.clean_text`): names, paths,
    messages, flags and output excerpts can always be printed and written."""
    for result in results:  # nothing a submission prints reaches a terminal or a file raw
        result.message = clean_text(result.message)
    reports = summarize(results, stages, points)
    unstaged = [r.nodeid for r in results if r.stage is None]
    row = {
        "name": name, "path": path, "status": "graded", "message": "",
        "passed": all(r.status in ("passed", "no checks") for r in reports),
        "points": round(sum(r.points for r in reports), 4),
        "max_points": sum(r.max_points for r in reports),
        "checks_passed": sum(r.passed for r in reports), "checks_total": sum(r.total for r in reports),
        "graded_at": now(), "wall_time": 0.0, "stages_requested": list(stages),
        "stages": [r.to_dict() for r in reports], "unstaged_checks": unstaged,
    }
    row.update(extra)
    row["message"] = clean_text(row["message"])
    if not row["message"]:
        first = next((r for r in reports if r.status not in ("passed", "no checks")), None)
        if first is not None:
            row["message"] = f"stage {first.number} ({first.stage}) {first.status_text}: {first.message}"
    return clean_value(row)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_document(points: Points, options: dict) -> dict:
    return {"schema": SCHEMA_ID, "nicelab_version": __version__, "created": now(), "updated": now(),
            "points": {"file": points.source, "partial_credit": points.partial_credit,
                       "count_optional": points.count_optional, "stages": points.stages},
            "options": options, "submissions": []}


# ----------------------------------------------------------------------------- output files

def to_json(document: dict) -> str:
    return json.dumps(document, indent=1, sort_keys=False) + "\n"


CSV_COLUMNS = ("submission", "submission_status", "row", "stage", "stage_status", "check", "hidden",
               "outcome", "passed", "points", "max_points", "duration", "message")


def to_csv(document: dict) -> str:
    """One row per submission, per stage and per check (the ``row`` column says which). A cell
    that starts like a spreadsheet formula (``= + - @``) gets a leading apostrophe."""
    buffer = io.StringIO()

    class _Writer:
        def __init__(self, out):
            self.out = csv.writer(out)

        def writerow(self, cells):
            self.out.writerow([csv_cell(clean_text(c) if isinstance(c, str) else c) for c in cells])

    writer = _Writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for sub in document["submissions"]:
        name, status = sub["name"], sub["status"]
        writer.writerow([name, status, "submission", "", "", "", "", status, sub["passed"], sub["points"],
                         sub["max_points"], sub["wall_time"], sub["message"]])
        for st in sub["stages"]:
            writer.writerow([name, status, "stage", st["stage"], st["status_text"], st["check"] or "", "",
                             st["status"], st["status"] == "passed", st["points"], st["max_points"],
                             st["duration"], st["message"]])
            for check in st["checks"]:
                writer.writerow([name, status, "check", st["stage"], st["status_text"], check["nodeid"],
                                 check["hidden"], check["outcome"], check["passed"], check["points"],
                                 check["max_points"], check["duration"], check["message"]])
    return buffer.getvalue()


# ----------------------------------------------------------------------------- the tables

def _wrap(text: str, indent: str, width: int) -> list[str]:
    return textwrap.wrap(text, width=max(40, width), initial_indent=indent, subsequent_indent=indent + "  ",
                         break_long_words=True, break_on_hyphens=False) or [indent]


def format_table(row: dict, width: int | None = None) -> str:
    """The student's progress table of one submission, plain text with aligned columns; under
    each stage that does not pass, its first failing check's message and hint."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    align, widths = "<><>", (16, 7, 20, 13)
    row = clean_value(row)  # a row read from a file may hold anything
    cells = [[f"{st['number']} {st['stage']}", f"{st['passed']}/{st['total']}", st["status_text"],
              f"{st['points']:.1f} / {st['max_points']:g}"] for st in row["stages"]]
    total = ["total", f"{row['checks_passed']}/{row['checks_total']}", "",
             f"{row['points']:.1f} / {row['max_points']:g}"]
    header = ["stage", "checks", "status", "points"]
    table = table_lines([*cells, total], align, header, widths)
    lines = table[:1]
    for st, line in zip(row["stages"], table[1:-1], strict=True):
        lines.append(line)
        if st["status"] not in ("passed", "no checks"):
            message, _ = split_message(st["message"])
            lines += _wrap(f"{st['check']}: {message}" if st["check"] else message, "    ", width)
            lines += _wrap(f"hint: {st['hint']}", "    ", width)
    return "\n".join([*lines, table[-1]])


def format_class_table(document: dict) -> str:
    """One line per submission: its status, each stage's checks passed, the points, a note."""
    subs = clean_value(document["submissions"])  # rows read from a file may hold anything
    stages = [s for s in STAGE_NAMES if any(s == st["stage"] for sub in subs for st in sub["stages"])]
    rows = []
    for sub in subs:
        by_stage = {st["stage"]: st for st in sub["stages"]}
        counts = ["-" if stage not in by_stage else f"{by_stage[stage]['passed']}/{by_stage[stage]['total']}"
                  for stage in stages]
        note = sub["message"][:120] + ("..." if len(sub["message"]) > 120 else "")
        rows.append([sub["name"], sub["status"], *counts, f"{sub['points']:.1f} / {sub['max_points']:g}",
                     note])
    header = ["submission", "status", *(s[:10] for s in stages), "points", "note"]
    align = "<<" + ">" * len(stages) + "><"
    widths = [10, 9, *([10] * len(stages)), 13, 0]
    return "\n".join(table_lines(rows, align, header, widths))
