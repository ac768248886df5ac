"""The nicelab grader's pytest plugin: the ``--impl`` option, the stage fixtures and the hooks.

``checks/conftest.py`` imports everything from here, so ``pytest checks`` works as it always
did; an instructor's hidden checks in any other folder get the same fixtures with
``pytest -p nicelab.checks_plugin HIDDEN_DIR`` (what ``nicelab grade --extra-checks`` runs).

Fixtures: ``graded`` (the name of the implementation being graded) and one per stage of
:data:`nicelab.core.course.STAGES` (``coupling``, ``model``, ..., ``affine``): the graded module of that
stage, loaded on top of the *reference* modules of the earlier stages (so an unfinished stage 1
never drowns stage 2 in failures). A stage module that needs more of the student's own earlier
modules than the reference offers (``from .coupling import my_helper``) is loaded with the
student's own earlier modules instead; :data:`LOADS` records that, and which module blocked a
stage that cannot be loaded, for ``nicelab grade``.
"""

from __future__ import annotations

import re
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nicelab.core.course import STAGE_NAMES, STAGES
from nicelab.core.quiet import import_tensorflow
from nicelab.core.stubs import is_stub
from nicelab.grader import hints, remote, seeding, stage_processes

tf = import_tensorflow()

from nicelab.core import impl as impl_mod  # noqa: E402

__all__ = [  # the stage fixtures (one per stage, named after it) come last
    "CLIENTS", "FAILED", "HINTS", "LOADS", "StageLoad", "_seed", "graded", "impl_name",
    "load_remote", "load_stage", "pytest_addoption", "pytest_collection_finish",
    "pytest_collection_modifyitems", "pytest_configure", "pytest_fixture_setup", "pytest_report_header",
    "pytest_runtest_makereport", "pytest_sessionfinish", "pytest_sessionstart", *STAGE_NAMES,
]


@dataclass
class StageLoad:
    """How one stage's module was loaded in this pytest session (read by ``nicelab grade``).

    ``kind``: ``ok``; or why it could not be loaded: ``missing`` (no file), ``solutions``
    (it imports the reference), ``exit`` (it called sys.exit), ``import`` (it raised at import),
    ``blocked`` (another of the student's own stage modules failed, see ``blocked_by``).
    ``own_earlier``: earlier stages taken from the student instead of the reference.
    """

    kind: str = "ok"
    blocked_by: str | None = None
    own_earlier: list[str] = field(default_factory=list)


#: stage -> how its module was loaded in the current session (reset at every session start).
LOADS: dict[str, StageLoad] = {}


def pytest_addoption(parser):
    parser.addoption(
        "--impl", default=None,
        help="what to grade: 'lessons' (default), 'solutions', a directory holding the lesson "
             f"modules, or a package name (also: the {impl_mod.ENV_VAR} environment variable)",
    )
    parser.addoption(
        "--remote", default=None, choices=["process", "sandbox"],
        help="run the graded modules in another process that only answers the checks' requests "
             "('sandbox': in bubblewrap, with only the earlier stages' reference); the checks "
             "decide here. What nicelab grade does.",
    )


#: stage -> the client of the process running that stage's graded module (remote grading).
CLIENTS: dict[str, remote.Client] = {}
#: The session's stages, in the order their checks run (the next one's process starts ahead).
ORDER: list[str] = []


def pytest_configure(config):
    for name, title in STAGES:  # so that hidden checks outside this project can use the markers
        config.addinivalue_line("markers", f"{name}: {title}")
    config.addinivalue_line(
        "markers", "builds_on(*checks): this check relies on the named checks of the same module "
                   "(their function names); when one of them failed, this check's failure says "
                   "to fix that one first")


#: Check function names ("module.py::test_name", without parameters) that failed this session.
FAILED: set[str] = set()


#: The failure counts that unlock a check's code-level fix (never in a remotely graded run).
HINTS = hints.Hints()


