"""MNIST and Fashion-MNIST at the NICE paper's protocol, from Keras' cached files, offline.

The files are the ones Keras' loaders (``keras.datasets.mnist.load_data()``,
``keras.datasets.fashion_mnist.load_data()``) download once and cache:

* MNIST: ``$KERAS_HOME/datasets/mnist.npz`` (arrays ``x_train``, ``y_train``, ``x_test``,
  ``y_test``, pixels uint8);
* Fashion-MNIST: ``$KERAS_HOME/datasets/fashion-mnist/`` with the four gzipped IDX files
  ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
  ``t10k-labels-idx1-ubyte.gz``.

``$KERAS_HOME`` defaults to ``~/.keras`` (Keras falls back to ``/tmp/.keras`` when that is not
writable). :func:`load` and :func:`raw` read these files themselves and never download;
:func:`fetch` (what ``nicelab train mnist`` calls first) asks Keras' own loader to download them
when they are not cached. Offline and without them, :class:`DataUnavailable` says where to put
which file.

Protocol: x = (pixel + u) / 256 with u ~ U(0, 1), so x is in [0, 1]^784; a validation set of
10,000 images held out from the 60,000 training images; the 10,000 test images. Validation and
test images carry one fixed draw of the noise; the training images also keep their integer
pixels (``Dataset.train_levels``), so that the training driver draws new noise every epoch.
Report the test log-likelihood in nats per image and bits per dimension.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from pathlib import Path

import numpy as np

from nicelab.core import dataset as data_mod
from nicelab.core.config import TrainConfig
from nicelab.core.dataset import DATA_SEED, Dataset

NAMES = ("mnist", "fashion_mnist")
LEVELS = 256  # pixel values 0..255
VALID_SIZE = 10_000
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

#: Coupling-network sizes: the NICE paper's (4 couplings, 5 x 1000 ReLU) and a CPU-friendly one.
ARCHITECTURES = {
    "paper": {"num_couplings": 4, "hidden_layers": 5, "hidden_units": 1000},
    "small": {"num_couplings": 4, "hidden_layers": 4, "hidden_units": 256},
}


class DataUnavailable(Exception):
    """The data set's file is not cached and nicelab never downloads; the message says where to put it."""


def with_arch(config: TrainConfig, arch: str | None) -> TrainConfig:
    """``config`` with the coupling networks of ``arch`` ("paper" or "small"; None: unchanged)."""
    if arch is None:
        return config
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}.")
    return dataclasses.replace(config, **ARCHITECTURES[arch])


def keras_dirs() -> list[Path]:
    """Where Keras keeps its cache, in the order it looks: ``$KERAS_HOME`` (default ``~/.keras``),
    then ``/tmp/.keras`` (Keras' fallback when the first is not writable)."""
    home = Path(os.path.expanduser(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")))
    return [home, Path("/tmp/.keras")] if home != Path("/tmp/.keras") else [home]


def _missing(name: str, why: str = "") -> DataUnavailable:
    home = keras_dirs()[0] / "datasets"
    if name == "mnist":
        where = f"the file mnist.npz at {home / 'mnist.npz'}"
        how = 'python -c "import keras; keras.datasets.mnist.load_data()"'
    else:
        where = (f"the four files {', '.join(f for pair in FASHION_FILES.values() for f in pair)} in "
                 f"{home / 'fashion-mnist'}")
        how = 'python -c "import keras; keras.datasets.fashion_mnist.load_data()"'
    state = f"is not cached and could not be downloaded ({why})" if why else "is not cached"
    return DataUnavailable(f"{name} {state}: put {where} (on a machine with network, `{how}` "
                           "writes it to ~/.keras/datasets; copy it over).")


def cached(name: str) -> bool:
    """Whether the files of ``name`` are in Keras' cache (read nothing, download nothing)."""
    try:
        _cached_folder(name)
    except DataUnavailable:
        return False
    return True


def _cached_folder(name: str) -> Path:
    for base in keras_dirs():
        folder = base / "datasets"
        if name == "mnist" and (folder / "mnist.npz").exists():
            return folder
        if name == "fashion_mnist" and all((folder / "fashion-mnist" / f).exists()
                                           for pair in FASHION_FILES.values() for f in pair):
            return folder
    raise _missing(name)


def keras_loader(name: str):
    """Keras' own loader of ``name`` (``keras.datasets.mnist.load_data`` or
    ``keras.datasets.fashion_mnist.load_data``): downloads the files into Keras' cache the
    first time. Tests replace this function: they never download."""
    import keras  # here, not at the top: importing Keras starts TensorFlow

    return getattr(keras.datasets, name).load_data


def fetch(name: str) -> None:
    """Make sure ``name``'s files are cached: when they are not, download them with Keras' own
    loader (network needed once). Offline, :class:`DataUnavailable` says where to put them."""
    if name not in NAMES:
        raise ValueError(f"unknown data set {name!r}; choose one of: {', '.join(NAMES)}.")
    if cached(name):
        return
    print(f"{name} is not cached: downloading it with Keras' loader (once)", flush=True)
    try:
        keras_loader(name)()
    except Exception as err:  # noqa: BLE001 - offline, a proxy, a bad file: all say the same
        raise _missing(name, f"{type(err).__name__}: {str(err).splitlines()[0][:100] if str(err) else ''}"
                       ) from err
    if not cached(name):  # Keras wrote it somewhere nicelab does not look
        raise _missing(name, "Keras' loader wrote it elsewhere")


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), np.uint8, offset=offset)


