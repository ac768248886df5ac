"""MNIST / Fashion-MNIST at the paper's protocol, on small files in Keras' cached format that
these tests write (never a download): the loader, the offline message, and ``nicelab train``,
``inpaint`` and ``outliers`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nicelab.core import mnist

TINY = ["--impl", "solutions", "--epochs", "1", "--couplings", "2", "--hidden-units", "8",
        "--hidden-layers", "1", "--batch-size", "32", "--quiet"]


def offline_loader(name):
    """Keras' loader as it behaves without network (tests never download)."""
    def load_data():
        raise OSError(f"URL fetch failure on https://example.invalid/{name}.npz: no network")
    return load_data


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    home = tmp_path / "keras"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setattr(mnist, "keras_dirs", lambda: [home])  # never Keras' /tmp fallback here
    monkeypatch.setattr(mnist, "keras_loader", offline_loader)  # never a download
    return home


def test_offline_without_the_file_says_where_to_put_it(keras_home):
    with pytest.raises(mnist.DataUnavailable, match=str(keras_home / "datasets" / "mnist.npz")):
        mnist.load("mnist")
    with pytest.raises(mnist.DataUnavailable, match="t10k-images-idx3-ubyte.gz"):
        mnist.load("fashion_mnist")
    with pytest.raises(mnist.DataUnavailable, match="could not be downloaded .*no network.*mnist.npz"):
        mnist.fetch("mnist")


def test_load_never_downloads(keras_home, monkeypatch):
    calls = []
    monkeypatch.setattr(mnist, "keras_loader", lambda name: calls.append(name))
    with pytest.raises(mnist.DataUnavailable):
        mnist.load("mnist")
    assert calls == [] and not mnist.cached("mnist")


@pytest.mark.parametrize("name", mnist.NAMES)
def test_fetch_downloads_once_through_keras_loader(keras_home, monkeypatch, name):
    calls = []

    def online_loader(asked):  # Keras' loader with network: it writes the cached files
        def load_data():
            calls.append(asked)
            mnist.write_fake(asked, keras_home, n_train=12, n_test=6)
        return load_data

    monkeypatch.setattr(mnist, "keras_loader", online_loader)
    mnist.fetch(name)
    assert calls == [name] and mnist.cached(name)
    mnist.fetch(name)  # cached now: no second download
    assert calls == [name]
    assert mnist.load(name).dim == 784


def test_keras_loader_is_keras_own():
    import keras

    assert mnist.keras_loader("mnist") is keras.datasets.mnist.load_data
    assert mnist.keras_loader("fashion_mnist") is keras.datasets.fashion_mnist.load_data


