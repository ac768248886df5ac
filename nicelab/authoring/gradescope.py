"""``nicelab release gradescope OUT.zip``: a Gradescope autograder, and what it runs.

The bundle (Gradescope unpacks it into ``/autograder/source``):

* ``setup.sh`` - run once on Gradescope's Ubuntu image: Python, a virtual environment,
  ``requirements.txt`` (the dependencies pinned to the versions this bundle was tested with);
* ``run_autograder`` - run per submission: ``python -m nicelab.authoring.gradescope``, which
  grades ``/autograder/submission`` (the lesson modules, directly or in ``lessons/``) in a
  worker process with a time and a memory limit (:func:`nicelab.grader.batch.grade_submission`,
  so a crash or a hang costs the checks it hit, not the results file) and writes
  ``/autograder/results/results.json``: one test per check with ``name``, ``score``,
  ``max_score``, ``output`` (the check's one-line message) and ``visibility`` (``visible``; the
  instructor's hidden checks ``after_published``);
* ``nicelab/``, ``checks/`` (stages 1 to K), ``solutions/`` (the references of the stages before
  K only: stage N is graded on the references of stages 1 to N-1), ``hidden/`` (the hidden
  checks), ``points.toml``, ``nicelab-gradescope.json`` (the settings) and
  ``nicelab-release.toml``.

Gradescope runs the autograder as root, beside the results file and the hidden checks, so the
student's code never runs as root: as in ``nicelab grade`` the checks decide in the worker and
each stage's module answers from a child process, here in bubblewrap where the container allows
it (:func:`nicelab.grader.isolation.sandbox.check_available`), else as the unprivileged user
``nicelab-student`` that ``setup.sh`` creates (:class:`~nicelab.grader.isolation.process.Plan`'s ``uid``).
Before grading, :func:`lock_down` makes ``hidden/`` and ``solutions/`` root's alone (0700), the
bundle read-only to others and the results folder root's (0700); every process of that user is
killed before ``results.json`` is written. The settings' ``isolation`` (or
``$NICELAB_GRADESCOPE_ISOLATION``) picks ``auto`` (the default: the sandbox, else the user),
``user``, ``sandbox`` or ``none`` (nothing between the code and the grader: trusted code only);
``$NICELAB_STUDENT_UID`` replaces the user's uid.

``AUTOGRADER_ROOT`` replaces ``/autograder`` everywhere, so the bundle runs on any machine.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import sys
import time
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from nicelab.authoring.release import gated_pyproject
from nicelab.core.atomic import atomic_path
from nicelab.core.course import STAGE_NAMES
from nicelab.core.course import VERSION as __version__
from nicelab.core.impl import PROJECT_ROOT
from nicelab.grader import batch, released
from nicelab.grader.batch import Limits
from nicelab.grader.isolation import sandbox
from nicelab.grader.isolation.process import Plan
from nicelab.grader.isolation.student_user import kill_user
from nicelab.grader.results.report import format_table, load_points
from nicelab.grader.results.scores import check_max_scores, check_scores
from nicelab.grader.runner import stage_of_file

TEMPLATES = Path(__file__).resolve().parent / "templates"
SETTINGS = "nicelab-gradescope.json"
#: The bundle leaves out the benchmarks' command (the benchmarks, which hold a second NICE in
#: PyTorch, live outside the package, in the repository's ``benchmarks/``).
LEFT_OUT = ("nicelab/cli/commands/bench.py",)
#: Runtime dependencies, pinned to the installed versions (the ones the bundle was tested with).
REQUIREMENTS = ("tensorflow", "tensorflow-probability", "tf-keras", "numpy", "matplotlib", "scikit-learn",
                "pytest")
#: How the student's code is kept from the grader (module doc), and what forces one.
ISOLATIONS = ("auto", "user", "sandbox", "none")
ISOLATION_ENV = "NICELAB_GRADESCOPE_ISOLATION"
#: The user setup.sh creates to run the student's code; its uid, or $NICELAB_STUDENT_UID.
STUDENT_USER = "nicelab-student"
UID_ENV = "NICELAB_STUDENT_UID"
#: The uid used when that user does not exist (only if no account has it).
FALLBACK_UID = 61234


@dataclass
class Bundle:
    path: Path
    open_stage: int
    size: int
    files: int

    def summary(self) -> str:
        return (f"wrote {self.path}: {self.files} files, {self.size / 2**20:.2f} MiB; grades stages "
                f"1-{self.open_stage}. Upload it on Gradescope: Configure Autograder, zip file.")


def requirements() -> str:
    lines = ["# Pinned to the versions `nicelab release gradescope` ran with."]
    for name in REQUIREMENTS:
        extra = "[tf]" if name == "tensorflow-probability" else ""
        lines.append(f"{name}{extra}=={metadata.version(name)}")
    return "\n".join(lines) + "\n"


def _package_files(source: Path) -> list[Path]:
    files = []
    for path in sorted((source / "nicelab").rglob("*")):
        rel = path.relative_to(source).as_posix()
        if (path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
                and not any(rel == p or rel.startswith(p + "/") for p in LEFT_OUT)):
            files.append(path)
    return files


def write_bundle(out: str | Path, open_stage: int = 5, extra_checks: list[Path] = (),
                 points_file: Path | None = None, timeout: float = 1200.0, memory_mb: int = 3072,
                 source: Path = PROJECT_ROOT, isolation: str = "auto") -> Bundle:
    """Write the autograder zip ``out`` grading stages 1 to ``open_stage`` (see the module doc)."""
    open_stage = released.check_open_stage(open_stage)
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation is one of {', '.join(ISOLATIONS)}; saw {isolation!r}.")
    Limits(timeout=timeout, memory_mb=memory_mb)  # the same checks of the limits as nicelab grade
    points = load_points(points_file)
    out = Path(out)
    if out.suffix != ".zip":
        raise ValueError(f"the bundle is a zip file: name it OUT.zip (saw {out}).")
    entries: dict[str, bytes | Path] = {}
    for path in _package_files(source):
        entries[path.relative_to(source).as_posix()] = path
    for path in sorted((source / "checks").glob("*.py")):
        stage = stage_of_file(path.name)
        if stage is None or STAGE_NAMES.index(stage) < open_stage:
            entries[f"checks/{path.name}"] = path
    entries["solutions/__init__.py"] = source / "solutions" / "__init__.py"
    for stage in STAGE_NAMES[: open_stage - 1]:
        entries[f"solutions/{stage}.py"] = source / "solutions" / f"{stage}.py"
    hidden = []
    for number, folder in enumerate(map(Path, extra_checks)):
        if not folder.is_dir():
            raise FileNotFoundError(f"no extra checks folder at {folder}.")
        target = f"hidden/{number}-{folder.resolve().name}"
        hidden.append(target)
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                entries[f"{target}/{path.relative_to(folder).as_posix()}"] = path
    entries["points.toml"] = Path(points.source)
    entries["pyproject.toml"] = gated_pyproject(source).encode()
    entries[released.FILENAME] = f"open_stage = {open_stage}\n".encode()
    settings = {"nicelab_version": __version__, "open_stage": open_stage,
                "stages": list(STAGE_NAMES[:open_stage]), "hidden_checks": hidden, "timeout": timeout,
                "memory_mb": memory_mb, "isolation": isolation}
    entries[SETTINGS] = (json.dumps(settings, indent=1) + "\n").encode()
    entries["requirements.txt"] = requirements().encode()
    for script in ("setup.sh", "run_autograder"):
        entries[script] = TEMPLATES / script

    with atomic_path(out, suffix=".zip") as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as bundle:
            for name in sorted(entries):
                data = entries[name]
                info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                executable = name in ("setup.sh", "run_autograder")
                info.external_attr = (0o100755 if executable else 0o100644) << 16
                bundle.writestr(info, data.read_bytes() if isinstance(data, Path) else data)
    return Bundle(out, open_stage, out.stat().st_size, len(entries))


# ----------------------------------------------------------------------------- on Gradescope

def results(row: dict) -> dict:
    """Gradescope's ``results.json`` from a graded submission's row (``nicelab grade --json``)."""
    tests = []
    for stage in row["stages"]:
        scores = zip(stage["checks"], check_scores(stage), check_max_scores(stage), strict=True)
        for check, score, max_score in scores:
            hidden = bool(check.get("hidden"))
            message = check["message"] or ("passed" if check["passed"] else check["outcome"])
            name = f"{stage['number']} {stage['stage']}: {check['name']}" + (" (hidden)" if hidden else "")
            tests.append({"name": name,
                          "number": f"{stage['number']}.{len(tests) + 1}", "score": score,
                          "max_score": max_score, "output": message,
                          "status": "passed" if check["passed"] else "failed", "tags": [stage["stage"]],
                          "visibility": "after_published" if hidden else "visible"})
        if not stage["checks"]:  # nothing ran (the submission could not even be copied)
            tests.append({"name": f"{stage['number']} {stage['stage']}", "number": f"{stage['number']}.0",
                          "score": 0.0, "max_score": stage["max_points"], "status": "failed",
                          "output": row["message"] or stage["status_text"], "tags": [stage["stage"]],
                          "visibility": "visible"})
    public = dict(row, stages=[dict(st, checks=[c for c in st["checks"] if not c.get("hidden")])
                               for st in row["stages"]])
    output = format_table(public, width=100) + ("\n\n" + row["message"] if row["message"] else "")
    if row["status"] != "graded":
        output = f"Grading stopped early ({row['status']}): {row['message']}\n\n" + output
    return {"output": output, "output_format": "text", "visibility": "visible", "stdout_visibility": "hidden",
            "execution_time": round(row.get("wall_time", 0.0)), "tests": tests}


def failure(reason: str) -> dict:
    return {"score": 0, "output": f"The autograder failed: {reason}. Tell your instructor.", "tests": []}


def student_uid() -> int:
    """The uid the student's code runs as: ``$NICELAB_STUDENT_UID``, else the user setup.sh
    creates, else :data:`FALLBACK_UID` when no account has it."""
    if os.environ.get(UID_ENV):
        return int(os.environ[UID_ENV])
    try:
        return pwd.getpwnam(STUDENT_USER).pw_uid
    except KeyError:
        pass
    try:
        owner = pwd.getpwuid(FALLBACK_UID).pw_name
    except KeyError:
        return FALLBACK_UID
    raise RuntimeError(f"no user {STUDENT_USER} (setup.sh creates it), and uid {FALLBACK_UID} is {owner}'s.")


def isolation_plan(mode: str, scratch_mb: int) -> Plan:
    """The plan for ``mode`` (:data:`ISOLATIONS`): ``auto`` is the sandbox where bubblewrap
    works, else the student's user when the grader is root (always on Gradescope), else none."""
    if mode not in ISOLATIONS:
        raise ValueError(f"isolation is one of {', '.join(ISOLATIONS)}; saw {mode!r}.")
    if mode in ("auto", "sandbox"):
        try:
            return Plan(sandbox.check_available(), scratch_mb)
        except sandbox.SandboxUnavailable:
            if mode == "sandbox":
                raise
    if mode == "user" or (mode == "auto" and os.geteuid() == 0):
        return Plan(None, scratch_mb, uid=student_uid())
    return Plan(None, scratch_mb)


