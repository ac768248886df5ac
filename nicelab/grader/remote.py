"""Student code in a child process that answers requests; the grader decides in the parent.

A prototype of issue 10, section 1 (PrairieLearn's design): the student's stage module is
loaded in a child process (in the bubblewrap sandbox when asked) that only *answers*: the
parent sends a request (make an object, call a method, read an attribute, run a named probe)
with NumPy arrays in, and gets NumPy arrays (or handles of objects that stay in the child)
back. The parent draws the inputs with a per-run secret seed and decides every verdict
itself (:mod:`nicelab.grader.verdicts`); whatever the child patches changes only its own
answers.

The wire format is deliberately dumb, so that decoding a hostile child's answer can do
nothing but produce data: a frame is a 4-byte big-endian length, then a JSON header, then the
raw bytes of the arrays it announces. Arrays have a dtype from :data:`DTYPES` and at most
:data:`MAX_FRAME` bytes in all; no pickle, ever.

Named probes run in the child because they need autodiff or Keras internals (the parent has
no copy of the student's objects): ``log_det`` (autodiff log|det J| per example of a method),
``variables`` (the shapes and ids of an object's trainable variables), ``randomize`` (random
values for them, from the parent's seed), ``gradients`` (which
variables get a non-zero gradient of the sum of a method's output). A child can lie in a probe
too, but only about itself, and the parent cross-checks what it can (finite differences of the
child's own forward answers against its claimed log-determinant).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

from nicelab.core import impl as impl_mod
from nicelab.core.quiet import import_tensorflow
from nicelab.grader import sandbox

#: The array types that may cross the pipe.
DTYPES = ("float32", "float64", "int32", "int64", "bool")
#: The largest frame either side accepts (header and arrays together).
MAX_FRAME = 64 * 2**20
MAX_HEADER = 2**20


class ProtocolError(Exception):
    """The other side sent something that is not a valid frame (or nothing at all)."""


class RemoteError(Exception):
    """The student's code raised in the child: ``kind`` (the exception's class name) and its
    message, as the child reported them (text only)."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind, self.message = kind, message


# ----------------------------------------------------------------------------- wire format

def _read_exact(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
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


def encode(value, arrays: list[np.ndarray]):
    """A JSON-able description of ``value``; its arrays are appended to ``arrays``."""
    if value is None or isinstance(value, bool | int | float | str):
        return {"t": "v", "v": value}
    if isinstance(value, Handle):
        return {"t": "h", "id": value.id}
    if isinstance(value, list | tuple):
        return {"t": "l", "items": [encode(v, arrays) for v in value]}
    array = np.asarray(value)
    if array.dtype.name not in DTYPES:
        raise ProtocolError(f"cannot send an array of {array.dtype}")
    arrays.append(np.ascontiguousarray(array))
    return {"t": "a", "dtype": array.dtype.name, "shape": list(array.shape)}


def send(fd: int, header: dict, arrays: list[np.ndarray] = ()) -> None:
    body = json.dumps(header).encode()
    payload = b"".join(a.tobytes() for a in arrays)
    if len(body) > MAX_HEADER or len(body) + len(payload) > MAX_FRAME:
        raise ProtocolError("frame too large")
    _write_all(fd, struct.pack(">II", len(body), len(payload)) + body + payload)


def receive(fd: int) -> tuple[dict, bytes]:
    head, size = struct.unpack(">II", _read_exact(fd, 8))
    if head > MAX_HEADER or head + size > MAX_FRAME:
        raise ProtocolError(f"a frame of {head + size} bytes is over the limit")
    header = json.loads(_read_exact(fd, head))
    if not isinstance(header, dict):
        raise ProtocolError("a frame's header must be a JSON object")
    return header, _read_exact(fd, size)


def decode(description, payload: bytes, offset: list[int], make_handle=None):
    """The value described by ``description`` (arrays read from ``payload`` at ``offset``)."""
    if not isinstance(description, dict):
        raise ProtocolError("bad value")
    kind = description.get("t")
    if kind == "v":
        value = description.get("v")
        if value is not None and not isinstance(value, bool | int | float | str):
            raise ProtocolError("bad scalar")
        return value
    if kind == "h":
        if make_handle is None or not isinstance(description.get("id"), int):
            raise ProtocolError("bad handle")
        return make_handle(description["id"])
    if kind == "l":
        items = description.get("items")
        if not isinstance(items, list):
            raise ProtocolError("bad list")
        return [decode(item, payload, offset, make_handle) for item in items]
    if kind == "a":
        dtype, shape = description.get("dtype"), description.get("shape")
        if dtype not in DTYPES or not isinstance(shape, list) or not all(
                isinstance(n, int) and 0 <= n < 2**31 for n in shape):
            raise ProtocolError("bad array")
        count = int(np.prod(shape, dtype=np.int64))
        size = count * np.dtype(dtype).itemsize
        if offset[0] + size > len(payload):
            raise ProtocolError("an array runs past its frame")
        array = np.frombuffer(payload, dtype=dtype, count=count, offset=offset[0]).reshape(shape).copy()
        offset[0] += size
        return array
    raise ProtocolError("unknown value kind")


class Handle:
    """An object that lives in the child (a layer, a model): only its id crosses the pipe."""

    def __init__(self, client: Client | None, id_: int):
        self.client, self.id = client, id_

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self.client, self, name)

    def get(self, name: str):
        """The attribute ``name`` (arrays come back as arrays, other objects as handles)."""
        return self.client.request("getattr", target=self, name=name)


