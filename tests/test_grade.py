"""``nicelab grade``: statuses and points, the table, JSON (against its schema) and CSV, hidden
checks, and batch grading of a fake class with its limits, resume after an interruption, and
submissions left untouched.

The command runs in subprocesses (the checks run their own pytest session); the fake class is
graded once, in one batch, and several tests read its results.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jsonschema
import pytest
from fake_submissions import LESSONS, make_class, make_hanging, snapshot

from nicelab import STAGE_NAMES
from nicelab.core.course import CORE_STAGES, OPTIONAL_STAGES
from nicelab.grader import batch
from nicelab.grader.results import report
from nicelab.grader.runner import CheckResult

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads(report.SCHEMA_FILE.read_text())
#: The fake class's limits: short enough to trip quickly, long enough for a good submission
#: on a busy machine.
KEY_FILE = Path(tempfile.gettempdir()) / "nicelab-test-grade-key"
CLASS_LIMITS = ["--timeout", "300", "--check-timeout", "20", "--memory-mb", "2048", "--jobs", "3"]


def nicelab(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NICELAB_IMPL"}
    env["COLUMNS"] = "100"  # the table wraps messages at the terminal's width
    env["NICELAB_GRADE_KEY_FILE"] = str(KEY_FILE)  # the rows' signing key, outside the results
    return subprocess.run([sys.executable, "-m", "nicelab.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def validate(path: Path) -> dict:
    document = json.loads(path.read_text())
    jsonschema.validate(document, SCHEMA)
    return document


def stage_statuses(row: dict) -> dict[str, str]:
    return {st["stage"]: st["status"] for st in row["stages"]}


# ----------------------------------------------------------------------------- no TensorFlow

def result(name: str, stage: str, kind: str, message: str = "", **extra) -> CheckResult:
    outcome = "passed" if kind == "passed" else "failed"
    return CheckResult(f"checks/test_{stage}.py::{name}", stage, outcome, message, 0.5, kind, **extra)


POINTS = report.Points({"coupling": 20, "model": 10}, partial_credit=True)


def test_stage_statuses_and_points():
    stub = "Not implemented yet - Stage 2 (model): implement NICE.__init__. See docs/lessons/2-model.md."
    results = [result("a", "coupling", "passed"), result("b", "coupling", "passed"),
               result("c", "coupling", "failed", "Expected 1; saw 2. Likely mistake: the sign."),
               result("d", "model", "not_implemented", stub), result("e", "model", "not_implemented", stub)]
    coupling, model = report.summarize(results, ("coupling", "model"), POINTS)
    assert (coupling.status, coupling.passed, coupling.total) == ("failing", 2, 3)
    assert coupling.points == pytest.approx(20 * 2 / 3)
    assert coupling.check == "c" and coupling.hint.startswith("Likely mistake: the sign.")
    assert "docs/lessons/1-coupling.md" in coupling.hint
    assert (model.status, model.points) == ("not started", 0.0)
    strict = report.Points(POINTS.stages, partial_credit=False)
    assert report.summarize(results, ("coupling",), strict)[0].points == 0.0


def test_blocked_missing_solutions_and_no_checks():
    own = [result("a", "coupling", "not_implemented", "Not implemented yet - x"),
           result("b", "model", "failed", "Expected x; saw y.", own_earlier=["coupling"])]
    assert [r.status_text for r in report.summarize(own, ("coupling", "model"), POINTS)] == [
        "not started", "blocked by stage 1"]
    fine = [result("a", "coupling", "passed"), result("b", "model", "failed", "Expected x; saw y.",
                                                      own_earlier=["coupling"])]
    assert report.summarize(fine, ("coupling", "model"), POINTS)[1].status == "failing"
    loads = [result("a", "coupling", "missing", "coupling.py is missing"),
             result("b", "model", "solutions", "model.py imports the reference solutions"),
             result("c", "likelihood", "blocked", "cannot be loaded", blocked_by="model")]
    stages = ("coupling", "model", "likelihood", "outliers")
    statuses = [r.status_text for r in report.summarize(loads, stages, POINTS)]
    assert statuses == ["missing", "imports solutions", "blocked by stage 2", "no checks"]


def test_row_table_and_files_are_consistent(tmp_path):
    results = [result("a", "coupling", "passed"), result("b", "model", "timeout", "stopped at the limit"),
               result("c", "model", "not_run", "not run")]
    row = report.submission_row("ada", "/x", results, ("coupling", "model"), POINTS, status="timeout")
    assert stage_statuses(row) == {"coupling": "passed", "model": "timed out"}
    assert (row["points"], row["max_points"], row["passed"]) == (20.0, 30.0, False)
    document = report.new_document(POINTS, {})
    document["submissions"] = [row]
    jsonschema.validate(json.loads(report.to_json(document)), SCHEMA)
    rows = list(csv.DictReader(io.StringIO(report.to_csv(document))))
    assert [r["row"] for r in rows] == ["submission", "stage", "check", "stage", "check", "check"]
    table = report.format_table(row, width=100).splitlines()
    header, stage_lines = table[0], [line for line in table if line[:1].isdigit()]
    assert len(stage_lines) == 2
    for line in stage_lines:  # aligned columns: the status starts under "status"
        assert line.index("passed" if "passed" in line else "timed out") == header.index("status")
    path = tmp_path / "out.json"
    report.write_atomic(path, "old")
    report.write_atomic(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_points_file(tmp_path):
    default = report.load_points()
    assert set(default.stages) == set(STAGE_NAMES) and all(v > 0 for v in default.stages.values())
    good = tmp_path / "points.toml"
    good.write_text("partial_credit = false\n[stages]\ncoupling = 5\nmodel = 2.5\n")
    assert report.load_points(good).stages == {"coupling": 5.0, "model": 2.5}
    # The optional stages (the advanced track) are graded by default only when counted.
    assert "affine" in OPTIONAL_STAGES and not set(CORE_STAGES) & OPTIONAL_STAGES
    assert not default.count_optional and default.default_stages() == CORE_STAGES
    good.write_text("count_optional = true\n[stages]\ncoupling = 5\n")
    assert report.load_points(good).default_stages() == STAGE_NAMES
    for bad, phrase in (("[stages]\nflows = 3\n", "unknown stage"), ("[stages]\ncoupling = -1\n", ">= 0"),
                        ("coupling = 3\n", "[stages]"), ("[stages\n", "not valid TOML"),
                        ("count_optional = 1\n[stages]\n", "true or false")):
        good.write_text(bad)
        with pytest.raises(ValueError, match=r".*" + phrase.replace("[", r"\[").replace("]", r"\]")):
            report.load_points(good)


def test_schema_names_every_stage():
    """The results' schema enumerates the stages: every stage of the course, in order."""
    stage = SCHEMA["$defs"]["stage"]["properties"]
    assert stage["stage"]["enum"] == list(STAGE_NAMES) and stage["number"]["maximum"] == len(STAGE_NAMES)
    assert SCHEMA["$defs"]["stage"]["properties"]["blocked_by"]["enum"] == [None, *STAGE_NAMES]