def pytest_sessionstart(session):
    seeding.fresh_session()
    LOADS.clear()
    FAILED.clear()
    CLIENTS.clear()
    try:
        folder = impl_mod.resolve(impl_name(session.config))
    except impl_mod.ImplementationError:
        folder = None
    HINTS.start(folder, enabled=remote_mode(session.config) is None)


def pytest_sessionfinish(session):
    """End the processes that ran the graded modules (remote grading), or keep them for the
    next session of the same run (the hidden checks: :func:`stage_processes.release`); keep
    the hint counts."""
    HINTS.save()
    for client in CLIENTS.values():
        stage_processes.release(client)
    CLIENTS.clear()
    remote.activate(None)
    if not stage_processes.SETTINGS["keep"]:
        stage_processes.close_all()


def _function_key(item) -> str:
    return f"{Path(str(item.fspath)).name}::{getattr(item, 'originalname', None) or item.name}"


def _failed_foundations(item) -> list[str]:
    """The checks this one ``builds_on`` that failed earlier in the session (in their order)."""
    names = [name for marker in item.iter_markers("builds_on") for name in marker.args]
    module = Path(str(item.fspath)).name
    return [name for name in names if f"{module}::{name}" in FAILED]


def _foundations(item) -> list[str]:
    """The function keys (``module.py::test_name``) of the checks ``item`` builds on."""
    module = Path(str(item.fspath)).name
    return [f"{module}::{name}" for marker in item.iter_markers("builds_on") for name in marker.args]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """Run the stages in their order, and every check after the checks it ``builds_on`` (file
    order otherwise): when one mistake fails several checks, the first failure shown (by
    pytest, ``nicelab grade``, ``nicelab watch`` and the notebooks alike) is the foundation's,
    whose message names it."""
    def stage_index(item) -> int:
        stem = Path(str(item.fspath)).stem.removeprefix("test_")
        return STAGE_NAMES.index(stem) if stem in STAGE_NAMES else len(STAGE_NAMES)

    items.sort(key=stage_index)  # stable: stage 1's checks first, file order within a stage
    left = Counter(_function_key(item) for item in items)

    def ready(item) -> bool:
        return all(left.get(key, 0) == 0 for key in _foundations(item) if key != _function_key(item))

    ordered, pending = [], list(items)
    while pending:  # each time, the first check in file order whose foundations have all run
        item = next((i for i in pending if ready(i)), pending[0])  # (a cycle: file order)
        pending.remove(item)
        ordered.append(item)
        left[_function_key(item)] -= 1
    items[:] = ordered


def pytest_collection_finish(session):
    ORDER[:] = list(dict.fromkeys(s for s in map(_stage_of, session.items) if s))  # once deselected


def impl_name(config) -> str:
    return config.getoption("--impl", default=None) or impl_mod.default_impl()


def pytest_report_header(config):
    name = impl_name(config)
    try:
        where = impl_mod.resolve(name)
    except impl_mod.ImplementationError as err:
        return f"nicelab: {err}"
    return (f"nicelab: grading {name} ({where}); each stage runs on the reference "
            "solutions of the stages before it")


