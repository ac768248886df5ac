"""Per-check scores that add up to a stage's points exactly, for graders that add them up
themselves (GitHub Classroom's reporter, Gradescope).

``nicelab grade`` splits a stage's points evenly over its checks and rounds each share, so 18
passing checks of a 20-point stage add up to 19.9994. Here points are dealt out in steps of
1/256 (exact in binary floating point, so any order of adding gives the same sum): every check
gets the same number of steps, the first ones one more, and the sum is the stage's points to
within 1/512.
"""

from __future__ import annotations

STEP = 256  # scores are multiples of 1/STEP


def deal(total: float, count: int) -> list[float]:
    """``total`` split into ``count`` multiples of 1/STEP that add up to it (to 1/512)."""
    if count <= 0:
        return []
    each, extra = divmod(round(total * STEP), count)
    return [(each + (rank < extra)) / STEP for rank in range(count)]


def check_scores(stage: dict) -> list[float]:
    """The score of each check of ``stage`` (a stage of a ``nicelab grade --json`` row), in order:
    the stage's points dealt over the checks that earned some."""
    checks = stage["checks"]
    earning = [i for i, check in enumerate(checks) if check["points"] > 0]
    scores = [0.0] * len(checks)
    for i, score in zip(earning, deal(stage["points"], len(earning)), strict=True):
        scores[i] = score
    return scores


def check_max_scores(stage: dict) -> list[float]:
    """The most each check of ``stage`` can earn: the stage's points dealt over all its checks."""
    return deal(stage["max_points"], len(stage["checks"]))