def test_limits_reject_bad_values():
    with pytest.raises(ValueError, match="positive"):
        batch.Limits(timeout=0)
    with pytest.raises(ValueError, match="at least 512"):
        batch.Limits(memory_mb=100)


# ----------------------------------------------------------------------------- one implementation

HIDDEN_PASS = '''
import numpy as np

from nicelab.grader.assertions import expect


def test_hidden_model_round_trip(model):  # no marker: its stage comes from the fixture
    flow = model.NICE(4, num_couplings=2, hidden_units=8, hidden_layers=1)
    x = np.ones((3, 4), np.float32)
    error = float(np.max(np.abs(flow.backward(flow.forward(x)) - x)))
    expect(error < 1e-4, "backward(forward(x)) == x", f"an error of {error:.3g}", "undo the layers.")
'''
HIDDEN_FAIL = '''
import pytest

from nicelab.grader.assertions import fail


@pytest.mark.model
def test_hidden_instructor_bar(graded):
    fail("an instructor's extra bar", "the reference", "this hidden check always fails.")
'''


@pytest.fixture(scope="module")
def reference_grade(tmp_path_factory):
    """``nicelab grade --impl solutions`` with JSON, CSV and one (passing) hidden check."""
    tmp = tmp_path_factory.mktemp("reference")
    (tmp / "hidden").mkdir()
    (tmp / "hidden" / "test_model.py").write_text(HIDDEN_PASS)  # same name as a public file
    run = nicelab("grade", "--impl", "solutions", "--json", str(tmp / "r.json"), "--csv", str(tmp / "r.csv"),
                  "--extra-checks", str(tmp / "hidden"))
    return run, tmp


