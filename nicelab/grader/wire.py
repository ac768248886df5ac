"""The pipe between the grader and the process that runs a student's code: frames and values.

The format is deliberately dumb, so that decoding a hostile answer can do nothing but produce
data: a frame is two 4-byte big-endian lengths (its JSON header, its raw array bytes), the
header, then the bytes of the arrays the header announces. No pickle, ever.

A value is described in the header as one of::

    {"t": "v", "v": None | bool | int | float | str}            a scalar
    {"t": "a", "dtype": "float32", "shape": [16, 6], "tf": 0}    an array (its bytes follow)
    {"t": "l", "items": [...]}                                   a list
    {"t": "t", "items": [...]}                                   a tuple
    {"t": "d", "keys": [str, ...], "items": [...]}               a dict with string keys
    {"t": "h", "id": 3, ...}                                     an object that stays where it is

``"tf": 1`` marks an array that was a TensorFlow tensor (the other side rebuilds one); a
handle's other fields (``kind``, ``type``, ``shape``, ``dtype``) only describe the object.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from collections.abc import Callable

import numpy as np

#: The array types that may cross the pipe.
DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
#: The largest frame either side accepts (header and arrays together), and its header alone.
MAX_FRAME = 64 * 2**20
MAX_HEADER = 4 * 2**20
#: How deep lists and dicts may nest.
MAX_DEPTH = 32


class ProtocolError(Exception):
    """The other side sent something that is not a valid frame (or closed the pipe)."""


def _read_exact(fd: int, size: int, deadline: float | None = None) -> bytes:
    chunks, left = [], size
    while left:
        if deadline is not None:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("no complete answer in time")
        chunk = os.read(fd, min(left, 2**20))
        if not chunk:
            raise ProtocolError("the other side closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def send(fd: int, header: dict, arrays: list[np.ndarray] = ()) -> None:
    """Write one frame: ``header`` (JSON) and the bytes of ``arrays``, in order."""
    body = json.dumps(header).encode()
    payload = b"".join(a.tobytes() for a in arrays)
    if len(body) > MAX_HEADER or len(body) + len(payload) > MAX_FRAME:
        raise ProtocolError(f"a frame of {len(body) + len(payload)} bytes is over the limit")
    _write_all(fd, struct.pack(">II", len(body), len(payload)) + body + payload)


def receive(fd: int, timeout: float | None = None) -> tuple[dict, bytes]:
    """Read one frame: its header (a dict) and its array bytes (:class:`TimeoutError` when it
    is not complete within ``timeout`` seconds)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    head, size = struct.unpack(">II", _read_exact(fd, 8, deadline))
    if head > MAX_HEADER or head + size > MAX_FRAME:
        raise ProtocolError(f"a frame of {head + size} bytes is over the limit")
    try:
        header = json.loads(_read_exact(fd, head, deadline))
    except (ValueError, RecursionError) as err:
        raise ProtocolError(f"a header that is not JSON ({type(err).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError("a frame's header must be a JSON object")
    return header, _read_exact(fd, size, deadline)


def encode(value, arrays: list[np.ndarray], describe: Callable[[object], dict | None], depth: int = 0):
    """The JSON description of ``value``; its arrays are appended to ``arrays``.

    ``describe(value)`` returns the description of anything that is not plain data (a handle,
    or an array for a tensor), or None to refuse it (a :class:`TypeError`)."""
    if depth > MAX_DEPTH:
        raise ProtocolError("values nested too deeply")
    if value is None or isinstance(value, bool | int | float | str):
        return {"t": "v", "v": value}
    if isinstance(value, np.generic) and value.dtype.name in DTYPES:
        return {"t": "v", "v": value.item()}
    if isinstance(value, np.ndarray):
        return array_description(value, arrays)
    special = describe(value)
    if special is not None:
        return special
    if isinstance(value, list | tuple):
        return {"t": "t" if isinstance(value, tuple) else "l",
                "items": [encode(v, arrays, describe, depth + 1) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"t": "d", "keys": list(value),
                "items": [encode(v, arrays, describe, depth + 1) for v in value.values()]}
    raise TypeError(f"a {type(value).__name__} cannot be sent to the other process")


def array_description(array: np.ndarray, arrays: list[np.ndarray], tensor: bool = False) -> dict:
    if array.dtype.name not in DTYPES:
        raise TypeError(f"an array of {array.dtype} cannot be sent to the other process")
    arrays.append(np.ascontiguousarray(array))
    return {"t": "a", "dtype": array.dtype.name, "shape": list(array.shape), "tf": int(tensor)}


class Decoder:
    """Decodes the values of one frame, in order (arrays are read from its bytes one by one).

    ``handle(description)`` makes the local stand-in of a handle; ``tensor(array)`` rebuilds a
    tensor from an array marked ``"tf": 1`` (the default keeps the array)."""

    def __init__(self, payload: bytes, handle: Callable[[dict], object],
                 tensor: Callable[[np.ndarray], object] = lambda a: a):
        self.payload, self.offset, self.handle, self.tensor = payload, 0, handle, tensor

    def value(self, description, depth: int = 0):
        if not isinstance(description, dict) or depth > MAX_DEPTH:
            raise ProtocolError("a value that is not a description")
        kind = description.get("t")
        if kind == "v":
            value = description.get("v")
            if value is not None and not isinstance(value, bool | int | float | str):
                raise ProtocolError("a bad scalar")
            return value
        if kind == "h":
            if not isinstance(description.get("id"), int):
                raise ProtocolError("a bad handle")
            return self.handle(description)
        if kind in ("l", "t"):
            items = description.get("items")
            if not isinstance(items, list):
                raise ProtocolError("a bad list")
            values = [self.value(item, depth + 1) for item in items]
            return tuple(values) if kind == "t" else values
        if kind == "d":
            keys, items = description.get("keys"), description.get("items")
            if not (isinstance(keys, list) and isinstance(items, list) and len(keys) == len(items)
                    and all(isinstance(k, str) for k in keys)):
                raise ProtocolError("a bad dict")
            return {k: self.value(v, depth + 1) for k, v in zip(keys, items, strict=True)}
        if kind == "a":
            return self._array(description)
        raise ProtocolError("an unknown kind of value")

    def _array(self, description: dict):
        dtype, shape = description.get("dtype"), description.get("shape")
        if dtype not in DTYPES or not isinstance(shape, list) or len(shape) > 32 or not all(
                isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**31 for n in shape):
            raise ProtocolError("a bad array")
        count = int(np.prod(shape, dtype=np.int64))
        size = count * np.dtype(dtype).itemsize
        if self.offset + size > len(self.payload):
            raise ProtocolError("an array runs past its frame")
        array = np.frombuffer(self.payload, dtype=dtype, count=count, offset=self.offset)
        array = array.reshape(shape).copy()
        self.offset += size
        return self.tensor(array) if description.get("tf") == 1 else array
