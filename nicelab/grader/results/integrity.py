"""Results an instructor can trust: signed rows, clean text, and a reference-copy detector.

* :func:`sign_row` / :func:`row_is_authentic`: every row the batch writes carries an HMAC-SHA256
  of its content under a key kept outside the results (``grading_key``: a private file in the
  instructor's cache folder, never mounted into the sandbox). A resumed batch trusts a row
  only when its signature matches; a row edited after the fact is graded again.
* :func:`clean_text` / :func:`clean_value`: control characters (ANSI escape sequences included)
  and bidirectional overrides removed from anything a submission can influence before it
  reaches the results or the instructor's terminal, and what cannot be encoded (a lone
  surrogate such as ``"\\ud800"``) written as a backslash escape: every text of a row can be
  printed and written as UTF-8.
* :func:`csv_cell`: a spreadsheet formula guard for CSV cells (``= + - @`` at the start).
* :func:`reference_similarity`: how close a submission's stage module is to the shipped
  reference, with comments, docstrings, layout and names normalised away.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import hmac
import io
import json
import keyword
import os
import re
import secrets
import threading
import tokenize
from pathlib import Path
from typing import Any

KEY_ENV = "NICELAB_GRADE_KEY_FILE"
#: A stage module at least this similar to the reference is flagged in its row.
SIMILARITY_FLAG = 0.9
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
# C0/C1 controls but newline and tab, and the bidirectional overrides that reorder what a
# terminal shows ("Trojan Source").
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def key_file() -> Path:
    """``$NICELAB_GRADE_KEY_FILE``, else ``$XDG_CACHE_HOME/nicelab/grade-key`` (``~/.cache``)."""
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nicelab" / "grade-key"


def existing_key() -> bytes | None:
    """The instructor's signing key if there is one here (never creates one): what a merge or a
    reporter verifies rows with; None when this machine has no key."""
    try:
        key = key_file().read_bytes().strip()
    except OSError:
        return None
    return key if len(key) >= 32 else None


def grading_key() -> bytes:
    """The instructor's private signing key, created (mode 0600) on first use."""
    path = key_file()
    try:
        key = path.read_bytes().strip()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def _payload(row: dict) -> bytes:
    content = {k: v for k, v in row.items() if k != "signature"}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_row(row: dict, key: bytes) -> dict:
    """``row`` with its ``signature`` (HMAC-SHA256 of everything else in it)."""
    row["signature"] = hmac.new(key, _payload(row), hashlib.sha256).hexdigest()
    return row


def row_is_authentic(row: dict, key: bytes) -> bool:
    """True when ``row`` carries the signature ``key`` gives its content (it was not edited)."""
    signature = row.get("signature")
    if not isinstance(signature, str):
        return False
    return hmac.compare_digest(signature, hmac.new(key, _payload(row), hashlib.sha256).hexdigest())


def clean_text(text: str) -> str:
    """``text`` without ANSI escape sequences, other control characters (newlines and tabs are
    kept) and bidirectional overrides; what UTF-8 cannot encode (lone surrogates) becomes a
    backslash escape (``"\\ud800"``), so that the text can always be printed and written."""
    text = _CONTROL.sub("", _ANSI.sub("", text))
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def clean_value(value: Any) -> Any:
    """``value`` (JSON data: dicts, lists, strings, numbers) with :func:`clean_text` applied to
    every string in it, dictionary keys included."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_value(v) for v in value]
    return value


def csv_cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: strings starting with ``= + - @`` (or a tab
    or carriage return) get a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


# ----------------------------------------------------------------------------- reference copies

def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


#: Python 3.11 keeps the AST builder's recursion depth per interpreter, not per thread: two
#: threads parsing at once (a batch's submissions start side by side) can make one fail with
#: "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905).
_AST_LOCK = threading.Lock()


def parse(source: str) -> ast.Module:
    """``ast.parse(source)``, one thread at a time (:data:`_AST_LOCK`)."""
    with _AST_LOCK:
        return ast.parse(source)


def normalised(source: str) -> tuple[list[str], list[str]]:
    """``(lines, tokens)`` of ``source`` without comments, docstrings or layout; in ``tokens``
    every identifier is replaced by ``_`` (renaming variables does not hide a copy)."""
    try:
        code = ast.unparse(_strip_docstrings(parse(source)))
    except (SyntaxError, ValueError, RecursionError):
        code = source
    tokens = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
                tokens.append("_")
            elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                                  tokenize.COMMENT, tokenize.ENDMARKER):
                tokens.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        tokens = code.split()
    return [line.strip() for line in code.splitlines() if line.strip()], tokens


def _unmatched(tokens: list[str], base: list[str]) -> list[str]:
    """The tokens of ``tokens`` outside its longest common runs with ``base``."""
    kept, at = [], 0
    matcher = difflib.SequenceMatcher(None, tokens, base, autojunk=False)
    for block in matcher.get_matching_blocks():
        kept.extend(tokens[at:block.a])
        at = block.a + block.size
    return kept


def similarity(source: str, reference: str, stub: str | None = None) -> float:
    """How alike two modules are, in [0, 1] (difflib's ratio of their normalised, renamed
    tokens). With the ``stub`` the student started from, only what each adds to the stub is
    compared: an unfinished stub scores 0, a copy of the reference 1, an honest solution far less."""
    mine, theirs = normalised(source)[1], normalised(reference)[1]
    if stub is not None:
        base = normalised(stub)[1]
        mine, theirs = _unmatched(mine, base), _unmatched(theirs, base)
        if not mine or not theirs:
            return 0.0
    return difflib.SequenceMatcher(None, mine, theirs, autojunk=False).ratio()


#: Larger modules are not compared (difflib is quadratic in the worst case).
MAX_COMPARED_BYTES = 200_000


def reference_similarity(folder: Path, reference: Path, stubs: Path | None, stages) -> dict[str, float]:
    """``{stage: similarity}`` of each of ``stages``' modules in ``folder`` to the reference
    (what the student added to the stub in ``stubs`` against what the reference adds)."""
    found = {}
    for stage in stages:
        mine, theirs = folder / f"{stage}.py", reference / f"{stage}.py"
        stub = stubs / f"{stage}.py" if stubs else None
        try:
            if not (mine.is_file() and theirs.is_file()) or mine.stat().st_size > MAX_COMPARED_BYTES:
                continue
            base = stub.read_text() if stub and stub.is_file() else None
            found[stage] = round(similarity(mine.read_text(errors="replace"), theirs.read_text(), base), 3)
        except OSError:
            continue
    return found
