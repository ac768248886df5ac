"""The unprivileged user a root grader runs the student's code as, where bubblewrap cannot run
(Gradescope: :mod:`nicelab.authoring.gradescope`; :class:`nicelab.grader.isolation.process.Plan`'s ``uid``).

The child that answers the checks (:class:`nicelab.grader.remote.Client`) starts as that user,
in a clean environment with a private folder of its own (:func:`child_environment`); that user
may neither open the descriptors of root's processes (``/proc/<pid>/fd``), nor signal them, nor
read what is root's alone. The batch counts every process of that user against the limits
(:func:`user_processes`), however it left the worker's tree, and kills them all
(:func:`kill_user`) when a worker ends.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from nicelab.core.cache import cache_dir
from nicelab.core.impl import PROJECT_ROOT
from nicelab.grader.isolation import sandbox


def primary_gid(uid: int) -> int:
    """The group of the user ``uid`` (its account's), or the same number when it has no account."""
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return uid


def child_environment(uid: int, stage: str, threads: int) -> tuple[dict[str, str], Path]:
    """The whole environment of a child run as the unprivileged user ``uid`` (by a root grader,
    without the sandbox), and its folder ``base``: ``base/home``, the user's own (0700; its
    working directory, ``$HOME`` and ``$TMPDIR``), and ``base/project/solutions``, root's,
    read-only, holding the reference of the stages before ``stage`` only (first on its path)."""
    if uid <= 0 or os.geteuid() != 0:
        raise PermissionError(f"a child runs as uid {uid} only from a root grader, and never as root.")
    base = Path(tempfile.mkdtemp(prefix="nicelab-child-"))
    os.chmod(base, 0o711)
    home = base / "home"
    home.mkdir()
    os.chmod(home, 0o700)
    os.chown(home, uid, primary_gid(uid))
    solutions = sandbox.filtered_solutions(base / "project" / "solutions", stage)
    for folder in (base / "project", solutions):
        os.chmod(folder, 0o755)
    for module in solutions.iterdir():
        os.chmod(module, 0o644)
    env = sandbox.environment(threads)
    env.update(HOME=str(home), TMPDIR=str(home), MPLCONFIGDIR=str(home / "matplotlib"),
               PYTHONPATH=os.pathsep.join([str(base / "project"), str(PROJECT_ROOT)]),
               KERAS_HOME=os.environ.get("KERAS_HOME") or str(home / ".keras"))
    env.pop("NICELAB_CACHE", None)
    if cache_dir().is_dir():
        env["NICELAB_CACHE"] = str(cache_dir().resolve())
    return env, base


def user_processes(uid: int) -> list[psutil.Process]:
    """Every live process (zombies left out) whose real, effective or saved uid is ``uid``."""
    found = []
    for proc in psutil.process_iter(["uids", "status"]):
        uids, status = proc.info["uids"], proc.info["status"]
        if uids is not None and uid in tuple(uids) and status != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def _kill_as(uid: int) -> None:
    """``kill(-1, SIGKILL)`` from a process running as ``uid``: the kernel kills, in one go,
    every process that user may signal (all of that user's, however fast they fork)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run([sys.executable, "-I", "-S", "-c", "import os, signal; os.kill(-1, signal.SIGKILL)"],
                       user=uid, group=primary_gid(uid), extra_groups=[], cwd="/", env={},
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=10)


def kill_user(uid: int, timeout: float = 30.0) -> bool:
    """SIGKILL every process of ``uid`` (:func:`user_processes`) until none is left (True), or
    ``timeout`` seconds pass (False). The grader must be root."""
    end = time.monotonic() + timeout
    while procs := user_processes(uid):
        if time.monotonic() > end:
            return False
        _kill_as(uid)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=0.2)
    return True
