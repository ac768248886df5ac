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
* ``/grader/cache/fixtures`` (``$NICELAB_CACHE`` is ``/grader/cache``): only the reference
  models the checks of stages 4-5 build the student's side from
  (:func:`nicelab.core.cache.fixture_dir`), never the rest of the cache (other submissions'
  training runs, a grading key kept next to it); not mounted when it cannot be made;
  ``/grader/keras`` (``$KERAS_HOME``): Keras' data sets; both read-only;
* ``/tmp``: a private tmpfs capped at ``scratch_mb`` (the working directory and ``$HOME``), and
  ``/dev/shm`` one capped at :data:`SHM_MB`; the rest of the file system is read-only. A Python
  installation or virtual environment under ``/tmp`` is bound again on top of that tmpfs.

Nothing else of the machine is there: no other submission, no results file, no checks (public
or hidden: they run in the grader's process), no grading key: a key file
(:func:`nicelab.grader.results.integrity.key_file`) inside any folder bound is refused
(:class:`SandboxUnavailable`). The process runs as an unprivileged user in new PID, network,
IPC and UTS namespaces, with every capability dropped and in a new session (no terminal): a
normal grader's sandbox is uid :data:`UID` in a user namespace of its own; a root grader's is
:data:`NOBODY` outside too (bwrap builds it as root, then ``setpriv`` drops to nobody before
the child starts: :func:`_identity_options`), so that root-only files such as ``/etc/shadow``
stay unreadable; what it binds must then be readable by nobody (the grader's own temporary
folders are opened to it, anything else it cannot read is refused, naming the path). The batch
and the other submissions are invisible to it, so it can neither signal nor stop them; the
parent keeps the watchdog (time, memory), and killing the namespace's first process
(:func:`kill_namespace`) kills every process in it.

Memory: :func:`start` puts bwrap, before it runs anything, in a memory cgroup of its own where
the machine offers one, so that memory no process maps (memfd files, System V segments, tmpfs
files) is charged and counted; elsewhere a documented fallback polls it
(:mod:`nicelab.grader.isolation.memory`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nicelab.core.cache import fixture_dir
from nicelab.core.course import STAGE_NAMES
from nicelab.core.impl import PROJECT_ROOT
from nicelab.grader.isolation import memory
from nicelab.grader.results import integrity

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
#: The user (and group) a root grader starts bwrap as: the sandbox's user outside.
NOBODY = 65534
#: Where the grader's own temporary folders live (opened to :data:`NOBODY` when bound).
TEMP_ROOTS = ("/tmp", "/var/tmp", "/dev/shm")
#: What of the project the grading process needs (besides the filtered solutions/).
PROJECT_PARTS = ("nicelab", "pyproject.toml")
#: System folders bound read-only when they exist.
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create its namespaces here; the message says why."""


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def _as_root() -> bool:
    return os.geteuid() == 0


def _drop_to_nobody() -> list[str]:
    """The command that, first in a root grader's sandbox, becomes :data:`NOBODY` (no group,
    no capability, no new privileges) and runs the rest."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise SandboxUnavailable("grading as root needs `setpriv` (util-linux) to run each sandbox as the "
                                 f"unprivileged user {NOBODY}; install it, or grade as a normal user.")
    return [setpriv, "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", "--no-new-privs",
            "--inh-caps=-all", "--"]


def _identity_options() -> list[str]:
    """Who the sandbox runs as. A normal grader: uid :data:`UID` in a user namespace of its own.
    A root grader: bwrap keeps root (no user namespace) to build the sandbox, whatever the
    folders above what it binds allow (``/root`` say), and the sandbox's first command
    (:func:`_drop_to_nobody`) becomes :data:`NOBODY`, a user that owns nothing: root-only files
    (``/etc/shadow``) stay unreadable, which a user namespace mapping root could not do."""
    if not _as_root():
        return ["--unshare-all", "--unshare-user", "--uid", str(UID), "--gid", str(UID), "--cap-drop", "ALL"]
    return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
            "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]


def _writable(kind: str, path: str, size_mb: int | None = None) -> list[str]:
    """bwrap's options for a tmpfs (``kind`` ``--tmpfs``) or folder (``--dir``) the sandbox's
    user may write: world-writable when it is :data:`NOBODY` (bwrap makes them as root)."""
    size = ["--size", str(size_mb * 2**20)] if size_mb else []
    perms = ["--perms", "01777"] if _as_root() else []
    return [*perms, *size, kind, path]


