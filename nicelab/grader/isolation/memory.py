"""Counting all the memory a submission holds, not only its processes' resident pages.

A process's resident set misses memory that no process maps: a ``memfd_create`` file written
with ``write`` and kept open, a System V shared-memory segment (``shmget``) filled and detached,
a file in a tmpfs. Two ways to count it, the first the machine offers:

* **cgroup** (v1 ``memory`` controller, or cgroup v2 with ``memory`` delegated to us): each
  sandbox is started in a memory cgroup of its own, ``nicelab-<worker pid>-<n>``, made next to
  the worker (:func:`new_group`, :func:`join`). The kernel charges every page the sandbox
  touches to it, shared memory included; :func:`shared_bytes` reads its ``shmem`` (memfd,
  SysV, POSIX shm and tmpfs files, mapped or not). The group's hard limit is the worker's
  address-space backstop (4 times the memory limit), so that even a burst between two polls
  is stopped by the kernel. The batch removes a worker's groups when it ends
  (:func:`release`); a group whose worker died unseen is removed by the next :func:`new_group`.
* **fallback** (no writable memory cgroup: a container, a grader without root on cgroup v1;
  or ``NICELAB_NO_CGROUP=1`` in the batch's environment):
  the poll adds, to the processes' resident memory, the size of every memfd file they hold
  open (:func:`memfd_bytes`; one mapped too is counted twice, erring on the safe side) and the
  resident size of the System V segments no process has attached in their private IPC
  namespaces (:func:`sysv_bytes`: a short-lived thread ``setns(2)``\\ s into the namespace and
  reads ``/proc/sysvipc/shm``; that needs root: without it, detached segments go uncounted).

The choice is made per process (:func:`outside`): a process in none of the worker's groups (a
sandbox the kernel did not let into its group) is counted by the fallback, never left uncounted.

:func:`process_bytes` splits a process's resident memory into its anonymous part and its
shared-memory part, so that with a cgroup no shared page is counted twice. Pages mapped from
files (the libraries' code: about 390 MB in every process that imported TensorFlow) are not
the submission's to hold and the kernel may drop them at any time: counted, the worker and two
stage processes would reach 2 GB before the submission allocated anything. A file the sandbox
writes lives in its tmpfs, which counts as shared memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import resource
import threading
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PREFIX = "nicelab-"
CLONE_NEWIPC = 0x08000000
_counter = [0]


def _own_groups(root: Path, pid: int | str = "self") -> list[tuple[int, Path]]:
    """``(version, folder)`` of ``pid``'s memory cgroup (this process's by default): v1's
    ``memory`` hierarchy, then v2."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            number, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                found.insert(0, (1, root / "memory" / path.lstrip("/")))
            elif number == "0" and not controllers:
                found.append((2, root / path.lstrip("/")))
    return found


def _usable(version: int, folder: Path) -> bool:
    try:
        if version == 2 and "memory" not in (folder / "cgroup.subtree_control").read_text().split():
            return False
    except OSError:
        return False
    return folder.is_dir() and os.access(folder, os.W_OK)


@functools.cache
def hierarchy(root: Path = CGROUP_ROOT) -> tuple[int, Path] | None:
    """``(version, folder)`` where this machine lets us make sandbox memory groups, or None
    (then the fallback counts). v1: below our own memory group; v2: below our own group, or
    next to it (a group holding processes cannot delegate its controllers)."""
    if os.environ.get("NICELAB_NO_CGROUP"):
        return None
    for version, folder in _own_groups(root):
        for candidate in (folder, folder.parent) if version == 2 else (folder,):
            if _usable(version, candidate):
                return version, candidate
    return None


def _owner(group: Path) -> int | None:
    parts = group.name.split("-")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def groups_of(owner: int) -> list[Path]:
    """The memory groups of the sandboxes that the worker ``owner`` started."""
    found = hierarchy()
    return sorted(found[1].glob(f"{PREFIX}{owner}-*")) if found else []


def outside(pids, groups) -> list[int]:
    """Those of ``pids`` that run in none of ``groups``: a sandbox that could not join its group
    (or one the grader did not make) is counted by the fallback, never left uncounted."""
    if not groups:
        return list(pids)
    wanted = set(groups)
    return [pid for pid in pids if not any(folder in wanted for _, folder in _own_groups(CGROUP_ROOT, pid))]


