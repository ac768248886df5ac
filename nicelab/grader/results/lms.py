"""Grades that an LMS imports: Canvas' gradebook CSV, Moodle's grade import CSV, and a generic CSV.

A **roster** (CSV, a header row, UTF-8) maps each submission's folder name to the student's
identifiers in the LMS:

* ``folder``: the submission's folder name (the row's ``name`` in the results): required;
* ``name``: the student's name, as the LMS shows it ("Lovelace, Ada");
* ``canvas_id``, ``sis_user_id``, ``sis_login_id``, ``section``: Canvas' ``ID``, ``SIS User
  ID``, ``SIS Login ID`` and ``Section`` (the columns of a Canvas gradebook export);
* ``email``, ``idnumber``, ``username``: Moodle's user fields.

Canvas needs one of ``canvas_id``, ``sis_user_id``, ``sis_login_id`` per student; Moodle one of
``email``, ``idnumber``, ``username``. A student of the roster without a row in the results
(*missing*) gets an empty cell (no grade: Canvas and Moodle leave the grade as it is); a row of
the results whose folder is not in the roster (*unknown*) cannot be placed and is left out of
the LMS files. Both lists are in the :class:`Matching` and the command prints them: nothing is
dropped silently.

* **Canvas** (*Grades > Import*): the columns of a Canvas gradebook export, ``Student``,
  ``ID``, ``SIS User ID``, ``SIS Login ID``, ``Section``, then one column for the assignment
  (its header: the assignment's name, or ``Name (assignment id)`` as in your export, to
  update an existing assignment), and a second row ``Points Possible``.
* **Moodle** (*Grades > Import > CSV file*): ``Email address``, ``ID number``, ``Username``,
  ``Full name`` and one grade column; in the import form map *Email address* (or another) to
  the user field of the same name and the grade column to the grade item.
* **Generic**: one row per student with every identifier, the status, the points, the most
  points, and the points of each stage.

Every text cell gets the spreadsheet formula guard of the results' CSV.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from nicelab.grader.results.integrity import clean_text, csv_cell

ROSTER_COLUMNS = (
    "folder",
    "name",
    "canvas_id",
    "sis_user_id",
    "sis_login_id",
    "section",
    "email",
    "idnumber",
    "username",
)
CANVAS_IDS = ("canvas_id", "sis_user_id", "sis_login_id")
MOODLE_IDS = ("email", "idnumber", "username")


@dataclass
class Student:
    """One line of the roster (every identifier a string, "" when not given)."""

    folder: str
    ids: dict[str, str] = field(default_factory=dict)

    def get(self, column: str) -> str:
        return self.ids.get(column, "")


@dataclass
class Matching:
    """The roster against the results: ``graded`` (student, row) pairs, in roster order;
    ``missing``: students with no row; ``unknown``: rows whose folder is not in the roster."""

    graded: list[tuple[Student, dict]]
    missing: list[Student]
    unknown: list[dict]
    max_points: float
    roster: list[Student] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What the command prints about the students it could not grade or place."""
        out = []
        if self.unknown:
            out.append(
                f"{len(self.unknown)} graded submissions are not in the roster (left out of the LMS files; "
                "add them to the roster): " + ", ".join(clean_text(r["name"]) for r in self.unknown)
            )
        if self.missing:
            out.append(
                f"{len(self.missing)} students of the roster have no graded submission (their grade "
                "cell is left empty): " + ", ".join(clean_text(s.folder) for s in self.missing)
            )
        return out


