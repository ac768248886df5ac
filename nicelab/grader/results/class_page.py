"""The class report as one static HTML page that opens from disk, offline.

Everything is in the file: the styles inline, the figures as PNG ``data:`` URIs (matplotlib,
no pyplot), no script. A Content-Security-Policy in the page (``default-src 'none'``, images
from ``data:`` only) keeps the browser from fetching anything, even from a text a submission
put in a message; every text from the results is HTML-escaped.

Sections, in order: the points (figures: the distribution of the total and of each stage),
the likely mistakes the checks named (grouped, counted, with the submissions that made each),
what to read by hand (rows not graded to the end, flagged rows, with their reasons), the
similar pairs (a side-by-side view of each pair's matching parts, the first one open), the
checks (how many submissions failed each), what moved since the file before a regrade, and
every submission.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from nicelab.core.course import STAGE_NAMES
from nicelab.grader.results.changes import Moved
from nicelab.grader.results.class_summary import ClassSummary, students
from nicelab.grader.results.integrity import clean_text, clean_value
from nicelab.grader.results.similarity import Pair

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
#: Lines of context kept around a matching part in the side-by-side view.
CONTEXT_LINES = 3
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em;
  color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { padding: .2em .6em; border-bottom: 1px solid #eee; text-align: left;
  vertical-align: top; } th { background: #f4f4f4; } td.n, th.n { text-align: right; }
.bar { display: inline-block; height: .8em; background: #c0392b; } .muted { color: #777; }
.warn { background: #fff3cd; padding: .5em 1em; border-left: 4px solid #e0a800; }
.cards { display: flex; gap: 1em; flex-wrap: wrap; } .card { border: 1px solid #ddd; border-radius: 6px;
  padding: .5em 1em; } .card b { font-size: 1.4em; display: block; }
.side { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1em; }
pre { background: #fafafa; border: 1px solid #ddd; padding: .5em; overflow-x: auto; font-size: 12px; }
mark { background: #ffd6d6; } details { margin: .3em 0; } summary { cursor: pointer; }
.up { color: #1e7e34; } .down { color: #c0392b; } img { max-width: 100%; }
"""


def _e(value: object) -> str:
    """Text from the results, cleaned and HTML-escaped."""
    return html.escape(clean_text(str(value)), quote=True)


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _histogram(ax, values: list[float], top: float, title: str) -> None:
    bins = np.linspace(0.0, top, 11) if top > 0 else 10
    ax.hist(values, bins=bins, color="#4a7ab5", edgecolor="white")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("points")
    ax.set_ylabel("submissions")
    if top > 0:
        ax.set_xlim(0, top)
    ax.yaxis.get_major_locator().set_params(integer=True)


