"""The course itself: its five stages, in teaching order, and the package's version.

``nicelab.STAGES``, ``nicelab.STAGE_NAMES`` and ``nicelab.__version__`` re-export these; the
package's own modules import them from here, so that none imports the package's root.
"""

VERSION = "0.1.0"

#: The five stages, in teaching order: (marker and module name, title).
STAGES: tuple[tuple[str, str], ...] = (
    ("coupling", "Stage 1 - the additive coupling layer"),
    ("model", "Stage 2 - the NICE model and its scaling layer"),
    ("likelihood", "Stage 3 - likelihood, training and sampling"),
    ("inpainting", "Stage 4 - inpainting"),
    ("outliers", "Stage 5 - outlier detection"),
)
STAGE_NAMES: tuple[str, ...] = tuple(name for name, _ in STAGES)
#: The stages a trained NICE needs: the coupling layer, the model and its likelihood.
TRAINED_STAGES: tuple[str, ...] = STAGE_NAMES[:3]
