"""The nicelab grader's fixtures.

``pytest checks`` grades ``lessons/``; ``--impl solutions`` grades the reference; ``--impl``
also takes a directory holding the lesson modules or a package name (or set NICELAB_IMPL).

Stage N is graded with *your* module for stage N on top of the *reference* modules of the
earlier stages, so an unfinished stage 1 never drowns stage 2 in failures.
"""

from __future__ import annotations

import pytest

from nicelab import STAGE_NAMES
from nicelab.quiet import import_tensorflow

tf = import_tensorflow()

from nicelab import impl as impl_mod  # noqa: E402


def pytest_addoption(parser):
    parser.addoption(
        "--impl", default=None,
        help="what to grade: 'lessons' (default), 'solutions', a directory holding the lesson "
             f"modules, or a package name (also: the {impl_mod.ENV_VAR} environment variable)",
    )


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A stub's NotImplementedError becomes one line, not a traceback."""
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(NotImplementedError):
        report.longrepr = f"Not implemented yet - {call.excinfo.value}"
    return report


@pytest.fixture(scope="session")
def graded(request) -> str:
    """The name of the implementation being graded."""
    return impl_name(request.config)


def load_stage(graded: str, stage: str):
    """The graded module of ``stage``, or a failed check that says why it cannot be loaded."""
    try:
        path = impl_mod.resolve(graded)
    except impl_mod.ImplementationError as err:
        pytest.fail(str(err), pytrace=False)
    if not impl_mod.is_reference(path):
        offending = impl_mod.reference_imports(path / f"{stage}.py")
        if offending:
            pytest.fail(
                f"{path / (stage + '.py')} imports the reference solutions ({offending[0]}). "
                "Grading uses your own code: remove that import.", pytrace=False)
    try:
        return impl_mod.load_stage(graded, stage)
    except impl_mod.ImplementationError as err:
        pytest.fail(str(err), pytrace=False)


def _stage_fixture(stage: str):
    @pytest.fixture(scope="session", name=stage)
    def fixture(graded):
        return load_stage(graded, stage)

    fixture.__doc__ = f"The graded ``{stage}`` module (earlier stages from the reference)."
    return fixture


coupling = _stage_fixture("coupling")
model = _stage_fixture("model")
likelihood = _stage_fixture("likelihood")
inpainting = _stage_fixture("inpainting")
outliers = _stage_fixture("outliers")
assert {"coupling", "model", "likelihood", "inpainting", "outliers"} == set(STAGE_NAMES)


@pytest.fixture(autouse=True)
def _seed():
    """Every check starts from the same random state: the same verdict on every run."""
    tf.keras.utils.set_random_seed(0)
