"""``nicelab grade report results.json --html report.html``: the instructor's view of a graded class.

Reads a results file (one batch's, or merged shards'), and writes the page of
:mod:`nicelab.grader.results.class_page` and returns the text summary of
:mod:`nicelab.grader.results.class_summary`. The similarity report
(:mod:`nicelab.grader.results.similarity`) reads the submissions' modules: from each row's
folder (``path``), or from ``submissions_dir / name`` when the folder moved; where none can be
read it is left out and the page says why. ``before``: a results file of the same class from
before a regrade; the page then shows what moved (:mod:`nicelab.grader.results.changes`).

Nothing here writes into the results file or the submissions.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

from nicelab.core.atomic import write_atomic
from nicelab.grader.results import changes, class_page, class_summary, report, similarity


@dataclass
class ClassReport:
    """What :func:`build` made: the summary, the similar pairs (None when the submissions
    could not be read), what moved (None without ``before``), and the text summary."""

    summary: class_summary.ClassSummary
    pairs: list[similarity.Pair] | None
    moved: list[changes.Moved] | None
    text: str


def load(path: Path) -> dict:
    """A results document, or a clear error for a file that is not one."""
    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no results file at {path}.") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}).") from err
    if not isinstance(document, dict) or document.get("schema") != report.SCHEMA_ID:
        raise ValueError(f'{path} is not a nicelab grade results file (no "schema": "{report.SCHEMA_ID}").')
    return document


def submission_folders(document: dict, submissions_dir: Path | None = None) -> dict[str, Path]:
    """``{name: folder}`` of the rows whose folder exists: ``submissions_dir / name`` when given,
    else the row's own ``path``."""
    found = {}
    for row in document.get("submissions", []):
        folder = Path(submissions_dir) / row["name"] if submissions_dir else Path(row.get("path", ""))
        if row.get("path") or submissions_dir:
            if folder.is_dir():
                found[row["name"]] = folder
    return found


def class_pairs(
    document: dict, stages: list[str], submissions_dir: Path | None, threshold: float
) -> tuple[list[similarity.Pair] | None, dict[str, dict[str, str]], str]:
    """``(pairs, sources, note)``: the similarity report of the class (None, with a note, when
    fewer than two submissions can be read) and the modules it compared."""
    folders = submission_folders(document, submissions_dir)
    rows = len(document.get("submissions", []))
    if len(folders) < 2:
        where = submissions_dir or "the folders the results name"
        return (
            None,
            {},
            (
                f"Similarity not computed: {len(folders)} of the {rows} submissions' folders were found "
                f"in {where} (give them with --submissions-dir DIR)."
            ),
        )
    sources = similarity.read_modules(folders, stages)
    pairs = similarity.compare_class(sources, similarity.read_stubs(stages), threshold)
    note = "" if len(folders) == rows else f"{rows - len(folders)} submissions' folders were not found."
    return pairs, sources, note


def build(
    results: Path,
    html: Path | None = None,
    submissions_dir: Path | None = None,
    before: Path | None = None,
    threshold: float = similarity.THRESHOLD,
    with_similarity: bool = True,
) -> ClassReport:
    """The class report of ``results``: the page written to ``html`` (when given), and the
    text summary (see the module docstring)."""
    document = load(results)
    stages = class_summary.summarize(document).stages
    pairs, sources, note = (
        class_pairs(document, stages, submissions_dir, threshold)
        if with_similarity
        else (None, {}, "Similarity not computed (--no-similarity).")
    )
    if pairs:  # the pairs' rows are flagged on the page as at grading time (the file is not changed)
        document = copy.deepcopy(document)
        similarity.flag_rows(document["submissions"], pairs)
    summary = class_summary.summarize(document)
    moved = changes.compare(load(before), document) if before else None
    text = class_summary.format_summary(summary, pairs)
    if pairs is None:
        text += "\n" + note
    elif note:
        text += f"\n(similarity: {note})"
    if moved is not None:
        text += "\n" + changes.format_changes(moved)
    if html is not None:
        page = class_page.render(
            document, summary, pairs, sources, threshold, note, moved, str(before or ""), str(results)
        )
        write_atomic(Path(html), page)
    return ClassReport(summary, pairs, moved, text)
