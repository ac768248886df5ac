"""Which reference code is the student's to write, and which files of a folder show it.

The *secret lines* of a stage are the code lines of ``solutions/<stage>.py`` that its stub does
not already give away: code lines (comments and docstrings dropped, whitespace removed, at least
:data:`MIN_LEN` characters) that are not code of the stub and do not appear in the stub's
text. :func:`scan` looks for them in every text file of a folder, whitespace ignored and with
leading ``#`` / ``>`` markers stripped (so a line quoted in a comment, a docstring or a page of
the site counts too).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

from nicelab.core.course import STAGE_NAMES
from nicelab.core.stubs import make_stub

#: Shorter squashed lines ("returnx", "else:") are too common to mean anything.
MIN_LEN = 10
#: Squashed lines that stand in reference blocks and all over the shipped package alike, and so
#: give nothing away: seeding NumPy's generator is how every seeded function starts.
IDIOMS = frozenset({"rng=np.random.default_rng(seed)"})
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
         tokenize.ENDMARKER}
_SPACE = re.compile(r"\s+")


def squash(text: str) -> str:
    """``text`` without any whitespace."""
    return _SPACE.sub("", text)


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def code_lines(source: str) -> set[str]:
    """The squashed code lines of a Python source (comments and docstrings dropped)."""
    docs = _docstring_lines(ast.parse(source))
    by_line: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in _SKIP:
            continue
        for number in range(token.start[0], token.end[0] + 1):
            if number not in docs:
                by_line[number] = by_line.get(number, "") + token.string
    return {line for line in map(squash, by_line.values()) if len(line) >= MIN_LEN}


def text_lines(text: str) -> str:
    """Every line of ``text`` squashed, leading comment and quote markers stripped, joined by
    newlines (the haystack :func:`scan` searches)."""
    return "\n".join(squash(line.lstrip().lstrip("#>").strip()) for line in text.splitlines())


def secret_lines(solutions_dir: Path, stages: tuple[str, ...] | list[str]) -> dict[str, set[str]]:
    """stage -> the code lines of its reference a student must write (see the module doc).

    A line that a reference of a stage before all of ``stages`` holds as well is no secret: a
    handout ships those references (RealNVP loops over its couplings as NICE does)."""
    first = min((STAGE_NAMES.index(stage) for stage in stages), default=0)
    shipped: set[str] = set()
    for earlier in STAGE_NAMES[:first]:
        path = Path(solutions_dir) / f"{earlier}.py"
        if path.is_file():
            shipped |= code_lines(path.read_text())
    secrets = {}
    for stage in stages:
        source = (Path(solutions_dir) / f"{stage}.py").read_text()
        stub = make_stub(source, stage)
        visible = text_lines(stub)
        secrets[stage] = {line for line in code_lines(source) - code_lines(stub) - shipped
                          if line not in visible}
    return secrets


def stages_from(open_stage: int) -> tuple[str, ...]:
    """The stages whose reference a handout opening ``open_stage`` (1-based) must not hold."""
    return STAGE_NAMES[open_stage - 1:]


@dataclass(frozen=True)
class Leak:
    """A file that holds a secret line of ``stage`` (``line`` is the squashed secret)."""

    path: str
    stage: str
    line: str

    def __str__(self) -> str:
        return f"{self.path}: holds a line of the stage {self.stage} reference: {self.line}"


def read_text(path: Path) -> str | None:
    """The file's text, or None for a binary file (figures, weights, fonts)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _pattern(line: str) -> re.Pattern:
    """``line`` inside a squashed text, not as a piece of a longer name (``returnloss`` does not
    match ``returnlosses``)."""
    head = r"(?<!\w)" if re.match(r"\w", line) else ""
    tail = r"(?!\w)" if re.search(r"\w$", line) else ""
    return re.compile(head + re.escape(line) + tail)


def find_in_text(text: str, secrets: dict[str, set[str]]) -> list[tuple[str, str]]:
    """``(stage, secret)`` of every secret line found in ``text``."""
    haystack = text_lines(text)
    return [(stage, line) for stage, lines in secrets.items() for line in sorted(lines)
            if line in haystack and _pattern(line).search(haystack)]


def scan_file(root: Path, rel: str, secrets: dict[str, set[str]]) -> list[Leak]:
    """The secret lines the file ``root / rel`` holds (none for a binary file)."""
    text = read_text(Path(root) / rel)
    return [] if text is None else [Leak(rel, stage, line) for stage, line in find_in_text(text, secrets)]


def scan(root: Path, secrets: dict[str, set[str]], skip: tuple[str, ...] = ()) -> list[Leak]:
    """Every secret line found in a text file under ``root`` (``.git``, caches, a virtual
    environment and the folders named in ``skip`` are left out)."""
    found = []
    for path in sorted(Path(root).rglob("*")):
        parts = path.relative_to(root).parts
        if (not path.is_file() or path.is_symlink() or parts[0] in skip
                or {".git", "__pycache__", ".venv", "site"} & set(parts)):
            continue
        found += scan_file(root, path.relative_to(root).as_posix(), secrets)
    return found