@pytest.mark.slow
def test_reference_passes_every_stage(reference_grade):
    run, tmp = reference_grade
    assert run.returncode == 0, run.stdout + run.stderr
    assert "reference solutions, not your lessons" in run.stdout
    document = validate(tmp / "r.json")
    (row,) = document["submissions"]
    assert row["passed"] and row["points"] == row["max_points"] > 0
    assert all(st["status"] in ("passed", "no checks") for st in row["stages"])
    assert sum(st["status"] == "passed" for st in row["stages"]) >= 3
    for st in row["stages"]:
        assert f"{st['number']} {st['stage']}" in run.stdout
    rows = list(csv.DictReader((tmp / "r.csv").open()))
    checks = [r for r in rows if r["row"] == "check"]
    assert len(checks) == row["checks_total"] and all(r["passed"] == "True" for r in checks)


@pytest.mark.slow
def test_hidden_checks_run_alongside(reference_grade):
    run, tmp = reference_grade
    (row,) = json.loads((tmp / "r.json").read_text())["submissions"]
    model = next(st for st in row["stages"] if st["stage"] == "model")
    hidden = [c for c in model["checks"] if c["hidden"]]
    assert [c["name"] for c in hidden] == ["test_hidden_model_round_trip"] and hidden[0]["passed"]
    assert model["total"] == len([c for c in model["checks"] if not c["hidden"]]) + 1


@pytest.mark.slow
def test_failing_hidden_check_fails_its_stage(tmp_path):
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / "test_bar.py").write_text(HIDDEN_FAIL)
    run = nicelab("grade", "--impl", "solutions", "--stage", "model", "--json", str(tmp_path / "r.json"),
                  "--extra-checks", str(tmp_path / "hidden"))
    assert run.returncode == 1
    (row,) = validate(tmp_path / "r.json")["submissions"]
    (model,) = row["stages"]
    assert (model["status"], model["check"]) == ("failing", "test_hidden_instructor_bar")
    assert "this hidden check always fails" in model["hint"]
    assert "test_hidden_instructor_bar: Expected an instructor's extra bar" in " ".join(run.stdout.split())


@pytest.mark.slow
def test_stubs_are_not_started():
    run = nicelab("grade", "--stage", "coupling", "--stage", "model", "--impl", str(LESSONS))
    assert run.returncode == 1
    lines = run.stdout.splitlines()
    assert any(line.startswith("1 coupling") and "0/" in line and "not started" in line for line in lines)
    assert any(line.startswith("2 model") and "not started" in line for line in lines)
    assert not any(line.startswith("3 likelihood") for line in lines)  # --stage
    text = " ".join(run.stdout.split())
    assert "hint: fill in that stub" in text and "Not implemented yet - Stage 1" in text


@pytest.mark.slow
def test_student_importing_solutions_is_told(tmp_path):
    sub = tmp_path / "mine"
    sub.mkdir()
    for name in ("__init__.py", "coupling.py"):
        (sub / name).write_bytes((LESSONS / name).read_bytes())
    (sub / "model.py").write_text("from solutions.model import NICE  # noqa: F401\n")
    run = nicelab("grade", "--impl", str(sub), "--stage", "model")
    assert run.returncode == 1
    text = " ".join(run.stdout.split())  # long messages are wrapped
    assert re.search(r"2 model 0/\d+ imports solutions", text) and "imports the reference solutions" in text


# ----------------------------------------------------------------------------- a class