def raw(name: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, y_train), (x_test, y_test))`` as Keras' loader returns them (uint8 images
    ``(n, 28, 28)``), read from the cached files; :class:`DataUnavailable` without them."""
    if name not in NAMES:
        raise ValueError(f"unknown data set {name!r}; choose one of: {', '.join(NAMES)}.")
    folder = _cached_folder(name)
    try:
        if name == "mnist":
            with np.load(folder / "mnist.npz", allow_pickle=False) as f:
                return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
        splits = []
        for images, labels in FASHION_FILES.values():
            y = _read_idx(folder / "fashion-mnist" / labels, 8)
            x = _read_idx(folder / "fashion-mnist" / images, 16).reshape(len(y), 28, 28)
            splits.append((x, y))
        return splits[0], splits[1]
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise DataUnavailable(f"the cached {name} file in {folder} cannot be read ({err}); delete it and "
                              "copy a fresh one.") from err


def raw_images(name: str, split: str = "test") -> np.ndarray:
    """The uint8 images of ``split`` ("train" or "test") flattened to ``(n, 784)`` float32 levels."""
    (x_train, _), (x_test, _) = raw(name)
    x = x_train if split == "train" else x_test
    return x.reshape(len(x), -1).astype(np.float32)


def dequantize(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The paper's x = (pixel + u) / 256, u ~ U(0, 1): uint8 ``(n, 784)`` -> float32 in [0, 1]."""
    return data_mod.dequantize(pixels, LEVELS, rng)


def load(name: str, valid_size: int = VALID_SIZE) -> Dataset:
    """MNIST or Fashion-MNIST as a :class:`nicelab.core.data.Dataset` (from the cached files; never a
    download): train / valid / test float32 ``(n, 784)`` in [0, 1], dequantized with a fixed
    seed, plus the training pixels (``train_levels``) for fresh noise every epoch; the validation
    set is ``valid_size`` images held out from the training images (at most a sixth of them,
    for small files)."""
    (x_train, y_train), (x_test, y_test) = raw(name)
    rng = np.random.default_rng(DATA_SEED)
    pixels = x_train.reshape(len(x_train), -1)
    train = dequantize(pixels, rng)
    test = dequantize(x_test.reshape(len(x_test), -1), rng)
    order = np.random.default_rng(DATA_SEED + 1).permutation(len(train))
    n_valid = min(valid_size, len(train) // 6)
    valid_idx, train_idx = order[:n_valid], order[n_valid:]
    return Dataset(
        name, train[train_idx], train[valid_idx], test, image_shape=(28, 28), bounds=(0.0, 1.0),
        labels={"train": y_train[train_idx], "valid": y_train[valid_idx], "test": y_test},
        levels=LEVELS, train_levels=pixels[train_idx],
    )


def bits_per_dim(log_likelihood_nats: float, dim: int = 784) -> float:
    """Bits per dimension of the discrete pixels 0..255, from a log-likelihood in nats per image
    on the [0, 1] scale: (-log p + D log 256) / (D log 2) (the paper's 1980.50 -> about 4.36)."""
    return data_mod.bits_per_dim(log_likelihood_nats, dim, LEVELS)


def write_fake(name: str, keras_home: Path, n_train: int = 120, n_test: int = 40, seed: int = 0) -> Path:
    """Write a small file set in Keras' cached format under ``keras_home`` (for tests and
    offline demos): random blob images, never a download. Returns the folder written."""
    rng = np.random.default_rng(seed)

    def images(n):
        yy, xx = np.mgrid[:28, :28]
        centres = rng.uniform(8, 20, size=(n, 2))
        radius = rng.uniform(3, 7, size=(n, 1, 1))
        d = np.hypot(yy - centres[:, :1, None], xx - centres[:, 1:, None])
        blob = np.clip(255 * (1.5 - d / radius), 0, 255) if name == "mnist" else \
            np.clip(255 * (1.0 - np.abs(d - radius) / 3), 0, 255)
        return blob.astype(np.uint8)

    x_train, x_test = images(n_train), images(n_test)
    y_train, y_test = (rng.integers(0, 10, n).astype(np.uint8) for n in (n_train, n_test))
    folder = keras_home / "datasets"
    if name == "mnist":
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
        return folder
    folder = folder / "fashion-mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for (image_file, label_file), x, y in zip(FASHION_FILES.values(), (x_train, x_test), (y_train, y_test),
                                              strict=True):
        with gzip.open(folder / label_file, "wb") as handle:
            handle.write(np.array([0, 0, 8, 1], np.uint8).tobytes() + np.array([len(y)], ">u4").tobytes()
                         + y.tobytes())
        with gzip.open(folder / image_file, "wb") as handle:
            header = np.array([0, 0, 8, 3], np.uint8).tobytes() + np.array(
                [len(x), 28, 28], ">u4").tobytes()
            handle.write(header + x.tobytes())
    return folder
