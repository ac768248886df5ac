"""Per-check scores that add up to a stage's points exactly, for graders that add them up
themselves (GitHub Classroom's reporter, Gradescope).

``nicelab grade`` splits a stage's points evenly over its checks and rounds each share, so 18
passing checks of a 20-point stage add up to 19.9994. Here the stage's points are dealt out
in steps of 1/256 (exact in binary floating point, so any order of adding gives the same sum):
every earning check gets the same number of steps, the first ones one more, and the sum is the
stage's points to within 1/512.
"""

from __future__ import annotations

STEP = 256  # scores are multiples of 1/STEP


def check_scores(stage: dict) -> list[float]:
    """The score of each check of ``stage`` (a stage of a ``nicelab grade --json`` row), in order."""
    checks = stage["checks"]
    earning = [i for i, check in enumerate(checks) if check["points"] > 0]
    steps = round(stage["points"] * STEP)
    scores = [0.0] * len(checks)
    if not earning:
        return scores
    each, extra = divmod(steps, len(earning))
    for rank, i in enumerate(earning):
        scores[i] = (each + (rank < extra)) / STEP
    return scores
