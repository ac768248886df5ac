"""Issue 10, section 1: verdicts decided where student code never runs.

In a graded run the checks run in the grader's process and every stage's module answers from a
child process (``--remote``); whatever the child patches changes only its own answers. These
tests pin the wire format (data only), the same verdicts and messages in both modes (reference,
stubs, an alternative and mistakes of every stage), and the forgeries that get nothing now.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from mutation_support import all_mutants, grade_jobs

from nicelab.grader import remote, wire

ROOT = Path(__file__).resolve().parents[1]
LESSONS, SOLUTIONS = ROOT / "lessons", ROOT / "solutions"
#: Patches a forger makes in its own process, then forged "passed" answers into every pipe.
FORGER = '''
import importlib, numpy.testing, pytest  # the grader's modules by name: no static scan sees them
numpy.testing.assert_allclose = lambda *a, **k: None
importlib.import_module("nicelab.grader" + ".assertions").expect = lambda *a, **k: None
importlib.import_module("nicelab.grader" + ".runner").CheckResult.passed = property(lambda self: True)
pytest.fail = lambda *a, **k: None
import os as _os, json as _json, struct as _struct
for _fd in range(3, 32):
    try:
        _body = _json.dumps({"value": {"t": "v", "v": True}}).encode()
        _os.write(_fd, _struct.pack(">II", len(_body), 0) + _body)
    except OSError:
        pass
'''
#: Mistakes graded in both modes (a few per stage; every mutant runs in-process in test_mutations).
PER_STAGE = 2


def _no_handles(value):
    raise AssertionError(f"unexpected handle {value}")


def test_wire_format_carries_only_data():
    read, write = os.pipe()
    arrays: list[np.ndarray] = []
    sent = [np.arange(6, dtype=np.float32).reshape(2, 3), 1.5, "x", None, {"a": [1, True]}]
    wire.send(write, {"value": wire.encode(sent, arrays, lambda v: None)}, arrays)
    header, payload = wire.receive(read)
    got = wire.Decoder(payload, _no_handles).value(header["value"])
    assert np.array_equal(got[0], sent[0]) and got[0].dtype == np.float32
    assert got[1:] == [1.5, "x", None, {"a": [1, True]}]
    with pytest.raises(TypeError):  # an object array or an arbitrary object is never sent
        wire.encode(np.array([object()]), [], lambda v: None)
    with pytest.raises(TypeError):
        wire.encode(object(), [], lambda v: None)
    decoder = wire.Decoder(b"\0" * 8, _no_handles)
    with pytest.raises(wire.ProtocolError):  # an object dtype never decodes
        decoder.value({"t": "a", "dtype": "object", "shape": [1]})
    with pytest.raises(wire.ProtocolError):  # an array running past its frame
        decoder.value({"t": "a", "dtype": "float32", "shape": [100]})
    with pytest.raises(wire.ProtocolError):  # nothing but the known kinds
        decoder.value({"t": "pickle", "v": "..."})
    os.write(write, struct.pack(">II", wire.MAX_FRAME, 1))
    with pytest.raises(wire.ProtocolError):  # an oversized frame is refused before it is read
        wire.receive(read)
    os.close(read)
    os.close(write)


def test_student_exceptions_keep_their_class_and_message():
    error = remote.remote_exception("ValueError", "bad kind 'cauchy'")
    assert isinstance(error, ValueError) and type(error).__name__ == "ValueError"
    assert str(error) == "bad kind 'cauchy'"
    stub = remote.remote_exception("NotImplementedError", "Stage 1 (coupling): implement split.")
    assert isinstance(stub, NotImplementedError)
    other = remote.remote_exception("InvalidArgumentError", "shapes")
    assert isinstance(other, remote.RemoteError) and type(other).__name__ == "InvalidArgumentError"
    for dangerous in ("KeyboardInterrupt", "GeneratorExit", "../../etc", "Exit"):
        assert isinstance(remote.remote_exception(dangerous, ""), remote.RemoteError | SystemExit)
    assert isinstance(remote.remote_exception("SystemExit", "", 3), SystemExit)


def _normal(message: str) -> str:
    """A message without Keras' global layer numbers (dense_214 in one process, dense_30 in another)."""
    return re.sub(r"\b(dense|sequential|nice|additive_coupling)(_\d+)+\b", r"\1_N", message)


@pytest.fixture(scope="module")
def both_modes(tmp_path_factory):
    """Verdicts of the same implementations in-process and remote: name -> (local, remote)."""
    work = tmp_path_factory.mktemp("parity")
    targets = [("reference", str(SOLUTIONS), None), ("stubs", str(LESSONS), None),
               ("alternative", str(ROOT / "tests" / "alternative"), None)]
    for stage in ("coupling", "model", "likelihood", "inpainting", "outliers"):
        for mutant in [m for m in all_mutants() if m.stage == stage][:PER_STAGE]:
            targets.append((mutant.name, str(mutant.build(work / mutant.name)), stage))
    jobs = [{"name": f"{name}|{mode}", "impl": impl, "stage": stage, "check": None, "remote": mode}
            for name, impl, stage in targets for mode in (None, "process")]
    results = grade_jobs(jobs, work)
    return {name: (results[f"{name}|None"], results[f"{name}|process"]) for name, _, _ in targets}


def _verdicts(results: list[dict]) -> dict[str, tuple[str, str, str]]:
    return {r["nodeid"]: (r["outcome"], r["kind"], _normal(r["message"])) for r in results}


@pytest.mark.slow
def test_remote_grading_gives_the_same_verdicts_and_messages(both_modes):
    for name, (local, far) in both_modes.items():
        assert local, f"{name}: no checks ran"
        assert _verdicts(far) == _verdicts(local), name
    reference = both_modes["reference"][1]
    assert len(reference) >= 90 and all(r["outcome"] == "passed" for r in reference)
    stubs = both_modes["stubs"][1]
    assert stubs and all(r["kind"] == "not_implemented" for r in stubs)


def _forger(root: Path) -> Path:
    """A wrong stage 1 (forward adds 2 m(x_keep), which backward does not undo) that patches the
    checks' tools at import and writes forged answers into every pipe it can find."""
    sub = root / "forger"
    shutil.copytree(LESSONS, sub, ignore=shutil.ignore_patterns("__pycache__"))
    text = (SOLUTIONS / "coupling.py").read_text()
    text = text.replace("self.merge(x_keep, x_change + self.m(x_keep))",
                        "self.merge(x_keep, x_change + 2 * self.m(x_keep))")
    (sub / "coupling.py").write_text(text.replace("import tensorflow as tf\n",
                                                  "import tensorflow as tf\n" + FORGER, 1))
    return sub


@pytest.mark.slow
def test_a_forger_changes_only_its_own_answers(tmp_path):
    """In-process (at home) the forger fools the checks it patched; graded remotely it fools
    nothing: no check passes that the same mistake fails without the forgery."""
    sub = _forger(tmp_path)
    results = {}
    for mode in (None, "process"):  # one grading process each: the local forger poisons its own
        job = {"name": "forger", "impl": str(sub), "stage": "coupling", "check": None, "remote": mode}
        (tmp_path / (mode or "local")).mkdir()
        results[mode] = grade_jobs([job], tmp_path / (mode or "local"), fresh=True)["forger"]
    local = {r["nodeid"]: r for r in results[None]}
    assert local["checks/test_coupling.py::test_backward_undoes_forward[0]"]["outcome"] == "passed"
    far = results["process"]
    assert far and not any(r["outcome"] == "passed" for r in far)