@pytest.fixture(scope="module")
def fake_class(tmp_path_factory):
    """The fake class graded in one batch: (expected rows, results document, files, run, wall s)."""
    tmp = tmp_path_factory.mktemp("class")
    expected = make_class(tmp / "subs")
    before = snapshot(tmp / "subs")
    start = time.perf_counter()
    run = nicelab("grade", str(tmp / "subs"), "--json", str(tmp / "r.json"), "--csv", str(tmp / "r.csv"),
                  "--stage", "coupling", "--stage", "model", *CLASS_LIMITS)
    wall = time.perf_counter() - start
    print(f"\nthe fake class ({len(expected)} submissions) was graded in {wall:.0f} s")
    return expected, tmp, before, run, wall


@pytest.mark.slow
def test_every_fake_submission_gets_its_row(fake_class):
    expected, tmp, _, run, _ = fake_class
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {row["name"]: row for row in validate(tmp / "r.json")["submissions"]}
    assert sorted(rows) == sorted(expected)
    seen = {name: (row["status"], stage_statuses(row)) for name, row in rows.items()}
    assert seen == expected
    for name in expected:  # the class table has a line per submission
        assert any(line.startswith(name + " ") for line in run.stdout.splitlines())


@pytest.mark.slow
def test_fake_rows_say_what_happened(fake_class):
    _, tmp, _, _, _ = fake_class
    rows = {row["name"]: row for row in json.loads((tmp / "r.json").read_text())["submissions"]}
    assert "time limit of one check" in rows["hanging"]["message"]
    assert rows["endless_output"]["output_bytes"] > 2**20  # megabytes printed...
    assert len(rows["endless_output"]["output_excerpt"]) <= 4000  # ...and only a little kept
    assert "SIGSEGV" in rows["crashing"]["message"]
    assert rows["memory_hog"]["peak_memory_mb"] >= 2048 and "memory limit" in rows["memory_hog"]["message"]
    assert "ModuleNotFoundError" in rows["import_error"]["stages"][0]["message"]
    assert "sys.exit(3)" in rows["sys_exit"]["stages"][0]["message"]
    model = rows["broken_model"]["stages"][1]
    assert "Likely mistake" in model["hint"] and model["passed"] < model["total"]
    assert "imports the reference solutions" in rows["imports_solutions"]["stages"][1]["message"]
    assert rows["blocked"]["stages"][1]["status_text"] == "blocked by stage 1"
    for row in rows.values():  # messages name the submission's own files, never the temporary copy
        assert "nicelab-grade-" not in json.dumps(row["stages"])
    complete = rows["complete"]  # one worker, a sandboxed child per stage; a copy of the reference is flagged
    full = report.load_points().of("coupling") + report.load_points().of("model")
    assert complete["points"] == complete["max_points"] == full and complete["attempts"] == 1
    assert complete["sandboxed"] and any("like the reference" in flag for flag in complete["flags"])
    assert any(flag.startswith("coupling.py") for flag in rows["partial"]["flags"])


@pytest.mark.slow
def test_grading_never_writes_into_submissions(fake_class):
    _, tmp, before, _, _ = fake_class
    assert snapshot(tmp / "subs") == before


@pytest.mark.slow
def test_csv_has_a_row_per_stage_and_check(fake_class):
    _, tmp, _, _, _ = fake_class
    document = json.loads((tmp / "r.json").read_text())
    rows = list(csv.DictReader((tmp / "r.csv").open()))
    assert tuple(rows[0]) == report.CSV_COLUMNS
    assert sum(r["row"] == "submission" for r in rows) == len(document["submissions"])
    assert sum(r["row"] == "check" for r in rows) == sum(s["checks_total"] for s in document["submissions"])


