"""Finding and loading implementations: names, folders, packages, and the reference
underneath a stage's module."""

from __future__ import annotations

import shutil

import pytest
from mutation_support import ROOT

from nicelab.core import impl


def test_resolve_names_and_folders(tmp_path, monkeypatch):
    assert impl.resolve("solutions") == ROOT / "solutions"
    assert impl.resolve("lessons") == ROOT / "lessons"
    assert impl.resolve(str(ROOT / "lessons")) == ROOT / "lessons"
    monkeypatch.setenv(impl.ENV_VAR, "solutions")
    assert impl.default_impl() == "solutions"
    with pytest.raises(impl.ImplementationError, match="cannot find the implementation"):
        impl.resolve(str(tmp_path / "nowhere"))


def test_stage_runs_on_the_reference_of_earlier_stages(tmp_path):
    submission = shutil.copytree(ROOT / "lessons", tmp_path / "student")
    shutil.copy(ROOT / "solutions" / "model.py", submission / "model.py")
    model = impl.load_stage(submission, "model")
    reference = impl.load_stage("solutions", "coupling")
    layer = model.NICE(4, 2, hidden_units=8, hidden_layers=1).couplings[0]
    assert type(layer).__module__ == "solutions.coupling"  # not the student's stub
    assert reference.__name__.endswith(".coupling")


def test_load_all_uses_the_implementation_throughout():
    modules = impl.load_all("lessons", ("coupling", "model"))
    # The stub model imports the stub coupling, not the reference.
    assert modules["model"].AdditiveCoupling is modules["coupling"].AdditiveCoupling
    with pytest.raises(NotImplementedError, match="Stage 1"):
        modules["coupling"].AdditiveCoupling(4, 0)


def test_import_problems_are_explained(tmp_path):
    broken = shutil.copytree(ROOT / "solutions", tmp_path / "broken")
    (broken / "model.py").write_text("def oops(:\n")
    with pytest.raises(impl.ImplementationError, match="syntax error at line 1"):
        impl.load_stage(broken, "model")
    (broken / "model.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(impl.ImplementationError, match="RuntimeError: boom"):
        impl.load_stage(broken, "model")
    (broken / "model.py").unlink()
    with pytest.raises(impl.ImplementationError, match="model.py is missing"):
        impl.load_stage(broken, "model")
    with pytest.raises(impl.ImplementationError, match="unknown stage"):
        impl.load_stage(broken, "decoder")


def test_reference_imports_are_detected(tmp_path):
    (tmp_path / "model.py").write_text("import os\nfrom solutions.model import NICE\n")
    assert impl.reference_imports(tmp_path / "model.py") == ["line 2: from solutions.model import NICE"]
    (tmp_path / "model.py").write_text("from .coupling import AdditiveCoupling\n")
    assert impl.reference_imports(tmp_path / "model.py") == []
    grader = "import nicelab.grader.recipes.likelihood\nfrom checks import test_model\n"
    (tmp_path / "model.py").write_text(grader + "from nicelab.validate import as_batch\n")
    assert impl.reference_imports(tmp_path / "model.py") == [  # the grader's own code is refused too
        "line 1: import nicelab.grader.recipes.likelihood", "line 2: from checks import test_model"]
    assert impl.is_reference(ROOT / "solutions") and not impl.is_reference(ROOT / "lessons")
