"""The course itself: its stages, in teaching order, and the package's version.

Stages 1-5 are the core course; the stages named in :data:`OPTIONAL_STAGES` (the advanced
track, stage 6 on) are graded like the others, and an instructor may leave them out of a
class's total (``points.toml``'s ``count_optional``, docs/instructor-guide.md).

``nicelab.STAGES``, ``nicelab.STAGE_NAMES`` and ``nicelab.__version__`` re-export these; the
package's own modules import them from here, so that none imports the package's root.
"""

VERSION = "0.1.0"

#: The stages, in teaching order: (marker and module name, title).
STAGES: tuple[tuple[str, str], ...] = (
    ("coupling", "Stage 1 - the additive coupling layer"),
    ("model", "Stage 2 - the NICE model and its scaling layer"),
    ("likelihood", "Stage 3 - likelihood, training and sampling"),
    ("inpainting", "Stage 4 - inpainting"),
    ("outliers", "Stage 5 - outlier detection"),
    ("affine", "Stage 6 - affine coupling (RealNVP)"),
    ("mixing", "Stage 7 - learned mixing (Glow)"),
)
STAGE_NAMES: tuple[str, ...] = tuple(name for name, _ in STAGES)
#: The optional stages (the advanced track): graded like the others when a submission or a
#: handout has them; an instructor may leave them out of a class's total.
OPTIONAL_STAGES: frozenset[str] = frozenset({"affine", "mixing"})
#: The core stages, in teaching order: every stage that is not optional.
CORE_STAGES: tuple[str, ...] = tuple(name for name in STAGE_NAMES if name not in OPTIONAL_STAGES)
#: The stages a trained NICE needs: the coupling layer, the model and its likelihood.
TRAINED_STAGES: tuple[str, ...] = STAGE_NAMES[:3]
