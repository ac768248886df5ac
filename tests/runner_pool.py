"""The grading subprocesses of the tests: ``tests/mutation_runner.py``, kept for the session.

Every module that grades many implementations (the mutants, the variants, the alternative, the
stubs, the remote parity, the evidence) hands its jobs to the same two runner processes, one per
core, instead of starting two of its own: each imports TensorFlow once for the whole session,
not once per module. Every check is seeded on its own, so a verdict does not depend on the
process or on the jobs graded before it. A job whose code patches the grader's process (a forger
graded in-process) must not share it: :func:`grade_jobs` with ``fresh=True`` gives it new ones,
which read their jobs from their command line (the forger also writes into every descriptor it
finds: a runner's request and reply pipes would carry its forgeries).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("mutation_runner.py")
#: How long one process may take over its share of a call's jobs.
TIME_LIMIT = 1800


def _environment() -> dict[str, str]:
    return {**os.environ, "NICELAB_HINTS": "0"}  # first messages only: no fix unlocked by repeats


class Runner:
    """One ``mutation_runner.py --serve`` process: a request is a line ``jobs.json<TAB>out.json``
    on its request pipe, its answer a line ``ok`` (or ``error ...``) on its reply pipe."""

    def __init__(self):
        requests_r, self.requests = os.pipe()
        self.replies, replies_w = os.pipe()
        command = [sys.executable, str(RUNNER), "--serve", str(requests_r), str(replies_w)]
        self.proc = subprocess.Popen(command, pass_fds=(requests_r, replies_w), cwd=ROOT, env=_environment())
        os.close(requests_r)
        os.close(replies_w)
        self.pending = b""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, spec: Path, out: Path) -> None:
        os.write(self.requests, f"{spec}\t{out}\n".encode())

    def wait(self, timeout: float = TIME_LIMIT) -> None:
        """Until the request is answered; raises when the process fails it, dies or runs out of time."""
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.replies], [], [], timeout)
            chunk = os.read(self.replies, 4096) if ready else b""
            if not chunk:
                self.close()
                reason = "ran out of time" if not ready else f"ended with code {self.proc.returncode}"
                raise RuntimeError(f"the grading runner {reason}")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        if line != b"ok":
            raise RuntimeError(f"the grading runner failed a job: {line.decode(errors='replace')}")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for fd in (self.requests, self.replies):
            with contextlib.suppress(OSError):  # closed already
                os.close(fd)


class OneShot:
    """A runner process for one request only (``fresh``): it reads its jobs from its command line."""

    def __init__(self, spec: Path, out: Path):
        self.proc = subprocess.Popen([sys.executable, str(RUNNER), str(spec), str(out)], cwd=ROOT,
                                     env=_environment())

    def wait(self, timeout: float = TIME_LIMIT) -> None:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        if code != 0:
            raise subprocess.CalledProcessError(code, self.proc.args)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


_POOL: list[Runner] = []


def _pooled(count: int) -> list[Runner]:
    """``count`` live runners of the session's pool (started on first need)."""
    _POOL[:] = [runner for runner in _POOL if runner.alive()]
    while len(_POOL) < count:
        _POOL.append(Runner())
    return _POOL[:count]


@atexit.register
def _close_pool() -> None:
    while _POOL:
        _POOL.pop().close()


def grade_jobs(jobs: list[dict], workdir: Path, fresh: bool = False) -> dict[str, list]:
    """Grade ``jobs`` ({"name", "impl", "stage", "check"}, see ``mutation_runner.py``) and return
    name -> its results. The jobs go two by two (a job and its neighbour, often its twin in
    another mode) to whichever of the session's runners is free, one per core (at most 2), side
    by side; with ``fresh``, the jobs are dealt to processes of their own, ended after."""
    count = max(1, min(os.cpu_count() or 1, 2, (len(jobs) + 1) // 2))
    if fresh:
        return _one_shot(jobs, workdir, count)
    waiting = [(workdir / f"jobs-{k}.json", workdir / f"results-{k}.json", jobs[k:k + 2])
               for k in range(0, len(jobs), 2)]
    free, busy = _pooled(count), {}
    results: dict[str, list] = {}
    try:
        while waiting or busy:
            while free and waiting:
                spec, out, pair = waiting.pop(0)
                spec.write_text(json.dumps(pair))
                runner = free.pop()
                runner.send(spec, out)
                busy[runner.replies] = (runner, out)
            ready, _, _ = select.select(list(busy), [], [], TIME_LIMIT)
            if not ready:
                raise RuntimeError(f"the grading runners answered nothing in {TIME_LIMIT} s")
            runner, out = busy.pop(ready[0])
            runner.wait()
            results.update(json.loads(out.read_text()))
            free.append(runner)
    finally:
        for runner, _ in busy.values():  # a request left unanswered: never read its answer later
            runner.close()
    return results


def _one_shot(jobs: list[dict], workdir: Path, count: int) -> dict[str, list]:
    files = [(workdir / f"jobs-{i}.json", workdir / f"results-{i}.json") for i in range(count)]
    for i, (spec, _) in enumerate(files):
        spec.write_text(json.dumps([job for k, job in enumerate(jobs) if k // 2 % count == i]))
    runners = [OneShot(spec, out) for spec, out in files]
    results: dict[str, list] = {}
    for runner, (_, out) in zip(runners, files, strict=True):
        runner.wait()
        runner.close()
        results.update(json.loads(out.read_text()))
    return results


__all__ = ["grade_jobs"]
