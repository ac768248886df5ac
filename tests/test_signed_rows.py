"""Issue 21, "signed means checked everywhere": a merge and the GitHub Classroom reporter check
the rows' signatures (or say plainly that they cannot), a resume regrades rows graded under
other settings, fingerprints cannot be confused, and every text of a row can be written.

Everything here runs without TensorFlow: the batch is run with a fake grader in place of the
worker processes (``batch.grade_submission`` and ``batch.collect_checks``)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import jsonschema
import pytest

from nicelab.grader import batch, classroom
from nicelab.grader.results import integrity, report
from nicelab.grader.runner import CheckResult
from nicelab.grader.submission import fingerprint

SCHEMA = json.loads(report.SCHEMA_FILE.read_text())
POINTS = report.Points({"coupling": 20.0, "model": 10.0})
STAGES = ("coupling",)
KEY = b"k" * 64
#: A student's exception message with what UTF-8 cannot encode and a terminal must not see.
NASTY = "Stage 1 (coupling): \ud800 lone \udfff surrogates \x1b[31mred\x1b[0m \u202eevil"


# ----------------------------------------------------------------------------- fingerprints

def _folder(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    for name, content in files.items():
        (root / name).write_bytes(content)
    return root


def test_fingerprints_tell_apart_what_the_old_encoding_confused(tmp_path):
    """The old encoding (each part as JSON or raw bytes, then a NUL) read one file whose content
    holds NULs and a quoted name as two files: the pair below shared a fingerprint."""
    one = {"a": b'x\0"b"\0y'}
    two = {"a": b"x", "b": b"y"}
    old = [b"".join(json.dumps(name).encode() + b"\0" + data + b"\0" for name, data in files.items())
           for files in (one, two)]
    assert old[0] == old[1]  # what the old fingerprint hashed: the same bytes
    assert fingerprint(_folder(tmp_path / "one", one)) != fingerprint(_folder(tmp_path / "two", two))
    shifted = [{"a": b"bc"}, {"ab": b"c"}, {"a": b"", "b": b""}, {"ab": b""}, {"a": b"b"}]  # bytes moved
    prints = {fingerprint(_folder(tmp_path / f"s{i}", files)) for i, files in enumerate(shifted)}
    assert len(prints) == len(shifted)
    again = _folder(tmp_path / "again", one)
    assert fingerprint(again) == fingerprint(tmp_path / "one")  # the same files, the same fingerprint


# ----------------------------------------------------------------------------- text

def _row(name: str = "ada\udcff\x1b[2J", message: str = NASTY, **extra) -> dict:
    results = [CheckResult("checks/test_coupling.py::test_a", "coupling", "failed", message, 0.1,
                           "not_implemented")]
    return report.submission_row(name, f"/class/{name}", results, STAGES, POINTS, flags=[message],
                                 output_excerpt=message, **extra)


def _encodable(text: str) -> bool:
    text.encode("utf-8")  # raises on a lone surrogate
    return "\x1b" not in text and "\u202e" not in text


def test_clean_text_escapes_what_cannot_be_encoded():
    assert integrity.clean_text("a\ud800b\udcffc") == "a\\ud800b\\udcffc"
    assert integrity.clean_text("é ok\n\tü") == "é ok\n\tü"  # what can be encoded stays
    assert integrity.clean_value({"k\ud800": ["x\x1b[1m", 1.5, None]}) == {"k\\ud800": ["x", 1.5, None]}


def test_a_row_with_surrogates_is_written_and_read_twice(tmp_path):
    """Every text of a row (name, path, messages, flags, excerpt) can be written as UTF-8; a
    results file holding surrogates escaped in JSON (an older grader's) is read, resumed and
    written again (JSON, CSV, the tables) without a crash."""
    row = integrity.sign_row(_row(), KEY)
    assert _encodable(json.dumps(row, ensure_ascii=False))
    assert row["name"] == "ada\\udcff" and "\\ud800 lone" in row["stages"][0]["message"]
    old = integrity.sign_row({**_row(), "name": "bob"}, KEY)
    old["message"] = old["stages"][0]["message"] = NASTY  # what an older grader wrote
    old = integrity.sign_row(old, KEY)
    document = report.new_document(POINTS, {})
    document["submissions"] = [row, old]
    for _ in range(2):  # the batch, then its resume
        report.write_atomic(tmp_path / "r.json", report.to_json(document))
        report.write_atomic(tmp_path / "r.csv", report.to_csv(document))
        document = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
        jsonschema.validate(document, SCHEMA)
        assert all(integrity.row_is_authentic(r, KEY) for r in document["submissions"])
        cells = list(csv.reader(io.StringIO((tmp_path / "r.csv").read_text(encoding="utf-8"))))
        assert any("\\ud800 lone" in cell for cells_row in cells for cell in cells_row)
        assert _encodable(report.format_class_table(document))
        assert all(_encodable(report.format_table(r)) for r in document["submissions"])


# ----------------------------------------------------------------------------- the batch, faked

class FakeGrader:
    """``batch.grade_submission`` without processes: every stage 'not started', its message
    holding lone surrogates; ``graded`` lists the names graded, in order."""

    def __init__(self):
        self.graded: list[str] = []

    def __call__(self, name, folder, stages, extra_dirs, limits, points, *_args) -> dict:
        self.graded.append(name)
        results = [CheckResult(f"checks/test_{stage}.py::test_a", stage, "failed",
                               f"Not implemented yet - {NASTY}", 0.1, "not_implemented") for stage in stages]
        return report.submission_row(name, str(folder), results, stages, points,
                                     fingerprint=fingerprint(folder), extra_checks=list(extra_dirs),
                                     sandboxed=False, flags=[NASTY], output_excerpt=NASTY)


@pytest.fixture
def fake_batch(tmp_path, monkeypatch):
    """``(run, grader, folder)``: ``run(**options)`` grades a class of three with the fake grader
    and returns its log lines."""
    monkeypatch.setenv(integrity.KEY_ENV, str(tmp_path / "key"))
    grader = FakeGrader()
    monkeypatch.setattr(batch, "grade_submission", grader)
    monkeypatch.setattr(batch, "collect_checks", lambda *args: {})
    subs = tmp_path / "subs"
    for name in ("ann", "bob", "cy"):
        _folder(subs / name, {"coupling.py": f"# {name}\n".encode()})
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / "test_secret.py").write_text("def test_secret():\n    pass\n")

    def run(points: report.Points = POINTS, limits: batch.Limits | None = None, hidden: bool = True,
            jobs: int = 2) -> list[str]:
        lines: list[str] = []
        grader.graded.clear()
        batch.grade_class(subs, tmp_path / "r.json", tmp_path / "r.csv", STAGES,
                          (str(tmp_path / "hidden"),) if hidden else (), limits or batch.Limits(), points,
                          jobs=jobs, log=lines.append, use_sandbox=False)
        assert all(_encodable(line) for line in lines)  # a terminal could print every line
        return lines

    return run, grader, tmp_path


def test_resume_keeps_rows_only_under_the_same_settings(fake_batch, monkeypatch):
    run, grader, tmp = fake_batch
    run()
    assert sorted(grader.graded) == ["ann", "bob", "cy"]
    document = json.loads((tmp / "r.json").read_text())
    jsonschema.validate(document, SCHEMA)
    digest = document["settings"]["digest"]
    assert all(row["settings"] == digest and integrity.row_is_authentic(row, (tmp / "key").read_bytes())
               for row in document["submissions"])
    assert "\\ud800" in (tmp / "r.csv").read_text(encoding="utf-8")
    log = run()
    assert grader.graded == [] and any("grading 0 submissions" in line for line in log)
    changes = [({"points": report.Points({"coupling": 5.0, "model": 10.0})}, "points"),
               ({"limits": batch.Limits(check_timeout=30)}, "limits"),
               ({"hidden": False}, "hidden checks")]
    for options, part in changes:
        run()  # back to the first settings (everything graded again: the rows are the other ones')
        log = run(**options)
        assert sorted(grader.graded) == ["ann", "bob", "cy"], part
        (line,) = [line for line in log if "graded with other" in line]
        assert f"3 of the earlier rows were graded with other {part} than" in line and "ann, bob, cy" in line
    run()
    (tmp / "hidden" / "test_secret.py").write_text("def test_secret():\n    assert False\n")  # new contents
    log = run()
    assert sorted(grader.graded) == ["ann", "bob", "cy"]
    assert any("graded with other hidden checks than" in line for line in log)
    _folder(tmp / "checks", {"test_coupling.py": b"def test_a():\n    pass\n"})
    monkeypatch.setattr(batch, "CHECKS_DIR", tmp / "checks")  # the public checks, edited
    assert any("graded with other public checks than" in line for line in run())
    assert sorted(grader.graded) == ["ann", "bob", "cy"]
    run(jobs=1)
    assert grader.graded == []  # how many at a time is no setting


def test_resume_of_a_file_holding_surrogates_with_csv(fake_batch):
    """An older grader's file with lone surrogates (escaped in the JSON): the rerun with --csv
    writes its CSV and grades the rest (it crashed before grading anything)."""
    run, grader, tmp = fake_batch
    run()
    document = json.loads((tmp / "r.json").read_text())
    key = (tmp / "key").read_bytes()
    for row in document["submissions"][:2]:
        row["message"] = NASTY
        integrity.sign_row(row, key)
    document["submissions"].pop()  # cy is graded again
    (tmp / "r.json").write_text(json.dumps(document))
    log = run()
    assert grader.graded == ["cy"] and any("grading 1 submissions" in line for line in log)
    assert "\\ud800" in (tmp / "r.csv").read_text(encoding="utf-8")


def test_tampered_rows_are_graded_again_and_names_are_cleaned(fake_batch):
    run, grader, tmp = fake_batch
    _folder(tmp / "subs" / "ann\x1b[2J", {"coupling.py": b"# same name, once cleaned\n"})
    run()
    document = json.loads((tmp / "r.json").read_text())
    names = [row["name"] for row in document["submissions"]]
    assert "ann" in names and any(n.startswith("ann~") for n in names) and len(set(names)) == 4
    document["submissions"][1]["points"] = 30.0  # a forged mark
    (tmp / "r.json").write_text(json.dumps(document))
    log = run()
    forged = document["submissions"][1]["name"]
    assert grader.graded == [forged] and any(f"{forged}: its row" in line for line in log)


# ----------------------------------------------------------------------------- the reporter

def _results_file(tmp_path: Path, row: dict) -> Path:
    document = report.new_document(POINTS, {})
    document["submissions"] = [row]
    path = tmp_path / "nicelab-grade.json"
    path.write_text(report.to_json(document))
    return path


def test_classroom_checks_the_signature_or_says_it_cannot(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(integrity.KEY_ENV, str(tmp_path / "key"))
    row = integrity.sign_row(_row("student"), KEY)
    path = _results_file(tmp_path, row)
    by_stage, note = classroom.results(path, KEY)
    assert "verified" in note and "NOT" not in note and by_stage["coupling"]["status"] == "fail"
    by_stage, note = classroom.results(path, None)
    assert "NOT verified" in note and "coupling" in by_stage
    forged = _results_file(tmp_path, {**row, "points": 20.0})
    by_stage, note = classroom.results(forged, KEY)
    assert "does not carry the grading key's signature" in note
    assert all(r["status"] == "error" and r["tests"][0]["score"] == 0 for r in by_stage.values())
    assert classroom.main([str(path)]) == 0  # no key file here: the step's log says so
    assert "NOT verified" in capsys.readouterr().err
    (tmp_path / "key").write_bytes(KEY)
    assert classroom.main([str(forged)]) == 0
    assert "no points are reported" in capsys.readouterr().err
