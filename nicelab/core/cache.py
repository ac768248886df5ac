"""A small on-disk cache for the checks' training runs.

An entry is a ``.npz`` of arrays, keyed by a hash of everything that determines it: the
sources of the implementation being graded (every ``.py`` file of its folder), the reference
sources underneath it, the run's settings and the TensorFlow version. A changed
implementation therefore never reuses a stale result; an unchanged one reuses its
deterministic result instead of training again. Entries are written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nicelab.core.atomic import atomic_path
from nicelab.core.impl import PROJECT_ROOT

ENV_VAR = "NICELAB_CACHE"


def cache_dir() -> Path:
    """``$NICELAB_CACHE`` if set, else ``.nicelab-cache/`` in the project root."""
    return Path(os.environ.get(ENV_VAR) or PROJECT_ROOT / ".nicelab-cache")


def fixture_dir() -> Path:
    """``fixtures/`` in :func:`cache_dir`: the reference models the checks train (never a
    submission's run), the one part of the cache a sandbox sees (:mod:`nicelab.grader.isolation.sandbox`)."""
    return cache_dir() / "fixtures"


def _encode(part) -> bytes:
    """One part of a key as bytes: bytes as they are, an array's raw data, a dataclass as its
    fields, anything else as sorted JSON."""
    if isinstance(part, bytes):
        return part
    if isinstance(part, np.ndarray):
        return part.tobytes()
    if dataclasses.is_dataclass(part) and not isinstance(part, type):
        part = dataclasses.asdict(part)
    return json.dumps(part, sort_keys=True, default=str).encode()


def key(*parts, length: int = 20, with_tensorflow: bool = True) -> str:
    """The one key function of nicelab's stores (this cache, ``runs/`` and the shipped
    fixtures): a hash of ``parts`` (strings, bytes, arrays, configs), and of the TensorFlow
    version unless ``with_tensorflow`` is false, ``length`` hex digits long."""
    digest = hashlib.sha256()
    if with_tensorflow:
        import tensorflow as tf  # lazy: TensorFlow's start-up cost

        parts = (tf.__version__, *parts)
    for part in parts:
        digest.update(_encode(part) + b"\0")
    return digest.hexdigest()[:length]


def source_digest(*folders: Path) -> str:
    """A hash of every ``.py`` file (name and bytes) directly inside ``folders``."""
    files = [path for folder in folders for path in sorted(Path(folder).glob("*.py"))]
    return key(*(part for path in files for part in (path.name, path.read_bytes())), length=64,
               with_tensorflow=False)


def cached_arrays(name: str, cache_key: str, compute: Callable[[], dict[str, np.ndarray]]
                  ) -> dict[str, np.ndarray]:
    """The arrays stored under ``name-cache_key``, or ``compute()``'s, stored for next time."""
    path = cache_dir() / f"{name}-{cache_key}.npz"
    if path.exists():
        try:
            with np.load(path) as stored:
                return {k: stored[k] for k in stored.files}
        except (OSError, ValueError, KeyError):
            pass  # a damaged entry: compute it again
    arrays = compute()
    try:
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
    except OSError:
        pass  # a read-only project: no cache, same results
    return arrays


def file_digest(*files: Path) -> str:
    """A hash of these files' names and bytes (the grader's own code behind a cached run)."""
    return key(*(part for path in files for part in (Path(path).name, Path(path).read_bytes())),
               length=64, with_tensorflow=False)
