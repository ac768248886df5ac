"""The command line as a student and an instructor use it: `nicelab train`, and one-line
explanations (no traceback) for every kind of bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from mutation_support import ROOT

from nicelab.cli import main
from nicelab.core import runs
from nicelab.core.config import PRESETS


@pytest.mark.slow
def test_train_parabola_writes_weights_figures_and_the_gap(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "parabola", "--impl", "solutions", "--epochs", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test NLL:" in printed and "gap:" in printed and "valid NLL" in printed
    for name in ("weights.npz", "run.json", "result.json", "loss.png", "density.png", "samples.png"):
        assert (out / name).stat().st_size > 0, name
    result = json.loads((out / "result.json").read_text())
    assert result["gap"] == pytest.approx(result["test_nll"] - 4.2242, abs=1e-3)


@pytest.mark.slow
def test_train_digits_reports_bits_per_dimension(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--impl", "solutions", "--epochs", "1",
                 "--hidden-units", "16", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "bits per dimension" in printed and "nats per image" in printed
    assert (out / "samples.png").exists() and not (out / "density.png").exists()


@pytest.mark.slow
def test_trained_weights_are_reused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NICELAB_RUNS", str(tmp_path))
    assert main(["train", "parabola", "--impl", "solutions", "--epochs", "1", "--quiet"]) == 0
    from dataclasses import replace

    from nicelab.core import data as data_mod
    from nicelab.core.impl import load_all

    config = replace(PRESETS["parabola"], epochs=1)
    modules = load_all("solutions", runs.TRAINED_STAGES)
    trained, directory = runs.load_or_train(modules, data_mod.load("parabola"), config, "solutions")
    assert "using the trained model" in capsys.readouterr().out
    assert directory.parent == tmp_path / "parabola" and trained.history.steps > 0


@pytest.mark.parametrize("args, message", [
    (["train", "parabola", "--impl", "lessons"], "not implemented yet - Stage"),
    (["train", "parabola", "--impl", "/no/such/folder"], "cannot find the implementation"),
    (["train", "parabola", "--impl", "solutions", "--epochs", "0"], "--epochs must be at least 1"),
    (["train", "parabola", "--impl", "solutions", "--lr", "-1"], "--lr must be positive"),
])
def test_bad_input_gets_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) <= 2


def test_missing_stage_is_explained(tmp_path, capsys):
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(ROOT / "solutions" / "coupling.py", partial / "coupling.py")
    assert main(["train", "parabola", "--impl", str(partial)]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.py is missing" in err and "Traceback" not in err


def test_unknown_data_set_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "cifar"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'cifar'" in capsys.readouterr().err


@pytest.mark.slow
def test_nan_loss_is_explained(tmp_path, capsys):
    broken = shutil.copytree(ROOT / "solutions", tmp_path / "nan_impl")
    source = (broken / "likelihood.py").read_text()
    (broken / "likelihood.py").write_text(source.replace(
        "return prior.log_prob(h) + model.log_det_jacobian()",
        "return prior.log_prob(h) + model.log_det_jacobian() * float('nan')"))
    assert main(["train", "parabola", "--impl", str(broken), "--epochs", "1", "--out",
                 str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite at epoch 1" in err and "Traceback" not in err


def test_help_is_fast_and_lists_the_commands():
    done = subprocess.run([sys.executable, "-m", "nicelab.cli", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    assert "train" in done.stdout and "stubs" in done.stdout
    assert "tensorflow" not in done.stderr.lower()
