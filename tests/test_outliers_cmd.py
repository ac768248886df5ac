"""``nicelab outliers`` on the parabola and digits (tiny models, trained into a temporary runs
folder), the provided corruptions and the input checks of the reference stage 5."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nicelab.core.quiet import import_tensorflow

import_tensorflow()

from nicelab import cli  # noqa: E402
from nicelab.core import runs  # noqa: E402
from nicelab.tasks import corruptions  # noqa: E402
from solutions import outliers as reference  # noqa: E402

TINY = ["--impl", "solutions", "--epochs", "2", "--hidden-units", "16", "--hidden-layers", "1", "--quiet"]


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "RUNS_DIR", tmp_path / "runs")
    return tmp_path / "runs"


@pytest.mark.slow
def test_outliers_digits_writes_figures_and_table(runs_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["outliers", "digits", *TINY, "--examples", "60", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    for name in ("outliers_histograms.png", "outliers_levels.png", "outliers_roc.png", "outliers.json"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "outliers.json").read_text())
    kinds = {row["kind"] for row in summary["rows"]}
    assert kinds == {"noise", "rotate", "contrast", "morph"}
    assert summary["morph_targets"] == "photo patches"
    for row in summary["rows"]:
        assert 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1 and 0 <= row["auroc"] <= 1
    assert "AUROC" in printed and "threshold tau" in printed
    if summary["failure_case"] is not None:  # found by this tiny model: then the remedy is shown
        assert (out / "outliers_typicality.png").exists()
        assert 0 <= summary["failure_case"]["two_sided_batch_detection"] <= 1


@pytest.mark.slow
def test_outliers_parabola(runs_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["outliers", "parabola", *TINY, "--examples", "500", "--out", str(out)]) == 0
    summary = json.loads((out / "outliers.json").read_text())
    assert {row["kind"] for row in summary["rows"]} == {"noise"}
    assert (out / "outliers_roc.png").exists()


def test_outliers_rejects_image_kinds_on_the_parabola(runs_dir, capsys):
    assert cli.main(["outliers", "parabola", "--impl", "solutions", "--kinds", "rotate"]) == 2
    assert "unknown corruption kind" in capsys.readouterr().err


# --- the provided corruptions and the reference's input checks -----------------------------------

@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(size=(6, 64)).astype(np.float32)


@pytest.mark.parametrize("kind, level", [("noise", 0.1), ("rotate", 30), ("contrast", 0.5), ("morph", 0.5)])
def test_corrupt_keeps_shape_level_zero_and_seed(images, kind, level):
    out = reference.corrupt(images, kind, level, seed=1)
    assert out.shape == images.shape and out.dtype == np.float32
    assert not np.allclose(out, images)
    assert np.array_equal(out, reference.corrupt(images, kind, level, seed=1))
    assert np.allclose(reference.corrupt(images, kind, 0, seed=1), images, atol=1e-6)


def test_stronger_levels_move_further(images):
    for kind, low, high in (("rotate", 10, 90), ("contrast", 0.2, 0.8), ("morph", 0.2, 0.8)):
        near = np.abs(reference.corrupt(images, kind, low, seed=0) - images).mean()
        far = np.abs(reference.corrupt(images, kind, high, seed=0) - images).mean()
        assert far > near, kind


def test_rotate_by_90_turns_the_image():
    image = np.zeros((8, 8), np.float32)
    image[1, 2:6] = 1.0  # a bar near the top
    turned = corruptions.rotate(image.reshape(1, 64), 90).reshape(8, 8)
    assert turned[:, 1].sum() > 2 and turned[1, :].sum() < 2  # now a column on the left


def test_photo_patches_are_images_offline():
    patches = corruptions.photo_patches((8, 8), n=50)
    assert patches.shape == (50, 64) and patches.min() >= 0 and patches.max() <= 1
    assert patches.std(axis=1).mean() > 0.01


@pytest.mark.parametrize("call, error, words", [
    (lambda: reference.corrupt(np.zeros((2, 2)), "rotate", 10), ValueError, "square images"),
    (lambda: reference.corrupt(np.zeros((2, 64)), "blur", 1), ValueError, "unknown corruption kind"),
    (lambda: reference.corrupt(np.zeros((2, 64)), "noise", -1), ValueError, "level"),
    (lambda: reference.corrupt(np.zeros((2, 64)), "contrast", 2), ValueError, r"\[0, 1\]"),
    (lambda: reference.corrupt(np.zeros(64), "noise", 1), ValueError, "shaped"),
    (lambda: reference.corrupt(np.full((2, 4), np.nan), "noise", 1), ValueError, "NaN"),
    (lambda: reference.corrupt(np.zeros((2, 4)), "noise", 1, seed="a"), TypeError, "seed"),
    (lambda: reference.choose_threshold([], 0.05), ValueError, "empty"),
    (lambda: reference.choose_threshold([1.0, 2.0], 1.5), ValueError, "false_alarm_rate"),
    (lambda: reference.choose_threshold([[1.0, 2.0]], 0.1), ValueError, "one number per example"),
    (lambda: reference.choose_threshold(["a", "b"], 0.1), TypeError, "numbers"),
    (lambda: reference.flag_outliers([1.0, 2.0], float("nan")), ValueError, "threshold"),
    (lambda: reference.precision_recall([True], [True, False]), ValueError, "same shape"),
    (lambda: reference.precision_recall([0.5, 1.0], [True, False]), TypeError, "boolean"),
])
def test_stage_5_rejects_bad_input(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_typicality_flags_both_sides_and_fits_on_disjoint_parts():
    rng = np.random.default_rng(0)
    valid = rng.normal(40.0, 5.0, 600)
    entropy, epsilon = reference.fit_typicality(valid, 10, 0.05, seed=1)
    assert (entropy, epsilon) == reference.fit_typicality(valid, 10, 0.05, seed=1)
    assert abs(entropy + 40.0) < 1.5 and entropy != -valid.mean()  # one part only
    assert abs(epsilon - 1.96 * 5.0 / np.sqrt(10)) < 1.0
    batches = rng.normal(40.0, 5.0, (4000, 10))
    assert 0.02 < reference.flag_batches(batches, entropy, epsilon).mean() < 0.09
    assert reference.flag_batches(batches - 8, entropy, epsilon).mean() > 0.9  # too unlikely
    assert reference.flag_batches(batches + 8, entropy, epsilon).mean() > 0.9  # too likely


@pytest.mark.parametrize("call, error, words", [
    (lambda: reference.fit_typicality([1.0, 2.0], 5), ValueError, "at least 4"),
    (lambda: reference.fit_typicality(np.zeros(10), 0), ValueError, "batch_size"),
    (lambda: reference.fit_typicality(np.zeros(10), 2, 1.5), ValueError, "false_alarm_rate"),
    (lambda: reference.fit_typicality(np.zeros(10), 2, seed="a"), TypeError, "seed"),
    (lambda: reference.flag_batches(np.zeros(10), 0.0, 1.0), ValueError, r"\(n_batches, batch_size\)"),
    (lambda: reference.flag_batches(np.zeros((2, 3)), 0.0, -1.0), ValueError, "epsilon"),
    (lambda: reference.flag_batches(np.zeros((2, 3)), float("nan"), 1.0), ValueError, "entropy"),
])
def test_typicality_rejects_bad_input(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_morph_targets_are_dequantized_like_the_digits():
    targets, name = corruptions.morph_targets(64)
    assert name == "photo patches" and targets.shape[1] == 64
    levels = np.floor(targets * 17)
    assert levels.min() >= 0 and levels.max() <= 16
    offsets = targets * 17 - levels  # the dequantization noise u ~ U(0, 1) inside each level
    assert 0.4 < offsets.mean() < 0.6 and offsets.std() > 0.25
