"""Which stages a student handout releases, read from ``nicelab-release.toml`` at its root.

``nicelab release student OUT --open-stage K`` writes that file (``open_stage = K``): stages 1 to
K are released (K is the open one; the references of stages before K come with the handout),
the later ones are not. Without the file (this repository, an instructor's clone) every stage
is released.

As a pytest plugin (a handout's ``pyproject.toml`` loads it with ``-p nicelab.grader.released``)
it deselects any check of an unreleased stage and ends the report with one line per such stage:
``stage 4 (inpainting): not released yet``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from nicelab.core.course import STAGE_NAMES
from nicelab.core.impl import PROJECT_ROOT
from nicelab.grader.runner import stage_of_item

FILENAME = "nicelab-release.toml"


@dataclass(frozen=True)
class Release:
    """``open_stage``: the stage students work on now (1-based); stages after it are not released."""

    open_stage: int

    @property
    def released(self) -> tuple[str, ...]:
        return STAGE_NAMES[: self.open_stage]

    @property
    def unreleased(self) -> tuple[str, ...]:
        return STAGE_NAMES[self.open_stage:]

    def verdict(self, stage: str) -> str:
        return f"stage {STAGE_NAMES.index(stage) + 1} ({stage}): not released yet"


def check_open_stage(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= len(STAGE_NAMES):
        raise ValueError(f"the open stage must be a stage number from 1 to {len(STAGE_NAMES)}; "
                         f"saw {value!r}.")
    return value


def read(root: Path = PROJECT_ROOT) -> Release | None:
    """The release of the handout at ``root``, or None where there is no ``nicelab-release.toml``."""
    path = Path(root) / FILENAME
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text())
        return Release(check_open_stage(data.get("open_stage")))
    except (tomllib.TOMLDecodeError, ValueError) as err:
        raise ValueError(f"{path} is not a valid release file: {err}") from err


def released_stages(root: Path = PROJECT_ROOT) -> tuple[str, ...]:
    release = read(root)
    return release.released if release else STAGE_NAMES


# ----------------------------------------------------------------------------- pytest plugin

def _stage(item) -> str | None:
    return stage_of_item(item)


def pytest_report_header(config):
    release = read()
    if release is None:
        return None
    last = release.open_stage
    head = f"nicelab handout: stages 1-{last} released" if last > 1 else "nicelab handout: stage 1 released"
    return head + "".join(f"; {release.verdict(s)}" for s in release.unreleased)


def pytest_collection_modifyitems(config, items):
    release = read()
    if release is None:
        return
    kept = [item for item in items if _stage(item) not in release.unreleased]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    release = read()
    if release is None:
        return
    for stage in release.unreleased:
        terminalreporter.write_line(release.verdict(stage))
