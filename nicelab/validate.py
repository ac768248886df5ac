"""``from nicelab.validate import as_batch, ...``: the input checks the lessons import. They live
in :mod:`nicelab.core.validate`."""

from nicelab.core.validate import as_batch, check_choice, check_positive_int

__all__ = ["as_batch", "check_choice", "check_positive_int"]
