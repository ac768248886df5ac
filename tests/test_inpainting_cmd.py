"""``nicelab inpaint`` on the parabola and digits (tiny models, trained into a temporary runs
folder), and the input checks of the reference ``inpaint``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nicelab.core.quiet import import_tensorflow

tf = import_tensorflow()

from nicelab import cli  # noqa: E402
from nicelab.core import runs  # noqa: E402
from nicelab.tasks.inpaint import IMAGE_MASKS, make_masks  # noqa: E402

TINY = ["--impl", "solutions", "--epochs", "2", "--hidden-units", "16", "--hidden-layers", "1", "--quiet"]


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "RUNS_DIR", tmp_path / "runs")
    return tmp_path / "runs"


@pytest.mark.slow
def test_inpaint_digits_writes_figures_and_table(runs_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["inpaint", "digits", *TINY, "--examples", "12", "--steps", "5", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    for name in ("inpainting.png", "inpainting_mse.png", "inpainting.json"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "inpainting.json").read_text())
    assert [row["mask"] for row in summary["masks"]] == list(IMAGE_MASKS)
    assert all(row["mse_inpainted"] >= 0 and row["mse_mean_fill"] > 0 for row in summary["masks"])
    assert "MSE mean fill" in printed and "random90" in printed
    assert list(runs_dir.glob("digits/solutions-*/weights.npz")), "the trained model is saved for reuse"
    # a second run reuses nicelab train's weights
    assert cli.main(["inpaint", "digits", *TINY, "--examples", "4", "--steps", "2", "--masks", "top",
                     "--out", str(out)]) == 0
    assert "using the trained model" in capsys.readouterr().out


@pytest.mark.slow
def test_inpaint_parabola(runs_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["inpaint", "parabola", *TINY, "--examples", "50", "--steps", "5", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "inpainting.json").read_text())
    assert [row["mask"] for row in summary["masks"]] == ["x1", "x2"]
    assert (out / "inpainting.png").exists()


def test_inpaint_rejects_unknown_mask(runs_dir, capsys):
    assert cli.main(["inpaint", "parabola", "--impl", "solutions", "--masks", "top"]) == 2
    assert "unknown mask kind" in capsys.readouterr().err


def test_inpaint_on_the_stubs_says_not_implemented(runs_dir, capsys, tmp_path):
    code = cli.main(["inpaint", "parabola", "--impl", "lessons", "--out", str(tmp_path)])
    assert code == 2
    assert "not implemented yet" in capsys.readouterr().err


@pytest.mark.parametrize("kind", IMAGE_MASKS)
def test_image_masks_hide_what_they_say(kind):
    known = make_masks(kind, 50, 64, (8, 8), np.random.default_rng(0))
    assert known.shape == (50, 64) and known.dtype == bool
    image = ~known[0].reshape(8, 8)
    expected = {"top": image[:4].all() and not image[4:].any(),
                "bottom": image[4:].all() and not image[:4].any(),
                "left": image[:, :4].all() and not image[:, 4:].any(),
                "right": image[:, 4:].all() and not image[:, :4].any(),
                "centre": image[2:6, 2:6].all() and image.sum() == 16}
    if kind in expected:
        assert expected[kind]
    else:
        assert abs((~known).mean() - int(kind.removeprefix("random")) / 100) < 0.05


# --- input checks of the reference inpaint -------------------------------------------------------

@pytest.fixture(scope="module")
def flow():
    from solutions.likelihood import make_prior
    from solutions.model import NICE

    return NICE(4, 2, 8, 1), make_prior(4)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"known": np.ones((3, 5), bool)}, ValueError, "shape"),
    ({"known": np.full((3, 4), 0.5)}, TypeError, "boolean"),
    ({"x": np.full((3, 4), np.nan, np.float32)}, ValueError, "NaN"),
    ({"x": np.zeros((3, 5), np.float32), "known": np.ones((3, 5), bool)}, ValueError, "D = 4"),
    ({"steps": -1}, ValueError, "steps"),
    ({"step_size": 0.0}, ValueError, "step_size"),
    ({"noise": -1.0}, ValueError, "noise"),
    ({"bounds": (1.0, 0.0)}, ValueError, "low < high"),
    ({"bounds": "ab"}, ValueError, "bounds"),
    ({"seed": 1.5}, TypeError, "seed"),
])
def test_inpaint_rejects_bad_input(flow, kwargs, error, words):
    from solutions.inpainting import inpaint

    args = {"x": np.zeros((3, 4), np.float32), "known": np.ones((3, 4), bool), **kwargs}
    with pytest.raises(error, match=words):
        inpaint(*flow, **args)


def test_inpaint_accepts_int_masks_and_zero_steps(flow):
    from solutions.inpainting import inpaint

    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    result = inpaint(*flow, x, np.ones((3, 4), int), steps=0)
    assert result.dtype == np.float32 and np.array_equal(result, x)


# --- the checks' cached reference models (nicelab.grader.fixtures) ------------------------------------

def test_fixture_cache_key_and_folder(monkeypatch, tmp_path):
    import dataclasses

    from nicelab.grader import fixtures

    monkeypatch.setenv(fixtures.ENV_VAR, str(tmp_path))
    assert fixtures.cache_dir() == tmp_path
    config = fixtures.CONFIGS["parabola"]
    key = fixtures.cache_key("parabola", config)
    assert key == fixtures.cache_key("parabola", config)
    assert key != fixtures.cache_key("digits", config)
    assert key != fixtures.cache_key("parabola", dataclasses.replace(config, epochs=config.epochs + 1))
    with pytest.raises(ValueError, match="no check fixture"):
        fixtures.trained_reference("mnist")


@pytest.mark.slow
def test_fixture_trains_once_then_loads_the_same_weights(monkeypatch, tmp_path):
    import dataclasses

    from nicelab.grader import fixtures

    monkeypatch.setenv(fixtures.ENV_VAR, str(tmp_path))
    quick = dataclasses.replace(fixtures.CONFIGS["parabola"], epochs=1)
    monkeypatch.setitem(fixtures.CONFIGS, "parabola", quick)
    fixtures.trained_reference.cache_clear()
    try:
        model, _, _ = fixtures.trained_reference("parabola")
        files = list((tmp_path / "fixtures").glob("parabola-*.npz"))
        assert len(files) == 1
        fixtures.trained_reference.cache_clear()
        again, _, _ = fixtures.trained_reference("parabola")
        assert again is not model
        for a, b in zip(model.weights, again.weights, strict=True):
            assert np.array_equal(a.numpy(), b.numpy())
    finally:
        fixtures.trained_reference.cache_clear()
