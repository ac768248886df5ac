"""``nicelab watch``: a save re-runs the checks and prints their verdicts (no timings asserted;
``nicelab bench`` measures the latency)."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest
from mutation_support import ROOT

from nicelab.cli.commands.watch import stage_names
from nicelab.core.course import STAGE_NAMES
from nicelab.grader.watch import SUMMARY, Stream, Watcher, changed_files, snapshot, stages_for


def test_snapshot_sees_a_save(tmp_path):
    module = tmp_path / "coupling.py"
    module.write_text("x = 1\n")
    before = snapshot(tmp_path)
    module.write_text("x = 12\n")  # same second, another size
    assert changed_files(before, snapshot(tmp_path)) == [module]
    (tmp_path / "notes.txt").write_text("not python")
    assert changed_files(before, snapshot(tmp_path)) == [module]


def test_a_save_reruns_the_stage_of_the_saved_file():
    stages = ("coupling", "model", "likelihood")
    assert stages_for([ROOT / "model.py"], stages) == ("model",)
    assert stages_for([ROOT / "helpers.py"], stages) == stages  # any stage may import a helper
    assert stages_for([ROOT / "outliers.py"], ("coupling",)) == ()


@pytest.mark.parametrize("text, expected", [("1", ("coupling",)), ("model", ("model",)), ("6", ("affine",)),
                                            (None, STAGE_NAMES)])
def test_stage_argument(text, expected):
    assert stage_names(text) == expected


@pytest.mark.parametrize("text", ["0", str(len(STAGE_NAMES) + 1), "couplings"])
def test_unknown_stage_is_a_clear_error(text):
    with pytest.raises(ValueError, match="unknown stage"):
        stage_names(text)


def test_watcher_prints_a_verdict_after_each_save(tmp_path):
    (tmp_path / "coupling.py").write_text("x = 1\n")
    said: list[str] = []
    runs: list[tuple[str, ...]] = []

    def fake_run(stages, on_event):
        runs.append(stages)
        ok = len(runs) == 1
        return [SimpleNamespace(nodeid="checks/test_coupling.py::test_a", name="test_a", passed=ok,
                                outcome="passed" if ok else "failed", kind="" if ok else "failed",
                                message="" if ok else "Expected this; saw that.")]

    def save_while_waiting(_seconds):  # the student saves while the watcher polls
        (tmp_path / "coupling.py").write_text("x = 2  # edited\n")

    watcher = Watcher(str(tmp_path), ("coupling", "model"), say=said.append, run=fake_run,
                      sleep=save_while_waiting)
    assert watcher.loop(max_runs=2) == 2
    assert runs == [("coupling", "model"), ("coupling",)]
    assert said[-2] == "FAILED test_coupling.py::test_a - Expected this; saw that."
    assert said[-1].startswith(f"{SUMMARY} stage 1 (coupling): 0/1 pass")


def _read_lines(stream, into):
    for line in iter(stream.readline, ""):
        into.put(line.rstrip("\n"))
    into.put(None)


def _until(lines, predicate, timeout=300):
    seen = []
    while True:
        line = lines.get(timeout=timeout)
        assert line is not None, f"nicelab watch stopped: {seen}"
        seen.append(line)
        if predicate(line):
            return seen


@pytest.mark.slow
def test_watch_reports_a_broken_save_then_a_fixed_one(tmp_path):
    impl = tmp_path / "mine"
    shutil.copytree(ROOT / "solutions", impl, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "nicelab.cli", "watch", "1", "--impl", str(impl),
                                "--max-runs", "3"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, cwd=ROOT, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    try:
        first = _until(lines, lambda line: line.startswith(SUMMARY))
        assert "stage 1 (coupling): all pass" in first[-1]
        module = impl / "coupling.py"
        source = module.read_text()
        module.write_text(source.replace("y_change - self.m(y_keep)", "y_change + self.m(y_keep)"))
        broken = _until(lines, lambda line: line.startswith(SUMMARY))
        failed = [line for line in broken if line.startswith("FAILED test_coupling.py::")]
        assert any("test_backward_undoes_forward[0]" in line and "subtract" in line for line in failed)
        assert "all pass" not in broken[-1]
        module.write_text(source)
        fixed = _until(lines, lambda line: line.startswith(SUMMARY))
        assert "all pass" in fixed[-1]
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_one_message_failing_many_checks_is_printed_once():
    from nicelab.grader.watch import format_verdict

    stub = "Not implemented yet - Stage 1 (coupling): implement partition."
    results = [SimpleNamespace(nodeid=f"checks/test_coupling.py::test_{i}", name=f"test_{i}", passed=False,
                               outcome="failed", kind="not_implemented", message=stub) for i in range(3)]
    verdict = format_verdict(("coupling",), results, 0.5)
    assert verdict.lines[0] == ("NOT DONE test_coupling.py::test_0 (and 2 more) - Stage 1 (coupling): "
                                "implement partition.")
    assert verdict.lines[1].startswith(f"{SUMMARY} stage 1 (coupling): 0/3 pass")


def _result(name, passed, message="", kind="failed"):
    return SimpleNamespace(nodeid=f"checks/test_likelihood.py::{name}", name=name, passed=passed,
                           outcome="passed" if passed else "failed", kind="" if passed else kind,
                           message=message)


def test_verdicts_stream_before_the_slow_check_ends(tmp_path):
    """Each failure is printed as its check ends, and a "so far" line before a slow check starts
    once the run has lasted a while; the end of the run prints the summary only."""
    (tmp_path / "likelihood.py").write_text("x = 1\n")
    said: list[str] = []
    seen_before_the_end: list[str] = []
    now = [0.0]

    def fake_run(stages, on_event):
        on_event("start", "checks/test_likelihood.py::test_a")
        on_event("result", _result("test_a", True))
        on_event("result", _result("test_b", False, "Expected this; saw that."))
        on_event("result", _result("test_c", False, "Expected this; saw that."))
        now[0] = 5.0
        on_event("start", "checks/test_likelihood.py::test_training")
        seen_before_the_end.extend(said)
        return [_result("test_a", True), _result("test_b", False, "Expected this; saw that."),
                _result("test_c", False, "Expected this; saw that."), _result("test_training", True)]

    watcher = Watcher(str(tmp_path), ("likelihood",), say=said.append, run=fake_run)
    stream = Stream(said.append, progress_after=1.0, clock=lambda: now[0])
    fake_run(("likelihood",), stream)
    assert said == ["FAILED test_likelihood.py::test_b - Expected this; saw that.",
                    "... 1/3 pass so far (5.0 s); now test_training"]
    said.clear()
    seen_before_the_end.clear()
    verdict = watcher.check()
    assert seen_before_the_end == ["FAILED test_likelihood.py::test_b - Expected this; saw that."]
    assert said[0] == "FAILED test_likelihood.py::test_b - Expected this; saw that."
    assert said[-1].startswith(f"{SUMMARY} stage 3 (likelihood): 2/4 pass")
    assert verdict.lines[0] == "FAILED test_likelihood.py::test_b (and 1 more) - Expected this; saw that."
    assert len(said) == 2  # the failure once, as it came, then the summary (a fast run: no "so far")
