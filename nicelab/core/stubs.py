"""Generate the student's stubs (``lessons/``) from the marked blocks in ``solutions/``.

In a solution module, a block

    # BEGIN SOLUTION: AdditiveCoupling.forward
    # > 1. a step the student sees as a comment
    ...reference code...
    # END SOLUTION

becomes, in the lesson module, the ``# >`` lines as plain comments followed by
``raise NotImplementedError("Stage 1 (coupling): implement AdditiveCoupling.forward. ...")``.
Everything outside the blocks is copied unchanged, so stubs and solutions cannot drift apart.

A block of predictions (the numeric "Predict, then check" questions ending each lesson page)

    # BEGIN ANSWERS
    ANSWERS = {
        "log_det_of_one_layer": 0.0,  # the reference's number
    }
    # END ANSWERS

keeps its keys in the lesson module, with every value ``None`` (the student's to fill in) and
without the markers and comments.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from nicelab.core.course import STAGE_NAMES

BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION: (?P<task>.+?)\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
STEP = re.compile(r"^\s*# > ?(?P<text>.*)$")
ANSWERS_BEGIN = re.compile(r"^\s*# BEGIN ANSWERS\s*$")
ANSWERS_END = re.compile(r"^\s*# END ANSWERS\s*$")
ANSWER = re.compile(r"^(?P<key>\s*(?P<quote>[\"'])\w+(?P=quote)\s*:\s*)\S.*$")


def blank_answers(source: str) -> str:
    """Every value of the ``# BEGIN ANSWERS`` blocks of ``source`` as ``None``, markers dropped."""
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        if ANSWERS_BEGIN.match(line):
            if inside:
                raise ValueError(f"line {number}: nested BEGIN ANSWERS")
            inside = True
        elif ANSWERS_END.match(line):
            if not inside:
                raise ValueError(f"line {number}: END ANSWERS without BEGIN ANSWERS")
            inside = False
        elif inside and (answer := ANSWER.match(line)):
            out.append(f"{answer['key']}None,\n")
        elif not (inside and line.strip().startswith("#")):
            out.append(line)
    if inside:
        raise ValueError("BEGIN ANSWERS never closed")
    return "".join(out)


def docs_page(stage: str) -> str:
    """The docs page of a stage, e.g. ``docs/lessons/1-coupling.md``."""
    return f"docs/lessons/{STAGE_NAMES.index(stage) + 1}-{stage}.md"


def not_implemented_message(stage: str, task: str) -> str:
    number = STAGE_NAMES.index(stage) + 1
    return f"Stage {number} ({stage}): implement {task}. See {docs_page(stage)}."


#: What a stub (or an unanswered prediction) raises: "Stage 1 (coupling): implement ...".
STUB_MESSAGE = re.compile(r"^Stage \d \(\w+\): ")


def is_stub(excinfo) -> bool:
    """True when a check's exception (pytest's ``ExceptionInfo``) is a stub's NotImplementedError:
    one whose message names its stage (:func:`not_implemented_message`), or has none at all.
    TensorFlow raises NotImplementedError too (NumPy called on a symbolic tensor inside a
    compiled function): that is the student's error, not an unfinished stub."""
    if excinfo is None or not excinfo.errisinstance(NotImplementedError):
        return False
    text = str(excinfo.value)
    return not text or bool(STUB_MESSAGE.match(text))


def make_stub(source: str, stage: str) -> str:
    """Replace every solution block of ``source`` by its stub. Raises ValueError on bad markers."""
    out: list[str] = []
    block: tuple[str, str, int] | None = None  # (indent, task, line number)
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        begin, end = BEGIN.match(line), END.match(line)
        if block is None:
            if end:
                raise ValueError(f"line {number}: END SOLUTION without BEGIN SOLUTION")
            if begin:
                block = (begin["indent"], begin["task"], number)
                out.append(f"{block[0]}# TODO ({stage}): {block[1]}\n")
            else:
                out.append(line)
            continue
        if begin:
            raise ValueError(f"line {number}: nested BEGIN SOLUTION (block opened at {block[2]})")
        if end:
            message = not_implemented_message(stage, block[1])
            out.append(f"{block[0]}raise NotImplementedError(\n{block[0]}    {message!r}\n{block[0]})\n")
            block = None
        elif step := STEP.match(line):
            out.append(f"{block[0]}# {step['text']}".rstrip() + "\n")
    if block is not None:
        raise ValueError(f"line {block[2]}: BEGIN SOLUTION never closed")
    return blank_answers("".join(out))


@dataclass
class StubResult:
    """What happened to one lesson file."""

    path: Path
    status: str  # "written", "unchanged", "edited" (kept: differs from the fresh stub)
    diff: str = ""


def stage_files(solutions_dir: Path) -> list[tuple[str, Path]]:
    return [(s, solutions_dir / f"{s}.py") for s in STAGE_NAMES if (solutions_dir / f"{s}.py").exists()]


def generate(solutions_dir: Path, lessons_dir: Path, force: bool = False) -> list[StubResult]:
    """Write the stubs of every stage found in ``solutions_dir`` into ``lessons_dir``.

    A lesson file that exists and differs from its fresh stub (a student's work) is left
    alone and reported as ``edited`` unless ``force`` is true.
    """
    lessons_dir.mkdir(parents=True, exist_ok=True)
    results = []
    init = lessons_dir / "__init__.py"
    if not init.exists():
        init.write_text('"""Your workspace: fill in the stubs, then run `pytest checks`."""\n')
    for stage, path in stage_files(solutions_dir):
        stub = make_stub(path.read_text(), stage)
        target = lessons_dir / path.name
        current = target.read_text() if target.exists() else None
        if current == stub:
            results.append(StubResult(target, "unchanged"))
        elif current is not None and not force:
            diff = "".join(difflib.unified_diff(
                stub.splitlines(keepends=True), current.splitlines(keepends=True),
                f"stub {path.name}", f"lessons {path.name}"))
            results.append(StubResult(target, "edited", diff))
        else:
            target.write_text(stub)
            results.append(StubResult(target, "written"))
    return results
