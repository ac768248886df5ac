"""The processes that run a submission's stage modules in remote grading: one per stage, each
started ahead of need in the sandbox.

A stage's process spends most of its start importing TensorFlow (about four seconds on a laptop
core), before it runs any of the submission's code. In the sandbox the grader therefore starts
the next stage's process while the current stage's checks run, and the first stage's while the
worker itself starts (:func:`prefetch`), so that a sandboxed submission pays those imports mostly
in parallel with work it has to do anyway (``nicelab bench --section 1`` shows the seconds per
submission). Nothing else changes:

* every stage still runs in a process and a sandbox of its own, which holds only the reference
  of the stages before it: a sandbox cannot see another's files, processes or memory;
* a process started ahead runs none of the submission's code until the checks ask it to load
  the stage's module (the plugin's ``load_remote``), and the process of the stage before it is
  closed then (one stage's code at a time);
* both count against the submission's memory limit while they overlap (the process started
  ahead holds TensorFlow, about 0.7 GB);
* processes are started ahead only in the sandbox. Run as a student user without it
  (Gradescope), the next stage's view would be files that user can read while the current
  stage's code runs, so there each process starts when its stage is reached, as before.

This module imports no TensorFlow: the worker calls :func:`prefetch` before its own import.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from nicelab.grader import remote
from nicelab.grader.isolation import forkserver, sandbox
from nicelab.grader.isolation.stage_host import StageHost

#: Settings of remote grading that are not options (set by the grading worker): the sandbox's
#: private /tmp size (MB), TensorFlow's threads in the child, the bwrap binary, the user the
#: child runs as (without the sandbox, from a root grader: Gradescope).
#: ``keep``: a run of several sessions (the public checks, then the hidden ones) is under way.
SETTINGS: dict = {"scratch_mb": 256, "threads": 0, "bwrap": None, "uid": None, "keep": False}

_AHEAD: dict[tuple[str, str, str], remote.Client] = {}
_KEPT: dict[tuple[str, str, str], remote.Client] = {}
_HOSTS: dict[tuple[str, str], StageHost] = {}
_FOLDERS: list[str] = []


def _hosted(mode: str | None, hosted: bool) -> bool:
    """Whether the stages' processes come from a host (``NICELAB_FORK_SERVER=0``: never)."""
    switched_off = os.environ.get(forkserver.SWITCH_ENV) == "0"
    return hosted and mode in ("sandbox", "process") and SETTINGS.get("uid") is None and not switched_off


def host(path: Path, mode: str) -> StageHost:
    """The stage host of the submission at ``path`` (:mod:`nicelab.grader.isolation.stage_host`):
    the one running, else a new one."""
    key = (str(path), mode)
    found = _HOSTS.get(key)
    if found is None or not found.alive():
        if found is not None:
            found.close()
        found = _HOSTS[key] = StageHost(path, mode, threads=int(SETTINGS["threads"]), bwrap=SETTINGS["bwrap"],
                                        scratch_mb=int(SETTINGS["scratch_mb"]))
    return found


def start(path: Path, stage: str, mode: str, hosted: bool = False) -> remote.Client:
    """A new process for ``stage`` of the submission at ``path`` (``mode`` ``sandbox``: in
    bubblewrap, with a view that holds only the reference of the stages before it; ``hosted``:
    forked by the submission's stage host, a new one when the host is past that stage)."""
    if _hosted(mode, hosted):
        for _ in range(2):
            with contextlib.suppress(remote.NotHosted):
                return remote.Client(path, stage, host=host(path, mode))
            _HOSTS.pop((str(path), mode)).close()  # its stages are done: a new host, from that stage
    return remote.Client(path, stage, _view(path, stage, mode), threads=int(SETTINGS["threads"]),
                         bwrap=SETTINGS["bwrap"], uid=SETTINGS.get("uid"))


def _view(path: Path, stage: str, mode: str) -> sandbox.View | None:
    if mode != "sandbox":
        return None
    folder = tempfile.mkdtemp(prefix="nicelab-view-")
    _FOLDERS.append(folder)
    solutions = sandbox.filtered_solutions(Path(folder) / "solutions", stage)
    return sandbox.View(solutions, path, int(SETTINGS["scratch_mb"]))


def prefetch(path: Path, stage: str, mode: str | None, hosted: bool = False) -> None:
    """Start ``stage``'s process now, to be taken by :func:`take` (sandbox mode only); with
    ``hosted``, the submission's stage host instead (sandbox and process modes)."""
    if _hosted(mode, hosted):
        host(path, mode)
        return
    key = (str(path), stage, str(mode))
    if mode == "sandbox" and key not in _AHEAD:
        _AHEAD[key] = start(path, stage, mode)


def take(path: Path, stage: str, mode: str, hosted: bool = False) -> remote.Client:
    """The process of ``stage``: the one kept from the session before (:func:`release`) or
    started ahead when there is one, else a new one."""
    key = (str(path), stage, str(mode))
    kept = _KEPT.pop(key, None)
    while _KEPT:  # one graded process at a time
        _KEPT.popitem()[1].close()
    for client in (kept, _AHEAD.pop(key, None)):
        if client is not None and client.ended is None and client.proc.poll() is None:
            return _keyed(client, key)
        if client is not None:
            client.close()
    return _keyed(start(path, stage, mode, hosted), key)


def _keyed(client: remote.Client, key: tuple[str, str, str]) -> remote.Client:
    client.key = key
    return client


def release(client: remote.Client) -> None:
    """A session's end: while a run of several sessions is under way (``SETTINGS["keep"]``),
    keep ``client`` for the next one (the hidden checks load a fresh module in the same process,
    as they do in-process); else close it."""
    alive = client.ended is None and client.proc.poll() is None
    if SETTINGS["keep"] and alive and client.key is not None:
        _KEPT[client.key] = client
    else:
        client.close()


def next_stage(stage: str, order: list[str]) -> str | None:
    """The stage after ``stage`` in the session's ``order`` of stages, if any."""
    if stage not in order:
        return None
    later = order[order.index(stage) + 1:]
    return later[0] if later else None


def close_all() -> None:
    """End the processes started ahead and not taken, the stage hosts, and remove the views'
    folders."""
    while _AHEAD or _KEPT:
        _, client = (_AHEAD or _KEPT).popitem()
        client.close()
    while _HOSTS:
        _, found = _HOSTS.popitem()
        found.close()
    while _FOLDERS:
        shutil.rmtree(_FOLDERS.pop(), ignore_errors=True)


__all__ = ["SETTINGS", "close_all", "host", "next_stage", "prefetch", "release", "start", "take"]
