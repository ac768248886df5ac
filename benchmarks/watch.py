"""Section 1 of the bench: ``nicelab watch``'s latency, from a save to the printed verdict.

``nicelab watch STAGE`` runs as a subprocess on a copy of the reference; the bench changes one
function of the stage's module (a no-op statement added to its body: a save that changes that
function's code, not just a comment) and times until the watcher prints its verdict's summary
line, and until its first line after the save. The first run (TensorFlow and the checks
warming up) is reported apart. Stage 3 is measured twice: a change to ``sample`` (its cached
training run is reused) and a change to ``train_step`` (the run trains again). Every row states
the load average of the machine during its run: on shared cores the figures move with it.
"""

from __future__ import annotations

import ast
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from nicelab.core.course import STAGE_NAMES
from nicelab.core.impl import PROJECT_ROOT
from nicelab.grader.watch import SUMMARY

#: The issue's goal for every stage on 2 cores.
WATCH_GOAL_S = 2.0
#: The function each stage's save changes (stage 3: one its training run does not use).
EDITED = {"coupling": "forward", "model": "forward", "likelihood": "sample", "inpainting": "ascent_step",
          "outliers": "choose_threshold", "affine": "log_likelihood", "mixing": "matrix"}


def edit_function(path: Path, name: str, n: int) -> None:
    """Add ``_save = n`` to the body of the first function ``name`` of the module at ``path``
    (after its docstring): a save that changes that function and nothing else."""
    source = path.read_text()
    tree = ast.parse(source)
    node = next((f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                 and f.name == name), None)
    if node is None:
        raise ValueError(f"{path} has no function {name!r}")
    first = node.body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    after = first.end_lineno if docstring else first.lineno - 1
    lines = source.splitlines(keepends=True)
    lines.insert(after, " " * first.col_offset + f"_save = {n}\n")
    temporary = path.with_name(f".{path.name}.saving")
    temporary.write_text("".join(lines))
    os.replace(temporary, path)  # one change, as an editor's atomic save: never a half-written file


def _lines(stream, into: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        into.put((time.perf_counter(), line.rstrip("\n")))
    into.put((time.perf_counter(), None))


def _drain(lines: queue.Queue) -> None:
    """Drop the lines already read from the watcher."""
    while True:
        try:
            _, line = lines.get_nowait()
        except queue.Empty:
            return
        if line is None:
            raise RuntimeError("nicelab watch stopped")


def _next_summary(lines: queue.Queue, timeout: float) -> tuple[float, float, str]:
    """(when the first line came, when the summary line came, the summary line)."""
    deadline, first = time.monotonic() + timeout, None
    while True:
        when, line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        if line is None:
            raise RuntimeError("nicelab watch stopped before printing a verdict")
        first = when if first is None and not line.startswith("---") else first
        if line.startswith(SUMMARY):
            return first, when, line


def watch_latency(stage: str, saves: int = 5, function: str | None = None, timeout: float = 300.0) -> dict:
    """``{"first_s", "latencies_s", "first_line_s", "median_s", "max_s", "summary", "load"}`` for
    ``stage``: the first verdict's delay from start, then save-to-verdict for ``saves`` saves
    that change ``function`` (default: the stage's :data:`EDITED`), and the 1-minute load
    average at the end."""
    folder = Path(tempfile.mkdtemp(prefix="nicelab-watch-bench-")) / "impl"
    shutil.copytree(PROJECT_ROOT / "solutions", folder, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                                       os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "nicelab.cli", "watch", stage, "--impl", str(folder), "--interval", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=PROJECT_ROOT, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True).start()
    try:
        _, done, summary = _next_summary(lines, timeout)
        first = done - start
        latencies, first_lines = [], []
        for n in range(saves):
            time.sleep(0.3)  # a pause between two saves, as when typing
            _drain(lines)  # a verdict printed since (a second run of the last save) is not this save's
            saved = time.perf_counter()
            edit_function(folder / f"{stage}.py", function or EDITED[stage], n)
            line, done, summary = _next_summary(lines, timeout)
            latencies.append(done - saved)
            first_lines.append(line - saved)
        load = os.getloadavg()[0]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(folder.parent, ignore_errors=True)
    return {"first_s": first, "latencies_s": latencies, "first_line_s": first_lines,
            "median_s": statistics.median(latencies), "max_s": max(latencies), "summary": summary,
            "load": load}


def watch_rows(stages: tuple[str, ...] = STAGE_NAMES, saves: int = 5, train_step: bool = True) -> list:
    """Bench rows: the median and worst save-to-verdict latency per stage, for a change to one
    function (:data:`EDITED`), and with ``train_step`` one for a change to stage 3's
    ``train_step`` (its training run trains again; the quick checks' verdicts stream first)."""
    from benchmarks import Row, verdict

    cases = [(stage, EDITED[stage]) for stage in stages]
    if train_step and "likelihood" in stages:
        cases.append(("likelihood", "train_step"))
    rows = []
    for stage, function in cases:
        got = watch_latency(stage, saves, function)
        number = STAGE_NAMES.index(stage) + 1
        retrains = function == "train_step"
        rows.append(Row(1, f"nicelab watch {number} ({stage}): save of {function} to verdict (median of "
                           f"{saves}, worst)",
                        f"{got['median_s']:.2f} s, worst {got['max_s']:.2f} s; first line "
                        f"{statistics.median(got['first_line_s']):.2f} s (first run {got['first_s']:.1f} s; "
                        f"load average {got['load']:.2f}; {got['summary'].removeprefix(SUMMARY).strip()})",
                        "info: retrains" if retrains else f"< {WATCH_GOAL_S:.0f} s",
                        "info" if retrains else verdict(got["max_s"] < WATCH_GOAL_S), got))
    return rows


def print_watch_latency(stages: tuple[str, ...] = STAGE_NAMES, saves: int = 5) -> None:
    """Print the figures (``python -m benchmarks.watch [STAGE ...]``)."""
    for row in watch_rows(stages, saves):
        print(f"{row.measure}: {row.value} (goal {row.goal}: {row.status})", flush=True)


if __name__ == "__main__":
    print_watch_latency(tuple(sys.argv[1:]) or STAGE_NAMES)
