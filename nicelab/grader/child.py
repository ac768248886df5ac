"""The process that runs a student's stage module and answers the grader's requests.

``python -m nicelab.grader.child IMPL STAGE --fd-in R --fd-out W`` (started by
:class:`nicelab.grader.remote.Client`, in the bubblewrap sandbox in a graded batch). It loads
nothing until asked, then answers one request at a time until the grader closes the pipe:

* ``load``: load the stage's module on top of the reference of the earlier stages, with the
  same diagnostics as in-process grading (:func:`nicelab.grader.plugin.load_stage`);
* ``getattr`` / ``setattr`` / ``call`` / ``array`` on an object it holds;
* ``recipe``: run a function of :mod:`nicelab.grader.recipes` on the objects it holds;
* ``seed``: set the check's global random state (before every check, as in-process).

Arrays, numbers, strings, lists and dicts go back as data; tensors as arrays; any other object
stays here and goes back as a handle (:mod:`nicelab.grader.wire`). An exception goes back as
its class name and message. Nothing here decides a verdict.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import inspect
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from nicelab.grader import seeding, wire

MAX_MESSAGE = 4000


class _Objects:
    """The objects the grader holds handles to (kept alive, so that ids stay unique)."""

    def __init__(self):
        self.by_handle: dict[int, object] = {}
        self.handle_of: dict[object, int] = {}

    def key(self, value):
        if inspect.ismethod(value):  # a new bound method object at every attribute read
            return ("method", id(value.__self__), id(value.__func__))
        return ("object", id(value))

    def handle(self, value) -> dict:
        import tensorflow as tf  # lazy: TensorFlow's start-up cost

        key = self.key(value)
        number = self.handle_of.get(key)
        if number is None:
            number = len(self.by_handle) + 1
            self.by_handle[number], self.handle_of[key] = value, number
        kind = "variable" if hasattr(value, "assign") and hasattr(value, "shape") else \
            "callable" if callable(value) else "object"
        description = {"t": "h", "id": number, "kind": kind,
                       "type": f"{type(value).__module__}.{type(value).__qualname__}"}
        if kind == "variable":
            shape = value.shape
            description["shape"] = shape.as_list() if isinstance(shape, tf.TensorShape) else list(shape)
            description["dtype"] = getattr(value.dtype, "name", str(value.dtype))
        return description

    def get(self, description: dict):
        try:
            return self.by_handle[description["id"]]
        except KeyError:
            raise ValueError(f"no object {description['id']} here") from None


def _outgoing(objects: _Objects, arrays: list[np.ndarray]):
    """How the child sends what is not plain data."""
    import tensorflow as tf  # lazy: TensorFlow's start-up cost

    def describe(value):
        if isinstance(value, tf.TensorShape):
            return wire.encode(value.as_list() if value.rank is not None else None, arrays, describe)
        if isinstance(value, tf.DType):
            return {"t": "v", "v": value.name}
        if isinstance(value, tf.Tensor) and not hasattr(value, "assign"):
            return wire.array_description(np.asarray(value.numpy()), arrays, tensor=True)
        if isinstance(value, list | tuple):
            return None  # plain data, encoded item by item
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return None
        return objects.handle(value)

    return describe


def _recipe(name: str):
    """The recipe ``module:function`` (only from :mod:`nicelab.grader.recipes`)."""
    from nicelab.grader.recipes import REGISTRY  # lazy: it imports TensorFlow

    module, _, function = name.partition(":")
    if not module.startswith("nicelab.grader.recipes"):
        raise ValueError(f"{name!r} is not a recipe")
    importlib.import_module(module)
    if name not in REGISTRY:
        raise ValueError(f"{name!r} is not a recipe")
    return REGISTRY[name]


def _load(impl: str, stage: str, objects: _Objects) -> dict:
    """Load the stage's module; the plugin's own diagnostics say why it cannot be loaded."""
    import pytest

    from nicelab.grader import plugin

    try:
        module = plugin.load_stage(impl, stage)
    except pytest.fail.Exception as err:
        load = plugin.LOADS.get(stage) or plugin.StageLoad("import")
        return {"kind": load.kind, "blocked_by": load.blocked_by, "own_earlier": list(load.own_earlier),
                "message": str(err.msg)[:MAX_MESSAGE], "module": None}
    load = plugin.LOADS.get(stage) or plugin.StageLoad()
    return {"kind": "ok", "blocked_by": None, "own_earlier": list(load.own_earlier), "message": "",
            "module": module}


def answer(header: dict, payload: bytes, impl: str, stage: str, objects: _Objects):
    """The value that answers one request (or raises what the student's code raised)."""
    import tensorflow as tf  # lazy: TensorFlow's start-up cost

    decoder = wire.Decoder(payload, objects.get, tf.constant)

    def field(key, default=None):
        return decoder.value(header[key]) if key in header else default

    op = header.get("op")
    target = field("target")
    if op == "load":
        return _load(impl, stage, objects)
    if op == "seed":
        seeding.seed_check(int(field("value", 0)))
        return None
    if op == "getattr":
        return getattr(target, str(field("name")))
    if op == "setattr":
        name = str(field("name"))
        setattr(target, name, field("value"))
        return None
    if op == "array":
        return np.asarray(target.numpy() if hasattr(target, "numpy") else target)
    args = field("args", [])
    kwargs = {str(k): decoder.value(v) for k, v in header.get("kwargs", {}).items()}
    if op == "call":
        return target(*args, **kwargs)
    if op == "recipe":
        return _recipe(str(field("name")))(*args, **kwargs)
    raise ValueError(f"unknown request {op!r}")


def serve(impl: str, stage: str, fd_in: int, fd_out: int) -> None:
    """Answer the grader's requests until it closes the pipe."""
    objects = _Objects()
    while True:
        try:
            header, payload = wire.receive(fd_in)
        except wire.ProtocolError:
            os._exit(0)
        try:
            result = answer(header, payload, impl, stage, objects)
            arrays: list[np.ndarray] = []
            value = wire.encode(result, arrays, _outgoing(objects, arrays))
            wire.send(fd_out, {"value": value}, arrays)
        except BaseException as err:  # noqa: BLE001 - the student's exception is an answer
            reply = {"error": type(err).__name__, "message": _message(err)}
            if isinstance(err, SystemExit):
                code = err.code
                reply["code"] = code if isinstance(code, int | str) or code is None else str(code)
            wire.send(fd_out, reply)


def _message(err: BaseException) -> str:
    try:
        text = str(err)
    except Exception:  # noqa: BLE001 - a student's exception whose __str__ raises
        text = ""
    return text[:MAX_MESSAGE]


def fresh_scratch() -> None:
    """Inside a sandbox only: its scratch as a new sandbox has it, for a stage's process forked
    by the sandbox's stage host (:mod:`nicelab.grader.isolation.stage_host`). The processes of the
    stages before are gone (the grader killed them); what they left is removed here: the files in
    ``/tmp`` (its home and working folders kept, emptied) and ``/dev/shm``, and the System V
    segments of the sandbox's IPC namespace."""
    from nicelab.grader.isolation import sandbox

    if os.environ.get("HOME") != str(sandbox.HOME) or not sandbox.SUBMISSION.is_dir():
        return  # not in the sandbox: never the machine's /tmp
    kept = (sandbox.HOME, sandbox.WORK)
    for folder in (Path("/tmp"), Path("/dev/shm"), *kept):
        for entry in folder.iterdir():
            if entry in kept or os.path.ismount(entry):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL(None, use_errno=True)
        for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]:
            libc.shmctl(int(line.split()[1]), 0, None)  # 0 = IPC_RMID


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nicelab.grader.child")
    parser.add_argument("impl")
    parser.add_argument("stage")
    parser.add_argument("--fd-in", type=int, required=True)
    parser.add_argument("--fd-out", type=int, required=True)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--fresh-scratch", action="store_true",
                        help="forked by a sandbox's stage host: empty the scratch of the stages before")
    args = parser.parse_args(argv)
    sys.dont_write_bytecode = True
    importlib.invalidate_caches()  # forked by a stage host: its view of solutions/ has grown
    if args.fresh_scratch:
        fresh_scratch()
    from nicelab.core.quiet import import_tensorflow
    from nicelab.grader.worker import die_with_parent

    die_with_parent()
    import_tensorflow(args.threads)
    serve(args.impl, args.stage, args.fd_in, args.fd_out)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--host"]:  # the host of a submission's stages (isolation.stage_host)
        from nicelab.grader.isolation import forkserver
        from nicelab.grader.worker import die_with_parent

        die_with_parent()
        forkserver.serve(int(sys.argv[2]), main)
    sys.exit(main())
