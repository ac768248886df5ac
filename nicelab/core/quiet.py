"""Import TensorFlow without its C++ start-up chatter (oneDNN and CUDA notices on stderr)."""

from __future__ import annotations

import contextlib
import os
import sys

_ready = False


@contextlib.contextmanager
def silenced_stderr():
    """Send file descriptor 2 to /dev/null for the duration (Python exceptions still raise)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """Import TensorFlow and TensorFlow Probability quietly; return the ``tf`` module."""
    global _ready
    if _ready:
        return sys.modules["tensorflow"]
    with silenced_stderr():
        import tensorflow as tf  # lazy: TensorFlow's start-up cost
        import tensorflow_probability  # noqa: F401

        tf.zeros(1)  # the first op initialises the devices (another notice)
    _ready = True
    return tf
