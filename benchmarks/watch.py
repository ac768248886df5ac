"""Section 1 of the bench: ``nicelab watch``'s latency, from a save to the printed verdict.

``nicelab watch STAGE`` runs as a subprocess on a copy of the reference; the bench appends a
comment line to the stage's module (a save) and times until the watcher prints its verdict's
summary line. The first run (TensorFlow and the checks warming up) is reported apart.
"""

from __future__ import annotations

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

from nicelab.core.impl import PROJECT_ROOT
from nicelab.grader.watch import SUMMARY

#: The issue's goal for stages 1-2 on 2 cores.
WATCH_GOAL_S = 2.0


def _lines(stream, into: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        into.put(line.rstrip("\n"))
    into.put(None)


def _next_summary(lines: queue.Queue, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        if line is None:
            raise RuntimeError("nicelab watch stopped before printing a verdict")
        if line.startswith(SUMMARY):
            return line


def watch_latency(stage: str, saves: int = 5, timeout: float = 300.0) -> dict:
    """``{"first_s", "latencies_s", "median_s", "max_s", "summary"}`` for ``stage``: the first
    verdict's delay from start, then save-to-verdict for ``saves`` saves."""
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
        summary = _next_summary(lines, timeout)
        first = time.perf_counter() - start
        latencies = []
        module = folder / f"{stage}.py"
        for n in range(saves):
            time.sleep(0.3)  # a pause between two saves, as when typing
            saved = time.perf_counter()
            with module.open("a") as handle:
                handle.write(f"# save {n}\n")
            summary = _next_summary(lines, timeout)
            latencies.append(time.perf_counter() - saved)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(folder.parent, ignore_errors=True)
    return {"first_s": first, "latencies_s": latencies, "median_s": statistics.median(latencies),
            "max_s": max(latencies), "summary": summary}


def watch_rows(stages: tuple[str, ...] = ("coupling", "model"), saves: int = 5) -> list:
    """Bench rows: the median and worst save-to-verdict latency per stage."""
    from benchmarks import Row, verdict

    rows = []
    for stage in stages:
        got = watch_latency(stage, saves)
        rows.append(Row(1, f"nicelab watch {stage}: save to verdict (median of {saves}, worst)",
                        f"{got['median_s']:.2f} s, worst {got['max_s']:.2f} s (first run "
                        f"{got['first_s']:.1f} s; {got['summary'].removeprefix(SUMMARY).strip()})",
                        f"< {WATCH_GOAL_S:.0f} s", verdict(got["max_s"] < WATCH_GOAL_S), got))
    return rows


def print_watch_latency(stages: tuple[str, ...] = ("coupling", "model"), saves: int = 5) -> None:
    """Print the figure (``python -m benchmarks.watch``)."""
    for row in watch_rows(stages, saves):
        print(f"{row.measure}: {row.value} (goal {row.goal}: {row.status})")


if __name__ == "__main__":
    print_watch_latency(tuple(sys.argv[1:]) or ("coupling", "model"))
