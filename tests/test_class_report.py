"""The instructor's view of a graded class: the class report (text and page), similarity between
submissions, the grades an LMS imports, and regrading the stages whose checks changed.

Fast tests work on the planted class's files (tests/planted_class.py) and on results made here
from check results (no grading); the slow ones grade the planted class once (stages 1-2, in the
sandbox, as ``nicelab grade`` does), then report on it, open the page in the real browser of
tests/test_docs.py, and regrade two of its submissions after a hidden check was added.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from planted_class import COPIED, HONEST, MISTAKES, STAGES, make_class
from test_docs import _Assets, browser, is_external  # noqa: F401 - browser: the docs' Chromium fixture

from nicelab.grader.results import (
    changes,
    class_page,
    class_report,
    class_summary,
    integrity,
    lms,
    regrade,
    report,
    similarity,
)
from nicelab.grader.runner import CheckResult

ROOT = Path(__file__).resolve().parents[1]
KEY_FILE = Path(tempfile.gettempdir()) / "nicelab-test-class-report-key"
POINTS = report.Points({"coupling": 20, "model": 15})
SIGN = "wrong sign of the log-determinant: forward multiplies by exp(log_scale), so it is +sum."
SCALE = "missing scaling term: the scaling layer's log-det sum(log_scale) is the whole log-det."
ODD = "for odd D one part has one more coordinate than the other: sizes {} and {}."


def nicelab(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NICELAB_IMPL"}
    env["NICELAB_GRADE_KEY_FILE"] = str(KEY_FILE)
    return subprocess.run(
        [sys.executable, "-m", "nicelab.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )


# ----------------------------------------------------------------------------- results made here


def check(stage: str, name: str, kind: str = "passed", likely: str = "") -> CheckResult:
    message = f"Expected something; saw another. Likely mistake: {likely}" if likely else ""
    if kind == "not_implemented":
        message = "Not implemented yet - Stage 1 (coupling): implement partition."
    outcome = "passed" if kind == "passed" else "failed"
    return CheckResult(f"checks/test_{stage}.py::{name}", stage, outcome, message, 0.1, kind)


def row(name: str, results: list[CheckResult], folder: Path | None = None, **extra) -> dict:
    return report.submission_row(name, str(folder or f"/nowhere/{name}"), results, STAGES, POINTS, **extra)


def stage_checks(
    coupling: str = "passed", model: dict[str, tuple[str, str]] | None = None
) -> list[CheckResult]:
    """Two coupling checks (one parametrized twice) and two model checks, passing unless told."""
    model = model or {}
    found = [
        check(
            "coupling",
            f"test_split[{d}]",
            coupling,
            ODD.format(d // 2, d - d // 2) if coupling == "failed" else "",
        )
        for d in (3, 5)
    ]
    found.append(check("coupling", "test_network", coupling if coupling != "failed" else "passed"))
    for name in ("test_log_det", "test_round_trip"):
        kind, likely = model.get(name, ("passed", ""))
        found.append(check("model", name, kind, likely))
    return found


def made_class(folders: dict[str, Path] | None = None) -> dict:
    """A results document like the planted class's: each row's path the planted folder (if given)."""
    folders = folders or {}
    rows = [
        row("alice", stage_checks(), folders.get("alice")),
        row("bob", stage_checks(model={"test_log_det": ("failed", SIGN)}), folders.get("bob")),
        row(
            "carol",
            stage_checks(coupling="failed", model={"test_log_det": ("failed", SCALE)}),
            folders.get("carol"),
        ),
        row(
            "crash",
            [
                check("coupling", "test_split[3]", "crashed"),
                check("coupling", "test_split[5]", "not_run"),
                check("coupling", "test_network", "not_run"),
                *stage_checks()[3:],
            ],
            folders.get("crash"),
            status="crashed",
            message="the grading process died of SIGSEGV during checks/test_coupling.py::x.",
            flags=["coupling.py is 98% like the reference solution (in what it adds to the stub): check"],
        ),
        row("erin", stage_checks(), folders.get("erin")),
        row("frank", stage_checks(model={"test_log_det": ("failed", SIGN)}), folders.get("frank")),
        row(
            "stubs",
            [
                check("coupling", n, "not_implemented")
                for n in ("test_split[3]", "test_split[5]", "test_network")
            ]
            + [check("model", n, "not_implemented") for n in ("test_log_det", "test_round_trip")],
            folders.get("stubs"),
        ),
    ]
    document = report.new_document(POINTS, {"stages": list(STAGES)})
    document["submissions"] = rows
    return document


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict[str, Path]:
    return make_class(tmp_path_factory.mktemp("planted") / "subs")


# ----------------------------------------------------------------------------- similarity


def pair_names(pairs) -> set[tuple[str, str]]:
    return {(p.a, p.b) for p in pairs}


def test_similarity_names_the_copies_and_not_the_honest(planted):
    modules = similarity.read_modules(planted, STAGES)
    pairs = similarity.compare_class(modules, similarity.read_stubs(STAGES))
    assert pair_names(pairs) == COPIED, [p.to_dict() | {"matches": None} for p in pairs]
    for pair in pairs:  # the exact copy and the renamed one: every stage, all of what each adds
        assert set(pair.matches) == set(STAGES)
        assert all(min(m.similarity) > 0.95 for m in pair.matches.values())
    everything = similarity.compare_class(
        modules, similarity.read_stubs(STAGES), threshold=0.01, min_overlap=1
    )
    scores = {(p.a, p.b): p.score for p in everything}
    honest = {pair: scores.get(pair, 0.0) for pair in HONEST}
    assert max(honest.values()) < 0.45, honest  # the forced lines of one contract are far from a copy
    assert not any("stubs" in pair for pair in scores), "an untouched stub adds nothing to compare"


def test_sources_are_parsed_one_thread_at_a_time(monkeypatch):
    """Python 3.11's AST builder is not thread-safe (CPython gh-106905): a batch compares its
    submissions with the reference side by side, so every parse takes one lock (a batch graded
    in CI once lost a row to "SystemError: AST constructor recursion depth mismatch")."""
    entered = []

    class Recording:
        def __enter__(self):
            entered.append(True)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(integrity, "_AST_LOCK", Recording())
    integrity.normalised("x = 1\n")
    similarity.without_answers("ANSWERS = {'a': 1}\nx = 2\n")
    assert len(entered) == 2


def test_similarity_excludes_the_stub_and_the_answers(planted):
    stub = (ROOT / "lessons" / "model.py").read_text()
    given = similarity.stub_hashes(stub)
    assert not similarity.fingerprint(stub, given).hashes  # the stub itself: nothing added
    alice = (planted["alice"] / "model.py").read_text()
    masked = similarity.without_answers(alice)
    assert len(masked) == len(alice) and "nice_parameters" not in masked and "NICE" in masked
    answers_only = similarity.fingerprint(
        stub.replace('"nice_parameters": None', '"nice_parameters": 738'), given
    )
    assert not answers_only.hashes  # right answers are not copying


def test_similarity_spans_mark_the_matching_code(planted):
    modules = similarity.read_modules(planted, STAGES)
    (pair,) = [p for p in similarity.compare_class(modules, similarity.read_stubs(STAGES)) if p.a == "bob"]
    match = pair.matches["coupling"]
    frank = modules["frank"]["coupling"]
    marked = "".join(frank[start:end] for start, end in match.spans[1])
    assert "kept_cols" in marked and "moved_cols" in marked  # frank's renamed lines are what matched
    assert similarity.Pair.from_dict(json.loads(json.dumps(pair.to_dict()))) == pair
    with pytest.raises(ValueError, match="threshold"):
        similarity.compare_class(modules, {}, threshold=0)


def test_flag_rows_flags_both_and_signs_again(planted):
    document = made_class()
    pairs = similarity.compare_class(similarity.read_modules(planted, STAGES), similarity.read_stubs(STAGES))
    key = b"k" * 64
    rows = [integrity.sign_row(r, key) for r in document["submissions"]]
    assert similarity.flag_rows(rows, pairs, key) == 4
    flags = {r["name"]: r.get("flags", []) for r in rows}
    assert any("matches erin's" in f for f in flags["alice"]) and any(
        "matches bob's" in f for f in flags["frank"]
    )
    assert not flags["carol"] and all(integrity.row_is_authentic(r, key) for r in rows)
    assert similarity.flag_rows(rows, pairs, key) == 0  # again: no duplicate flags


# ----------------------------------------------------------------------------- summary and page


def test_summary_counts_each_named_mistake_once_per_student():
    summary = class_summary.summarize(made_class())
    found = {m.text: m for m in summary.mistakes}
    assert found[SIGN].students == {"bob", "frank"} and found[SIGN].checks == {"test_log_det"}
    assert found[SCALE].students == {"carol"}
    odd = [m for m in summary.mistakes if m.text.startswith("for odd D")]
    assert len(odd) == 1 and odd[0].students == {"carol"}  # sizes 1 and 2, 2 and 3: one mistake, one student
    assert summary.mistakes[0].text == SIGN  # the most common first
    counts = {(c.stage, c.name): c for c in summary.checks}
    split = counts[("coupling", "test_split")]
    assert (split.graded, split.failed, split.not_started, split.cut_short) == (7, 3, 1, 1)
    assert counts[("model", "test_log_det")].failed == 4
    assert {a.name: a.status for a in summary.apart} == {"crash": "crashed"}
    assert summary.totals["alice"] == 35 and summary.stage_points["model"]["stubs"] == 0


def test_text_summary_says_it_at_a_glance():
    summary = class_summary.summarize(made_class())
    text = class_summary.format_summary(summary, [])
    assert "7 submissions, graded on 1 coupling, 2 model; 35 points" in text
    assert f"2 students, stage 2: {SIGN} (bob, frank)" in text
    assert "similar pairs: 0" in text and "to read by hand: 1 crashed (crash)" in text


def test_page_is_self_contained_and_escapes_what_students_wrote(planted, tmp_path):
    document = made_class(planted)
    hostile = '<img src="https://evil.example/x.png"><script>alert(1)</script>'
    document["submissions"][2]["stages"][1]["checks"][0]["message"] = (
        f"Expected x; saw y. Likely mistake: {hostile}"
    )
    (tmp_path / "r.json").write_text(json.dumps(document))
    built = class_report.build(tmp_path / "r.json", tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert (
        f'content="{class_page.CSP}"' in page and "<script" not in page and 'evil.example/x.png">' not in page
    )
    assert "&lt;script&gt;" in page
    parser = _Assets()
    parser.feed(page)
    assert parser.urls and all(url.startswith("data:image/png;base64,") for url in parser.urls)
    assert not [url for url in parser.urls if is_external(url)]
    assert pair_names(built.pairs) == COPIED and page.count("<details class='pair'") == 2
    assert page.count("<mark>") >= 4  # the side-by-side views mark the matching parts
    # the pairs' rows are flagged on the page, and the file is not changed
    assert {a.name for a in built.summary.apart} == {"alice", "bob", "crash", "erin", "frank"}
    assert json.loads((tmp_path / "r.json").read_text()) == document


def test_report_without_the_submissions_says_so(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps(made_class()))
    built = class_report.build(tmp_path / "r.json", tmp_path / "r.html")
    assert built.pairs is None and "Similarity not computed: 0 of the 7" in built.text
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a nicelab grade results file"):
        class_report.build(tmp_path / "bad.json")


# ----------------------------------------------------------------------------- LMS

ROSTER = """folder,name,canvas_id,sis_user_id,sis_login_id,section,email
alice,"Liddell, Alice",101,S1,alice,A,alice@uni.edu
bob,"Builder, Bob",102,S2,bob,A,bob@uni.edu
carol,"=cmd|' /C calc'!A0",103,S3,carol,B,carol@uni.edu
crash,"Bandicoot, Crash",104,S4,crash,B,crash@uni.edu
erin,"Brockovich, Erin",105,S5,erin,A,erin@uni.edu
frank,"Lloyd, Frank",106,S6,frank,B,frank@uni.edu
zoe,"Absent, Zoe",107,S7,zoe,A,zoe@uni.edu
"""


def canvas_import(text: str) -> dict[str, str]:
    """What Canvas' gradebook import reads: the header's identifier columns, the Points Possible
    row skipped, each student found by ID (then SIS User ID, SIS Login ID); their score."""
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    assert header[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"] and len(header) == 6
    scores = {}
    for cells in rows[1:]:
        if cells[0].strip() == "Points Possible":
            assert float(cells[5]) == 35
            continue
        scores[cells[1] or cells[2] or cells[3]] = cells[5]
    return scores


def test_canvas_csv_puts_the_points_under_the_right_student(tmp_path):
    document = made_class()
    (tmp_path / "roster.csv").write_text(ROSTER)  # no "stubs": an unknown name; zoe: missing
    matching = lms.match(document, lms.read_roster(tmp_path / "roster.csv"))
    points = {r["name"]: r["points"] for r in document["submissions"]}
    scores = canvas_import(lms.canvas_csv(matching, "NICE lab (4242)"))
    ids = {"101": "alice", "102": "bob", "103": "carol", "104": "crash", "105": "erin", "106": "frank"}
    graded = {k: float(v) for k, v in scores.items() if v}
    assert graded == pytest.approx({i: points[n] for i, n in ids.items()}, abs=0.005)
    assert scores["107"] == ""  # missing: no grade, never a made-up zero
    assert [r["name"] for r in matching.unknown] == ["stubs"] and [s.folder for s in matching.missing] == [
        "zoe"
    ]
    lines = " ".join(matching.lines())
    assert "not in the roster" in lines and "stubs" in lines and "zoe" in lines
    assert "'=cmd" in lms.canvas_csv(matching, "x")  # the spreadsheet formula guard


def test_moodle_and_generic_csv(tmp_path):
    (tmp_path / "roster.csv").write_text(ROSTER)
    matching = lms.match(made_class(), lms.read_roster(tmp_path / "roster.csv"))
    moodle = list(csv.DictReader(io.StringIO(lms.moodle_csv(matching, "NICE lab"))))
    assert moodle[0]["Email address"] == "alice@uni.edu" and float(moodle[0]["NICE lab"]) == 35
    generic = {r["folder"]: r for r in csv.DictReader(io.StringIO(lms.generic_csv(matching, list(STAGES))))}
    assert generic["zoe"]["status"] == "missing" and generic["stubs"]["status"] == "not in roster"
    assert float(generic["bob"]["coupling"]) == 20 and generic["crash"]["status"] == "crashed"


def test_roster_errors_are_clear(tmp_path):
    path = tmp_path / "roster.csv"
    for text, phrase in (
        ("name,id\nx,1\n", "`folder` column"),
        ("folder,shoe\nx,1\n", "does not know"),
        ("folder\nx\nx\n", "twice"),
        ("folder,name\n,Ada\n", "no folder name"),
    ):
        path.write_text(text)
        with pytest.raises(ValueError, match=phrase):
            lms.read_roster(path)
    path.write_text("folder,name\nalice,Alice\n")
    with pytest.raises(ValueError, match="Canvas needs"):
        lms.canvas_csv(lms.match(made_class(), lms.read_roster(path)), "x")


def test_export_command_writes_the_files_and_lists_the_unplaced(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps(made_class()))
    (tmp_path / "roster.csv").write_text(ROSTER)
    run = nicelab(
        "grade",
        "export",
        str(tmp_path / "r.json"),
        "--roster",
        str(tmp_path / "roster.csv"),
        "--canvas",
        str(tmp_path / "c.csv"),
        "--moodle",
        str(tmp_path / "m.csv"),
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "6 students of 7 in the roster placed" in run.stdout and "WARNING: 1 graded" in run.stdout
    assert canvas_import((tmp_path / "c.csv").read_text())["101"] == "35"


# ----------------------------------------------------------------------------- what moved


def test_changes_list_each_student_who_moved():
    before = made_class()
    after = json.loads(json.dumps(before))
    bob = next(r for r in after["submissions"] if r["name"] == "bob")
    fixed = [check("coupling", n) for n in ("test_split[3]", "test_split[5]", "test_network")]
    fixed += [
        check("model", "test_log_det"),
        check("model", "test_round_trip"),
        check("model", "test_hidden"),
    ]
    after["submissions"][1] = row("bob", fixed)
    moved = changes.compare(before, after)
    assert [m.name for m in moved] == ["bob"] and moved[0].after == 35 and moved[0].before < 35
    assert moved[0].now_passes == ["checks/test_model.py::test_log_det"]
    assert moved[0].new == ["checks/test_model.py::test_hidden"] and "model" in moved[0].stages
    assert bob["points"] == moved[0].before == 27.5
    assert "bob: 27.5 -> 35.0 (+7.5): model failing, 7.5/15 -> passed, 15.0/15" in changes.format_changes(
        moved
    )


def test_splice_replaces_only_the_regraded_stage():
    old = row(
        "bob",
        stage_checks(model={"test_log_det": ("failed", SIGN)}),
        flags=["coupling.py is 95% like the reference", "model.py is 91% like the reference"],
    )
    new = report.submission_row(
        "bob",
        "/x",
        [
            check("model", "test_log_det"),
            check("model", "test_round_trip"),
            check("model", "test_new", "failed", SCALE),
        ],
        ("model",),
        POINTS,
        flags=[],
        similarity={"model": 0.5},
    )
    spliced = regrade.splice(old, new, ["model"])
    assert spliced["stages"][0] == old["stages"][0] and spliced["stages"][1] == new["stages"][0]
    assert spliced["points"] == pytest.approx(20 + 15 * 2 / 3) and spliced["checks_total"] == 6
    assert (
        spliced["flags"] == ["coupling.py is 95% like the reference"]
        and spliced["similarity"]["model"] == 0.5
    )
    assert spliced["message"].startswith("stage 2 (model) failing") and spliced["status"] == "graded"


# ----------------------------------------------------------------------------- the graded class

LIMITS = ["--timeout", "300", "--check-timeout", "60", "--memory-mb", "2048", "--jobs", "2"]
HIDDEN = """
import pytest

