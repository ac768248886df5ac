# %% [markdown]
# # Stage 2: the NICE model
#
# [Open in Colab]({{COLAB_URL}}) · [the lesson on the course site]({{SITE}}lessons/2-model/)
# (or `docs/lessons/2-model.md`)
#
# One coupling layer leaves half of the coordinates alone and cannot change volume. NICE stacks
# couplings of alternating parity, so that every coordinate gets changed, and ends with a
# diagonal scaling layer $h = x \odot \exp(s)$: the only part that changes volume, so
# $\log|\det \partial f / \partial x| = \sum_d s_d$, the same for every $x$. The inverse undoes
# the scale first, then the couplings in reverse order.
#
# You write the model in `lessons/model.py`; this notebook checks it and takes a model apart,
# layer by layer.

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
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import nicelab
from nicelab.checking import autodiff_log_det, randomize
from nicelab.core import data

# %matplotlib inline
model_module = importlib.import_module(f"{IMPL}.model")
print(f"using {model_module.__file__}")

# %% [markdown]
# ## The checks
#
# The same checks as `pytest checks -m model` (your stage 2 on top of the reference stage 1).

# %% tags=["check"]
nicelab.check("model", impl=IMPL)

# %% [markdown]
# ## A model taken apart
#
# A fresh model is the identity (zero output layers, zero log-scale). With random weights, follow
# the moons through every coupling and the scale: each step moves one coordinate only.

# %%
moons = data.load("moons").test[:3000]
tf.keras.utils.set_random_seed(0)
nice = model_module.NICE(2, num_couplings=4, hidden_units=32, hidden_layers=2)
nice.forward(moons[:2])  # build every layer before setting the weights
randomize(nice.trainable_variables, seed=3, scale=0.3)

steps, h = [("x", moons)], moons
for i, layer in enumerate(nice.couplings):
    h = layer.forward(h).numpy()
    steps.append((f"coupling {i + 1} (parity {layer.parity})", h))
steps.append(("h = scale(...)", h * np.exp(nice.log_scale.numpy())))

fig, axes = plt.subplots(1, len(steps), figsize=(3 * len(steps), 3))
for ax, (title, points) in zip(axes, steps, strict=True):
    ax.scatter(*points.T, s=1, c=moons[:, 0], cmap="viridis")
    ax.set_title(title, fontsize=9)
plt.show()
print(f"forward(x) is the last panel: {np.allclose(nice.forward(moons).numpy(), steps[-1][1], atol=1e-4)}")

# %% [markdown]
# ## Inverse and log-determinant, measured
#
# Compare your `log_det_jacobian()` with `sum(log_scale)` and with an autodiff Jacobian.

# %%
x_back = nice.backward(nice.forward(moons)).numpy()
print(f"max |backward(forward(x)) - x| = {np.abs(x_back - moons).max():.2e}")
print(f"log_det_jacobian() = {float(nice.log_det_jacobian()):+.5f}, "
      f"sum(log_scale) = {float(tf.reduce_sum(nice.log_scale)):+.5f}, "
      f"autodiff mean = {autodiff_log_det(nice.forward, moons[:200]).mean():+.5f}")

# %% [markdown]
# ## Experiments
#
# * Set `log_scale` by hand: the latent stretches and shrinks, and the log-determinant follows.
# * Change `num_couplings` (1, 2, 8): with one coupling, one coordinate never moves.
# * What happens to the round trip if `backward` undid the couplings in the same order as
#   `forward`? (Try it in a copy of your code, not in `lessons/`.)

# %%
nice.log_scale.assign([np.log(2.0), np.log(0.5)])
h = nice.forward(moons).numpy()
print(f"log-det with scales 2 and 0.5: {float(nice.log_det_jacobian()):+.4f} (volume kept)")
nice.log_scale.assign([np.log(3.0), np.log(3.0)])
h3 = nice.forward(moons).numpy()
print(f"log-det with scales 3 and 3: {float(nice.log_det_jacobian()):+.4f} = 2 log 3 = {2 * np.log(3):+.4f}")
fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), sharex=True, sharey=True)
axes[0].scatter(*h.T, s=1)
axes[0].set_title("scales (2, 0.5)")
axes[1].scatter(*h3.T, s=1)
axes[1].set_title("scales (3, 3)")
plt.show()

# %%
for n in (1, 2, 8):
    small = model_module.NICE(2, num_couplings=n, hidden_units=16, hidden_layers=1)
    small.forward(moons[:2])
    randomize(small.trainable_variables, seed=n, scale=0.3)
    small.log_scale.assign(tf.zeros(2))
    moved = np.abs(small.forward(moons).numpy() - moons).max(axis=0)
    print(f"{n} coupling(s): largest change per coordinate {moved.round(3)}")