@pytest.mark.slow
def test_rerun_resumes_and_regrades_only_missing_rows(fake_class):
    expected, tmp, _, _, _ = fake_class
    args = ["grade", str(tmp / "subs"), "--json", str(tmp / "r.json"), "--stage", "coupling",
            "--stage", "model", *CLASS_LIMITS]
    run = nicelab(*args)
    assert run.returncode == 0 and "grading 0 submissions" in run.stdout
    assert f"{len(expected)} already graded" in run.stdout
    document = json.loads((tmp / "r.json").read_text())
    dropped = ("sys_exit", "import_error")
    kept = {row["name"]: row for row in document["submissions"] if row["name"] not in dropped}
    document["submissions"] = list(kept.values())
    (tmp / "r.json").write_text(json.dumps(document))
    run = nicelab(*args)
    assert run.returncode == 0 and "grading 2 submissions" in run.stdout
    rows = {row["name"]: row for row in validate(tmp / "r.json")["submissions"]}
    assert sorted(rows) == sorted(expected)
    assert all(rows[name] == row for name, row in kept.items())  # untouched, not regraded
    assert stage_statuses(rows["sys_exit"]) == expected["sys_exit"][1]


def _workers_of(parent: int) -> list[int]:
    """The grading workers descending from ``parent`` (any, for 0); in the sandbox a worker's
    parent is bwrap, whose parent is bwrap, whose parent is the batch."""
    parents, workers = {}, []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if b"nicelab.grader.worker" in (entry / "cmdline").read_bytes():
                    workers.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue

    def descends(pid: int) -> bool:
        for _ in range(8):
            pid = parents.get(pid, 0)
            if pid == parent:
                return True
        return False

    return [pid for pid in workers if parent == 0 or descends(pid)]


@pytest.mark.slow
def test_killed_batch_leaves_readable_rows_and_resumes(tmp_path):
    subs = tmp_path / "subs"
    for name in ("a", "b", "c"):
        (subs / name).mkdir(parents=True)
        for file in ("__init__.py", "coupling.py"):
            (subs / name / file).write_bytes((LESSONS / file).read_bytes())
    out = tmp_path / "r.json"
    args = [sys.executable, "-m", "nicelab.cli", "grade", str(subs), "--json", str(out),
            "--stage", "coupling", "--jobs", "1"]
    env = {**os.environ, "NICELAB_GRADE_KEY_FILE": str(KEY_FILE)}
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and json.loads(out.read_text())["submissions"]:
            break
        time.sleep(0.05)
    while time.monotonic() < deadline and proc.poll() is None and not _workers_of(proc.pid):
        time.sleep(0.05)  # kill it while it grades the next one
    workers = _workers_of(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # the harshest interruption: no cleanup at all
    proc.wait()
    done = json.loads(out.read_text())["submissions"]  # always a valid file
    assert 1 <= len(done) <= 3
    for _ in range(100):  # the running worker notices its batch is gone and exits
        if not any(Path(f"/proc/{pid}").exists() for pid in workers):
            break
        time.sleep(0.1)
    alive = [pid for pid in workers if pid in _workers_of(0)]
    assert not alive, f"worker processes {alive} outlived their killed batch"
    run = nicelab("grade", str(subs), "--json", str(out), "--stage", "coupling", "--jobs", "1")
    assert run.returncode == 0 and f"{len(done)} already graded" in run.stdout
    rows = {row["name"]: row for row in validate(out)["submissions"]}
    assert sorted(rows) == ["a", "b", "c"]
    assert all(rows[row["name"]] == row for row in done)
    assert {stage_statuses(row)["coupling"] for row in rows.values()} == {"not started"}


@pytest.mark.slow
def test_submission_time_limit_stops_a_hang(tmp_path):
    make_hanging(tmp_path / "subs")
    run = nicelab("grade", str(tmp_path / "subs"), "--json", str(tmp_path / "r.json"), "--stage", "coupling",
                  "--stage", "model", "--timeout", "15")
    assert run.returncode == 0, run.stdout + run.stderr
    (row,) = validate(tmp_path / "r.json")["submissions"]
    assert row["status"] == "timeout" and "time limit of 15 s" in row["message"]
    assert stage_statuses(row) == {"coupling": "timed out", "model": "not graded"}
    assert row["attempts"] == 1  # no time left for another process


def test_batch_needs_a_results_file(tmp_path):
    (tmp_path / "a").mkdir()
    run = nicelab("grade", str(tmp_path), timeout=120)
    assert run.returncode == 2 and "needs --json FILE" in run.stderr

