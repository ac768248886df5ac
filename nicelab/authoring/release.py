"""``nicelab release student OUT --open-stage K``: a self-contained repository for students.

What a handout opening stage K holds:

* ``lessons/`` - the stubs of every stage (a student's own ``lessons/`` is never touched: a
  re-release over an existing handout, or ``lessons_from``, carries it over; only stubs that
  are missing are written);
* ``solutions/`` - the references of stages 1 to K-1 only (the ones stage K builds on);
* ``checks/`` - the checks of stages 1 to K; ``nicelab-release.toml`` (``open_stage = K``) makes
  ``pytest checks`` and ``nicelab grade`` say "not released yet" for the later stages;
* ``nicelab/`` - the package, without the instructor's tools that hold or run the full reference
  (benchmarks, figure making, this package; the stage 4-5 fixtures while stages 1-3 are open;
  the checks' recipes of the stages after K, ``nicelab/grader/recipes/<stage>.py``, like their checks);
* ``notebooks/`` - the notebooks (``*.ipynb``, which hold no answers) and their sources;
* ``docs/`` and ``mkdocs.yml`` - the site, with the answers of stages K and later taken out
  (:mod:`nicelab.authoring.docs`) and API pages of modules left out turned into a note;
* ``README.md``, ``Makefile`` (``make run``, ``make test``), ``pyproject.toml`` and
  ``.github/workflows/classroom.yml`` (GitHub Classroom autograding of the released stages).

Last, the whole folder is scanned (:mod:`nicelab.authoring.leaks`): a handout that still quotes a
reference line of stage K or later is refused (:class:`ReleaseError`, naming file and line) and
its files are removed again (the student's ``lessons/`` stays).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nicelab.authoring import docs as docs_mod
from nicelab.authoring import leaks
from nicelab.core.course import STAGE_NAMES
from nicelab.core.course import VERSION as __version__
from nicelab.core.impl import PROJECT_ROOT
from nicelab.core.stubs import make_stub
from nicelab.grader import released
from nicelab.grader.results.report import load_points
from nicelab.grader.runner import stage_of_file

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: Where a handout lists the files a release wrote (a re-release replaces exactly those).
MANIFEST = ".nicelab-release-files.json"
#: Parts of nicelab a handout never holds: instructor tools that hold or run the whole reference.
ALWAYS_LEFT_OUT = ("nicelab/authoring", "nicelab/cli/commands/bench.py",
                   "nicelab/cli/commands/release.py", "nicelab/cli/commands/notebooks.py",
                   "nicelab/plots/figures.py", "nicelab/cli/commands/figures.py")
#: Left out while stage 3 or earlier is open: they train and ship the reference of stages 1-3.
FIXTURES = ("nicelab/grader/fixtures.py", "nicelab/grader/pretrained")
#: The stage whose reference ``make run`` needs: stages 1-3 make a trainable NICE.
TRAINABLE = STAGE_NAMES.index("likelihood") + 1


class ReleaseError(Exception):
    """The handout cannot be written as asked; the message says why."""


@dataclass
class Handout:
    """What a release wrote: the folder, the open stage, the files (relative paths), the
    lesson files carried over, and the site blocks it took out (``page: count``)."""

    root: Path
    open_stage: int
    files: list[str] = field(default_factory=list)
    kept_lessons: list[str] = field(default_factory=list)
    redacted: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        stage = STAGE_NAMES[self.open_stage - 1]
        refs = (f"references of stages 1-{self.open_stage - 1}" if self.open_stage > 2 else
                "the reference of stage 1" if self.open_stage == 2 else "no reference")
        lines = [f"wrote {self.root}: stage {self.open_stage} ({stage}) open, {refs}, "
                 f"{len(self.files)} files"]
        if self.kept_lessons:
            lines.append(f"kept the student's {', '.join(self.kept_lessons)}")
        for page, count in sorted(self.redacted.items()):
            lines.append(f"{page}: {count} block(s) holding an answer of an unreleased stage taken out")
        return "\n".join(lines)


#: The checks' recipes (code they run next to the graded objects): one module per stage that
#: has some, shipped with that stage's checks only.
RECIPES = "nicelab/grader/recipes"


def _unreleased_recipes(open_stage: int) -> tuple[str, ...]:
    return tuple(f"{RECIPES}/{stage}.py" for stage in STAGE_NAMES[open_stage:])


def _left_out(rel: str, open_stage: int) -> bool:
    parts = ALWAYS_LEFT_OUT + (FIXTURES if open_stage <= TRAINABLE else ()) + _unreleased_recipes(open_stage)
    return any(rel == p or rel.startswith(p + "/") for p in parts)


def _package_files(source: Path, open_stage: int) -> list[str]:
    files = []
    for path in sorted((source / "nicelab").rglob("*")):
        rel = path.relative_to(source).as_posix()
        if (path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
                and not _left_out(rel, open_stage)):
            files.append(rel)
    return files


def _package(write: _Writer, source: Path, open_stage: int) -> list[str]:
    """Copy the package's files a handout holds; return the code of the checks' recipes among
    them (the shipped checks' own code)."""
    recipes = []
    for rel in _package_files(source, open_stage):
        write.copy(source / rel, rel)
        if rel.startswith(RECIPES + "/") and rel.endswith(".py"):
            recipes.append((source / rel).read_text())
    return recipes


def _render(name: str, **values: str) -> str:
    text = (TEMPLATES / name).read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    if "@@" in text:
        raise ReleaseError(f"template {name}: a placeholder was left unfilled.")
    return text


def _stage_list(stages) -> str:
    return ", ".join(f"{STAGE_NAMES.index(s) + 1} ({s})" for s in stages)


class _Writer:
    """Writes files under the handout root and remembers them."""

    def __init__(self, root: Path):
        self.root, self.files = root, []

    def text(self, rel: str, text: str) -> None:
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        self.files.append(rel)

    def copy(self, source: Path, rel: str) -> None:
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        shutil.copymode(source, target)
        self.files.append(rel)


def _prepare(out: Path, lessons_from: Path | None) -> list[str]:
    """Make ``out`` ready: remove a previous release's files (never ``lessons/``), or check it is
    new; copy ``lessons_from``'s lessons in. Returns the lesson files carried over."""
    manifest = out / MANIFEST
    if out.exists() and any(out.iterdir()):
        if not manifest.is_file():
            raise ReleaseError(f"{out} exists and is not a nicelab handout: give a new folder, or the "
                               "folder of an earlier handout to release the next stage over it.")
        for rel in json.loads(manifest.read_text()).get("files", []):
            path = out / rel
            if not rel.startswith("lessons/") and (path.is_file() or path.is_symlink()):
                path.unlink()
        for folder in sorted((p for p in out.rglob("*") if p.is_dir()), reverse=True):
            if ".git" not in folder.relative_to(out).parts and not any(folder.iterdir()):
                folder.rmdir()
    out.mkdir(parents=True, exist_ok=True)
    lessons = out / "lessons"
    if lessons_from is not None:
        source = lessons_from / "lessons" if (lessons_from / "lessons").is_dir() else lessons_from
        if not any((source / f"{s}.py").is_file() for s in STAGE_NAMES):
            raise ReleaseError(f"{lessons_from} holds no lesson modules (coupling.py, model.py, ...).")
        if lessons.exists():
            raise ReleaseError(f"{lessons} exists already: --lessons-from is for a new folder.")
        shutil.copytree(source, lessons, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if not lessons.is_dir():
        return []
    return sorted(p.relative_to(out).as_posix() for p in lessons.rglob("*") if p.is_file()
                  and "__pycache__" not in p.parts)


def _lessons(write: _Writer, source: Path) -> None:
    """The stubs the student does not have yet (generated from the full reference)."""
    init = write.root / "lessons" / "__init__.py"
    if not init.exists():
        write.text("lessons/__init__.py",
                   '"""Your workspace: fill in the stubs, then run `pytest checks`."""\n')
    for stage in STAGE_NAMES:
        if not (write.root / "lessons" / f"{stage}.py").exists():
            reference = (source / "solutions" / f"{stage}.py").read_text()
            write.text(f"lessons/{stage}.py", make_stub(reference, stage))


def _checks(write: _Writer, source: Path, open_stage: int) -> list[str]:
    released_stages = STAGE_NAMES[:open_stage]
    shipped = []
    for path in sorted((source / "checks").glob("*")):
        if not path.is_file() or path.suffix == ".pyc":
            continue
        stage = stage_of_file(path.name)
        if stage is None or stage in released_stages:
            write.copy(path, f"checks/{path.name}")
            shipped.append(path)
    return [p.read_text() for p in shipped if p.suffix == ".py"]


def _module_shipped(root: Path, module: str) -> bool:
    path = root / Path(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _docs(write: _Writer, source: Path, open_stage: int, secrets: dict[str, set[str]],
          redacted: dict[str, int]) -> None:
    closed = STAGE_NAMES[open_stage - 1:]
    for path in sorted((source / "docs").rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(source).as_posix()
        if path.suffix != ".md":
            write.copy(path, rel)
            continue
        text, removed = path.read_text(), 0
        stage = docs_mod.page_stage(rel)
        if stage in closed:
            text, removed = docs_mod.drop_answers(text, stage)
        text, found = docs_mod.redact(text, secrets)
        lines, dropping = [], False
        for line in text.splitlines(keepends=True):
            if dropping and line.startswith((" ", "\t")):
                continue  # the options of a directive taken out
            directive = line.removeprefix(":::").strip() if line.startswith(":::") else ""
            dropping = bool(directive) and not _module_shipped(write.root, directive)
            if dropping:
                line = f"*`{directive}` is an instructor's tool: it is not part of this handout.*\n"
            lines.append(line)
        if removed or found:
            redacted[rel] = removed + len(found)
        write.text(rel, "".join(lines))


def gated_pyproject(source: Path) -> str:
    """The project's ``pyproject.toml`` with the release plugin (:mod:`nicelab.grader.released`)
    in pytest's options, so that ``pytest checks`` knows the stages not released yet."""
    text = (source / "pyproject.toml").read_text()
    marker = 'addopts = "'
    if marker not in text:
        raise ReleaseError("pyproject.toml has no pytest addopts line to add the release plugin to.")
    return text.replace(marker, marker + "-p nicelab.grader.released ", 1)


def classroom_workflow(open_stage: int, points_file: Path | None = None) -> str:
    """``.github/workflows/classroom.yml`` for a handout opening ``open_stage``."""
    points = load_points(points_file)
    stages = STAGE_NAMES[:open_stage]
    env = "".join(f'          {s.upper()}_RESULTS: "${{{{ steps.grade.outputs.{s} }}}}"\n' for s in stages)
    total = sum(points.of(s) for s in stages)
    return _render("classroom.yml", STAGES=_stage_list(stages), POINTS=f"{total:g}",
                   REPORTER_ENV=env.rstrip("\n"), RUNNERS=",".join(stages))


def release_student(out: str | Path, open_stage: int, lessons_from: str | Path | None = None,
                    source: Path = PROJECT_ROOT, points_file: Path | None = None) -> Handout:
    """Write the handout opening ``open_stage`` into ``out`` (see the module docstring)."""
    open_stage = released.check_open_stage(open_stage)
    out = Path(out).resolve()
    if out == source.resolve():
        raise ReleaseError(f"write the handout outside this repository (not {out}).")
    if not (source / "solutions").is_dir():
        raise ReleaseError(f"{source} has no solutions/: release from the instructor's repository.")
    kept = _prepare(out, Path(lessons_from) if lessons_from else None)
    write = _Writer(out)
    handout = Handout(out, open_stage, kept_lessons=kept)

    _lessons(write, source)
    write.copy(source / "solutions" / "__init__.py", "solutions/__init__.py")
    for stage in STAGE_NAMES[: open_stage - 1]:
        write.copy(source / "solutions" / f"{stage}.py", f"solutions/{stage}.py")
    checks_code = _checks(write, source, open_stage) + _package(write, source, open_stage)

    # The reference lines this handout must not quote; a line the shipped checks hold themselves
    # (an idiom such as `with tf.GradientTape() as tape:`), or one of leaks.IDIOMS, is not the answer.
    secrets = leaks.secret_lines(source / "solutions", leaks.stages_from(open_stage))
    idioms = set(leaks.IDIOMS).union(*(leaks.code_lines(code) for code in checks_code))
    secrets = {stage: lines - idioms for stage, lines in secrets.items()}
    _docs(write, source, open_stage, secrets, handout.redacted)
    for path in sorted((source / "notebooks").rglob("*")):
        if path.is_file() and path.suffix in (".ipynb", ".py") and "__pycache__" not in path.parts:
            write.copy(path, path.relative_to(source).as_posix())
    write.copy(source / "mkdocs.yml", "mkdocs.yml")
    write.copy(source / ".gitignore", ".gitignore")
    write.text("pyproject.toml", gated_pyproject(source))

    stage = STAGE_NAMES[open_stage - 1]
    run_impl = "solutions" if open_stage > TRAINABLE else "lessons"
    run_what = ("the reference of stages 1-3 (released)" if run_impl == "solutions"
                else "your own lessons/ (stages 1-3 must be done; the reference comes later)")
    values = dict(OPEN=str(open_stage), STAGE=stage, RELEASED=_stage_list(STAGE_NAMES[:open_stage]),
                  REFERENCES=_stage_list(STAGE_NAMES[: open_stage - 1]) or "none yet",
                  LATER=_stage_list(STAGE_NAMES[open_stage:]) or "none", RUN_IMPL=run_impl, RUN_WHAT=run_what)
    write.text("README.md", _render("handout-README.md", **values))
    write.text("Makefile", _render("handout-Makefile", **values))
    write.text(".github/workflows/classroom.yml", classroom_workflow(open_stage, points_file))
    created = datetime.now(UTC).isoformat(timespec="seconds")
    write.text(released.FILENAME, f"# Written by `nicelab release student --open-stage {open_stage}`.\n"
                                  f"open_stage = {open_stage}\nnicelab_version = \"{__version__}\"\n"
                                  f"created = \"{created}\"\n")

    found = [leak for rel in sorted(set(write.files)) for leak in leaks.scan_file(out, rel, secrets)]
    if found:
        for rel in set(write.files) - {f for f in write.files if f.startswith("lessons/")}:
            (out / rel).unlink(missing_ok=True)  # nothing of a leaking handout is left to hand out
        raise ReleaseError("the handout still quotes reference code of an unreleased stage; fix the "
                           "source, then release again:\n  " + "\n  ".join(map(str, found)))
    handout.files = sorted(write.files)
    manifest = {"open_stage": open_stage, "files": handout.files}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return handout
