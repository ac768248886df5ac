"""Issue 10, section 1 (prototype): stage 1's verdicts decided in the grader's process from the
arrays a sandboxed child answers with (``nicelab grade --verdicts-outside coupling``); whatever
the child patches changes only its own answers."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from nicelab.grader import remote

ROOT = Path(__file__).resolve().parents[1]
LESSONS, SOLUTIONS = ROOT / "lessons", ROOT / "solutions"
FORGER = '''
import numpy.testing, pytest, nicelab.grader.assertions, nicelab.grader.runner
numpy.testing.assert_allclose = lambda *a, **k: None
nicelab.grader.assertions.expect = lambda *a, **k: None
nicelab.grader.runner.CheckResult.passed = property(lambda self: True)
pytest.fail = lambda *a, **k: None
import os as _os, json as _json, struct as _struct
for _fd in range(3, 32):  # a forged "passed" answer into every pipe it can find
    try:
        _body = _json.dumps({"value": {"t": "v", "v": True}}).encode()
        _os.write(_fd, _struct.pack(">II", len(_body), 0) + _body)
    except OSError:
        pass
'''


def _submission(tmp_path: Path, name: str, coupling: Path, prepend: str = "") -> Path:
    sub = tmp_path / name
    shutil.copytree(LESSONS, sub, ignore=shutil.ignore_patterns("__pycache__"))
    text = coupling.read_text()
    if prepend:
        text = text.replace("import tensorflow as tf\n", "import tensorflow as tf\n" + prepend, 1)
    (sub / "coupling.py").write_text(text)
    return sub


def test_wire_format_carries_only_data():
    read, write = os.pipe()
    arrays: list[np.ndarray] = []
    value = remote.encode([np.arange(6, dtype=np.float32).reshape(2, 3), 1.5, "x", None], arrays)
    remote.send(write, {"value": value}, arrays)
    header, payload = remote.receive(read)
    got = remote.decode(header["value"], payload, [0])
    assert np.array_equal(got[0], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert got[1:] == [1.5, "x", None]
    with pytest.raises(remote.ProtocolError):
        remote.encode(np.array([object()]), [])
    with pytest.raises(remote.ProtocolError):  # an object dtype never decodes
        remote.decode({"t": "a", "dtype": "object", "shape": [1]}, b"\0" * 8, [0])
    with pytest.raises(remote.ProtocolError):  # an array running past its frame
        remote.decode({"t": "a", "dtype": "float32", "shape": [100]}, b"\0" * 8, [0])
    os.write(write, struct.pack(">II", remote.MAX_FRAME, 1))
    with pytest.raises(remote.ProtocolError):  # an oversized frame is refused before it is read
        remote.receive(read)
    os.close(read)
    os.close(write)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (.ci/run installs it)")
def test_batch_with_verdicts_outside_stops_the_forgeries(tmp_path):
    """``nicelab grade --verdicts-outside coupling``: the in-process forgeries that beat the checks
    running beside the student's code (tests/test_sandbox.py's xfail) get no mark here."""
    from attack_submissions import ANCHOR, ATTACKS, FORGERIES, PRELUDE
    from test_sandbox import nicelab

    subs = tmp_path / "subs"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "tests" / "alternative", subs / "honest", ignore=ignore)
    shutil.copytree(LESSONS, subs / "stub", ignore=ignore)
    for name in FORGERIES:
        sub = _submission(subs, name, LESSONS / "coupling.py")
        text = (sub / "coupling.py").read_text()
        (sub / "coupling.py").write_text(text.replace(ANCHOR, ANCHOR + PRELUDE + ATTACKS[name], 1))
    _submission(subs, "forger", LESSONS / "coupling.py", FORGER)
    mutant = tmp_path / "mutant_coupling.py"  # backward no longer undoes forward
    mutant.write_text((SOLUTIONS / "coupling.py").read_text().replace(
        "self.merge(x_keep, x_change + self.m(x_keep))", "self.merge(x_keep, x_change + 2 * self.m(x_keep))"))
    _submission(subs, "mutant", mutant)
    run = nicelab("grade", str(subs), "--json", str(tmp_path / "r.json"), "--stage", "coupling",
                  "--verdicts-outside", "coupling", "--jobs", "3", "--timeout", "300")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {row["name"]: row for row in json.loads((tmp_path / "r.json").read_text())["submissions"]}
    assert rows["honest"]["points"] == rows["honest"]["max_points"] > 0
    assert rows["honest"]["stages"][0]["total"] == 7
    for name in ("stub", "forger", *FORGERIES):
        assert rows[name]["points"] == 0, (name, rows[name]["stages"][0]["message"])
    checks = {c["name"]: c for c in rows["mutant"]["stages"][0]["checks"]}
    assert not checks["round_trips"]["passed"]
    assert "backward(forward(x)) == x" in checks["round_trips"]["message"]
    assert checks["one_part_changes"]["passed"]  # the verdicts say which property broke
