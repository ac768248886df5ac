"""What a call of some functions of a lesson module depends on, as a hash of its source.

The checks' training run (stage 3) only calls a few functions of the graded module; a save that
changes another one (``sample``, an answer) must not retrain. :func:`used_source_key` hashes
the parts of a module that such calls can reach, as syntax trees (so comments, blank lines and
docstrings do not count):

* every module-level statement that runs on import (imports, assignments, calls), except an
  assignment of a plain literal to a name that no reached code reads (an answer constant);
* the functions and classes named in ``roots`` and every module-level definition their bodies
  (and the module-level code) name, transitively, with the decorators and default values of
  the other definitions (these run on import);
* the other modules of the same folder, whole, when the module imports relatively or names a
  sibling module (a stage module may import the student's own earlier stage);
* the whole file when reached code looks names up dynamically (``globals()``, ``getattr``,
  ``eval``, ...), or when it does not parse.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from pathlib import Path

#: Names whose use means "any global may be reached": the whole file counts.
DYNAMIC = frozenset({"globals", "locals", "vars", "getattr", "eval", "exec", "compile", "__import__",
                     "importlib", "sys", "__dict__", "inspect"})

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _names(nodes: Iterable[ast.AST]) -> set[str]:
    """Every identifier used in ``nodes``: names, attribute names and imported names."""
    found: set[str] = set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name):
                found.add(sub.id)
            elif isinstance(sub, ast.Attribute):
                found.add(sub.attr)
            elif isinstance(sub, ast.alias):
                found.update((sub.name.split(".")[0], sub.asname or ""))
    return found


def _is_literal_constant(node: ast.stmt) -> str | None:
    """The target name of ``NAME = <literal>`` (no side effect on import), else None."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target, value = node.targets[0], node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        target, value = node.target, node.value
    else:
        return None
    if not isinstance(target, ast.Name):
        return None
    try:
        ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return target.id


def _without_docstring(node: ast.AST) -> ast.AST:
    body = getattr(node, "body", None)
    if (isinstance(node, _DEFS) and body and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
        node.body = body[1:] or [ast.Pass()]
    return node


def _import_time_parts(node: ast.stmt) -> list[ast.AST]:
    """What of a definition runs on import: its decorators, defaults and base classes."""
    if isinstance(node, ast.ClassDef):
        return [node]  # a class body runs on import: all of it
    args = node.args
    return [*node.decorator_list, *args.defaults, *(d for d in args.kw_defaults if d is not None)]


def _reached(tree: ast.Module, roots: Iterable[str]) -> tuple[list[ast.stmt], set[str]]:
    """The statements of ``tree`` that calls of ``roots`` depend on, and every name they use."""
    defs = {node.name: node for node in tree.body if isinstance(node, _DEFS)}
    constants = {name: node for node in tree.body if (name := _is_literal_constant(node))}
    always = [node for node in tree.body if not isinstance(node, _DEFS) and node not in constants.values()
              and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    always += [part for node in tree.body if isinstance(node, _DEFS) and node.name not in roots
               for part in _import_time_parts(node)]
    used = _names(always) | set(roots)
    kept: dict[str, ast.stmt] = {}
    pending = [name for name in used if name in defs or name in constants]
    while pending:
        name = pending.pop()
        if name in kept:
            continue
        kept[name] = defs.get(name) or constants[name]
        new = _names([kept[name]]) - used
        used |= new
        pending += [n for n in new if n in defs or n in constants]
    # Keep the file's order: the same source gives the same key.
    chosen = [node for node in tree.body if node in always or node in kept.values()]
    return chosen + [part for part in always if part not in tree.body], used


def _siblings(path: Path) -> list[Path]:
    return [p for p in sorted(path.parent.glob("*.py")) if p != path]


def _imports_siblings(tree: ast.Module, path: Path) -> bool:
    stems = {p.stem for p in _siblings(path)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            named = set((node.module or "").split(".")) | {a.name for a in node.names}
            if node.level > 0 or named & stems:
                return True
        if isinstance(node, ast.Import) and any(set(a.name.split(".")) & stems for a in node.names):
            return True
    return False


def used_source_key(path: Path, roots: Iterable[str]) -> str:
    """A hash of what calling the functions ``roots`` of the module at ``path`` depends on in its
    source (see the module's docstring): equal keys, equal behaviour of those calls."""
    path = Path(path)
    roots = tuple(roots)
    digest = hashlib.sha256(repr(roots).encode() + b"\0")
    source = path.read_bytes()
    try:
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError):
        return hashlib.sha256(b"unparsed\0" + source).hexdigest()
    chosen, used = _reached(tree, roots)
    if used & DYNAMIC:
        digest.update(b"whole\0" + source)
    else:
        for node in chosen:
            digest.update(ast.dump(_without_docstring(node), annotate_fields=False).encode() + b"\0")
    if _imports_siblings(tree, path):
        for sibling in _siblings(path):
            digest.update(sibling.name.encode() + b"\0" + sibling.read_bytes() + b"\0")
    return digest.hexdigest()
