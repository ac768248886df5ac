"""Every check's random state: a seed of its own, set without discarding what TensorFlow compiled.

``tf.random.set_seed`` (and ``keras.utils.set_random_seed``, which calls it) also clears
TensorFlow's kernel cache, so that a stateful random op seeded again starts its stream again.
That cache also holds every compiled function's instantiation: once it is cleared, the next call
of each ``tf.function`` is prepared again (about 0.1 s each on a laptop core). Seeded that way
before every check, stage 4's checks spent about a second per run preparing the same compiled
step again.

So a check's seed is its own (:func:`check_seed`, from its node id) and is set with the cache
kept (:func:`seed_check`), and the cache is cleared once, when a session starts
(:func:`fresh_session`):

* an eager random op's kernel is cached under its seeds, and the seeds a check's ops get come
  from that check's own global seed: a check never meets a kernel that another check of the
  session advanced, so its verdict does not depend on which checks ran before it;
* a session (``pytest checks``, a save in ``nicelab watch``, a graded submission's stage
  process) starts from an empty cache, so the same check gives the same verdict in every run.

What is shared between the checks of a session is a compiled function that a check keeps
(the student's cached compiled step, say): a stateful random op *inside* it would go on with its
stream from one check to the next. The course's functions draw their randomness from explicit
seeds or from arguments (inpainting's noise), never that way.
"""

from __future__ import annotations

import zlib


def check_seed(nodeid: str) -> int:
    """The seed of the check ``nodeid``: the same in every run and process, different per check."""
    return zlib.crc32(nodeid.encode()) & 0x7FFFFFFF


def _keep_caches(_context_handle) -> None:
    """Stands in for TensorFlow's kernel-cache clearing while :func:`seed_check` seeds."""


def seed_check(seed: int) -> None:
    """Python's, NumPy's, Keras' and TensorFlow's global seeds set to ``seed`` (as
    ``keras.utils.set_random_seed`` sets them), keeping TensorFlow's kernel cache."""
    import tensorflow as tf  # lazy: TensorFlow's start-up cost
    from tensorflow.python import pywrap_tfe  # what tf.random.set_seed calls to clear the cache

    clear = pywrap_tfe.TFE_ContextClearCaches
    pywrap_tfe.TFE_ContextClearCaches = _keep_caches
    try:
        tf.keras.utils.set_random_seed(int(seed))
    finally:
        pywrap_tfe.TFE_ContextClearCaches = clear


def fresh_session(seed: int = 0) -> None:
    """Seed everything with ``seed`` and clear TensorFlow's kernel cache: what a session starts from."""
    import tensorflow as tf  # lazy: TensorFlow's start-up cost

    tf.keras.utils.set_random_seed(int(seed))