def test_cli_reports_missing_data_in_one_line(keras_home, capsys):
    from nicelab import cli

    assert cli.main(["train", "mnist", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "mnist.npz" in err and "could not be downloaded" in err


@pytest.mark.parametrize("name", mnist.NAMES)
def test_load_follows_the_paper_protocol(keras_home, name):
    mnist.write_fake(name, keras_home, n_train=120, n_test=40)
    (x_train, y_train), (x_test, _) = mnist.raw(name)
    data = mnist.load(name)
    assert data.image_shape == (28, 28) and data.bounds == (0.0, 1.0) and data.dim == 784
    assert len(data.train) + len(data.valid) == 120 and len(data.valid) == 20 and len(data.test) == 40
    for split in (data.train, data.valid, data.test):
        assert split.dtype == np.float32 and split.min() >= 0 and split.max() < 1
    # x = (pixel + u) / 256: the pixel is floor(256 x), the noise is uniform within its bin
    assert np.array_equal(np.floor(data.test * 256).astype(np.uint8), x_test.reshape(40, -1))
    assert 0.4 < np.mean(data.test * 256 - np.floor(data.test * 256)) < 0.6
    # validation images are training images, held out
    pixels = {row.tobytes() for row in x_train.reshape(120, -1)}
    assert all(np.floor(v * 256).astype(np.uint8).tobytes() in pixels for v in data.valid)
    again = mnist.load(name)
    assert np.array_equal(again.train, data.train), "dequantization has a fixed seed"
    # the training pixels travel along, for fresh noise every epoch
    assert data.levels == 256 and data.train_levels.shape == data.train.shape
    assert np.array_equal(np.floor(data.train * 256), data.train_levels)


def test_fashion_files_read_like_keras(keras_home, monkeypatch):
    """Keras' own loader reads the files write_fake makes (they are all there: no download)."""
    import keras
    from keras.src.backend import config

    mnist.write_fake("fashion_mnist", keras_home, n_train=30, n_test=10)
    monkeypatch.setattr(config, "_KERAS_DIR", str(keras_home))
    (kx_train, ky_train), (kx_test, ky_test) = keras.datasets.fashion_mnist.load_data()
    (x_train, y_train), (x_test, y_test) = mnist.raw("fashion_mnist")
    assert x_train.shape == (30, 28, 28) and x_train.dtype == np.uint8 and x_train.max() > 0
    for ours, theirs in ((x_train, kx_train), (y_train, ky_train), (x_test, kx_test), (y_test, ky_test)):
        assert np.array_equal(ours, theirs)


def test_bits_per_dim_of_the_paper():
    assert abs(mnist.bits_per_dim(1980.50) - 4.36) < 0.01


def test_architectures():
    from nicelab.core.config import PRESETS

    paper = mnist.with_arch(PRESETS["mnist"], "paper")
    assert (paper.num_couplings, paper.hidden_layers, paper.hidden_units) == (4, 5, 1000)
    small = mnist.with_arch(PRESETS["mnist"], "small")
    assert small.hidden_units < 1000 and small.prior == "logistic"
    assert PRESETS["fashion_mnist"].prior == "logistic"
    with pytest.raises(ValueError, match="architecture"):
        mnist.with_arch(PRESETS["mnist"], "huge")


def test_train_arch_option_sets_the_paper_size():
    from nicelab.cli import build_parser
    from nicelab.cli.commands import train

    parser, _ = build_parser()
    args = parser.parse_args(["train", "mnist", "--arch", "paper"])
    config = train.config_from_args(args, "mnist")
    assert (config.num_couplings, config.hidden_layers, config.hidden_units) == (4, 5, 1000)
    args = parser.parse_args(["train", "mnist", "--arch", "paper", "--hidden-units", "64"])
    assert train.config_from_args(args, "mnist").hidden_units == 64


@pytest.mark.slow
def test_train_inpaint_outliers_end_to_end(keras_home, tmp_path, monkeypatch, capsys):
    from nicelab import cli
    from nicelab.core import runs

    monkeypatch.setattr(runs, "RUNS_DIR", tmp_path / "runs")
    mnist.write_fake("mnist", keras_home, n_train=120, n_test=40)
    mnist.write_fake("fashion_mnist", keras_home, n_train=60, n_test=30, seed=1)
    assert cli.main(["train", "mnist", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "bits per dimension" in printed and "nats per image" in printed
    result = json.loads(next((tmp_path / "runs" / "mnist").glob("*/result.json")).read_text())
    assert np.isfinite(result["test_log_likelihood"]) and np.isfinite(result["bits_per_dim"])
    assert abs(result["bits_per_dim"] - mnist.bits_per_dim(result["test_log_likelihood"])) < 1e-9

    out = tmp_path / "inpaint"
    assert cli.main(["inpaint", "mnist", *TINY, "--examples", "3", "--steps", "3", "--masks", "top",
                     "random50", "--out", str(out)]) == 0
    assert "using the trained model" in capsys.readouterr().out  # nicelab train's weights reused
    assert (out / "inpainting.png").exists() and (out / "inpainting.json").exists()

    out = tmp_path / "outliers"
    assert cli.main(["outliers", "mnist", *TINY, "--examples", "30", "--kinds", "noise", "morph",
                     "--out", str(out)]) == 0
    summary = json.loads((out / "outliers.json").read_text())
    assert summary["morph_targets"] == "fashion_mnist"  # morphing towards Fashion-MNIST when present
    assert (out / "outliers_roc.png").exists()


def test_morph_targets_are_the_other_image_set(keras_home):
    from nicelab.tasks.corruptions import morph_targets

    assert morph_targets(784, "mnist")[1] == "photo patches"  # nothing cached: offline fallback
    mnist.write_fake("mnist", keras_home, n_train=12, n_test=6)
    mnist.write_fake("fashion_mnist", keras_home, n_train=12, n_test=5)
    targets, name = morph_targets(784, "mnist")
    assert name == "fashion_mnist" and targets.shape == (5, 784) and 0 <= targets.min() <= targets.max() <= 1
    assert morph_targets(784, "fashion_mnist")[1] == "mnist"
