"""``nicelab release gradescope``: the bundle in Gradescope's autograder format, run here with
AUTOGRADER_ROOT in place of /autograder and this project's virtual environment (setup.sh's
installs would download, so they are not run): full marks on a correct submission, zero on
the stubs, and a results file that says what happened on a crashing one."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from fake_submissions import SEGFAULT, _in_forward

from nicelab.authoring.gradescope import TEMPLATES, results, write_bundle
from nicelab.grader.results.report import load_points

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = '''
import numpy as np

from nicelab.grader.assertions import expect


def test_hidden_model_round_trip(model):
    flow = model.NICE(4, num_couplings=2, hidden_units=8, hidden_layers=1)
    x = np.ones((3, 4), np.float32)
    error = float(np.max(np.abs(flow.backward(flow.forward(x)) - x)))
    expect(error < 1e-4, "backward(forward(x)) == x", f"an error of {error:.3g}", "undo the layers.")
'''
#: The bundle graded here: stages 1-2 (the cheap ones), with one hidden check.
OPEN_STAGE = 2
MAX_POINTS = sum(load_points().of(stage) for stage in ("coupling", "model"))  # from points.toml


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gradescope")
    (tmp / "hidden").mkdir()
    (tmp / "hidden" / "test_hidden_model.py").write_text(HIDDEN)
    made = write_bundle(tmp / "autograder.zip", OPEN_STAGE, [tmp / "hidden"], timeout=600, memory_mb=2048)
    print(made.summary())
    return made


def test_bundle_layout(bundle):
    with zipfile.ZipFile(bundle.path) as archive:
        names = set(archive.namelist())
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
        settings = json.loads(archive.read("nicelab-gradescope.json"))
        requirements = archive.read("requirements.txt").decode()
    assert {"setup.sh", "run_autograder", "requirements.txt", "points.toml", "nicelab/cli/app.py"} <= names
    assert modes["setup.sh"] & stat.S_IXUSR and modes["run_autograder"] & stat.S_IXUSR
    solutions = sorted(n for n in names if n.startswith("solutions/"))
    assert solutions == ["solutions/__init__.py", "solutions/coupling.py"]  # never the stage graded
    assert sorted(n for n in names if n.startswith("checks/")) == [
        "checks/conftest.py", "checks/test_coupling.py", "checks/test_model.py"]
    assert "hidden/0-hidden/test_hidden_model.py" in names
    assert not any(n.startswith("benchmarks") or n == "nicelab/cli/commands/bench.py" for n in names)
    assert settings["stages"] == ["coupling", "model"] and settings["hidden_checks"] == ["hidden/0-hidden"]
    assert settings["isolation"] == "auto"
    assert "tensorflow==" in requirements and "tensorflow-probability[tf]==" in requirements
    assert bundle.size < 5 * 2**20
    for script in ("setup.sh", "run_autograder"):  # valid bash (setup.sh's installs would download)
        subprocess.run(["bash", "-n", str(TEMPLATES / script)], check=True)


def unpack_bundle(bundle, root: Path, submission: Path) -> None:
    """Unpack the bundle into ``root/source`` as Gradescope does and put the submission in place."""
    with zipfile.ZipFile(bundle.path) as archive:
        archive.extractall(root / "source")
    for script in ("setup.sh", "run_autograder"):
        (root / "source" / script).chmod(0o755)
    shutil.copytree(submission, root / "submission", ignore=shutil.ignore_patterns("__pycache__"))


def run_bundle(bundle, tmp_path: Path, submission: Path, root: Path | None = None,
               env: dict[str, str] | None = None) -> dict:
    """Unpack the bundle (into ``root``, by default ``tmp_path/autograder``), put the submission in
    place and run run_autograder (with ``env`` added to its environment)."""
    root = root or tmp_path / "autograder"
    unpack_bundle(bundle, root, submission)
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NICELAB_IMPL")}
    environment.update(AUTOGRADER_ROOT=str(root), NICELAB_PYTHON=sys.executable)
    environment.update(env or {})
    done = subprocess.run([str(root / "source" / "run_autograder")], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((root / "results" / "results.json").read_text())


def totals(document: dict) -> tuple[float, float]:
    return sum(t["score"] for t in document["tests"]), sum(t["max_score"] for t in document["tests"])


@pytest.mark.slow
def test_correct_submission_gets_full_marks(bundle, tmp_path):
    submission = tmp_path / "repo"
    shutil.copytree(ROOT / "lessons", submission / "lessons")  # as uploaded from a GitHub repository
    for stage in ("coupling", "model"):
        shutil.copyfile(ROOT / "solutions" / f"{stage}.py", submission / "lessons" / f"{stage}.py")
    document = run_bundle(bundle, tmp_path, submission)
    assert totals(document) == (MAX_POINTS, MAX_POINTS)
    tests = document["tests"]
    assert all(t["status"] == "passed" and t["output"] == "passed" for t in tests)
    assert {t["tags"][0] for t in tests} == {"coupling", "model"}
    hidden = [t for t in tests if t["visibility"] == "after_published"]
    assert [t["name"] for t in hidden] == ["2 model: test_hidden_model_round_trip (hidden)"]
    assert all(t["visibility"] == "visible" for t in tests if t not in hidden)
    assert "test_hidden_model_round_trip" not in document["output"]  # the public table leaves it out


@pytest.mark.slow
def test_stubs_get_zero(bundle, tmp_path):
    document = run_bundle(bundle, tmp_path, ROOT / "lessons")
    score, max_score = totals(document)
    assert score == 0 and max_score == MAX_POINTS
    public = [t for t in document["tests"] if t["visibility"] == "visible"]
    assert public and all(t["output"].startswith("Not implemented yet - Stage") for t in public)
    assert all("\n" not in t["output"] for t in document["tests"])


@pytest.mark.slow
def test_crashing_submission_gets_a_results_file_that_says_so(bundle, tmp_path):
    submission = tmp_path / "crashing"
    shutil.copytree(ROOT / "lessons", submission, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(ROOT / "solutions" / "coupling.py", submission / "coupling.py")
    _in_forward(submission, SEGFAULT)
    document = run_bundle(bundle, tmp_path, submission)
    assert document["output"].startswith("Grading stopped early (crashed)")
    crashed = [t for t in document["tests"] if t["output"].endswith("died of SIGSEGV during this check.")]
    assert len(crashed) == 1 and crashed[0]["score"] == 0 and crashed[0]["tags"] == ["coupling"]
    rest = [t for t in document["tests"] if t["tags"] == ["coupling"] and t not in crashed]
    assert rest and all(t["output"].startswith("not run: the grading process died of SIGSEGV")
                        for t in rest), [t["output"] for t in rest]
    assert totals(document)[1] == MAX_POINTS


def test_results_of_a_row_that_never_ran():
    row = {"status": "error", "message": "cannot copy the submission: too big", "wall_time": 0.0,
           "checks_passed": 0, "checks_total": 0, "points": 0.0, "max_points": 20.0,
           "stages": [{"stage": "coupling", "number": 1, "status": "no checks", "status_text": "no checks",
                       "passed": 0, "total": 0, "points": 0.0, "max_points": 20.0, "checks": []}]}
    document = results(row)
    (test,) = document["tests"]
    assert test["max_score"] == 20.0 and test["score"] == 0 and "too big" in test["output"]
    assert document["output"].startswith("Grading stopped early (error)")


def test_run_autograder_writes_a_results_file_when_python_fails(bundle, tmp_path):
    root = tmp_path / "autograder"
    with zipfile.ZipFile(bundle.path) as archive:
        archive.extractall(root / "source")
    (root / "source" / "nicelab" / "authoring" / "gradescope.py").write_text("raise SystemExit(3)\n")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "NICELAB_PYTHON": sys.executable}
    subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True,
                   timeout=120, check=True)
    document = json.loads((root / "results" / "results.json").read_text())
    assert document["score"] == 0 and "exit status 3" in document["output"]


def test_scores_add_up_to_the_stage_points_exactly():
    from nicelab.grader.results.scores import check_max_scores, check_scores

    checks = [{"points": 20 / 18 if i != 4 else 0.0} for i in range(18)]
    stage = {"points": round(17 * 20 / 18, 4), "max_points": 20.0, "checks": checks}
    assert sum(check_max_scores(stage)) == 20.0 and sum(reversed(check_max_scores(stage))) == 20.0
    scores = check_scores(stage)
    assert scores[4] == 0 and abs(sum(scores) - 17 * 20 / 18) < 1 / 512
    assert check_scores({"points": 20.0, "max_points": 20.0, "checks": [{"points": 1.0}] * 18}) == \
        check_max_scores(stage)
