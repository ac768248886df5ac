"""The grader (issue 13's target layout): for now, :mod:`nicelab.grader.inline`, the checks run
from a notebook cell."""
