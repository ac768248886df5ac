"""Run the process that runs a submission's code inside a bubblewrap (``bwrap``) sandbox.

``sandbox_command(inner, view)`` turns the command line of that process (the child of
:mod:`nicelab.grader.child`, which answers the checks' requests; the checks themselves run
outside) into a ``bwrap`` command line. Inside, it sees a small file system of its own:

* the system (``/usr``, ``/etc``, ...), the Python installation and the virtual environment,
  read-only, at their usual paths;
* ``/grader/project``: the project's ``nicelab/`` and ``pyproject.toml`` (no checks), and a
  ``solutions/`` holding ONLY the reference modules of the stages before the graded one
  (:func:`filtered_solutions`), all read-only;
* ``/grader/submission``: a copy of the submission, read-only;
* ``/grader/cache`` (``$NICELAB_CACHE``) and ``/grader/keras`` (``$KERAS_HOME``): the check
  fixtures' cache and Keras' data sets, read-only;
* ``/tmp``: a private tmpfs capped at ``scratch_mb`` (the working directory and ``$HOME``), and
  ``/dev/shm`` one capped at :data:`SHM_MB`; the rest of the file system is read-only.

Nothing else of the machine is there: no other submission, no results file, no checks (public
or hidden: they run in the grader's process), no grading key. The process runs as an
unprivileged user in new user, PID, network, IPC and UTS namespaces, with every capability
dropped and in a new session (no terminal). The batch and the other submissions are invisible
to it, so it can neither signal nor stop them; the parent keeps the watchdog (time, memory),
and killing the namespace's first process (:func:`kill_namespace`) kills every process in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from nicelab.core.cache import cache_dir
from nicelab.core.course import STAGE_NAMES
from nicelab.core.impl import PROJECT_ROOT

#: Where things are inside the sandbox.
ROOT = Path("/grader")
PROJECT = ROOT / "project"
SUBMISSION = ROOT / "submission"
CACHE = ROOT / "cache"
KERAS = ROOT / "keras"
HOME = Path("/tmp/home")
WORK = Path("/tmp/work")
#: The size of the sandbox's /dev/shm (POSIX shared memory, multiprocessing's semaphores).
SHM_MB = 64
#: The unprivileged user the submission runs as (inside its own user namespace).
UID = 1000
#: What of the project the grading process needs (besides the filtered solutions/).
PROJECT_PARTS = ("nicelab", "pyproject.toml")
#: System folders bound read-only when they exist.
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create its namespaces here; the message says why."""


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def check_available() -> str:
    """The path of a working ``bwrap``, or :class:`SandboxUnavailable` saying what to do."""
    path = bwrap_path()
    how = ("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`), or grade without the "
           "sandbox with --no-sandbox (only for submissions you trust)")
    if path is None:
        raise SandboxUnavailable(f"batch grading runs each submission in a bubblewrap sandbox, and `bwrap` "
                                 f"is not installed: {how}.")
    probe = [path, "--ro-bind", "/", "/", "--unshare-all", "--unshare-user", "--uid", str(UID),
             "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--proc", "/proc",
             "--dev", "/dev", "--", "true"]
    try:
        run = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SandboxUnavailable(f"`bwrap` does not run here ({err}): {how}.") from err
    if run.returncode != 0:
        raise SandboxUnavailable(f"`bwrap` cannot create its namespaces here ({run.stderr.strip()[:300]}); "
                                 f"user namespaces may be disabled: {how}.")
    return path


def filtered_solutions(into: Path, stage: str) -> Path:
    """A copy of ``solutions/`` holding only ``__init__.py`` and the modules of the stages
    before ``stage`` (what a stage is graded on top of); the graded stage's reference and the
    later ones are not there."""
    into.mkdir(parents=True)
    source = PROJECT_ROOT / "solutions"
    init = source / "__init__.py"
    (into / "__init__.py").write_bytes(init.read_bytes() if init.exists() else b"")
    for earlier in STAGE_NAMES[: STAGE_NAMES.index(stage)]:
        shutil.copyfile(source / f"{earlier}.py", into / f"{earlier}.py")
    return into


@dataclass
class View:
    """What one sandboxed process running a submission's code sees (host paths), see the module
    docstring."""

    solutions: Path
    submission: Path
    scratch_mb: int = 256


def _python_dirs() -> list[Path]:
    """The Python installation and the virtual environment (real paths, deduplicated)."""
    found: list[Path] = []
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
                  sysconfig.get_paths()["platlib"], os.path.dirname(os.path.realpath(sys.executable))]
    for candidate in candidates:
        path = Path(os.path.realpath(candidate))
        if path.exists() and not any(path == p or p in path.parents for p in found):
            found = [p for p in found if path not in p.parents] + [path]
    return found


