"""nicelab: the code students never edit.

Data sets, the training driver, plots, the command line and the grader live here; the
student's work lives in ``lessons/`` and the reference in ``solutions/``.
"""

import os

# Quiet TensorFlow's C++ start-up chatter before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from nicelab.core.course import STAGE_NAMES, STAGES, VERSION  # noqa: E402

__version__ = VERSION
__all__ = ["STAGES", "STAGE_NAMES", "__version__"]


def __getattr__(name: str):
    """``nicelab.check`` (:func:`nicelab.grader.inline.check`), imported on first use so that
    ``import nicelab`` stays free of pytest and TensorFlow."""
    if name == "check":
        # Lazy: the checks import pytest and TensorFlow, which `import nicelab` must not.
        from nicelab.grader.inline import check

        return check
    raise AttributeError(f"module 'nicelab' has no attribute {name!r}")
