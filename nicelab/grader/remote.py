"""The grader's side of remote grading: the student's code answers from another process.

Issue 10, section 1 (PrairieLearn's design): in a graded run (``nicelab grade``, Gradescope,
GitHub Classroom) each stage's module is loaded in a child process (:mod:`nicelab.grader.child`,
in the bubblewrap sandbox when the batch has one) that only *answers* requests; the checks run
here, in the process that decides verdicts and reports them, where no student code ever runs.
Whatever the child patches (pytest, the checks, NumPy, its own answers) changes only what it
answers, never how an answer is judged.

The checks do not change for it: the stage fixture hands them a :class:`Remote` stand-in of the
module, and every attribute read, call or array conversion on a stand-in is a request to the
child. What comes back is data (arrays, numbers, strings, lists, dicts, through
:mod:`nicelab.grader.wire`; never pickle) or another stand-in, for an object that stays in the
child (a layer, a model, a variable, a bound method). An exception in the student's code comes
back as its type name and message and is raised here as an exception of the same name (of the
builtin class when it is one, so ``pytest.raises(ValueError)`` works).

What needs TensorFlow next to the student's objects (autodiff, a training run, building a
reference model for them to use) runs in the child as a *recipe*, a function of
:mod:`nicelab.grader.recipes` called with :func:`beside`; :func:`twin` builds an object on both
sides (the check's own copy here, the student's code gets the child's), so that reference
values are computed here, from the check's own copy.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np

from nicelab.grader import wire
from nicelab.grader.isolation import sandbox, stage_host, student_user

#: How long one request may take by default (a batch enforces its own limits from outside).
TIMEOUT_S = 900.0

#: Exceptions of the student's code raised here as the builtin class of that name.
BUILTIN_ERRORS = ("NotImplementedError", "ValueError", "TypeError", "IndexError", "KeyError",
                  "AttributeError", "ZeroDivisionError", "RuntimeError", "ArithmeticError",
                  "OverflowError", "FloatingPointError", "AssertionError", "RecursionError",
                  "MemoryError", "LookupError", "ImportError", "ModuleNotFoundError", "NameError",
                  "UnboundLocalError", "OSError", "StopIteration")


class RemoteError(Exception):
    """An exception of the student's code in the child (its class is named like the original)."""

    kind = "Exception"


class NotSendable(TypeError):
    """A check tried to pass the graded code something that cannot cross the pipe (a bug of the
    check, never the student's: :func:`nicelab.checking.attempt` lets it through)."""


class GradingProcessEnded(BaseException):  # noqa: N818 - reported as a crash, not an error
    """The process running the student's code ended (it exited, crashed or was killed) or sent
    something that is not an answer; the checks that need it cannot run. ``kind``: ``crashed``
    for the check during which it happened, ``not_run`` for the checks after it."""

    kind = "crashed"


class GradingProcessTimeout(GradingProcessEnded):
    """The student's code did not answer within the client's time limit."""

    kind = "timeout"


_CLASSES: dict[str, type] = {}


def remote_exception(kind: str, message: str, code=None) -> BaseException:
    """The exception to raise here for the child's ``kind: message``."""
    kind = kind if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,79}", kind or "") else "Exception"
    if kind == "SystemExit":
        return SystemExit(code if isinstance(code, int | str) or code is None else str(code))
    if kind == "Failed":  # the student's own pytest.fail: a failure with its message, as in-process
        import pytest  # lazy: the child's side never needs it

        return pytest.fail.Exception(message, pytrace=False)
    if kind not in _CLASSES:
        base = getattr(builtins, kind) if kind in BUILTIN_ERRORS else None
        bases = (base, RemoteError) if base is not None else (RemoteError,)
        _CLASSES[kind] = type(kind, bases, {"kind": kind, "__module__": "remote"})
    error = _CLASSES[kind](message)
    error.remote_message = message
    return error


class Remote:
    """A stand-in for an object that lives in the child: attribute reads, calls and array
    conversion are requests to it. ``kind`` is ``callable``, ``variable`` or ``object``."""

    __slots__ = ("_client", "_id", "_kind", "_type", "_shape", "_dtype")

    def __init__(self, client: Client, description: dict):
        for slot in self.__slots__:
            object.__setattr__(self, slot, None)
        object.__setattr__(self, "_client", client)
        object.__setattr__(self, "_id", description["id"])
        object.__setattr__(self, "_kind", str(description.get("kind", "object"))[:20])
        object.__setattr__(self, "_type", str(description.get("type", "object"))[:200])
        shape = description.get("shape")
        if isinstance(shape, list) and all(isinstance(n, int | None) for n in shape):
            object.__setattr__(self, "_shape", tuple(shape))
        dtype = description.get("dtype")
        object.__setattr__(self, "_dtype", str(dtype)[:20] if dtype else None)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._client.request("getattr", target=self, name=name)

    def __setattr__(self, name: str, value) -> None:
        self._client.request("setattr", target=self, name=name, value=value)

    def __call__(self, *args, **kwargs):
        return self._client.request("call", target=self, args=list(args), kwargs=kwargs)

    def __array__(self, dtype=None, copy=None):
        array = np.asarray(self._client.request("array", target=self))
        return array.astype(dtype) if dtype is not None else array

    @property
    def shape(self):
        return self._shape if self._shape is not None else self.__getattr__("shape")

    @property
    def dtype(self):
        return self._dtype if self._dtype is not None else self.__getattr__("dtype")

    def __repr__(self) -> str:
        return f"<{self._type} in the process that runs the graded code>"