def python_inside() -> str:
    """The interpreter to run inside: the virtual environment's, by its real path."""
    return os.path.join(os.path.realpath(sys.prefix), "bin", "python")


def environment(threads: int) -> dict[str, str]:
    """The grading process's whole environment (nothing of the instructor's is passed on)."""
    env = {
        "PATH": f"{os.path.dirname(python_inside())}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(HOME), "TMPDIR": "/tmp", "LANG": "C.UTF-8", "PYTHONPATH": str(PROJECT),
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
        "MALLOC_ARENA_MAX": "2", "MPLCONFIGDIR": "/tmp/matplotlib", "MPLBACKEND": "Agg",
        "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(max(1, threads)),
        "KERAS_HOME": str(KERAS),
    }
    if cache_dir().is_dir():
        env["NICELAB_CACHE"] = str(CACHE)
    return env


def sandbox_command(inner: list[str], view: View, threads: int, info_fd: int, bwrap: str,
                    args_fd: int | None = None) -> list[str] | tuple[list[str], bytes]:
    """The ``bwrap`` command line that runs ``inner`` in the sandbox described by ``view``.
    ``info_fd``: the (inherited) descriptor bwrap writes ``{"child-pid": N}`` to.

    With ``args_fd``, returns ``(command, options)``: bwrap reads its options (NUL-separated
    ``options``) from that descriptor, so that the sandbox's first process, whose command line
    every process inside can read in ``/proc/1/cmdline``, names no path of the machine."""
    options = _options(view, threads, info_fd)
    if args_fd is None:
        return [bwrap, *options, "--", *inner]
    return [bwrap, "--args", str(args_fd), "--", *inner], b"".join(o.encode() + b"\0" for o in options)


def _options(view: View, threads: int, info_fd: int) -> list[str]:
    cmd = ["--unshare-all", "--unshare-user", "--uid", str(UID), "--gid", str(UID),
           "--hostname", "grader", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
           "--info-fd", str(info_fd), "--clearenv"]
    for folder in SYSTEM:
        if os.path.islink(folder):
            cmd += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            cmd += ["--ro-bind", folder, folder]
    for folder in _python_dirs():
        cmd += ["--ro-bind", str(folder), str(folder)]
    for part in PROJECT_PARTS:
        source = PROJECT_ROOT / part
        if source.exists():
            cmd += ["--ro-bind", str(source), str(PROJECT / part)]
    cmd += ["--ro-bind", str(view.solutions), str(PROJECT / "solutions"),
            "--ro-bind", str(view.submission), str(SUBMISSION)]
    if cache_dir().is_dir():
        cmd += ["--ro-bind", str(cache_dir().resolve()), str(CACHE)]
    keras = Path(os.path.expanduser(os.environ.get("KERAS_HOME") or "~/.keras"))
    if keras.is_dir():
        cmd += ["--ro-bind", str(keras.resolve()), str(KERAS)]
    # bwrap's /dev is a tmpfs of the machine's size: /dev/shm gets a capped one of its own and
    # the rest of /dev is made read-only (else files there would be memory nobody counts).
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(SHM_MB * 2**20), "--tmpfs", "/dev/shm",
            "--remount-ro", "/dev", "--size", str(view.scratch_mb * 2**20), "--tmpfs", "/tmp",
            "--dir", str(HOME), "--dir", str(WORK), "--chdir", str(WORK),
            "--remount-ro", "/"]
    for key, value in environment(threads).items():
        cmd += ["--setenv", key, value]
    return cmd


def read_child_pid(fd: int, timeout: float = 30.0) -> int | None:
    """The PID (in our namespace) of the sandbox's first process, from bwrap's info descriptor;
    None when bwrap exited before it started one."""
    data = b""
    end = timeout
    while end > 0:
        ready, _, _ = select.select([fd], [], [], 0.1)
        end -= 0.1
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
        with contextlib.suppress(ValueError):
            return int(json.loads(data)["child-pid"])
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return int(json.loads(data)["child-pid"])
    return None


def kill_namespace(child_pid: int | None, bwrap_pid: int) -> None:
    """Kill every process of the sandbox: SIGKILL to its PID namespace's first process makes
    the kernel kill all the others (setsid, double forks and nested namespaces included)."""
    for pid in (child_pid, bwrap_pid):
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
