# %% [markdown]
# # Stage 7 (advanced): learned mixing, Glow's invertible 1x1 convolution
#
# [Open in Colab]({{COLAB_URL}}) · [the lesson on the course site]({{SITE}}lessons/7-mixing/)
# (or `docs/lessons/7-mixing.md`)
#
# Glow puts a learned invertible linear map $h = W x$ before every coupling, so that the flow
# learns which coordinates its couplings mix. Kept in LU form,
# $W = P L (U + \operatorname{diag}(s))$ with $P$ a fixed permutation, $L$ unit
# lower-triangular and $U$ strictly upper-triangular, its log-determinant is
# $\sum_d \log|s_d|$ (no determinant computed) and its inverse takes two triangular solves.
#
# You write the layer and a Glow-style flow in `lessons/mixing.py` (the flow uses your stage 6
# `AffineCoupling` here); this notebook checks them, looks inside the factors, measures what the
# LU form saves, and trains a small Glow on the two moons.

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
import time
from pathlib import Path

ROOT = next((p for p in (Path.cwd(), *Path.cwd().parents) if (p / "lessons").is_dir()), None)
if ROOT is None:
    raise RuntimeError("start Jupyter inside the nicelab project (the folder holding lessons/)")
os.chdir(ROOT)
sys.path.insert(0, str(ROOT))

IMPL = os.environ.get("NICELAB_IMPL", "lessons")  # "lessons": your code; "solutions": the reference
EPOCHS = int(os.environ.get("NICELAB_NB_EPOCHS", "30"))  # training epochs of the moons run below

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import nicelab
from nicelab.checking import autodiff_log_det, randomize
from nicelab.core import data

# %matplotlib inline
mixing = importlib.import_module(f"{IMPL}.mixing")
affine = importlib.import_module(f"{IMPL}.affine")
print(f"using {mixing.__file__}")

# %% [markdown]
# ## The checks
#
# The same checks as `pytest checks -m mixing` (your stage 7 on top of the reference stages
# 1 to 6).

# %% tags=["check"]
nicelab.check("mixing", impl=IMPL)

# %% [markdown]
# ## Inside a new layer
#
# The factors of a new layer come from a random rotation: $P$ a permutation, $L$ with ones on
# its diagonal, $U + \operatorname{diag}(s)$ upper-triangular. Their product is orthogonal, so
# $\log|\det W| = 0$ at the start.

# %%
np.set_printoptions(precision=3, suppress=True)
layer = mixing.InvertibleLinear(4, seed=0)
permutation, lower, upper = (t.numpy() for t in layer.factors())
w = layer.matrix().numpy()
print("P =\n", permutation, "\nL =\n", lower, "\nU + diag(s) =\n", upper)
print(f"max |W W^T - I| = {np.abs(w @ w.T - np.eye(4)).max():.1e}, "
      f"log_det_jacobian() = {float(layer.log_det_jacobian()):+.2e}")

# %% [markdown]
# ## After training: three log-determinants
#
# Give every trainable variable random values, as training would, and compare your
# `log_det_jacobian()` with the slogdet of `matrix()` and with the log-determinant of the
# Jacobian of your `forward` (automatic differentiation). The masks keep the structure: the
# three agree whatever values the variables take.

# %%
randomize(layer.trainable_variables, seed=1, scale=0.5)
x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
print(f"yours: {float(layer.log_det_jacobian()):+.5f}")
print(f"slogdet(matrix()): {np.linalg.slogdet(layer.matrix().numpy())[1]:+.5f}")
print(f"autodiff of forward: {np.round(autodiff_log_det(layer.forward, x), 5)}")
print(f"round trip: {np.abs(layer.backward(layer.forward(x)).numpy() - x).max():.1e}")

# %% [markdown]
# ## What the LU form saves
#
# For growing $D$, time a general $W$'s log-determinant (`slogdet`) and inverse (`inv`, then a
# product) against the LU form's sum and triangular solves, on a batch of 16 examples (sampling
# a few points). Each figure is the best of a few runs, after a first call.