class _Method:
    def __init__(self, client, target, name):
        self.client, self.target, self.name = client, target, name

    def __call__(self, *args, **kwargs):
        return self.client.request("call", target=self.target, name=self.name, args=list(args),
                                   kwargs=kwargs)


# ----------------------------------------------------------------------------- the parent's side

class Client:
    """The parent's end: starts the child on ``impl``'s ``stage`` (in the sandbox when
    ``sandbox_view`` is given) and sends it requests. ``module`` proxies the stage module."""

    def __init__(self, impl: str | Path, stage: str, sandbox_view=None, timeout: float = 120.0):
        self.timeout = timeout
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        inner_impl = str(sandbox.SUBMISSION) if sandbox_view else str(impl)
        python = sandbox.python_inside() if sandbox_view else sys.executable
        inner = [python, "-m", "nicelab.grader.remote", inner_impl, stage,
                 "--fd-in", str(to_child_r), "--fd-out", str(from_child_w)]
        fds = [to_child_r, from_child_w]
        env = None
        if sandbox_view is not None:
            args_r, args_w = os.pipe()
            info_r, info_w = os.pipe()
            command, options = sandbox.sandbox_command(inner, sandbox_view, 1, info_w,
                                                       sandbox.check_available(), args_r)
            os.write(args_w, options)
            os.close(args_w)
            fds += [args_r, info_w]
            self._info = info_r
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        else:
            command, self._info = inner, None
        self.proc = subprocess.Popen(command, pass_fds=fds, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, env=env)
        for fd in fds:
            os.close(fd)
        self._child = None
        if self._info is not None:
            self._child = sandbox.read_child_pid(self._info, timeout=30.0)
            os.close(self._info)
        self.module = Handle(self, 0)

    def request(self, op: str, **fields):
        arrays: list[np.ndarray] = []
        header = {"op": op}
        for key, value in fields.items():
            if key == "kwargs":
                header[key] = {k: encode(v, arrays) for k, v in value.items()}
            else:
                header[key] = encode(value, arrays)
        send(self._to_child, header, arrays)
        ready, _, _ = select.select([self._from_child], [], [], self.timeout)
        if not ready:
            self.close()
            raise TimeoutError(f"the student's code did not answer within {self.timeout:g} s")
        answer, payload = receive(self._from_child)
        if "error" in answer:
            kind, message = answer.get("error"), answer.get("message")
            raise RemoteError(str(kind)[:100], str(message)[:2000])
        return decode(answer.get("value"), payload, [0], lambda i: Handle(self, i))

    def probe(self, name: str, *args):
        return self.request("probe", name=name, args=list(args))

    def kill(self) -> None:
        """Kill the child and every process it started (safe from another thread: the pipes
        stay open, so a pending request ends with a :class:`ProtocolError`)."""
        sandbox.kill_namespace(self._child, self.proc.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, 9)

    def close(self) -> None:
        self.kill()
        self.proc.wait()
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------- the child's side

