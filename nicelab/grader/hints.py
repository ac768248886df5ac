"""Hints that unlock: a check's code-level fix, shown only after it failed several runs in a row.

A failed check first names the mistake and where to look (its "Likely mistake"). Where a check
also knows the code that fixes it (``fail(..., fix=...)``), that fix is added to the message
only once the same check has failed with the same message :data:`HINT_AFTER` runs in a row on
this machine (as PrairieLearn's hints unlock after some tries). The counts live in the cache
folder, one file per graded folder; a pass resets a check's count. Nothing is counted, and no
fix is ever shown, in a remotely graded run (``nicelab grade SUBS``, Gradescope, GitHub
Classroom: ``--remote``) or with ``NICELAB_HINTS=0``: the report shows the mistake alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from nicelab.core.atomic import atomic_path
from nicelab.core.cache import cache_dir

#: Failed runs in a row after which a check's fix is shown.
HINT_AFTER = 3
ENV = "NICELAB_HINTS"


class Hints:
    """The failure counts of one pytest session's graded folder (see the module docstring)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.counts: dict[str, list] = {}
        self.changed = False

    def start(self, graded_folder: Path | None, enabled: bool) -> None:
        """Load the counts of ``graded_folder`` (None or not ``enabled``: count nothing)."""
        self.counts, self.path, self.changed = {}, None, False
        if graded_folder is None or not enabled or os.environ.get(ENV, "1") == "0":
            return
        name = hashlib.sha256(str(Path(graded_folder).resolve()).encode()).hexdigest()[:16]
        self.path = cache_dir() / "hints" / f"{name}.json"
        try:
            loaded = json.loads(self.path.read_text())
            self.counts = {k: v for k, v in loaded.items() if isinstance(v, list) and len(v) == 2}
        except (OSError, ValueError, AttributeError):
            self.counts = {}

    def failed(self, check: str, message: str) -> int:
        """Count one more failed run of ``check`` with ``message``; return the runs in a row."""
        if self.path is None:
            return 0
        digest = hashlib.sha256(message.encode("utf-8", "replace")).hexdigest()[:16]
        previous, runs = self.counts.get(check, [None, 0])
        runs = runs + 1 if previous == digest else 1
        self.counts[check] = [digest, runs]
        self.changed = True
        return runs

    def passed(self, check: str) -> None:
        if self.counts.pop(check, None) is not None:
            self.changed = True

    def save(self) -> None:
        """Write the counts back, only when this session changed them (a session that ran no
        check, such as a batch listing its checks, writes nothing)."""
        if self.path is None or not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.path) as tmp:
                Path(tmp).write_text(json.dumps(self.counts, indent=0, sort_keys=True))
        except OSError:
            pass  # a read-only cache: no hints, never a failed session


def with_hint(message: str, fix: str | None, runs: int) -> str:
    """``message`` with ``fix`` added when the check has failed :data:`HINT_AFTER` runs in a row."""
    if not fix or runs < HINT_AFTER:
        return message
    return f"{message} Hint (this check failed {runs} runs in a row): {fix}"