# %%
def best_time(fn, repeats=5):
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


dims, rows = (32, 128, 512), []
for dim in dims:
    big = mixing.InvertibleLinear(dim, seed=0)
    h = tf.constant(np.random.default_rng(1).normal(size=(16, dim)), tf.float32)
    general = big.matrix()
    rows.append({
        "slogdet": best_time(lambda general=general: tf.linalg.slogdet(general)),
        "sum": best_time(lambda big=big: big.log_det_jacobian()),
        "inverse": best_time(lambda general=general, h=h: h @ tf.transpose(tf.linalg.inv(general))),
        "solves": best_time(lambda big=big, h=h: big.backward(h)),
    })
    print(f"D = {dim:4d}: " + ", ".join(f"{key} {value * 1e3:.2f} ms" for key, value in rows[-1].items()))

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for ax, pair, title in zip(axes, (("slogdet", "sum"), ("inverse", "solves")),
                           ("log|det W|", "backward on 16 examples"), strict=True):
    for key in pair:
        ax.loglog(dims, [row[key] * 1e3 for row in rows], "o-", label=key)
    ax.set_xlabel("D")
    ax.set_ylabel("ms")
    ax.set_title(title)
    ax.legend()
plt.show()

# %% [markdown]
# At small $D$ TensorFlow's per-call overhead hides the difference; the general matrix's
# $O(D^3)$ shows as $D$ grows, while the sum stays flat and the solves grow like $D^2$ per
# example. On a large batch the $O(D^2)$ work per example dominates both ways of inverting:
# what the LU form saves there is the decomposition at every call, and its accuracy.
#
# ## A small Glow on the two moons
#
# Train a Glow of 4 steps with Adam on the mean negative log-likelihood, with stage 6's
# `log_likelihood` and a standard Gaussian prior, then sample from it.

# %%
moons = data.load("moons")
tf.keras.utils.set_random_seed(0)
glow = mixing.Glow(2, num_steps=4, hidden_units=32, hidden_layers=2)
prior = tfp.distributions.MultivariateNormalDiag(tf.zeros(2), tf.ones(2))
optimizer = tf.keras.optimizers.Adam(3e-3)
glow.forward(moons.train[:2])  # build every layer before the first step


@tf.function
def train_step(x):
    with tf.GradientTape() as glow_tape:
        nll = -tf.reduce_mean(affine.log_likelihood(glow, prior, x))
    grads = glow_tape.gradient(nll, glow.trainable_variables)
    optimizer.apply_gradients(zip(grads, glow.trainable_variables, strict=True))
    return nll


batches = tf.data.Dataset.from_tensor_slices(moons.train.astype(np.float32)).shuffle(10000, seed=0).batch(256)
for _ in range(EPOCHS):
    for batch in batches:
        nll = train_step(batch)
test_nll = -float(tf.reduce_mean(affine.log_likelihood(glow, prior, moons.test.astype(np.float32))))
print(f"{EPOCHS} epochs: test NLL {test_nll:.3f} nats")

samples = glow.backward(prior.sample(3000, seed=1)).numpy()
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True, sharey=True)
axes[0].scatter(*moons.test[:3000].T, s=2)
axes[0].set_title("test data")
axes[1].scatter(*samples.T, s=2, color="tab:orange")
axes[1].set_title("Glow samples")
plt.show()

# %% [markdown]
# ## Experiments
#
# * **A fixed mixing**: freeze every mixing layer at its start (`trainable = False` on each) and
#   train again: a fixed rotation between the couplings. How much does learning the mixing add?
# * **An identity start**: build the mixing layers from the LU factors of the identity instead
#   of a rotation. Does training still find a good mixing, and how fast?
# * **Larger D**: push the timing table to $D = 1024$ and $2048$.