from nicelab.grader.assertions import fail


@pytest.mark.model
def test_hidden_always_fails(graded):
    fail("an instructor's new bar", "the reference", "this hidden check always fails.")
"""


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The planted class graded once (stages 1-2), and its report."""
    tmp = tmp_path_factory.mktemp("graded")
    make_class(tmp / "subs")
    run = nicelab(
        "grade",
        str(tmp / "subs"),
        "--json",
        str(tmp / "r.json"),
        "--stage",
        "coupling",
        "--stage",
        "model",
        *LIMITS,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report_run = nicelab(
        "grade", "report", str(tmp / "r.json"), "--html", str(tmp / "report.html"), timeout=300
    )
    return tmp, report_run


@pytest.mark.slow
def test_report_of_the_graded_class(graded):
    tmp, run = graded
    assert run.returncode == 0, run.stderr
    rows = {r["name"]: r for r in json.loads((tmp / "r.json").read_text())["submissions"]}
    assert rows["crash"]["status"] == "crashed" and rows["alice"]["points"] == rows["alice"]["max_points"]
    text = run.stdout
    assert "similar pairs: 2" in text and "alice ~ erin" in text and "bob ~ frank" in text
    for a, b in HONEST:
        assert f"{a} ~ {b}" not in text
    for part, who in MISTAKES.items():
        line = next(line for line in text.splitlines() if part in line)
        assert (
            line.strip().startswith(class_summary.students(len(who)))
            and f"({', '.join(sorted(who))})" in line
        )
    assert "1 crashed" in text and "wrote" in text


@pytest.mark.slow
def test_report_opens_offline_in_the_browser(graded, browser):  # noqa: F811 - the imported fixture
    tmp, _ = graded
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        page.goto((tmp / "report.html").as_uri(), wait_until="load", timeout=120_000)
        state = page.evaluate("""() => ({
          images: [...document.images].map(i => i.complete && i.naturalWidth > 0),
          pairs: [...document.querySelectorAll('details.pair summary')].map(s => s.innerText),
          mistakes: [...document.querySelectorAll('#mistakes + p + table tbody tr')].map(r => r.innerText),
        })""")
    finally:
        page.close()
    assert not errors, errors
    assert state["images"] and all(state["images"]), "the figure did not load from the page itself"
    assert len(state["pairs"]) == 2 and "alice" in state["pairs"][0] + state["pairs"][1]
    assert any("wrong sign" in m and "bob, frank" in m for m in state["mistakes"])
    outside = sorted({url for url in browser.requests if is_external(url)})
    assert not outside, f"the report asked for {outside}"
    assert any(url.startswith("file://") for url in browser.requests)


@pytest.mark.slow
def test_regrade_grades_only_the_changed_stage_and_says_what_moved(graded, tmp_path):
    tmp, _ = graded
    everyone = json.loads((tmp / "r.json").read_text())
    kept = ["alice", "carol"]
    (tmp_path / "subs").mkdir()
    for name in kept:  # two submissions are enough; their rows are the batch's, still signed
        shutil.copytree(tmp / "subs" / name, tmp_path / "subs" / name)
    everyone["submissions"] = [r for r in everyone["submissions"] if r["name"] in kept]
    (tmp_path / "r.json").write_text(json.dumps(everyone))
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / "test_bar.py").write_text(HIDDEN)
    run = nicelab(
        "grade",
        "regrade",
        str(tmp_path / "subs"),
        "--json",
        str(tmp_path / "r.json"),
        "--extra-checks",
        str(tmp_path / "hidden"),
        "--jobs",
        "2",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "grading again stage 2 (model) of every submission: checks were added" in run.stdout
    assert "2 submissions moved" in run.stdout
    before = {r["name"]: r for r in json.loads((tmp_path / "r.before.json").read_text())["submissions"]}
    after = {r["name"]: r for r in json.loads((tmp_path / "r.json").read_text())["submissions"]}
    key = KEY_FILE.read_bytes().strip()
    for name in kept:
        assert after[name]["stages"][0] == before[name]["stages"][0]  # stage 1 untouched
        model = after[name]["stages"][1]
        hidden = [c for c in model["checks"] if c["hidden"]]
        assert [c["name"] for c in hidden] == ["test_hidden_always_fails"] and not hidden[0]["passed"]
        assert model["total"] == before[name]["stages"][1]["total"] + 1
        assert after[name]["points"] < before[name]["points"] and integrity.row_is_authentic(after[name], key)
    shown = class_report.build(tmp_path / "r.json", tmp_path / "r.html", before=tmp_path / "r.before.json")
    assert sorted(m.name for m in shown.moved) == kept
    assert all(m.new == ["hidden/test_bar.py::test_hidden_always_fails"] for m in shown.moved)
    assert "What moved" in (tmp_path / "r.html").read_text()
    resumed = nicelab(
        "grade",
        str(tmp_path / "subs"),
        "--json",
        str(tmp_path / "r.json"),
        "--stage",
        "coupling",
        "--stage",
        "model",
        "--extra-checks",
        str(tmp_path / "hidden"),
        *LIMITS,
    )
    assert resumed.returncode == 0 and "grading 0 submissions" in resumed.stdout, resumed.stdout