def _without_hint(longrepr) -> str:
    """A check's one-line message without its "Likely mistake" (which assumes the checks it
    builds on passed, and would otherwise blame code that may be right)."""
    return str(longrepr).split(" Likely mistake:")[0]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A stub's NotImplementedError becomes one line, not a traceback; a check whose foundation
    failed says to fix that one first."""
    report = yield
    excinfo = call.excinfo
    if excinfo is not None and excinfo.errisinstance(remote.GradingProcessEnded):
        report.longrepr = str(excinfo.value)  # how the process running the code ended: no hint
        FAILED.add(_function_key(item))
        return report
    if is_stub(excinfo):
        report.longrepr = f"Not implemented yet - {excinfo.value}"
    elif excinfo is not None and excinfo.errisinstance(NotImplementedError):
        first = str(excinfo.value).strip().splitlines()[0][:200]
        report.longrepr = (f"Your code raised NotImplementedError: {first}. Likely mistake: NumPy "
                           "(np.*, .numpy(), float()) applied to a tensor inside a compiled function; "
                           "keep the computation in TensorFlow ops.")
    if report.failed and call.when == "call" and not is_stub(excinfo):
        first = _failed_foundations(item)
        if first:
            report.longrepr = (f"Fix {first[0]} first: this check builds on it. "
                               f"{_without_hint(report.longrepr)}")
        else:  # the code-level fix, once this check has failed several runs in a row here
            runs = HINTS.failed(item.nodeid, str(report.longrepr))
            report.longrepr = hints.with_hint(str(report.longrepr), getattr(excinfo.value, "fix", None), runs)
    elif report.passed and call.when == "call":
        HINTS.passed(item.nodeid)
    if report.failed:
        FAILED.add(_function_key(item))
    return report


@pytest.fixture(scope="session")
def graded(request) -> str:
    """The name of the implementation being graded."""
    return impl_name(request.config)


def _stage_file(path: Path, filename: str | None) -> str | None:
    """The stage whose module (in the graded folder ``path``) is ``filename``, if any."""
    if not filename:
        return None
    file = Path(filename)
    if file.parent.resolve() == path and file.stem in STAGE_NAMES:
        return file.stem
    return None


def _origin(cause: BaseException | None, path: Path, stage: str) -> str | None:
    """The student's own *other* stage module where the import failure ``cause`` of ``stage``
    started (the deepest frame in one of the graded folder's stage modules)."""
    if cause is None:
        return None
    origin = None
    if isinstance(cause, SyntaxError):
        origin = _stage_file(path, cause.filename)
    else:
        for frame in traceback.extract_tb(cause.__traceback__):
            origin = _stage_file(path, frame.filename) or origin
    return origin if origin != stage else None


def _first_stage_path(text: str, path: Path) -> str | None:
    """The first stage module of the folder ``path`` named in an error message."""
    found = [(text.find(str(path / f"{s}.py")), s) for s in STAGE_NAMES if str(path / f"{s}.py") in text]
    return min(found)[1] if found else None


def _needs_own_earlier(error: BaseException, stage: str) -> bool:
    """True when the module failed because a reference module of an earlier stage lacks a name
    the student's module imports from it (``from .coupling import my_helper``)."""
    cause = error.__cause__
    if not isinstance(cause, ImportError | AttributeError):
        return False
    earlier = STAGE_NAMES[: STAGE_NAMES.index(stage)]
    names = re.findall(r"solutions\.(\w+)", str(cause))
    return any(name in earlier for name in names)


def _fail(stage: str, load: StageLoad, message: str):
    LOADS[stage] = load
    pytest.fail(message, pytrace=False)


def load_stage(graded: str, stage: str):
    """The graded module of ``stage``, or a failed check that says why it cannot be loaded."""
    try:
        path = impl_mod.resolve(graded)
    except impl_mod.ImplementationError as err:
        _fail(stage, StageLoad("missing"), str(err))
    module_file = path / f"{stage}.py"
    if not impl_mod.is_reference(path):
        offending = impl_mod.reference_imports(module_file)
        if offending:
            _fail(stage, StageLoad("solutions"),
                  f"{module_file} imports the reference solutions or the grader's own code "
                  f"({offending[0]}). Grading uses your own code: remove that import.")
    if not module_file.exists():
        _fail(stage, StageLoad("missing"),
              f"{module_file} is missing: stage {STAGE_NAMES.index(stage) + 1} ({stage}) has no module.")
    try:
        try:
            module = impl_mod.load_stage(graded, stage)
            LOADS[stage] = StageLoad()
            return module
        except impl_mod.ImplementationError as err:
            if not _needs_own_earlier(err, stage):
                raise
        # It imports something the reference lacks from an earlier stage: use the student's own.
        earlier = list(STAGE_NAMES[: STAGE_NAMES.index(stage)])
        try:
            module = impl_mod.load_all(graded, (*earlier, stage))[stage]
        except impl_mod.ImplementationError as err:
            blocker = _first_stage_path(str(err), path)
            if blocker and blocker != stage:
                _fail(stage, StageLoad("blocked", blocker, earlier),
                      f"{module_file} imports from your own {blocker}.py (something the reference "
                      f"lacks), and that module cannot be loaded: {err}")
            raise
        LOADS[stage] = StageLoad(own_earlier=earlier)
        return module
    except impl_mod.ImplementationError as err:
        blocker = _origin(err.__cause__, path, stage)
        if blocker:
            _fail(stage, StageLoad("blocked", blocker),
                  f"{module_file} cannot be loaded because your {blocker}.py fails: {err}")
        _fail(stage, StageLoad("import"), str(err))
    except SystemExit as exc:
        blocker = _origin(exc, path, stage)
        where = f"your {blocker}.py, imported by {module_file}," if blocker else str(module_file)
        _fail(stage, StageLoad("blocked" if blocker else "exit", blocker),
              f"importing {where} called sys.exit({exc.code!r}): a lesson module must never exit "
              "the program; remove that call.")


def load_remote(graded: str, stage: str, mode: str):
    """A stand-in of the graded module of ``stage``, loaded in a child process (in the sandbox
    for ``mode`` ``sandbox``, with only the reference of the stages before it), or a failed
    check that says why it cannot be loaded (the child's own diagnostics)."""
    try:
        path = impl_mod.resolve(graded)
    except impl_mod.ImplementationError as err:
        _fail(stage, StageLoad("missing"), str(err))
    for other in [name for name in CLIENTS if name != stage]:  # one graded process at a time
        CLIENTS.pop(other).close()
    hosted = len(ORDER) > 1  # the stages' processes forked by one host (isolation.stage_host)
    client = stage_processes.take(path, stage, mode, hosted)
    CLIENTS[stage] = client
    remote.activate(client)
    status = client.load()
    following = stage_processes.next_stage(stage, ORDER)
    if following is not None:  # its TensorFlow import overlaps this stage's checks (sandbox only)
        stage_processes.prefetch(path, following, mode, hosted)
    if status["kind"] != "ok":
        _fail(stage, StageLoad(status["kind"], status["blocked_by"], list(status["own_earlier"] or [])),
              str(status["message"]))
    LOADS[stage] = StageLoad(own_earlier=list(status["own_earlier"] or []))
    client.seed(0)
    return status["module"]


def remote_mode(config) -> str | None:
    return config.getoption("--remote", default=None)


def _stage_fixture(stage: str):
    @pytest.fixture(scope="session", name=stage)
    def fixture(graded, request):
        mode = remote_mode(request.config)
        return load_remote(graded, stage, mode) if mode else load_stage(graded, stage)

    fixture.__doc__ = f"The graded ``{stage}`` module (earlier stages from the reference)."
    return fixture


#: One fixture per stage, named after it (``coupling``, ``model``, ..., the optional ``affine``).
for _stage in STAGE_NAMES:
    globals()[_stage] = _stage_fixture(_stage)
del _stage


def _stage_of(item) -> str | None:
    for marker in item.iter_markers():
        if marker.name in STAGE_NAMES:
            return marker.name
    used = [s for s in STAGE_NAMES if s in getattr(item, "fixturenames", ())]
    return used[-1] if used else None


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef, request):
    """A fixture of a remotely graded stage (a module's training run, say) builds its objects
    in that stage's process, even when it is set up before the check's own ``_seed``."""
    client = CLIENTS.get(_stage_of(request.node))
    if client is not None:
        remote.activate(client)


@pytest.fixture(autouse=True)
def _seed(request):
    """Every check starts from a random state of its own: the same verdict on every run, whatever
    ran before it (in the process running the graded code as well, when it runs in another one;
    :mod:`nicelab.grader.seeding`)."""
    seed = seeding.check_seed(request.node.nodeid)
    seeding.seed_check(seed)
    client = CLIENTS.get(_stage_of(request.node))
    remote.activate(client)
    if client is not None and client.ended is None:
        client.seed(seed)
