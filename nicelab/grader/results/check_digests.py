"""A digest of each stage's checks (their ids and their files' bytes), kept in a results file
so that a later ``nicelab grade regrade`` knows which stages' checks changed since."""

from __future__ import annotations

import hashlib
from pathlib import Path

from nicelab.core.course import STAGE_NAMES
from nicelab.core.impl import PROJECT_ROOT


def _check_file(nodeid: str, hidden: bool, extra_dirs: tuple[str, ...]) -> Path | None:
    """The file a check's id points to (public: under the project; hidden: under a hidden
    checks' folder's parent, the rootdir they are collected with)."""
    relative = nodeid.split("::", 1)[0]
    bases = [Path(d).parent for d in extra_dirs] if hidden else [PROJECT_ROOT]
    return next((base / relative for base in bases if (base / relative).is_file()), None)


def stage_digests(
    expected: dict[str, tuple[str | None, bool]], extra_dirs: tuple[str, ...]
) -> dict[str, str]:
    """``{stage: digest}`` of each stage's checks: SHA-256 of their ids and of the bytes of the
    files they are in, and of every ``conftest.py`` of the public and hidden checks (which can
    change any check). ``expected``: ``{nodeid: (stage, hidden)}`` as the batch collects them."""
    from nicelab.grader.runner import CHECKS_DIR

    conftests = [CHECKS_DIR / "conftest.py", *(Path(d) / "conftest.py" for d in extra_dirs)]
    shared = hashlib.sha256()
    for path in conftests:  # a hidden folder without one changes nothing
        if path.is_file():
            shared.update(hashlib.sha256(path.read_bytes()).digest())
    digests = {}
    for stage in STAGE_NAMES:
        mine = sorted((n, hidden) for n, (st, hidden) in expected.items() if st == stage)
        if not mine:
            continue
        digest = hashlib.sha256(shared.digest())
        files: dict[Path, None] = {}
        for nodeid, hidden in mine:
            digest.update(nodeid.encode("utf-8", "backslashreplace") + b"\0")
            path = _check_file(nodeid, hidden, extra_dirs)
            if path is not None:
                files[path] = None
        for path in sorted(files):
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        digests[stage] = digest.hexdigest()
    return digests
