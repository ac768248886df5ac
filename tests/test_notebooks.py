"""The course notebooks: generated from their plain-text sources (no drift), one per stage and
one for MNIST, inert Colab cell locally, no answers in them, ``nicelab.check`` prints the
checks' verdicts; and, slow: every notebook runs top to bottom on the reference, offline and in
its time limit, and stops in its check cell on the stubs with the stage's message."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import notebook_runs
import pytest
from mutation_support import ROOT

from nicelab import STAGES
from nicelab.authoring import notebooks

nbformat = pytest.importorskip("nbformat", reason="the dev extra has nbformat (make test installs it)")
pytest.importorskip("jupytext", reason="the dev extra has jupytext (make test installs it)")

NAMES = tuple(notebooks.PAGES)
#: What each notebook's check cell runs, and the stage its stubs' message names first.
CHECKED = {f"{i}-{name}": (name,) for i, (name, _) in enumerate(STAGES, start=1)}
CHECKED["mnist"] = ("coupling", "model", "likelihood")
#: Wall-clock limit for running one notebook in the execution tests (2 training epochs).
TIME_LIMIT = 300


def source(name: str) -> str:
    return (notebooks.SOURCES / f"{name}.py").read_text()


def generated(name: str) -> dict:
    return json.loads((notebooks.OUTPUT / f"{name}.ipynb").read_text())


def code_cells(name: str) -> list[dict]:
    return [c for c in generated(name)["cells"] if c["cell_type"] == "code"]


def test_generated_files_match_their_sources():
    stale = [str(p.relative_to(ROOT)) for p in notebooks.stale()]
    assert not stale, f"{stale} drifted from notebooks/src/: run `nicelab notebooks`"


def test_one_notebook_per_stage_and_one_for_mnist():
    assert sorted(p.stem for p in notebooks.SOURCES.glob("*.py")) == sorted(NAMES)
    assert sorted(p.stem for p in notebooks.OUTPUT.glob("*.ipynb")) == sorted(NAMES)
    assert set(CHECKED) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_layout(name):
    config = notebooks.settings()
    cells = generated(name)["cells"]
    intro = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and intro.startswith("# ")
    assert f"[Open in Colab]({notebooks.colab_url(name, config)})" in intro
    page = notebooks.PAGES[name][1].removesuffix(".md")
    assert f"{config['site']}{page}/" in intro and f"docs/{page}.md" in intro
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert "google.colab" in code[0], "the first code cell installs the course on Colab"
    assert "%load_ext autoreload" in code[1] and "%autoreload 2" in code[1]
    assert 'os.environ.get("NICELAB_IMPL", "lessons")' in code[1]
    checks = [c for c in cells if "check" in c["metadata"].get("tags", [])]
    assert len(checks) == 1, "exactly one cell tagged 'check'"
    stages = ", ".join(f'"{s}"' for s in CHECKED[name])
    assert "".join(checks[0]["source"]) == f"nicelab.check({stages}, impl=IMPL)"
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")


def test_colab_cell_is_the_same_everywhere_and_inert_here(monkeypatch, tmp_path):
    cells = {name: "".join(code_cells(name)[0]["source"]) for name in NAMES}
    assert len(set(cells.values())) == 1
    cell = cells[NAMES[0]]
    calls: list = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(cell, "colab-cell", "exec"), {})
    assert calls == [] and Path.cwd() == tmp_path, "the Colab cell did something on this machine"
    # On Colab: clone the configured repository and install it, then work there.
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    moved: list = []
    monkeypatch.setattr(os, "chdir", moved.append)
    monkeypatch.setattr(os.path, "isdir", lambda path: False)
    exec(compile(cell, "colab-cell", "exec"), {})
    repository = notebooks.settings()["repository"]
    assert calls[0][0][:2] == ["git", "clone"] and f"https://github.com/{repository}.git" in calls[0][0]
    assert calls[1][0][1:4] == ["-m", "pip", "install"] and moved == ["/content/nicelab"]


def test_settings_fill_the_links(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.nicelab.notebooks]\nrepository = "someone/course"\nbranch = "v2"\n')
    config = notebooks.settings(pyproject)
    assert notebooks.colab_url("1-coupling", config) == (
        "https://colab.research.google.com/github/someone/course/blob/v2/notebooks/1-coupling.ipynb")
    text = notebooks.render(source("1-coupling"), "1-coupling", config)
    assert "someone/course" in text and "{{" not in text
    assert notebooks.colab_url("mnist", config) in notebooks.docs_page(config)


def solution_lines() -> set[str]:
    """Substantial code lines of the reference's solution blocks (what a stub leaves out)."""
    lines, inside = set(), False
    for path in sorted((ROOT / "solutions").glob("*.py")):
        for line in path.read_text().splitlines():
            text = line.strip()
            if text.startswith("# BEGIN SOLUTION"):
                inside = True
            elif text.startswith("# END SOLUTION"):
                inside = False
            elif inside and not text.startswith("#") and len(text) >= 20:
                lines.add(text)
    return lines


