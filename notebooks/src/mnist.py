# %% [markdown]
# # MNIST: the paper's experiment
#
# [Open in Colab]({{COLAB_URL}}) · [the chapter on the course site]({{SITE}}mnist/)
# (or `docs/mnist.md`)
#
# Once stages 1 to 3 pass, your code can run the NICE paper's main experiment: the density of
# MNIST digits, 784 dimensions, dequantized as $x = (\text{pixel} + u)/256$, with a logistic
# prior. The paper reports a test log-likelihood of 1980.50 nats per image, about 4.36 bits per
# dimension. A CPU gets a fair way in a few minutes with the smaller coupling networks.
#
# nicelab never downloads: MNIST comes from Keras' cache (`~/.keras/datasets/mnist.npz`). On
# Colab the cell below fetches it with Keras' own loader; elsewhere, without the file, this
# notebook runs on scikit-learn's 8 x 8 digits instead and says so.

# %%
# On Google Colab: fetch the course and install it. On your own machine this cell does nothing.
import os
import subprocess
import sys

if "google.colab" in sys.modules and not os.path.isdir("/content/nicelab"):
    subprocess.run(["git", "clone", "--depth", "1", "--branch", "{{BRANCH}}",
                    "https://github.com/{{REPOSITORY}}.git", "/content/nicelab"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", "/content/nicelab"], check=True)
if "google.colab" in sys.modules:
    os.chdir("/content/nicelab")

# %%
# Your lesson modules are reloaded whenever you save them: no restart needed.
# %load_ext autoreload
# %autoreload 2
import importlib
from pathlib import Path

ROOT = next((p for p in (Path.cwd(), *Path.cwd().parents) if (p / "lessons").is_dir()), None)
if ROOT is None:
    raise RuntimeError("start Jupyter inside the nicelab project (the folder holding lessons/)")
os.chdir(ROOT)
sys.path.insert(0, str(ROOT))

IMPL = os.environ.get("NICELAB_IMPL", "lessons")  # "lessons": your code; "solutions": the reference
EPOCHS = int(os.environ.get("NICELAB_NB_EPOCHS", "5"))  # the paper trained far longer (on a GPU)

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import nicelab
from nicelab.core import mnist
from nicelab.core.config import PRESETS
from nicelab.core.data import bits_per_dim, load
from nicelab.core.training import mean_nll, train
from nicelab.plots.training import image_grid

# %matplotlib inline
modules = {stage: importlib.import_module(f"{IMPL}.{stage}") for stage in ("coupling", "model", "likelihood")}
likelihood = modules["likelihood"]
print(f"using {likelihood.__file__}")

# %%
if "google.colab" in sys.modules:  # Colab has a network: let Keras fetch and cache MNIST once
    tf.keras.datasets.mnist.load_data()
try:
    DATA = "mnist"
    dataset = load(DATA)
except mnist.DataUnavailable as err:
    print(f"{err}\n-> using scikit-learn's 8 x 8 digits instead")
    DATA = "digits"
    dataset = load(DATA)
print(f"{DATA}: {len(dataset.train)} train / {len(dataset.valid)} valid / {len(dataset.test)} test, "
      f"D = {dataset.dim}")

# %% [markdown]
# ## The checks
#
# Stages 1 to 3 train the model: the same checks as `pytest checks -m "coupling or model or
# likelihood"`.

# %% tags=["check"]
nicelab.check("coupling", "model", "likelihood", impl=IMPL)

# %% [markdown]
# ## Train
#
# The data set's preset (`nicelab train mnist` uses the same; `--arch paper` is the paper's
# 4 couplings of 5 x 1000 ReLU), for `EPOCHS` epochs.

# %%
config = dataclasses.replace(PRESETS[DATA], epochs=EPOCHS)
print(config)
trained = train(modules, dataset, config)
evaluate = tf.function(lambda x: likelihood.log_likelihood(trained.model, trained.prior, x))
log_lik = -mean_nll(evaluate, dataset.test)
levels = dataset.levels or 256
print(f"test log-likelihood {log_lik:.1f} nats per image, "
      f"{bits_per_dim(log_lik, dataset.dim, levels):.3f} bits per dimension "
      f"(the paper, on MNIST: 1980.50 nats, 4.36 bits/dim)")

# %% [markdown]
# ## Samples
#
# Samples $x = f^{-1}(h)$, $h$ from the prior, beside test images. Try a cooler prior: scale
# $h$ by a temperature below 1 before mapping it back (`trained.model.backward(T * h)`).

# %%
shape = dataset.image_shape
samples = np.asarray(likelihood.sample(trained.model, trained.prior, 40, seed=0))
h = trained.prior.sample(40, seed=1)
cool = trained.model.backward(0.7 * h).numpy()
fig, axes = plt.subplots(1, 3, figsize=(13, 3))
for ax, images, title in zip(axes, (dataset.test[:40], samples, cool),
                             ("test images", "samples", "samples at temperature 0.7"), strict=True):
    ax.imshow(image_grid(images, shape, columns=10), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Experiments
#
# * Train longer (`EPOCHS`), or with the paper's networks (`mnist.with_arch(config, "paper")`).
# * Which test images does your model find least likely? Most likely?
# * Stages 4 and 5 run on this model too: `nicelab inpaint mnist`, `nicelab outliers mnist`.

# %%
scores = evaluate(dataset.test[:2000]).numpy()
order = np.argsort(scores)
fig, axes = plt.subplots(1, 2, figsize=(10, 2.4))
for ax, picks, title in zip(axes, (order[:10], order[-10:]), ("least likely", "most likely"), strict=True):
    ax.imshow(image_grid(dataset.test[picks], shape, columns=10), cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"{title} test images")
    ax.axis("off")
plt.show()