def check_available() -> str:
    """The path of a working ``bwrap``, or :class:`SandboxUnavailable` saying what to do (bwrap
    missing or unusable, a grading key or an unreadable folder among what a sandbox binds)."""
    path = bwrap_path()
    how = ("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`), or grade without the "
           "sandbox with --no-sandbox (only for submissions you trust)")
    if path is None:
        raise SandboxUnavailable(f"batch grading runs each submission in a bubblewrap sandbox, and `bwrap` "
                                 f"is not installed: {how}.")
    _check_sources([Path(source) for source, _ in _shared_binds()])
    inner = [*_drop_to_nobody(), "true"] if _as_root() else ["true"]
    probe = [path, "--ro-bind", "/", "/", *_identity_options(), "--die-with-parent", "--new-session",
             "--proc", "/proc", "--dev", "/dev", "--", *inner]
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
    return add_references(into, stage)


def add_references(into: Path, stage: str) -> Path:
    """Add to ``into`` (made by :func:`filtered_solutions`) the reference modules of the stages
    before ``stage`` it lacks (a stage host's view grows as the stages are reached)."""
    source = PROJECT_ROOT / "solutions"
    for earlier in STAGE_NAMES[: STAGE_NAMES.index(stage)]:
        if not (into / f"{earlier}.py").exists():
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
    if fixture_dir().is_dir():
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
    inner = [*_drop_to_nobody(), *inner] if _as_root() else inner
    if args_fd is None:
        return [bwrap, *options, "--", *inner]
    return [bwrap, "--args", str(args_fd), "--", *inner], b"".join(o.encode() + b"\0" for o in options)


def start(pid: int, args_fd: int, options: bytes) -> None:
    """Hand bwrap (``pid``, started with ``--args`` on the pipe ``args_fd`` and blocked reading
    it) its ``options``, once it is in a memory cgroup of its own where the machine has them:
    everything the sandbox starts is then charged there (:mod:`nicelab.grader.isolation.memory`)."""
    group = memory.new_group(os.getpid(), memory.backstop())
    if group is not None:
        memory.join(group, pid)  # not joined: the fallback counts its processes (memory.outside)
    try:
        view = memoryview(options)
        while view:
            view = view[os.write(args_fd, view):]
    except OSError:
        pass  # bwrap is gone: the client sees it end
    finally:
        os.close(args_fd)


def _shared_binds() -> list[tuple[str, str]]:
    """``(host path, path inside)`` bound read-only in every sandbox: the system, the project's
    parts, the fixtures' cache (made when missing) and Keras' data sets."""
    binds = [(folder, folder) for folder in SYSTEM if os.path.isdir(folder) and not os.path.islink(folder)]
    binds += [(str(PROJECT_ROOT / part), str(PROJECT / part)) for part in PROJECT_PARTS
              if (PROJECT_ROOT / part).exists()]
    with contextlib.suppress(OSError):
        fixture_dir().mkdir(parents=True, exist_ok=True)
    if fixture_dir().is_dir():
        binds.append((str(fixture_dir().resolve()), str(CACHE / "fixtures")))
    keras = Path(os.path.expanduser(os.environ.get("KERAS_HOME") or "~/.keras"))
    if keras.is_dir():
        binds.append((str(keras.resolve()), str(KERAS)))
    return binds + [(str(folder), str(folder)) for folder in _python_dirs()]


def _parents(binds: list[tuple[str, str]]) -> list[str]:
    """The folders above the binds' targets that no bind makes, for a root grader to make
    readable (bwrap would copy the modes of the host's: ``/root`` is 0700)."""
    targets = [Path(target) for _, target in binds]
    found: list[str] = []
    for target in targets:
        for above in reversed(target.parents[:-1]):
            if not any(_inside(above, t) for t in targets) and str(above) not in found:
                found.append(str(above))
    return found


