"""The one atomic write of nicelab: results files, cached arrays, trained fixtures and bundles
are written beside their target and moved over it (``os.replace``), so that a reader sees the old
file or the new one, never half of one (an interrupted run leaves a valid file)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A fresh temporary path beside ``path`` (ending in ``suffix``, e.g. ``.npz`` for NumPy) to
    write to; on a clean exit it replaces ``path``, on an error it is removed. Creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (flushed to disk before it replaces the old file)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
