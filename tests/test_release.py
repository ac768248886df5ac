"""``nicelab release student``: for every open stage K, a handout that holds no reference code
of stage K or later in any file (nor in the site it builds), grades stages 1 to K with
``pytest checks`` and says "not released yet" for the others, carries a student's lessons over
to the next release, and ships a GitHub Classroom workflow whose commands report points."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nicelab import STAGE_NAMES
from nicelab.authoring import leaks
from nicelab.authoring.release import ReleaseError, release_student
from nicelab.core.stubs import make_stub
from nicelab.grader.released import FILENAME
from nicelab.grader.results.report import load_points

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
BLOCK = re.compile(r"# BEGIN SOLUTION: .*?\n(.*?)# END SOLUTION", re.S)
#: A line this long (whitespace removed) is specific to its reference, not an idiom.
SPECIFIC = 20


def reference_code(stage: str) -> tuple[list[str], set[str]]:
    """The stage's reference as the test sees it, independently of nicelab.authoring.leaks:
    each solution block's code (``# >`` step lines and comments dropped, whitespace removed),
    and its lines of at least SPECIFIC characters that the stub does not show itself."""
    source = (SOLUTIONS / f"{stage}.py").read_text()
    stub = re.sub(r"\s+", "", make_stub(source, stage))
    bodies, lines = [], set()
    for body in BLOCK.findall(source):
        code = [re.sub(r"\s+", "", line.split("#")[0]) for line in body.splitlines()]
        code = [line for line in code if line]
        bodies.append("".join(code))
        lines |= {line for line in code if len(line) >= SPECIFIC and line not in stub}
    return bodies, lines


def squashed_files(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(skip):
            text = leaks.read_text(path)
            if text is not None:
                if path.suffix == ".html":  # the built site: the text a reader sees
                    text = html.unescape(re.sub(r"<[^>]+>", "", text))
                files[rel] = re.sub(r"\s+", "", "\n".join(line.lstrip().lstrip("#>") for line in
                                                          text.splitlines()))
    return files


def assert_no_reference(root: Path, open_stage: int, skip: tuple[str, ...] = ()) -> None:
    """No whole solution block of stage ``open_stage`` or later in any file under ``root``, and
    none of their specific lines, but for the lines the released checks hold themselves (the
    grader's own idioms, such as ``with tf.GradientTape() as tape:``)."""
    files = squashed_files(root, skip)
    assert files, f"no text files under {root}"
    released = ("conftest", *STAGE_NAMES[:open_stage])
    checks = "\n".join(text for rel, text in squashed_files(ROOT / "checks").items()
                       if rel.removeprefix("test_").removesuffix(".py") in released)
    checks += "\n".join(text for rel, text in squashed_files(ROOT / "nicelab" / "grader" / "recipes").items()
                        if rel.removesuffix(".py") not in STAGE_NAMES[open_stage:])  # the checks' own code
    # The released references ship as they are: code a later stage shares with them (RealNVP
    # loops over its couplings as NICE does) gives nothing away.
    shipped = "\n".join(text for rel, text in squashed_files(SOLUTIONS).items()
                         if rel.removesuffix(".py") in STAGE_NAMES[: open_stage - 1])
    for stage in STAGE_NAMES[open_stage - 1:]:
        bodies, lines = reference_code(stage)
        bodies = [body for body in bodies if body not in shipped]
        lines = {line for line in lines
                 if line not in checks and line not in shipped and line not in leaks.IDIOMS}
        for rel, text in files.items():
            for body in bodies:
                assert body not in text, f"{rel} holds a whole solution block of stage {stage}"
            found = [line for line in lines if line in text]
            assert not found, f"{rel} holds reference lines of stage {stage}: {found}"


@pytest.fixture(scope="module")
def handouts(tmp_path_factory):
    base = tmp_path_factory.mktemp("handouts")
    return {k: release_student(base / f"open{k}", k) for k in range(1, len(STAGE_NAMES) + 1)}


@pytest.mark.parametrize("open_stage", range(1, len(STAGE_NAMES) + 1))
def test_handout_holds_no_reference_of_the_open_stage_or_later(handouts, open_stage):
    root = handouts[open_stage].root
    assert_no_reference(root, open_stage)


@pytest.mark.parametrize("open_stage", range(1, len(STAGE_NAMES) + 1))
def test_handout_layout(handouts, open_stage):
    root = handouts[open_stage].root
    names = lambda folder: sorted(p.stem for p in (root / folder).glob("*.py") if p.stem != "__init__")  # noqa: E731
    assert names("solutions") == sorted(STAGE_NAMES[: open_stage - 1])
    assert names("checks") == sorted(["conftest", *(f"test_{s}" for s in STAGE_NAMES[:open_stage])])
    assert names("lessons") == sorted(STAGE_NAMES)
    for stage in STAGE_NAMES:
        stub = make_stub((SOLUTIONS / f"{stage}.py").read_text(), stage)
        assert (root / "lessons" / f"{stage}.py").read_text() == stub
    assert f"open_stage = {open_stage}" in (root / FILENAME).read_text()
    assert not (root / "tests").exists() and not (root / "benchmarks").exists()
    assert not (root / "nicelab" / "authoring").exists()
    assert (root / "nicelab" / "grader" / "fixtures.py").exists() == (open_stage > 3)
    makefile, readme = (root / "Makefile").read_text(), (root / "README.md").read_text()
    assert re.search(r"^run: .*\n\t\$\(BIN\)/nicelab train parabola --impl \$\(IMPL\)$", makefile, re.M)
    assert re.search(r"^test: .*\n\t\$\(BIN\)/python -m pytest checks$", makefile, re.M)
    assert f"IMPL ?= {'solutions' if open_stage > 3 else 'lessons'}" in makefile
    assert "make run" in readme and "make test" in readme and f"stage {open_stage}" in readme
    assert "-p nicelab.grader.released" in (root / "pyproject.toml").read_text()


def test_answers_of_open_stages_are_dropped_and_later_kept():
    from nicelab.authoring.docs import drop_answers, redact

    page = ("# Stage\n\nText.\n\n??? answer \"Predict, then check\"\n    The log-det is `0.0`.\n\n"
            "    still the answer\n\n??? tip \"Hint\"\n    a hint\n\nAfter.\n")
    dropped, count = drop_answers(page, "coupling")
    assert count == 1 and "0.0" not in dropped and "still the answer" not in dropped
    assert "a hint" in dropped and "After." in dropped and "comes with the next handout" in dropped
    secret = {"coupling": {"y=x+self.m(x)"}}
    kept, found = redact("Para one.\n\nWrite `y = x + self.m(x)` here.\n\n```python\nok()\n```\n", secret)
    assert found == [["y=x+self.m(x)"]] and "self.m" not in kept and "Para one." in kept and "ok()" in kept


def run_in(root: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """A command in the handout, importing the handout's own nicelab (not this repository's)."""
    env = {k: v for k, v in os.environ.items() if k != "NICELAB_IMPL"}
    env["PYTHONPATH"] = str(root)
    return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_pytest_checks_grades_released_stages_and_says_not_released(handouts, tmp_path):
    root = handouts[2].root
    stubs = run_in(root, "-m", "pytest", "checks", "-q", "-p", "no:randomly")
    assert stubs.returncode == 1, stubs.stdout[-2000:]
    assert "Not implemented yet - Stage 1" in stubs.stdout and "Not implemented yet - Stage 2" in stubs.stdout
    for number, stage in enumerate(STAGE_NAMES[2:], start=3):
        assert f"stage {number} ({stage}): not released yet" in stubs.stdout
    done = tmp_path / "done"
    shutil.copytree(SOLUTIONS, done, ignore=shutil.ignore_patterns("__pycache__"))
    graded = run_in(root, "-m", "pytest", "checks", "-q", "--impl", str(done))
    assert graded.returncode == 0, graded.stdout[-2000:]
    assert re.search(r"\d+ passed", graded.stdout) and "failed" not in graded.stdout
    later = run_in(root, "-m", "pytest", "checks", "-q", "-m", "likelihood")
    assert "stage 3 (likelihood): not released yet" in later.stdout and later.returncode == 5


def test_next_release_carries_the_students_lessons_over(tmp_path):
    out = tmp_path / "handout"
    release_student(out, 1)
    work = "# my own work\n" + (out / "lessons" / "coupling.py").read_text()
    (out / "lessons" / "coupling.py").write_text(work)
    (out / "lessons" / "notes.txt").write_text("mine")
    (out / "lessons" / "model.py").unlink()  # a stub the student deleted comes back
    before = {p.name: p.read_bytes() for p in (out / "lessons").iterdir() if p.is_file()}
    handout = release_student(out, 2)
    assert (out / "lessons" / "coupling.py").read_text() == work
    assert (out / "lessons" / "notes.txt").read_text() == "mine"
    assert (out / "lessons" / "model.py").exists()
    assert {name: (out / "lessons" / name).read_bytes() for name in before} == before
    assert (out / "solutions" / "coupling.py").exists() and (out / "checks" / "test_model.py").exists()
    assert "lessons/coupling.py" in handout.kept_lessons
    fresh = release_student(tmp_path / "fresh", 3, lessons_from=out)
    assert (fresh.root / "lessons" / "coupling.py").read_text() == work
    assert_no_reference(fresh.root, 3, skip=("lessons/",))


def test_release_refuses_a_foreign_folder_and_a_bad_stage(tmp_path):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "thesis.tex").write_text("mine")
    with pytest.raises(ReleaseError, match="not a nicelab handout"):
        release_student(tmp_path / "project", 2)
    with pytest.raises(ValueError, match=f"stage number from 1 to {len(STAGE_NAMES)}"):
        release_student(tmp_path / "new", len(STAGE_NAMES) + 1)
    assert (tmp_path / "project" / "thesis.tex").read_text() == "mine"


@pytest.mark.slow
def test_handout_site_builds_and_shows_no_reference(handouts, tmp_path):
    root = handouts[1].root
    site = tmp_path / "site"
    mkdocs = str(Path(sys.executable).parent / "mkdocs")
    env = {**os.environ, "PYTHONPATH": str(root)}
    built = subprocess.run([mkdocs, "build", "--strict", "-q", "-d", str(site)], cwd=root, env=env,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    assert (site / "lessons" / "1-coupling" / "index.html").exists()
    assert_no_reference(site, 1)


# ----------------------------------------------------------------------------- GitHub Classroom

def workflow_steps(root: Path) -> list[dict]:
    workflow = yaml.safe_load((root / ".github" / "workflows" / "classroom.yml").read_text())
    return workflow["jobs"]["run-autograding-tests"]["steps"]


def test_classroom_workflow_reports_every_released_stage(handouts):
    steps = workflow_steps(handouts[3].root)
    grade = next(s for s in steps if s.get("id") == "grade")
    reporter = next(s for s in steps if "autograding-grading-reporter" in s.get("uses", ""))
    assert reporter["with"]["runners"] == "coupling,model,likelihood"
    assert set(reporter["env"]) == {"COUPLING_RESULTS", "MODEL_RESULTS", "LIKELIHOOD_RESULTS"}
    assert reporter["env"]["MODEL_RESULTS"] == "${{ steps.grade.outputs.model }}"
    assert "nicelab.cli grade --json" in grade["run"]


@pytest.mark.slow
def test_classroom_workflow_commands_run_here(handouts, tmp_path):
    """The grading step's commands, run as GitHub Actions would (bash, $GITHUB_OUTPUT set), on
    a handout whose student finished stage 1: the reporter's inputs decode to its points."""
    root = tmp_path / "repo"
    shutil.copytree(handouts[2].root, root)
    shutil.copyfile(SOLUTIONS / "coupling.py", root / "lessons" / "coupling.py")
    grade = next(s for s in workflow_steps(root) if s.get("id") == "grade")
    output = tmp_path / "github_output"
    env = {k: v for k, v in os.environ.items() if k != "NICELAB_IMPL"}
    env.update(PYTHONPATH=str(root), GITHUB_OUTPUT=str(output),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    done = subprocess.run(["bash", "-e", "-c", grade["run"]], cwd=root, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    results = {name: json.loads(base64.b64decode(value)) for name, value in outputs.items()}
    assert set(results) == {"coupling", "model"}
    coupling, model = results["coupling"], results["model"]
    points = load_points()
    full = points.of("coupling")
    assert coupling["status"] == "pass" and coupling["max_score"] == full
    assert sum(t["score"] for t in coupling["tests"]) == full  # exactly: the reporter adds them up
    assert model["status"] == "fail" and sum(t["score"] for t in model["tests"]) == 0
    assert all(t["status"] == "fail" and "Not implemented yet" in t["message"] for t in model["tests"])
    assert f"Points {full:g}/{full + points.of('model'):g}" in done.stderr


def test_a_handout_that_would_leak_is_refused_and_removed(tmp_path):
    source = tmp_path / "course"
    for folder in ("solutions", "checks", "nicelab", "docs"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("mkdocs.yml", ".gitignore", "pyproject.toml"):
        shutil.copyfile(ROOT / name, source / name)
    blocks = BLOCK.findall((SOLUTIONS / "model.py").read_text())
    forward = next(line.strip() for block in blocks for line in block.splitlines()
                   if "coupling.forward" in line)
    (source / "nicelab" / "notes.py").write_text(f'"""Worked example: {forward}"""\n')
    with pytest.raises(ReleaseError, match=r"nicelab/notes\.py: holds a line of the stage model reference"):
        release_student(tmp_path / "out", 2, source=source)
    assert not (tmp_path / "out" / "nicelab" / "notes.py").exists()
    assert not (tmp_path / "out" / "checks").exists() or not any((tmp_path / "out" / "checks").iterdir())


def test_classroom_outputs_say_when_grading_died(tmp_path):
    """No results file (the grading process was killed): every released stage is an error worth 0,
    with its points as the maximum, in the lines $GITHUB_OUTPUT takes."""
    from nicelab.grader import classroom

    output = tmp_path / "github_output"
    assert classroom.main([str(tmp_path / "missing.json"), "--output", str(output)]) == 0
    results = {name: json.loads(base64.b64decode(value))
               for name, value in (line.split("=", 1) for line in output.read_text().splitlines())}
    assert list(results) == list(STAGE_NAMES)  # this repository releases every stage
    for result in results.values():
        (test,) = result["tests"]
        assert result["status"] == "error" and test["score"] == 0
        assert "grading did not finish" in test["message"]
    assert results["likelihood"]["max_score"] == 25


def make_recipe(root: Path, target: str) -> list[str]:
    """The command of a Makefile target of the handout, as arguments for this Python (no make:
    the handout's Makefile would build its own virtual environment first)."""
    makefile = (root / "Makefile").read_text()
    impl = re.search(r"^IMPL \?= (\S+)$", makefile, re.M)[1]
    line = re.search(rf"^{target}: .*\n\t(.+)$", makefile, re.M)[1]
    for make, here in (("$(BIN)/nicelab", "-m nicelab.cli"), ("$(BIN)/python ", ""), ("$(IMPL)", impl)):
        line = line.replace(make, here)
    return line.split()


@pytest.mark.slow
def test_make_run_trains_in_a_handout(handouts, tmp_path):
    """`make run` trains the released reference once stages 1-3 are out (a 1-epoch run here), and
    says what to fill in before that, when it trains the student's own stubs."""
    later = make_recipe(handouts[4].root, "run")
    assert later[-2:] == ["--impl", "solutions"]
    done = run_in(handouts[4].root, *later, "--epochs", "1", "--quiet", "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "gap" in done.stdout and (tmp_path / "run" / "loss.png").exists()
    early = make_recipe(handouts[2].root, "run")
    assert early[-2:] == ["--impl", "lessons"]
    done = run_in(handouts[2].root, *early, "--epochs", "1", "--quiet", "--out", str(tmp_path / "early"))
    assert done.returncode == 2 and "not implemented yet - Stage" in done.stderr
