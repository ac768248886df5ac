"""nicelab: the code students never edit.

Data sets, the training driver, plots, the command line and the grader live here; the
student's work lives in ``lessons/`` and the reference in ``solutions/``.
"""

import os

# Quiet TensorFlow's C++ start-up chatter before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

#: The five stages, in teaching order: (marker and module name, title).
STAGES: tuple[tuple[str, str], ...] = (
    ("coupling", "Stage 1 - the additive coupling layer"),
    ("model", "Stage 2 - the NICE model and its scaling layer"),
    ("likelihood", "Stage 3 - likelihood, training and sampling"),
    ("inpainting", "Stage 4 - inpainting"),
    ("outliers", "Stage 5 - outlier detection"),
)
STAGE_NAMES: tuple[str, ...] = tuple(name for name, _ in STAGES)


def __getattr__(name: str):
    """``nicelab.check`` (:func:`nicelab.grader.inline.check`), imported on first use so that
    ``import nicelab`` stays free of pytest and TensorFlow."""
    if name == "check":
        from nicelab.grader.inline import check

        return check
    raise AttributeError(f"module 'nicelab' has no attribute {name!r}")
