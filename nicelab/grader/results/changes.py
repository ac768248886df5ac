"""What moved between two results files of one class, student by student (after a regrade).

:func:`compare` takes the results before and after (``nicelab grade regrade`` keeps the file
it started from as ``results.before.json``) and gives one :class:`Moved` per submission whose
points, stage statuses or check verdicts differ: its points before and after, each stage whose
status or points changed, the checks it now fails and now passes, and the checks new to it or
gone. Submissions in one file only are listed as added or removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nicelab.grader.results.integrity import clean_value


@dataclass
class Moved:
    """One submission that changed: ``before``/``after`` points (None: not in that file),
    ``stages``: ``{stage: (status and points before, after)}`` of the stages that changed;
    check nodeids it ``now_fails``, ``now_passes``, that are ``new`` to it or ``gone``."""

    name: str
    before: float | None
    after: float | None
    stages: dict[str, tuple[str, str]] = field(default_factory=dict)
    now_fails: list[str] = field(default_factory=list)
    now_passes: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)

    @property
    def delta(self) -> float:
        return (self.after or 0.0) - (self.before or 0.0)


def _stage_text(stage: dict | None) -> str:
    if stage is None:
        return "not graded"
    return f"{stage['status_text']}, {stage['points']:.1f}/{stage['max_points']:g}"


def _verdicts(row: dict) -> dict[str, bool]:
    return {check["nodeid"]: bool(check["passed"]) for stage in row["stages"] for check in stage["checks"]}


def _moved(name: str, old: dict | None, new: dict | None) -> Moved | None:
    moved = Moved(name, old["points"] if old else None, new["points"] if new else None)
    if old is None or new is None:
        return moved
    old_stages = {st["stage"]: st for st in old["stages"]}
    new_stages = {st["stage"]: st for st in new["stages"]}
    for stage in [*old_stages, *(s for s in new_stages if s not in old_stages)]:
        before, after = _stage_text(old_stages.get(stage)), _stage_text(new_stages.get(stage))
        if before != after:
            moved.stages[stage] = (before, after)
    then, now = _verdicts(old), _verdicts(new)
    moved.now_fails = sorted(n for n in now if n in then and then[n] and not now[n])
    moved.now_passes = sorted(n for n in now if n in then and not then[n] and now[n])
    moved.new = sorted(n for n in now if n not in then)
    moved.gone = sorted(n for n in then if n not in now)
    changed = (
        moved.stages
        or moved.now_fails
        or moved.now_passes
        or moved.new
        or moved.gone
        or abs(moved.delta) > 1e-9
    )
    return moved if changed else None


def compare(before: dict, after: dict) -> list[Moved]:
    """The submissions that changed from ``before`` to ``after`` (results documents), the
    largest change in points first."""
    old = {row["name"]: row for row in clean_value(before.get("submissions", []))}
    new = {row["name"]: row for row in clean_value(after.get("submissions", []))}
    moved = [m for name in sorted(set(old) | set(new)) if (m := _moved(name, old.get(name), new.get(name)))]
    return sorted(moved, key=lambda m: (-abs(m.delta), m.name))


def _count(items: list, one: str, many: str) -> str:
    return f"{len(items)} {one if len(items) == 1 else many}"


def format_changes(moved: list[Moved], at_most: int = 20) -> str:
    """One line per submission that changed (points before -> after, and why)."""
    if not moved:
        return "nothing moved: every submission has the points and verdicts it had before."
    lines = [f"{len(moved)} submissions moved:"]
    for m in moved[:at_most]:
        if m.before is None or m.after is None:
            lines.append(f"  {m.name}: {'added' if m.before is None else 'removed'}")
            continue
        parts = [f"{stage} {before} -> {after}" for stage, (before, after) in m.stages.items()]
        parts += [_count(m.now_fails, "check now fails", "checks now fail")] if m.now_fails else []
        parts += [_count(m.now_passes, "check now passes", "checks now pass")] if m.now_passes else []
        parts += [_count(m.new, "new check", "new checks")] if m.new else []
        lines.append(
            f"  {m.name}: {m.before:.1f} -> {m.after:.1f} ({m.delta:+.1f})"
            + (f": {'; '.join(parts)}" if parts else "")
        )
    if len(moved) > at_most:
        lines.append(f"  ... and {len(moved) - at_most} more in the report")
    return "\n".join(lines)