def test_notebooks_hold_no_answers():
    answers = solution_lines()
    assert len(answers) > 20, "found too few solution lines: has the marker syntax changed?"
    for name in NAMES:
        text = source(name)
        leaked = sorted(line for line in answers if line in text)
        assert not leaked, f"notebooks/src/{name}.py holds solution code: {leaked[:3]}"


def test_notebooks_command(capsys):
    from nicelab.cli import main

    assert main(["notebooks", "--check"]) == 0
    assert "match their sources" in capsys.readouterr().out


def test_check_prints_the_verdicts_and_stops_on_a_stub():
    """``import nicelab`` loads neither pytest nor TensorFlow; ``nicelab.check`` prints one line
    per check; on the stubs it raises ChecksFailed with the stage's message."""
    code = (
        "import sys, nicelab\n"
        "assert 'tensorflow' not in sys.modules and 'pytest' not in sys.modules\n"
        "results = nicelab.check('coupling', impl='solutions')\n"
        "print('RESULT', repr(results))\n"
        "try:\n"
        "    nicelab.check('coupling', impl='lessons', keyword='backward_undoes')\n"
        "except nicelab.grader.inline.ChecksFailed as err:\n"
        "    print('RAISED', err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    passed = re.findall(r"^PASSED checks/test_coupling\.py::\S+$", out, re.M)
    assert len(passed) >= 10 and "== " in out and re.search(r"RESULT <\d+ checks: \d+ passed>", out)
    assert re.search(r"^FAILED checks/test_coupling\.py::test_backward_undoes_forward\[0\] - Not implemented "
                     r"yet - Stage 1 \(coupling\)", out, re.M)
    assert re.search(r"^RAISED 2 of 2 checks did not pass; first: .* Stage 1 \(coupling\)", out, re.M)


@pytest.fixture(scope="module")
def run_env(tmp_path_factory) -> dict[str, str]:
    """Offline: runs/ in a temporary folder, and a small fake MNIST in Keras' cache format."""
    from nicelab.core import mnist

    keras_home = tmp_path_factory.mktemp("keras")
    mnist.write_fake("mnist", keras_home, n_train=1200, n_test=200)
    return {"NICELAB_NB_EPOCHS": "2", "NICELAB_RUNS": str(tmp_path_factory.mktemp("runs")),
            "KERAS_HOME": str(keras_home), "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def executed(run_env) -> dict[tuple[str, str], dict]:
    """Every notebook run on the reference and on the stubs, two at a time:
    ``(impl, name) -> notebook_runs.run``'s answer."""
    jobs = {(impl, name): (str(notebooks.OUTPUT / f"{name}.ipynb"), {**run_env, "NICELAB_IMPL": impl},
                           TIME_LIMIT)
            for impl in ("solutions", "lessons") for name in NAMES}
    return notebook_runs.run_all(jobs)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_clean_on_the_reference(name, executed):
    run = executed[("solutions", name)]
    print(f"{name}: ran clean on the reference in {run['seconds']:.1f} s")
    assert run["error"] is None, run["error"]
    outputs = [o for c in run["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "solutions" in text and re.search(r"== \d+ passed ==", text)
    assert "FAILED" not in text
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure came out"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_stops_in_its_check_cell_on_the_stubs(name, executed):
    error = executed[("lessons", name)]["error"]
    assert error is not None, f"{name} ran through on the stubs"
    stage = CHECKED[name][0]
    number = [s for s, _ in STAGES].index(stage) + 1
    assert error["ename"] == "ChecksFailed"
    assert f"Stage {number} ({stage}): implement" in error["evalue"]
    check_cell = next(c.source for c in nbformat.read(notebooks.OUTPUT / f"{name}.ipynb", as_version=4).cells
                      if "check" in c.metadata.get("tags", []))
    assert check_cell in error["text"], "the notebook failed before or after its check cell"


@pytest.mark.slow
def test_setup_cells_reload_an_edited_lesson_module(tmp_path):
    """The notebooks' setup finds the project above the notebook's folder and imports its
    lessons/ with autoreload on: a lesson module edited after the import runs its new code in
    the next cell, with no restart."""
    from nbclient import NotebookClient

    project = tmp_path / "course"
    (project / "notebooks").mkdir(parents=True)
    (project / "lessons").mkdir()
    (project / "lessons" / "__init__.py").write_text("")
    module = project / "lessons" / "coupling.py"
    module.write_text("def answer():\n    return 1\n")
    colab, setup = ("".join(c["source"]) for c in code_cells("1-coupling")[:2])
    cells = [colab, setup, "print('first', coupling.answer())",
             f"from pathlib import Path\nPath({str(module)!r}).write_text('def answer():\\n    return 2\\n')",
             "print('second', coupling.answer())"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NICELAB_IMPL": "lessons", "TF_CPP_MIN_LOG_LEVEL": "2"}
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        NotebookClient(notebook, timeout=240, kernel_name="python3",
                       resources={"metadata": {"path": str(project / "notebooks")}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    text = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert f"using {module}" in text
    assert "first 1" in text and "second 2" in text
