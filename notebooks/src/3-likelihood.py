# %% [markdown]
# # Stage 3: likelihood, training and sampling
#
# [Open in Colab]({{COLAB_URL}}) · [the lesson on the course site]({{SITE}}lessons/3-likelihood/)
# (or `docs/lessons/3-likelihood.md`)
#
# Put a simple prior $p_H$ on $h = f(x)$ and the change of variables gives the exact
# log-likelihood of any $x$: $\log p_X(x) = \log p_H(f(x)) + \log|\det \partial f/\partial x|$.
# Training maximises it (minimises the mean NLL); sampling runs the flow backwards,
# $x = f^{-1}(h)$ with $h \sim p_H$. On the parabola the exact entropy, 4.224 nats, is the
# floor the test NLL can approach.
#
# You write `lessons/likelihood.py`; this notebook checks it, trains your model and samples
# from it, on the parabola and on other toy data sets.

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
EPOCHS = int(os.environ.get("NICELAB_NB_EPOCHS", "30"))  # training epochs per run here

import dataclasses

import numpy as np
import tensorflow as tf
from IPython.display import Image, display

import nicelab
from nicelab.core import data, toy
from nicelab.core.config import PRESETS
from nicelab.core.runs import runs_dir
from nicelab.core.training import mean_nll, train
from nicelab.plots import training as plots

# %matplotlib inline
modules = {stage: importlib.import_module(f"{IMPL}.{stage}") for stage in ("coupling", "model", "likelihood")}
likelihood = modules["likelihood"]
OUT = runs_dir() / "notebooks" / "3-likelihood"  # runs/ (or $NICELAB_RUNS)
print(f"using {likelihood.__file__}; figures go to {OUT}")

# %% [markdown]
# ## The checks
#
# The same checks as `pytest checks -m likelihood` (one of them trains on the parabola: give it
# a few seconds).

# %% tags=["check"]
nicelab.check("likelihood", impl=IMPL)

# %% [markdown]
# ## Train on the parabola
#
# `nicelab.core.training.train` runs *your* `train_step` (compiled into one call per epoch), keeps
# the weights of the best validation epoch, and returns the model and its history. The same
# runs as `nicelab train parabola`, shorter.

# %%
def fit(name, epochs=EPOCHS, **changes):
    """Train your model on the data set `name` with its preset (and `changes`); show the figures."""
    dataset = data.load(name)
    config = dataclasses.replace(PRESETS[name], epochs=epochs, **changes)
    trained = train(modules, dataset, config, verbose=False)
    log_density = tf.function(lambda x: likelihood.log_likelihood(trained.model, trained.prior, x))
    nll = mean_nll(log_density, dataset.test)
    gap = f", {nll - dataset.entropy:+.3f} from the entropy {dataset.entropy:.3f}" if dataset.entropy else ""
    print(f"{name}: {len(trained.history.train_nll)} epochs in {trained.history.seconds:.1f} s, "
          f"test NLL {nll:.3f} nats{gap}")
    samples = np.asarray(likelihood.sample(trained.model, trained.prior, 3000, seed=0))
    folder = OUT / name
    plots.loss_curves(trained.history, folder / "loss.png", floor=dataset.entropy)
    plots.density_2d(lambda x: log_density(x).numpy(), dataset.test, folder / "density.png")
    plots.samples_2d(samples, dataset.test, folder / "samples.png")
    for figure in ("density", "samples"):
        display(Image(filename=folder / f"{figure}.png", width=640))
    return trained, dataset


parabola_model, parabola = fit("parabola")

# %% [markdown]
# ## Your log-likelihood against the change of variables
#
# Recompute $\log p_H(f(x)) + \log|\det J|$ from your model's parts, with TFP's own prior.

# %%
x = parabola.test[:5]
prior = parabola_model.prior
by_parts = prior.log_prob(parabola_model.model.forward(x)) + parabola_model.model.log_det_jacobian()
print("log_likelihood:", np.round(likelihood.log_likelihood(parabola_model.model, prior, x).numpy(), 4))
print("by parts:      ", np.round(by_parts.numpy(), 4))

# %% [markdown]
# ## Experiments
#
# * **Other toy data sets**: two moons, rings and a grid of Gaussians (`nicelab train moons`
#   works too). Where does a volume-preserving flow struggle, and why?
# * **The prior**: train with `prior="logistic"` instead of `"gaussian"`.
# * **Capacity**: more couplings (`num_couplings=8`) or wider networks (`hidden_units=128`).

# %%
for name in toy.NAMES:
    _ = fit(name)

# %%
logistic = fit("moons", prior="logistic")
two_couplings = fit("moons", num_couplings=2)