def figure(summary: ClassSummary) -> str:
    """The points' distributions: the total, then one panel per stage (a PNG data URI)."""
    from matplotlib.figure import Figure  # no pyplot: no backend, no global state

    panels = 1 + len(summary.stages)
    fig = Figure(figsize=(3.2 * panels, 2.8))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    _histogram(axes[0], list(summary.totals.values()), summary.max_points, "total")
    for ax, stage in zip(axes[1:], summary.stages, strict=True):
        _histogram(
            ax,
            list(summary.stage_points[stage].values()),
            summary.stage_max[stage],
            f"stage {STAGE_NAMES.index(stage) + 1}: {stage}",
        )
    fig.tight_layout()
    return _png(fig)


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(
        f'<th class="n">{h}</th>' if i in numeric else f"<th>{h}</th>" for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _stage(stage: str) -> str:
    return f"{STAGE_NAMES.index(stage) + 1} {stage}" if stage in STAGE_NAMES else _e(stage)


def _names(names) -> str:
    return ", ".join(_e(n) for n in sorted(names))


def _apart(summary: ClassSummary) -> str:
    if not summary.apart:
        return "<p>Every submission was graded to the end, and none is flagged.</p>"
    rows = [[_e(a.name), _e(a.status), "<br>".join(_e(r) for r in a.reasons)] for a in summary.apart]
    return _table(["submission", "status", "reasons"], rows)


def _mistakes(summary: ClassSummary) -> str:
    if not summary.mistakes:
        return "<p>No check named a likely mistake.</p>"
    rows = [
        [str(len(m.students)), _stage(m.stage), _e(m.text), _names(m.checks), _names(m.students)]
        for m in summary.mistakes
    ]
    return _table(["students", "stage", "likely mistake", "named by", "submissions"], rows, {0})


def _checks(summary: ClassSummary) -> str:
    rows = []
    for c in summary.checks:
        share = c.failed / c.graded if c.graded else 0.0
        bar = f'<span class="bar" style="width:{round(120 * share)}px"></span>'
        rows.append(
            [
                _stage(c.stage),
                _e(c.name) + (" <span class='muted'>(hidden)</span>" if c.hidden else ""),
                f"{c.failed} / {c.graded}",
                str(c.not_started),
                str(c.cut_short),
                bar,
            ]
        )
    return _table(
        ["stage", "check", "failed", "of them not started", "of them cut short", ""], rows, {2, 3, 4}
    )


def _highlighted(source: str, spans: list[tuple[int, int]]) -> str:
    """``source`` HTML-escaped with its ``spans`` marked, far-off lines left out."""
    from copydetect.utils import highlight_overlap

    if not spans:
        return _e(source)
    slices = np.array([[s for s, _ in spans], [e for _, e in spans]], dtype=np.int64)
    marked, _ = highlight_overlap(
        clean_text(source), slices, "<mark>", "</mark>", truncate=CONTEXT_LINES, escape_html=True
    )
    return marked


def _pairs(pairs: list[Pair] | None, sources: dict[str, dict[str, str]], threshold: float, note: str) -> str:
    if pairs is None:
        return f"<p class='muted'>{_e(note)}</p>"
    intro = (
        f"<p>Pairs where, in some stage, at least {threshold:.0%} of what one student adds to the stub "
        "is found in what the other adds (names, comments and layout set aside). "
        "Marked: the matching parts.</p>"
    )
    if not pairs:
        return intro + "<p>No pair reaches the threshold.</p>"
    blocks = []
    for number, pair in enumerate(pairs):
        stages = ", ".join(
            f"{_stage(m.stage)} {m.similarity[0]:.0%} / {m.similarity[1]:.0%}" for m in pair.matches.values()
        )
        views = []
        for m in pair.matches.values():
            left = _highlighted(sources.get(pair.a, {}).get(m.stage, ""), m.spans[0])
            right = _highlighted(sources.get(pair.b, {}).get(m.stage, ""), m.spans[1])
            views.append(
                f"<h4>{_stage(m.stage)}.py</h4><div class='side'><div><b>{_e(pair.a)}</b>"
                f"<pre>{left}</pre></div><div><b>{_e(pair.b)}</b><pre>{right}</pre></div></div>"
            )
        blocks.append(
            f"<details class='pair'{' open' if number == 0 else ''}><summary>"
            f"<b>{_e(pair.a)}</b> ~ <b>{_e(pair.b)}</b>: {stages}"
            f"</summary>{''.join(views)}</details>"
        )
    return intro + "".join(blocks)


def _moved(moved: list[Moved] | None, before: str) -> str:
    if moved is None:
        return ""
    if not moved:
        return f"<h2 id='moved'>What moved</h2><p>Compared with {_e(before)}: nothing moved.</p>"
    rows = []
    for m in moved:
        if m.before is None or m.after is None:
            rows.append(
                [
                    _e(m.name),
                    "-" if m.before is None else f"{m.before:.1f}",
                    "-" if m.after is None else f"{m.after:.1f}",
                    "",
                    "added" if m.before is None else "removed",
                ]
            )
            continue
        sign = "up" if m.delta > 0 else "down" if m.delta < 0 else ""
        what = [f"{_stage(s)}: {_e(b)} &rarr; {_e(a)}" for s, (b, a) in m.stages.items()]
        what += [f"now fails {_names(m.now_fails)}"] if m.now_fails else []
        what += [f"now passes {_names(m.now_passes)}"] if m.now_passes else []
        what += [f"new checks: {_names(m.new)}"] if m.new else []
        rows.append(
            [
                _e(m.name),
                f"{m.before:.1f}",
                f"{m.after:.1f}",
                f"<span class='{sign}'>{m.delta:+.1f}</span>",
                "<br>".join(what),
            ]
        )
    return (
        f"<h2 id='moved'>What moved</h2><p>Compared with {_e(before)}: {students(len(moved))} moved.</p>"
        + _table(["submission", "before", "after", "change", "what changed"], rows, {1, 2, 3})
    )


def _everyone(document: dict, summary: ClassSummary) -> str:
    rows = []
    for row in clean_value(document.get("submissions", [])):
        by_stage = {st["stage"]: st for st in row.get("stages", [])}
        cells = [
            f"{by_stage[s]['points']:.1f} <span class='muted'>{_e(by_stage[s]['status_text'])}</span>"
            if s in by_stage
            else "-"
            for s in summary.stages
        ]
        flags = len([f for f in row.get("flags", []) if "WITHOUT the sandbox" not in f])
        rows.append([_e(row["name"]), _e(row["status"]), *cells, f"{row['points']:.1f}", str(flags or "")])
    header = ["submission", "status", *(_stage(s) for s in summary.stages), "points", "flags"]
    return _table(header, rows, {len(header) - 2, len(header) - 1})


def render(
    document: dict,
    summary: ClassSummary,
    pairs: list[Pair] | None = None,
    sources: dict[str, dict[str, str]] | None = None,
    threshold: float = 0.0,
    similarity_note: str = "",
    moved: list[Moved] | None = None,
    before: str = "",
    source: str = "",
) -> str:
    """The page (HTML text). ``pairs``: the similarity report (None: not computed, with
    ``similarity_note`` saying why); ``sources``: ``{submission: {stage: source}}`` for the
    side-by-side views; ``moved``: the changes since ``before`` (None: no comparison)."""
    totals = list(summary.totals.values())
    mean = f"{np.mean(totals):.1f}" if totals else "-"
    median = f"{np.median(totals):.1f}" if totals else "-"
    cards = "".join(
        f"<div class='card'><b>{v}</b>{k}</div>"
        for k, v in (
            ("submissions", summary.size),
            ("points possible", f"{summary.max_points:g}"),
            ("mean", mean),
            ("median", median),
            ("to read by hand", len(summary.apart)),
            ("similar pairs", "-" if pairs is None else len(pairs)),
        )
    )
    warnings = "".join(f"<p class='warn'>{_e(w)}</p>" for w in summary.warnings)
    created = _e(document.get("created", "")), _e(document.get("updated", ""))
    image = figure(summary) if totals else ""
    version = _e(document.get("nicelab_version", "?"))
    body = f"""
<h1>Class report</h1>
<p class="muted">{_e(source)}: graded {created[0]} to {created[1]}, nicelab {version};
stages {", ".join(_stage(s) for s in summary.stages)}.</p>
{warnings}
<div class="cards">{cards}</div>
<h2 id="points">Points</h2>
{f'<img alt="the distribution of the points, in total and per stage" src="{image}">' if image else ""}
<h2 id="mistakes">Likely mistakes</h2>
<p>The "Likely mistake" the checks named, grouped across the class; a student is counted once per mistake.</p>
{_mistakes(summary)}
<h2 id="apart">To read by hand</h2>
{_apart(summary)}
<h2 id="similarity">Similar submissions</h2>
{_pairs(pairs, sources or {}, threshold, similarity_note)}
<h2 id="checks">Checks</h2>
{_checks(summary)}
{_moved(moved, before)}
<h2 id="everyone">Every submission</h2>
{_everyone(document, summary)}
"""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Class report: {_e(Path(source).name or 'results')}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )
