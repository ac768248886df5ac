"""The stub generator: lessons/ is exactly what solutions/ generates, stubs raise a
not-implemented message naming their stage and docs page, and a student's edits are never
overwritten without --force."""

from __future__ import annotations

import ast
import shutil

import pytest
from mutation_support import ROOT

from nicelab.cli import main
from nicelab.core.stubs import generate, make_stub, stage_files


def test_lessons_match_the_stubs_generated_from_solutions():
    stale = [path.name for stage, path in stage_files(ROOT / "solutions")
             if (ROOT / "lessons" / path.name).read_text() != make_stub(path.read_text(), stage)]
    assert not stale, f"lessons/ drifted from solutions/ in {stale}: run `nicelab stubs --force`"


def test_every_solution_block_becomes_a_stub():
    for stage, path in stage_files(ROOT / "solutions"):
        source = path.read_text()
        stub = make_stub(source, stage)
        blocks = source.count("# BEGIN SOLUTION:")
        assert blocks > 0, f"{path.name} has no solution blocks"
        assert stub.count("raise NotImplementedError(") == blocks
        assert "# END SOLUTION" not in stub and "BEGIN SOLUTION" not in stub
        ast.parse(stub)  # the stub is valid Python


def test_stub_message_names_the_stage_and_its_page():
    source = ("def f(x):\n    # BEGIN SOLUTION: f\n    # > add one\n    return x + 1\n"
              "    # END SOLUTION\n")
    stub = make_stub(source, "model")
    assert "# add one" in stub and "return x + 1" not in stub
    namespace: dict = {}
    exec(compile(stub, "stub", "exec"), namespace)
    expected = r"Stage 2 \(model\): implement f\. See docs/lessons/2-model\.md"
    with pytest.raises(NotImplementedError, match=expected):
        namespace["f"](1)


@pytest.mark.parametrize("source, problem", [
    ("# END SOLUTION\n", "without BEGIN"),
    ("# BEGIN SOLUTION: a\n# BEGIN SOLUTION: b\n", "nested"),
    ("# BEGIN SOLUTION: a\nx = 1\n", "never closed"),
])
def test_bad_markers_are_reported(source, problem):
    with pytest.raises(ValueError, match=problem):
        make_stub(source, "coupling")


def test_generator_keeps_edited_lessons_unless_forced(tmp_path):
    lessons = tmp_path / "lessons"
    first = generate(ROOT / "solutions", lessons)
    assert {r.status for r in first} == {"written"}
    assert {r.status for r in generate(ROOT / "solutions", lessons)} == {"unchanged"}
    edited = lessons / "coupling.py"
    edited.write_text(edited.read_text() + "\n# my work\n")
    results = {r.path.name: r for r in generate(ROOT / "solutions", lessons)}
    assert results["coupling.py"].status == "edited" and "# my work" in edited.read_text()
    assert "+# my work" in results["coupling.py"].diff
    generate(ROOT / "solutions", lessons, force=True)
    assert "# my work" not in edited.read_text()


def test_stubs_command_check_and_refusal(tmp_path, capsys):
    lessons = tmp_path / "lessons"
    shutil.copytree(ROOT / "lessons", lessons)
    assert main(["stubs", "--lessons", str(lessons), "--check"]) == 0
    (lessons / "model.py").write_text((lessons / "model.py").read_text() + "# edit\n")
    assert main(["stubs", "--lessons", str(lessons), "--check"]) == 1
    assert main(["stubs", "--lessons", str(lessons)]) == 0
    assert "kept your edits in model.py" in capsys.readouterr().out
    assert (lessons / "model.py").read_text().endswith("# edit\n")