def read_roster(path: Path) -> list[Student]:
    """The roster at ``path`` (see the module docstring); a clear error for a malformed one."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"no roster file at {path}.") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "folder" not in header:
        raise ValueError(
            f"the roster {path} needs a header row with a `folder` column (the submission's "
            f"folder name) and the LMS identifiers ({', '.join(ROSTER_COLUMNS[1:])}); saw "
            f"{header or 'no header'}."
        )
    unknown = [h for h in header if h not in ROSTER_COLUMNS]
    if unknown:
        raise ValueError(
            f"the roster {path} has a column nicelab does not know: {unknown[0]!r} "
            f"(columns: {', '.join(ROSTER_COLUMNS)})."
        )
    students, seen = [], {}
    for number, raw in enumerate(reader, start=2):
        values = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(values.values()):
            continue  # a blank line
        folder = values.get("folder", "")
        if not folder:
            raise ValueError(f"line {number} of the roster {path} has no folder name.")
        if folder in seen:
            raise ValueError(
                f"the roster {path} names the folder {folder!r} twice (lines {seen[folder]} and {number})."
            )
        seen[folder] = number
        students.append(Student(folder, {k: v for k, v in values.items() if k != "folder" and v}))
    if not students:
        raise ValueError(f"the roster {path} lists no student.")
    return students


def match(document: dict, roster: list[Student]) -> Matching:
    """Place every row of the results ``document`` on the roster (by folder name)."""
    rows = {row["name"]: row for row in document.get("submissions", [])}
    listed = {s.folder for s in roster}
    graded = [(s, rows[s.folder]) for s in roster if s.folder in rows]
    missing = [s for s in roster if s.folder not in rows]
    unknown = [rows[name] for name in sorted(rows) if name not in listed]
    most = max((float(row["max_points"]) for row in rows.values()), default=0.0)
    if not most:
        most = float(sum(document.get("points", {}).get("stages", {}).values()))
    return Matching(graded, missing, unknown, most, list(roster))


def _need(matching: Matching, columns: tuple[str, ...], lms: str) -> None:
    lacking = [s.folder for s in matching.roster if not any(s.get(c) for c in columns)]
    if lacking:
        raise ValueError(
            f"{len(lacking)} students of the roster have none of {', '.join(columns)}, which {lms} "
            f"needs to find them: {', '.join(lacking[:10])}" + (" ..." if len(lacking) > 10 else "")
        )


def _points(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _write(rows: list[list[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([csv_cell(clean_text(c)) if isinstance(c, str) else c for c in row])
    return buffer.getvalue()


def _all(matching: Matching) -> list[tuple[Student, dict | None]]:
    """Every student of the roster, in roster order, with their row (None: missing)."""
    rows = {s.folder: row for s, row in matching.graded}
    return [(s, rows.get(s.folder)) for s in matching.roster]


def canvas_csv(matching: Matching, assignment: str) -> str:
    """Canvas' gradebook import (see the module docstring)."""
    _need(matching, CANVAS_IDS, "Canvas")
    rows: list[list[object]] = [
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", assignment],
        ["    Points Possible", "", "", "", "", _points(matching.max_points)],
    ]
    for student, row in _all(matching):
        rows.append(
            [
                student.get("name") or student.folder,
                student.get("canvas_id"),
                student.get("sis_user_id"),
                student.get("sis_login_id"),
                student.get("section"),
                "" if row is None else _points(row["points"]),
            ]
        )
    return _write(rows)


def moodle_csv(matching: Matching, item: str) -> str:
    """Moodle's CSV grade import (see the module docstring)."""
    _need(matching, MOODLE_IDS, "Moodle")
    rows: list[list[object]] = [["Email address", "ID number", "Username", "Full name", item]]
    for student, row in _all(matching):
        rows.append(
            [
                student.get("email"),
                student.get("idnumber"),
                student.get("username"),
                student.get("name") or student.folder,
                "" if row is None else _points(row["points"]),
            ]
        )
    return _write(rows)


def generic_csv(matching: Matching, stages: list[str]) -> str:
    """One row per student of the roster, then one per unknown submission (``status``:
    the row's, ``missing`` or ``not in roster``)."""
    rows: list[list[object]] = [[*ROSTER_COLUMNS, "status", "points", "max_points", *stages]]

    def stage_points(row: dict) -> list[str]:
        by_stage = {st["stage"]: st for st in row["stages"]}
        return [_points(by_stage[s]["points"]) if s in by_stage else "" for s in stages]

    for student, row in _all(matching):
        ids = [student.folder, *(student.get(c) for c in ROSTER_COLUMNS[1:])]
        if row is None:
            rows.append([*ids, "missing", "", _points(matching.max_points), *[""] * len(stages)])
        else:
            rows.append(
                [*ids, row["status"], _points(row["points"]), _points(row["max_points"]), *stage_points(row)]
            )
    for row in matching.unknown:
        rows.append(
            [
                row["name"],
                *[""] * (len(ROSTER_COLUMNS) - 1),
                "not in roster",
                _points(row["points"]),
                _points(row["max_points"]),
                *stage_points(row),
            ]
        )
    return _write(rows)
