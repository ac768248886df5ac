"""The course site of a handout: the answers of stages not past their deadline taken out.

Two passes over a Markdown page:

* :func:`drop_answers` removes the collapsed answer blocks, ``??? answer "..."`` (pymdownx.details,
  also ``???+``), of a stage page whose stage is still open;
* :func:`redact` removes every block of any page (a collapsed or admonition block, a fenced code
  block, or a paragraph) that quotes a secret line of an unreleased reference
  (:mod:`nicelab.authoring.leaks`), whatever its kind: a hint that is "almost the answer", a
  troubleshooting entry that names the fix in code.

Each removed block leaves a one-line note in its place, so the page says where its answer went.
"""

from __future__ import annotations

import re

from nicelab.authoring.leaks import find_in_text
from nicelab.core.course import STAGE_NAMES

BLOCK = re.compile(r"^(?P<indent>[ \t]*)(?P<mark>\?\?\?\+?|!!!)[ \t]*(?P<kind>[\w-]+)")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})")
STAGE_PAGE = re.compile(r"(?:^|/)(?P<number>\d)-(?P<stage>\w+)\.md$")


def page_stage(path: str) -> str | None:
    """The stage of a lesson page (``docs/lessons/3-likelihood.md`` -> ``likelihood``)."""
    match = STAGE_PAGE.search(path)
    return match["stage"] if match and match["stage"] in STAGE_NAMES else None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _blank(line: str) -> bool:
    return not line.strip()


def blocks(text: str) -> list[tuple[str, list[str]]]:
    """``text`` cut into ``(kind, lines)`` units: ``blank`` lines, ``details`` (a ``???`` or
    ``!!!`` block with its indented body; ``kind`` of the block in ``details:KIND``), ``fence``
    (a fenced code block) and ``paragraph`` (a run of other non-blank lines)."""
    lines = text.splitlines(keepends=True)
    units: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _blank(line):
            units.append(("blank", [line]))
            i += 1
            continue
        block, fence = BLOCK.match(line), FENCE.match(line)
        j = i + 1
        if block:
            base = _indent(line)
            while j < len(lines) and (_blank(lines[j]) or _indent(lines[j]) > base):
                j += 1
            while j > i + 1 and _blank(lines[j - 1]):  # trailing blank lines are not the block's
                j -= 1
            units.append((f"details:{block['kind']}", lines[i:j]))
        elif fence:
            mark = fence["fence"]
            while j < len(lines) and not lines[j].strip().startswith(mark):
                j += 1
            j = min(j + 1, len(lines))
            units.append(("fence", lines[i:j]))
        else:
            while j < len(lines) and not (_blank(lines[j]) or BLOCK.match(lines[j]) or FENCE.match(lines[j])):
                j += 1
            units.append(("paragraph", lines[i:j]))
        i = j
    return units


def _note(first_line: str, why: str) -> str:
    return f"{' ' * _indent(first_line)}*({why})*\n"


def drop_answers(text: str, stage: str) -> tuple[str, int]:
    """``text`` without its ``??? answer`` blocks; how many were removed."""
    out, removed = [], 0
    for kind, lines in blocks(text):
        if kind == "details:answer":
            removed += 1
            out.append(_note(lines[0], f"The answer of stage {STAGE_NAMES.index(stage) + 1} comes with "
                                       "the next handout, after this stage's deadline."))
        else:
            out.extend(lines)
    return "".join(out), removed


def redact(text: str, secrets: dict[str, set[str]]) -> tuple[str, list[list[str]]]:
    """``text`` without the blocks that quote a secret line; per removed block, its secrets."""
    out, found = [], []
    for kind, lines in blocks(text):
        hits = find_in_text("".join(lines), secrets) if kind != "blank" else []
        if hits:
            found.append([line for _, line in hits])
            numbers = sorted({STAGE_NAMES.index(stage) + 1 for stage, _ in hits})
            which = ", ".join(map(str, numbers))
            out.append(_note(lines[0], f"This part quotes the reference of stage {which}: it comes with "
                                       "a later handout, after that stage's deadline."))
        else:
            out.extend(lines)
    return "".join(out), found
