"""One submission's grading process: ``python -m nicelab.grader.worker IMPL --events-fd N [options]``.

Started by :mod:`nicelab.grader.batch` in its own process group, with resource limits, in a
scratch working directory, its output going to a capped pipe. It runs the checks (and the
hidden checks) on ``IMPL`` and decides their verdicts; with ``--remote`` (what the batch
always asks) the submission's modules run in child processes that only answer the checks'
requests (``--remote sandbox``: in bubblewrap), so that no student code runs in this process.
It writes one JSON line per event to the inherited pipe ``N`` as it goes (``--collect-only``:
only the ``collected`` event, without running anything; the batch's own list of expected checks):

    {"event": "collected", "checks": [[nodeid, stage, hidden], ...]}   (once per session)
    {"event": "start", "nodeid": ...}                                 (a check begins)
    {"event": "result", "result": {CheckResult.to_dict()}}            (a check is done)
    {"event": "done"}                                                 (all checks ran)

so that the parent knows, when it has to stop a hanging or crashed process, which checks ran,
which one was running and which never started.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
import threading
import time

from nicelab.core.quiet import import_tensorflow
from nicelab.grader.runner import run_checks


def _watch_parent(parent: int) -> None:
    """Exit when the batch that started this process is gone (killed, crashed): a hanging
    submission must not outlive its grader (a backstop for PR_SET_PDEATHSIG)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(70)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the thread that started it ends (prctl
    PR_SET_PDEATHSIG): no Python code, hence no lock, is needed for that to happen."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the watchdog thread remains


def set_limits(memory_mb: int, file_mb: int) -> None:
    """Backstops for the parent's limits: no core dumps; an address space of 4x the memory
    limit (a single giant allocation fails at once with MemoryError instead of swamping the
    machine before the parent's next look); files of at most ``file_mb`` (a bigger write fails
    with an OSError instead of filling the disk)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb > 0:
        size = 4 * memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (size, size))
    if file_mb > 0:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        size = file_mb * 2**20
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def _remote_settings(args: argparse.Namespace, stages: tuple[str, ...] | None) -> None:
    """The settings of the stages' processes; the first stage's process starts now, to import
    TensorFlow beside this one (:mod:`nicelab.grader.stage_processes`)."""
    from nicelab.core.course import STAGE_NAMES
    from nicelab.core.impl import ImplementationError, resolve
    from nicelab.grader import stage_processes

    stage_processes.SETTINGS.update(scratch_mb=args.scratch_mb, threads=args.threads, bwrap=args.bwrap,
                                    uid=args.child_uid)
    if not args.collect_only:
        with contextlib.suppress(ImplementationError):  # the checks say why it cannot load
            stage_processes.prefetch(resolve(args.impl), (stages or STAGE_NAMES)[0], args.remote,
                                     hosted=len(stages or STAGE_NAMES) > 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nicelab.grader.worker")
    parser.add_argument("impl")
    parser.add_argument("--events-fd", type=int, required=True, help="the pipe the events go to")
    parser.add_argument("--collect-only", action="store_true")
    parser.add_argument("--stages", default="")
    parser.add_argument("--extra-checks", action="append", default=[])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--file-mb", type=int, default=0)
    parser.add_argument("--parent", type=int, default=0, help="the pid of the process that started it")
    parser.add_argument("--remote", choices=["process", "sandbox"], default=None,
                        help="run the graded modules in child processes (in bubblewrap: sandbox)")
    parser.add_argument("--scratch-mb", type=int, default=256, help="the sandbox's private /tmp, MB")
    parser.add_argument("--bwrap", default=None, help="the bwrap binary (--remote sandbox)")
    parser.add_argument("--child-uid", type=int, default=None,
                        help="run the graded modules as this unprivileged user (--remote process, as root)")
    args = parser.parse_args(argv)
    sys.dont_write_bytecode = True
    set_limits(args.memory_mb, args.file_mb)
    parent = args.parent or os.getppid()
    die_with_parent()
    if os.getppid() != parent:  # the batch died before prctl took effect
        os._exit(70)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()

    events = os.fdopen(args.events_fd, "w", buffering=1)

    def emit(kind: str, payload) -> None:
        if kind == "start":
            record = {"event": "start", "nodeid": payload}
        elif kind == "collected":
            record = {"event": "collected", "checks": payload}
        else:
            record = {"event": "result", "result": payload.to_dict()}
        events.write(json.dumps(record) + "\n")
        events.flush()

    stages = tuple(s for s in args.stages.split(",") if s) or None
    if args.remote:
        _remote_settings(args, stages)
    import_tensorflow(args.threads)

    run_checks(args.impl, stages, extra_dirs=tuple(args.extra_checks), quiet=True, capture="no",
               on_event=emit, collect_only=args.collect_only, remote=args.remote)
    events.write(json.dumps({"event": "done"}) + "\n")
    events.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no interpreter teardown: a student's atexit handler cannot change the verdict


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fork-server"]:  # the batch's server of workers (isolation.forkserver)
        from nicelab.grader.isolation.forkserver import serve

        die_with_parent()
        serve(int(sys.argv[2]), main)
    sys.exit(main())
