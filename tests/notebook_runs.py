"""Run the course notebooks two at a time, each in a process of its own (the slow notebook tests).

:func:`run` executes one notebook (:func:`nicelab.authoring.notebooks.execute`, which sets the
kernel's environment in its own process's ``os.environ``: one notebook per process) and returns
plain data; :func:`run_all` runs many side by side, one per core.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def run(path: str, env: dict[str, str], timeout: float) -> dict:
    """``{"cells", "seconds", "error"}``: the executed notebook's cells, or the error that stopped
    it (``{"ename", "evalue", "text"}`` of nbclient's ``CellExecutionError``)."""
    from nbclient.exceptions import CellExecutionError

    from nicelab.authoring import notebooks

    start = time.perf_counter()
    try:
        executed = notebooks.execute(Path(path), env, timeout=timeout)
    except CellExecutionError as err:
        return {"cells": None, "seconds": time.perf_counter() - start,
                "error": {"ename": err.ename, "evalue": err.evalue, "text": str(err)}}
    return {"cells": [dict(cell) for cell in executed.cells], "seconds": time.perf_counter() - start,
            "error": None}


def run_all(jobs: dict[str, tuple[str, dict[str, str], float]]) -> dict[str, dict]:
    """``{key: run(*job)}`` for ``{key: (path, env, timeout)}``, one process per core (at most
    2), each a fresh interpreter (no TensorFlow state forked from the test process)."""
    workers = max(1, min(os.cpu_count() or 1, 2))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {key: pool.submit(run, *job) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}