def _options(view: View, threads: int, info_fd: int) -> list[str]:
    cmd = [*_identity_options(), "--hostname", "grader", "--die-with-parent", "--new-session",
           "--info-fd", str(info_fd), "--clearenv"]
    cmd += [part for folder in SYSTEM if os.path.islink(folder)
            for part in ("--symlink", os.readlink(folder), folder)]
    own = [(str(view.solutions), str(PROJECT / "solutions")), (str(view.submission), str(SUBMISSION))]
    binds = _shared_binds() + own
    if _as_root():
        for source, _ in own:
            _open_to_nobody(Path(source))
        cmd += [part for folder in _parents(binds) for part in ("--perms", "0755", "--dir", folder)]
    _check_sources([Path(source) for source, _ in binds])
    for source, target in binds:
        cmd += ["--ro-bind", source, target]
    # bwrap's /dev is a tmpfs of the machine's size: /dev/shm gets a capped one of its own and
    # the rest of /dev is made read-only (else files there would be memory nobody counts).
    cmd += ["--proc", "/proc", "--dev", "/dev", *_writable("--tmpfs", "/dev/shm", SHM_MB),
            "--remount-ro", "/dev", *_writable("--tmpfs", "/tmp", view.scratch_mb)]
    for folder in _python_dirs():  # mounts apply in order: a Python under /tmp goes over the tmpfs
        if _inside(folder, Path("/tmp")):
            if _as_root():  # the folders bwrap makes on the way, readable by nobody
                cmd += [part for above in reversed(folder.parents) if _inside(above, Path("/tmp"))
                        and above != Path("/tmp") for part in ("--perms", "0755", "--dir", str(above))]
            cmd += ["--ro-bind", str(folder), str(folder)]
    cmd += [*_writable("--dir", str(HOME)), *_writable("--dir", str(WORK)), "--chdir", str(WORK),
            "--remount-ro", "/"]
    for key, value in environment(threads).items():
        cmd += ["--setenv", key, value]
    return cmd


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_sources(sources: list[Path]) -> None:
    """Refuse to bind a folder holding the grading key, or (a root grader) one that the
    sandbox's user, :data:`NOBODY`, cannot read."""
    key = Path(os.path.realpath(integrity.key_file()))
    for source in sources:
        real = Path(os.path.realpath(source))
        if _inside(key, real):
            raise SandboxUnavailable(f"the grading key {key} is inside {real}, which every sandbox sees: "
                                     f"keep it elsewhere (${integrity.KEY_ENV}).")
        if os.geteuid() == 0 and not _nobody_reads(real):
            raise SandboxUnavailable(f"grading as root, the sandbox runs as the unprivileged user {NOBODY}, "
                                     f"which cannot read {real}: make it readable by all, or grade as a "
                                     "normal user.")


def _nobody_may(st: os.stat_result, want: int) -> bool:
    """Whether :data:`NOBODY` (group nobody, no other group) has the permission bits ``want``."""
    shift = 6 if st.st_uid == NOBODY else 3 if st.st_gid == NOBODY else 0
    return (st.st_mode >> shift) & want == want


def _nobody_reads(path: Path) -> bool:
    """Whether :data:`NOBODY` can read ``path`` (list it, for a folder), once it is bound."""
    try:
        return _nobody_may(os.stat(path), 5 if path.is_dir() else 4)
    except OSError:
        return False


def _grant(path: Path, want: int) -> None:
    """Give :data:`NOBODY` the bits ``want`` on ``path`` (ours): through the group when it is
    our own group (so that nobody else gains them), else through the others' bits."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid() or _nobody_may(st, want):
        return
    mode = stat.S_IMODE(st.st_mode)
    if st.st_gid == os.getegid():
        os.chown(path, -1, NOBODY)
        os.chmod(path, mode | want << 3)
    else:
        os.chmod(path, mode | want)


def _open_to_nobody(folder: Path) -> None:
    """Let :data:`NOBODY` read one of the grader's own folders under a temporary folder (a view,
    a submission's copy, written with whatever umask); elsewhere, leave it as it is
    (:func:`_check_sources` says when it cannot be read)."""
    folder = Path(os.path.realpath(folder))
    roots = [Path(os.path.realpath(r)) for r in (*TEMP_ROOTS, tempfile.gettempdir())]
    if not any(folder != root and _inside(folder, root) for root in roots):
        return
    for path in [folder, *folder.rglob("*")]:
        _grant(path, 5 if path.is_dir() and not path.is_symlink() else 4)


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
