# %% [markdown]
# # Stage 1: the additive coupling layer
#
# [Open in Colab]({{COLAB_URL}}) · [the lesson on the course site]({{SITE}}lessons/1-coupling/)
# (or `docs/lessons/1-coupling.md`)
#
# A normalizing flow needs layers that are invertible, with a cheap inverse and a cheap
# Jacobian determinant. NICE's coupling layer splits $x$ into a part it keeps and a part it
# changes, and shifts the changed part by any neural network $m$ of the kept part:
# $y_{I_1} = x_{I_1}$, $y_{I_2} = x_{I_2} + m(x_{I_1})$. The inverse subtracts the same shift,
# and $\log|\det J| = 0$ whatever $m$ is.
#
# You write the layer in `lessons/coupling.py`; this notebook checks it, then looks at what it
# does to data.

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
coupling = importlib.import_module(f"{IMPL}.coupling")
print(f"using {coupling.__file__}")

# %% [markdown]
# ## The checks
#
# The same checks as `pytest checks -m coupling`, one line each. Fix the first failure, save
# `lessons/coupling.py`, run the cell again.

# %% tags=["check"]
nicelab.check("coupling", impl=IMPL)

# %% [markdown]
# ## One layer on the moons
#
# A fresh layer is the identity (its network's output layer starts at zero), so give it random
# weights first. Then only one coordinate of each point moves, by an amount that depends on the
# other one alone.

# %%
moons = data.load("moons").test[:3000]
tf.keras.utils.set_random_seed(0)
layer = coupling.AdditiveCoupling(2, parity=0, hidden_units=32, hidden_layers=2)
layer.forward(moons[:2])  # build the network before setting its weights
randomize(layer.trainable_variables, seed=1, scale=0.3)

y = layer.forward(moons).numpy()
moved = np.abs(y - moons).max(axis=0)
print(f"largest change of each coordinate: {moved.round(3)}")

fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True)
axes[0].scatter(*moons.T, s=2, c=moons[:, 0], cmap="viridis")
axes[0].set_title("x (coloured by x1)")
axes[1].scatter(*y.T, s=2, c=moons[:, 0], cmap="viridis")
axes[1].set_title("y = forward(x), parity 0")
plt.show()

# %% [markdown]
# ## Inverse and Jacobian, measured
#
# `backward(forward(x))` should give `x` back to float32 rounding, and the log-determinant of
# the Jacobian (computed here by automatic differentiation, not by your code) should be 0.

# %%
x_back = layer.backward(layer.forward(moons)).numpy()
print(f"max |backward(forward(x)) - x| = {np.abs(x_back - moons).max():.2e}")
log_det = autodiff_log_det(layer.forward, moons[:200])
print(f"log|det J| over 200 points: min {log_det.min():+.2e}, max {log_det.max():+.2e}")

# %% [markdown]
# ## Experiments
#
# * Two layers of opposite parity change both coordinates: stack them and look.
# * Change `DIM` to an odd number: which coordinates does each parity keep and change?
# * Make the network bigger (`hidden_units`, `hidden_layers`) or the weights larger (`scale`):
#   the map bends more, and the inverse is still exact.

# %%
other = coupling.AdditiveCoupling(2, parity=1, hidden_units=32, hidden_layers=2)
other.forward(moons[:2])
randomize(other.trainable_variables, seed=2, scale=0.3)
z = other.forward(y).numpy()

fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
titles = ("x", "after parity 0", "after parity 0, then 1")
for ax, points, title in zip(axes, (moons, y, z), titles, strict=True):
    ax.scatter(*points.T, s=2, c=moons[:, 0], cmap="viridis")
    ax.set_title(title)
plt.show()
print(f"round trip through both: {np.abs(layer.backward(other.backward(z)).numpy() - moons).max():.2e}")

# %%
DIM = 5
x = np.random.default_rng(0).normal(size=(4, DIM)).astype(np.float32)
for parity in (0, 1):
    layer_d = coupling.AdditiveCoupling(DIM, parity=parity, hidden_units=16, hidden_layers=1)
    layer_d.forward(x)
    randomize(layer_d.trainable_variables, seed=parity)
    changed = np.flatnonzero(np.abs(layer_d.forward(x).numpy() - x).max(axis=0) > 0)
    print(f"parity {parity} changes coordinates {changed.tolist()} of {DIM}")