class Twin:
    """An object built on both sides by the same recipe: the check's own copy here (every
    attribute read goes to it), the child's copy wherever it is sent to the student's code."""

    __slots__ = ("_local", "_remote")

    def __init__(self, local, remote: Remote):
        object.__setattr__(self, "_local", local)
        object.__setattr__(self, "_remote", remote)

    def __getattr__(self, name: str):
        return getattr(self._local, name)

    def __repr__(self) -> str:
        return f"<twin of {self._local!r}>"


def local_of(value):
    """The check's own copy of a :class:`Twin` (anything else as it is)."""
    return value._local if isinstance(value, Twin) else value


def remote_of(value):
    """The child's copy of a :class:`Twin`, whose state the student's code may have changed."""
    return value._remote if isinstance(value, Twin) else value


#: The client of the stage whose check is running (set by the plugin before each check).
_current: list[Client | None] = [None]


def activate(client: Client | None) -> None:
    _current[0] = client


def current() -> Client | None:
    return _current[0]


def _client_of(values) -> Client | None:
    for value in values:
        if isinstance(value, Remote | Twin):
            return remote_of(value)._client
        if isinstance(value, list | tuple):
            found = _client_of(value)
            if found is not None:
                return found
    return None


def _run(client: Client, fn, args, kwargs):
    return client.request("recipe", name=f"{fn.__module__}:{fn.__qualname__}", args=list(args), kwargs=kwargs)


