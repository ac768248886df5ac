"""Import TensorFlow without its C++ start-up chatter (oneDNN and CUDA notices on stderr),
without the libraries Keras loads at start-up for features the course never uses, and without
the cyclic garbage collector's passes over the import's objects."""

from __future__ import annotations

import contextlib
import gc
import importlib.abc
import os
import sys

_ready = False

#: What Keras imports when TensorFlow loads it, only for its scikit-learn wrappers and its image
#: gallery plot (``keras.wrappers``, ``keras.visualization``): about a second of a core in every
#: process that imports TensorFlow (each graded stage's process among them). Each import is
#: optional for Keras (it sets the name to None when it fails).
KERAS_OPTIONAL = ("sklearn", "matplotlib")


class _Unavailable(importlib.abc.MetaPathFinder):
    """Refuses the imports of :data:`KERAS_OPTIONAL` (and their submodules) while installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in KERAS_OPTIONAL:
            raise ModuleNotFoundError(f"{name} is not imported while TensorFlow loads Keras", name=name)
        return None


@contextlib.contextmanager
def without_keras_optional():
    """Import TensorFlow (and Keras through it) in this block without :data:`KERAS_OPTIONAL`,
    unless they are already imported; after the block they import as usual (scikit-learn's
    metrics and matplotlib's plots work), only Keras' own wrappers of them stay off."""
    finder = None if any(name in sys.modules for name in KERAS_OPTIONAL) else _Unavailable()
    if finder is not None:
        sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        if finder is not None:
            sys.meta_path.remove(finder)


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


@contextlib.contextmanager
def gc_paused():
    """No cyclic garbage collection in this block; after it, the objects made so far are moved
    out of the collector's sight (:func:`gc.freeze`). Importing TensorFlow makes about a million
    objects that live as long as the process: the collector's passes over them were a sixth of
    the import's time, and every later full collection walked them again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@contextlib.contextmanager
def loading():
    """Import TensorFlow (or TensorFlow Probability) in this block: quietly, without
    :data:`KERAS_OPTIONAL`, with the collector paused (:func:`gc_paused`). No operation should
    run in it: a process that forks afterwards must not have started TensorFlow's threads."""
    with silenced_stderr(), without_keras_optional(), gc_paused():
        yield


def import_tensorflow(threads: int = 0):
    """Import TensorFlow quietly and run its first operation; return the ``tf`` module.
    ``threads`` > 0 sets its intra- and inter-op thread pools first (they are fixed then).

    TensorFlow Probability is left to the modules that use it (stage 3 on, its checks and
    recipes): it imports quietly after TensorFlow, and the processes that grade stages 1-2 save
    about a second of a core each without it."""
    global _ready
    if _ready:
        return sys.modules["tensorflow"]
    with loading():
        import tensorflow as tf  # lazy: TensorFlow's start-up cost

    with silenced_stderr():
        if threads > 0:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        tf.zeros(1)  # the first op initialises the devices (another notice)
    _ready = True
    return tf
