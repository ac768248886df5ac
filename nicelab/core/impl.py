"""Find and load the implementation being graded or trained: ``lessons``, ``solutions``, any
importable package name, or a directory holding the lesson modules.

``load_stage(impl, stage)`` loads the implementation's module for one stage on top of the
*reference* modules of the earlier stages, so an unfinished stage 1 never drowns stage 2 in
failures. ``load_all(impl)`` loads the implementation's own modules for every stage (what
``nicelab train`` runs).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import itertools
import os
import sys
from pathlib import Path
from types import ModuleType

from nicelab.core.course import STAGE_NAMES

ENV_VAR = "NICELAB_IMPL"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
_counter = itertools.count()


class ImplementationError(Exception):
    """The chosen implementation cannot be found or imported; the message says why."""


def default_impl() -> str:
    return os.environ.get(ENV_VAR, "lessons")


def resolve(impl: str | os.PathLike) -> Path:
    """The directory holding the lesson modules of ``impl``.

    ``impl`` is a directory path, ``lessons`` / ``solutions`` (looked up in the current
    directory, then in the nicelab project), or the name of an importable package.
    """
    text = str(impl)
    candidates = [Path(text)]
    if text in ("lessons", "solutions"):
        candidates.append(PROJECT_ROOT / text)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    if "/" not in text and os.sep not in text:
        try:
            spec = importlib.util.find_spec(text)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            return Path(list(spec.submodule_search_locations)[0]).resolve()
    raise ImplementationError(
        f"cannot find the implementation {text!r}: give 'lessons', 'solutions', a directory "
        "holding coupling.py, model.py, ... or an importable package name."
    )


#: What a lesson module must not import: the reference, and the grader's own code (its checks
#: and the recipes they run next to the graded code).
FORBIDDEN_IMPORTS = ("solutions", "checks", "nicelab.grader", "nicelab.authoring", "nicelab.checking",
                     "nicelab.checks_plugin")


def reference_imports(path: Path) -> list[str]:
    """Lines of a lesson module that import the reference solutions or the grader's own code
    (:data:`FORBIDDEN_IMPORTS`; a student must not)."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, OSError, UnicodeDecodeError):
        return []
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        if any(n == bad or n.startswith(bad + ".") for n in names for bad in FORBIDDEN_IMPORTS):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def is_reference(path: Path) -> bool:
    return path.resolve() == (PROJECT_ROOT / "solutions").resolve()


def _new_package(path: Path, tag: str) -> str:
    name = f"_nicelab_impl_{tag}_{next(_counter)}"
    package = ModuleType(name)
    package.__path__ = [str(path)]
    package.__package__ = name
    package.__file__ = str(path / "__init__.py")
    sys.modules[name] = package
    return name


def _import(package: str, stage: str, path: Path) -> ModuleType:
    module_path = path / f"{stage}.py"
    if not module_path.exists():
        raise ImplementationError(f"{module_path} is missing: stage {stage!r} has no module.")
    try:
        return importlib.import_module(f"{package}.{stage}")
    except ImplementationError:
        raise
    except SyntaxError as err:
        raise ImplementationError(
            f"{module_path} has a syntax error at line {err.lineno}: {err.msg}."
        ) from err
    except Exception as err:  # noqa: BLE001 - any import-time failure is reported the same way
        raise ImplementationError(
            f"importing {module_path} raised {type(err).__name__}: {err}"
        ) from err


def load_stage(impl: str | os.PathLike, stage: str) -> ModuleType:
    """The module of ``stage`` from ``impl``, with the reference modules of earlier stages."""
    if stage not in STAGE_NAMES:
        raise ImplementationError(f"unknown stage {stage!r}; stages: {', '.join(STAGE_NAMES)}.")
    path = resolve(impl)
    package = _new_package(path, stage)
    for earlier in STAGE_NAMES[: STAGE_NAMES.index(stage)]:
        reference = importlib.import_module(f"solutions.{earlier}")
        sys.modules[f"{package}.{earlier}"] = reference
        setattr(sys.modules[package], earlier, reference)
    return _import(package, stage, path)


def load_all(impl: str | os.PathLike, stages: tuple[str, ...] = STAGE_NAMES) -> dict[str, ModuleType]:
    """The implementation's own modules for ``stages`` (which import each other relatively)."""
    path = resolve(impl)
    package = _new_package(path, "all")
    return {stage: _import(package, stage, path) for stage in stages}
