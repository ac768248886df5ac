"""``from nicelab.checking import fail, expect, ...``: the checks' assertions under the name the
checks and instructors' hidden checks import. They live in :mod:`nicelab.grader.assertions`."""

from nicelab.grader.assertions import *  # noqa: F403
from nicelab.grader.assertions import __all__  # noqa: F401
