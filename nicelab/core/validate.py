"""Input checks shared by the lessons and the nicelab package.

Every public function turns bad input into one clear ``ValueError`` or ``TypeError`` here,
instead of a crash deep inside TensorFlow.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def as_batch(x, dim: int | None = None, name: str = "x", allow_nan: bool = False):
    """Return ``x`` as a float32 tensor shaped ``(batch, dim)``.

    Accepts NumPy arrays, lists and tensors of any real dtype. Raises ``TypeError`` for
    non-numeric data and ``ValueError`` for a wrong rank, a wrong last dimension or (when
    executing eagerly) NaN or infinite values.
    """
    import tensorflow as tf  # here, so that importing nicelab stays fast

    if isinstance(x, tf.Tensor | tf.Variable):
        dtype = x.dtype
        if not (dtype.is_floating or dtype.is_integer):
            raise TypeError(f"{name} must hold real numbers, got a tensor of dtype {dtype.name}.")
        t = tf.cast(x, tf.float32) if dtype != tf.float32 else x
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiub" or arr.dtype.kind == "b":
            raise TypeError(f"{name} must hold real numbers, got an array of dtype {arr.dtype}.")
        t = tf.convert_to_tensor(arr, dtype=tf.float32)
    shape = t.shape
    if shape.rank is not None and shape.rank != 2:
        raise ValueError(
            f"{name} must be shaped (batch, D), got shape {tuple(shape)}; "
            "reshape a single example with x[None, :] and flatten images to vectors."
        )
    if dim is not None and shape.rank == 2 and shape[-1] is not None and shape[-1] != dim:
        raise ValueError(f"{name} has {shape[-1]} columns but this model has D = {dim}.")
    if not allow_nan and tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(t))):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return t


def check_choice(value: str, choices: Iterable[str], name: str) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError listing them."""
    choices = tuple(choices)
    if value not in choices:
        options = ", ".join(map(repr, choices))
        raise ValueError(f"unknown {name} {value!r}; choose one of: {options}.")
    return value


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int, raising ValueError unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)