def _probe(name: str, objects: dict, args: list):
    import tensorflow as tf  # lazy: TensorFlow's start-up cost

    target = objects[args[0].id] if isinstance(args[0], Handle) else None
    if name == "variables":
        return [[list(map(int, v.shape)), id(v) % 2**31] for v in target.trainable_variables]
    if name == "randomize":  # random weights (a fresh network's output layer may start at zero)
        from nicelab.grader.assertions import randomize  # lazy: TensorFlow's start-up cost

        randomize(target.trainable_variables, int(args[1]))
        return None
    method, x = getattr(target, args[1]), tf.constant(args[2], dtype=tf.float32)
    if name == "log_det":
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = method(x)
        jacobian = tape.batch_jacobian(y, x)
        return np.linalg.slogdet(np.asarray(jacobian, dtype=np.float64))[1]
    if name == "gradients":
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(method(x))
        grads = tape.gradient(total, target.trainable_variables)
        return [g is not None and bool(np.any(np.asarray(g) != 0)) for g in grads]
    raise ValueError(f"no probe {name!r}")


class _Fields:
    """A request's fields, decoded in order from its frame (the child's side: handles only)."""

    def __init__(self, header: dict, payload: bytes):
        self.header, self.payload, self.offset = header, payload, [0]

    def decode(self, description):
        return decode(description, self.payload, self.offset, lambda i: Handle(None, i))

    def value(self, key: str, default=None):
        return self.decode(self.header[key]) if key in self.header else default


def serve(impl: str, stage: str, fd_in: int, fd_out: int) -> None:
    """Answer the parent's requests until it closes the pipe (the child's main loop)."""
    import_tensorflow()

    objects: dict[int, object] = {}
    counter = [1]

    def keep(value):
        if isinstance(value, np.ndarray | np.generic | bool | int | float | str) or value is None:
            return value
        if hasattr(value, "numpy") and hasattr(value, "dtype") and hasattr(value, "shape"):
            return np.asarray(value.numpy())
        if isinstance(value, list | tuple):
            return [keep(v) for v in value]
        objects[counter[0]] = value
        counter[0] += 1
        return Handle(None, counter[0] - 1)

    try:
        objects[0] = impl_mod.load_stage(impl, stage)
        failure = None
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which decides
        failure = err
    while True:
        try:
            header, payload = receive(fd_in)
        except ProtocolError:
            os._exit(0)
        try:
            if failure is not None:
                raise failure
            fields = _Fields(header, payload)
            op = header.get("op")
            target = fields.value("target")
            obj = objects[target.id] if isinstance(target, Handle) else None
            if op == "call":
                args = [objects[a.id] if isinstance(a, Handle) else a for a in fields.value("args", [])]
                kwargs = {k: fields.decode(v) for k, v in header.get("kwargs", {}).items()}
                result = keep(getattr(obj, fields.value("name"))(*args, **kwargs))
            elif op == "getattr":
                result = keep(getattr(obj, fields.value("name")))
            elif op == "probe":
                result = keep(_probe(fields.value("name"), objects, fields.value("args", [])))
            else:
                raise ValueError(f"unknown request {op!r}")
            arrays: list[np.ndarray] = []
            send(fd_out, {"value": encode(result, arrays)}, arrays)
        except BaseException as err:  # noqa: BLE001 - the student's exception is an answer
            send(fd_out, {"error": type(err).__name__, "message": str(err)[:2000]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nicelab.grader.remote")
    parser.add_argument("impl")
    parser.add_argument("stage")
    parser.add_argument("--fd-in", type=int, required=True)
    parser.add_argument("--fd-out", type=int, required=True)
    args = parser.parse_args(argv)
    sys.dont_write_bytecode = True
    serve(args.impl, args.stage, args.fd_in, args.fd_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