def _without_write_for_others(path: Path) -> None:
    """Take the group's and others' write permission from ``path`` (and all it holds)."""
    for base, _, files in os.walk(path):  # never follows symbolic links
        for entry in (base, *(os.path.join(base, name) for name in files)):
            mode = os.lstat(entry).st_mode
            if mode & 0o022 and not stat.S_ISLNK(mode):
                os.chmod(entry, stat.S_IMODE(mode) & ~0o022)


def lock_down(root: Path, source: Path, settings: dict) -> None:
    """What the student's code (another user) must not reach: the hidden checks and the
    references (0700, root's), the bundle and the root folder for writing, the results folder."""
    os.chmod(root, stat.S_IMODE(os.stat(root).st_mode) & ~0o022)
    _without_write_for_others(source)
    for folder in (source / "solutions", *(source / hidden for hidden in settings["hidden_checks"])):
        if folder.is_dir():
            os.chmod(folder, 0o700)
    results_dir = root / "results"
    os.chown(results_dir, 0, 0)
    os.chmod(results_dir, 0o700)


def _grade(root: Path, plan_box: list[Plan]) -> dict:
    """Grade ``root/submission`` with the bundle's settings: the results document."""
    settings = json.loads((PROJECT_ROOT / SETTINGS).read_text())
    submission = root / "submission"
    if not submission.is_dir():
        raise FileNotFoundError(f"no submission folder at {submission}")
    limits = batch.Limits(timeout=settings["timeout"], memory_mb=settings["memory_mb"])
    mode = os.environ.get(ISOLATION_ENV) or settings.get("isolation", "auto")
    plan = isolation_plan(mode, limits.scratch_mb)
    plan_box.append(plan)
    how = "in the sandbox" if plan.sandboxed else f"as uid {plan.uid}" if plan.uid else "WITHOUT isolation"
    print(f"nicelab: the submission's code runs {how}", flush=True)
    if plan.uid is not None:
        lock_down(root, PROJECT_ROOT, settings)
        kill_user(plan.uid)  # none should be left from an earlier run
    hidden = [str(PROJECT_ROOT / folder) for folder in settings["hidden_checks"]]
    row = batch.grade_submission("submission", submission, tuple(settings["stages"]), hidden, limits,
                                 load_points(PROJECT_ROOT / "points.toml"), threads=os.cpu_count() or 1,
                                 plan=plan)
    return results(row)


def main() -> int:
    """Grade ``$AUTOGRADER_ROOT/submission`` (default ``/autograder``) into its results file."""
    root = Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    target = root / "results" / "results.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    plans: list[Plan] = []
    try:
        document = _grade(root, plans)
    except Exception as err:  # noqa: BLE001 - whatever happens, Gradescope gets a results file
        document = failure(f"{type(err).__name__}: {err}")
    uid = plans[0].uid if plans else None
    if uid is not None and not kill_user(uid):  # nothing of the student's runs once results exist
        document = failure(f"processes of the student's code (uid {uid}) could not be stopped")
    document.setdefault("execution_time", round(time.monotonic() - start))
    target.write_text(json.dumps(document, indent=1) + "\n")
    print(document["output"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