def beside(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` where the objects live: in the child when an argument is a
    stand-in of one of its objects, else here. ``fn`` must be a recipe
    (:func:`nicelab.grader.recipes.recipe`)."""
    client = _client_of([*args, *kwargs.values()])
    return fn(*args, **kwargs) if client is None else _run(client, fn, args, kwargs)


def build(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in the child of the stage being checked when it is graded
    remotely (a stand-in comes back), else here: an object made for the student's code only."""
    client = _client_of([*args, *kwargs.values()]) or current()
    return fn(*args, **kwargs) if client is None else _run(client, fn, args, kwargs)


def twin(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` built here and, when a stage is graded remotely, in the child too
    (a :class:`Twin`: the check reads its own copy, the student's code gets the child's);
    ``fn`` must be a deterministic recipe. A tuple or list of objects gives one twin each."""
    local = fn(*args, **kwargs)
    client = current()
    if client is None:
        return local
    made = _run(client, fn, args, kwargs)
    if isinstance(local, tuple | list) and isinstance(made, tuple | list) and len(made) == len(local):
        pairs = zip(local, made, strict=True)
        return type(local)(Twin(a, b) if isinstance(b, Remote) else a for a, b in pairs)
    return Twin(local, made) if isinstance(made, Remote) else local


def _describe(value, arrays: list[np.ndarray]):
    """How this side sends what is not plain data: stand-ins as handles, tensors as arrays."""
    if isinstance(value, Remote):
        return {"t": "h", "id": value._id}
    if isinstance(value, Twin):
        return {"t": "h", "id": value._remote._id}
    if hasattr(value, "numpy") and hasattr(value, "dtype") and hasattr(value, "shape"):
        return wire.array_description(np.asarray(value.numpy()), arrays, tensor=True)
    return None


class NotHosted(RuntimeError):
    """A stage host could not start a stage's process (it has ended, or is past that stage)."""


class Client:
    """The grader's end of one child process that runs ``impl``'s ``stage`` (in the sandbox
    described by ``sandbox_view`` when given; else as the unprivileged user ``uid`` when given,
    see :mod:`nicelab.grader.isolation.student_user`; else forked by ``host``, a
    :class:`~nicelab.grader.isolation.stage_host.StageHost`, when given: :class:`NotHosted` when
    it cannot). ``load()`` loads the module there."""

    def __init__(self, impl: str | Path, stage: str, sandbox_view=None, timeout: float = TIMEOUT_S,
                 threads: int = 0, bwrap: str | None = None, uid: int | None = None, host=None):
        self.timeout, self.ended = timeout, None
        self._handles: dict[int, Remote] = {}
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        self._child = None
        self.host = host
        self.key: tuple[str, str, str] | None = None  # set by stage_processes.take
        if host is None:
            self._start(impl, stage, sandbox_view, threads, bwrap, uid, to_child_r, from_child_w)
            return
        self.proc = host.spawn(stage, [to_child_r, from_child_w])
        for fd in (to_child_r, from_child_w):
            os.close(fd)
        if self.proc is None:
            for fd in (self._to_child, self._from_child):
                os.close(fd)
            raise NotHosted(f"the stage host cannot start {stage}'s process")

    def _start(self, impl, stage: str, sandbox_view, threads: int, bwrap: str | None, uid: int | None,
               to_child_r: int, from_child_w: int) -> None:
        """Start the child as a new process (in bwrap, as ``uid`` or plain)."""
        inner_impl = str(sandbox.SUBMISSION) if sandbox_view else str(impl)
        python = sandbox.python_inside() if sandbox_view else sys.executable
        inner = [python, "-m", "nicelab.grader.child", inner_impl, stage, "--fd-in", str(to_child_r),
                 "--fd-out", str(from_child_w), "--threads", str(threads)]
        user: dict = {}
        if uid is not None and sandbox_view is None:
            env, base = student_user.child_environment(uid, stage, threads)
            weakref.finalize(self, shutil.rmtree, base, True)
            user = {"env": env, "user": uid, "group": student_user.primary_gid(uid), "extra_groups": [],
                    "cwd": base / "home"}
        # close_fds: the child inherits no other descriptor
        self.proc, self._child = stage_host.popen(inner, [to_child_r, from_child_w], sandbox_view, threads,
                                                  bwrap, **user)

    # ------------------------------------------------------------------ requests

    def _handle(self, description: dict) -> Remote:
        found = self._handles.get(description["id"])
        if found is None:
            found = self._handles[description["id"]] = Remote(self, description)
        return found

    def request(self, op: str, **fields):
        """Send one request; return the decoded answer or raise the student's exception."""
        if self.ended is not None:
            error = GradingProcessEnded(f"not run: {self.ended} during an earlier check.")
            error.kind = "not_run"
            raise error
        arrays: list[np.ndarray] = []

        def describe(value):
            return _describe(value, arrays)

        header = {"op": op}
        try:
            for key, value in fields.items():
                if key == "kwargs":
                    header[key] = {k: wire.encode(v, arrays, describe) for k, v in value.items()}
                else:
                    header[key] = wire.encode(value, arrays, describe)
        except TypeError as err:
            raise NotSendable(f"{err} (a check passes the graded code only arrays, numbers, strings, lists, "
                            "dicts and objects of that process: build others with twin/build)") from None
        try:
            wire.send(self._to_child, header, arrays)
            try:
                answer, payload = wire.receive(self._from_child, self.timeout)
            except TimeoutError:
                self._end(f"your code did not answer within {self.timeout:g} s")
                raise GradingProcessTimeout(f"Your code did not answer within {self.timeout:g} s "
                                            "during this check (an endless loop?); it was stopped.") from None
            decoder = wire.Decoder(payload, self._handle)
            if "error" in answer:
                raise remote_exception(str(answer.get("error"))[:100], str(answer.get("message"))[:4000],
                                       answer.get("code"))
            return decoder.value(answer.get("value"))
        except (wire.ProtocolError, OSError):
            how = self._how_it_ended()
            self._end(how)
            raise GradingProcessEnded(f"{how} during this check.") from None

    def _how_it_ended(self) -> str:
        """The child's end in words (bwrap exits with 128 + N when a signal N killed it)."""
        try:
            code = self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            return "the grading process stopped answering (it broke the protocol)"
        if self._child is not None and 128 < code < 128 + 65:
            code = 128 - code
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the grading process died of {name}"
        return f"the grading process exited with code {code} before the checks were done (os._exit?)"

    def load(self) -> dict:
        """Load the stage's module in the child: ``{"kind", "blocked_by", "own_earlier",
        "message", "module"}`` (kind ``ok`` and the module's stand-in, or why it cannot load)."""
        return self.request("load")

    def seed(self, value: int) -> None:
        self.request("seed", value=int(value))

    # ------------------------------------------------------------------ ending

    def _end(self, why: str) -> None:
        self.ended = why
        self.kill()

    def kill(self) -> None:
        """Kill the child and every process it started (safe from another thread); a hosted
        child's whole host with it."""
        if self.host is not None:
            self.host.kill()
            return
        sandbox.kill_namespace(self._child, self.proc.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, 9)

    def close(self) -> None:
        self.ended = self.ended or "closed"
        if self.host is not None and self.host.reset():  # the host stays, for the next stage
            try:
                self.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.kill()
        else:
            self.kill()
        self.proc.wait()
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
