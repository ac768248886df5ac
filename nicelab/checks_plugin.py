"""``pytest -p nicelab.checks_plugin`` and ``from nicelab.checks_plugin import *``: the grader's
pytest plugin under the name instructors use. It lives in :mod:`nicelab.grader.plugin`."""

from nicelab.grader.plugin import *  # noqa: F403 - the option, hooks and stage fixtures
from nicelab.grader.plugin import __all__  # noqa: F401
