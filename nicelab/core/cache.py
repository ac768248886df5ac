"""A small on-disk cache for the checks' training runs.

An entry is a ``.npz`` of arrays, keyed by a hash of everything that determines it: the
sources of the implementation being graded (every ``.py`` file of its folder), the reference
sources underneath it, the run's settings and the TensorFlow version. A changed
implementation therefore never reuses a stale result; an unchanged one reuses its
deterministic result instead of training again. Entries are written atomically.
"""

from __future__ import annotations

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


def source_digest(*folders: Path) -> str:
    """A hash of every ``.py`` file (name and bytes) directly inside ``folders``."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(Path(folder).glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def key(*parts) -> str:
    import tensorflow as tf  # lazy: TensorFlow's start-up cost

    text = json.dumps([tf.__version__, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


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