def _remove(group: Path, wait_s: float = 0.0) -> bool:
    end = time.monotonic() + wait_s
    while True:
        try:
            group.rmdir()  # refused while a process is still in it
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= end:
                return False
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(owner: int) -> None:
    """Remove ``owner``'s earlier groups and those of workers that are gone (empty ones only:
    the kernel refuses to remove a group with a process in it)."""
    found = hierarchy()
    if found is None:
        return
    for group in found[1].glob(f"{PREFIX}*-*"):
        pid = _owner(group)
        if pid is not None and (pid == owner or not _alive(pid)):
            _remove(group)


def backstop() -> int | None:
    """The hard limit of a sandbox's group: the worker's address-space limit, when it has one."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def new_group(owner: int, limit: int | None) -> Path | None:
    """A new, empty memory group for a sandbox of the worker ``owner`` (None: the fallback)."""
    found = hierarchy()
    if found is None:
        return None
    version, base = found
    sweep(owner)
    _counter[0] += 1
    group = base / f"{PREFIX}{owner}-{_counter[0]}"
    try:
        group.mkdir()
        if limit:
            name = "memory.limit_in_bytes" if version == 1 else "memory.max"
            (group / name).write_text(str(limit))
    except OSError:
        _remove(group)
        return None
    return group


def join(group: Path, pid: int) -> bool:
    """Move ``pid`` (alone: before it starts anything) into ``group``."""
    try:
        (group / "cgroup.procs").write_text(str(pid))
        return True
    except OSError:
        return False


def release(owner: int, wait_s: float = 1.0) -> None:
    """Remove the groups of the worker ``owner`` once its processes are gone."""
    for group in groups_of(owner):
        _remove(group, wait_s)


def shared_bytes(group: Path) -> int:
    """The shared memory (memfd, SysV, POSIX shm, tmpfs) charged to ``group``."""
    try:
        lines = (group / "memory.stat").read_text().splitlines()
    except OSError:
        return 0
    values = dict(line.split(" ", 1) for line in lines if " " in line)
    return int(values.get("total_shmem", values.get("shmem", 0)))


def process_bytes(pid: int) -> tuple[int, int]:
    """``(anonymous pages, shared-memory pages)`` resident in ``pid`` (bytes), from
    ``/proc/<pid>/status`` (pages mapped from files are left out); raises OSError when it has
    ended."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssShmem"):
            fields[name] = int(value.split()[0]) * 1024
    if "RssAnon" not in fields:  # an old kernel: the resident set, undivided
        return fields.get("VmRSS", 0), 0
    return fields["RssAnon"], fields.get("RssShmem", 0)


def memfd_bytes(pids) -> int:
    """The memory of the memfd files open in ``pids`` (each file once)."""
    seen: dict[tuple[int, int], int] = {}
    for pid in pids:
        folder = f"/proc/{pid}/fd"
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            path = f"{folder}/{name}"
            try:
                if os.readlink(path).startswith("/memfd:"):
                    st = os.stat(path)
                    seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
            except OSError:
                continue
    return sum(seen.values())


def _detached(table: str) -> int:
    """The resident bytes of the segments of a ``/proc/sysvipc/shm`` that nobody has attached."""
    lines = table.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    total = 0
    for line in lines[1:]:
        row = dict(zip(header, line.split(), strict=False))
        with contextlib.suppress(KeyError, ValueError):
            if int(row["nattch"]) == 0:
                total += int(row.get("rss", row["size"]))
    return total


def _read_in_namespace(ns_path: str) -> int:
    """:func:`_detached` of the IPC namespace ``ns_path``, read by a thread that joins it."""
    found = [0]

    def run() -> None:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(ns_path, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWIPC) == 0:  # this thread only
                    found[0] = _detached(Path("/proc/sysvipc/shm").read_text())
            finally:
                os.close(fd)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(2.0)
    return found[0]


def sysv_bytes(pids) -> int:
    """The resident System V segments that no process attaches, in the private IPC namespaces
    of ``pids`` (attached ones are in their resident sets). Needs root; else 0."""
    if os.geteuid() != 0:
        return 0
    try:
        ours = os.stat("/proc/self/ns/ipc").st_ino
    except OSError:
        return 0
    spaces: dict[int, str] = {}
    for pid in pids:
        path = f"/proc/{pid}/ns/ipc"
        with contextlib.suppress(OSError):
            inode = os.stat(path).st_ino
            if inode != ours:
                spaces.setdefault(inode, path)
    return sum(_read_in_namespace(path) for path in spaces.values())
