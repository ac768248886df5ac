# %% [markdown]
# # Stage 6 (advanced): the affine coupling layer and RealNVP
#
# [Open in Colab]({{COLAB_URL}}) · [the lesson on the course site]({{SITE}}lessons/6-affine/)
# (or `docs/lessons/6-affine.md`)
#
# NICE's coupling only shifts the changed part, so every coupling keeps volume and the whole
# flow can only stretch space by one fixed diagonal scale. RealNVP's affine coupling also
# scales it, by an amount computed from the kept part:
# $y_{change} = x_{change} \odot e^{s(x_{keep})} + t(x_{keep})$. The inverse divides by the same
# $e^{s}$, and $\log|\det J| = \sum_j s_j(x_{keep})$: one value per example.
#
# You write the layer, the flow and its likelihood in `lessons/affine.py`; this notebook checks
# them, measures the log-determinant example by example, shows what the bound on $s$ buys,
# and trains RealNVP and NICE of the same size on the two moons.

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
EPOCHS = int(os.environ.get("NICELAB_NB_EPOCHS", "10"))  # the moons run below: 100 steps per epoch

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import nicelab
from nicelab.checking import autodiff_log_det, randomize
from nicelab.core import data

# %matplotlib inline
affine = importlib.import_module(f"{IMPL}.affine")
model = importlib.import_module(f"{IMPL}.model")
print(f"using {affine.__file__}")

# %% [markdown]
# ## The checks
#
# The same checks as `pytest checks -m affine`, one line each. Fix the first failure, save
# `lessons/affine.py`, run the cell again.

# %% tags=["check"]
nicelab.check("affine", impl=IMPL)

# %% [markdown]
# ## One layer on the moons, and its log-determinant point by point
#
# A fresh layer is the identity, so give it random weights first. Colour each point by the
# log-determinant your layer reports there: unlike NICE's couplings, it changes from point to
# point, and it depends on the kept coordinate only.

# %%
moons = data.load("moons").test[:3000]
tf.keras.utils.set_random_seed(0)
layer = affine.AffineCoupling(2, parity=0, hidden_units=32, hidden_layers=2)
layer.forward(moons[:2])  # build the network before setting its weights
randomize(layer.trainable_variables, seed=1, scale=0.3)

y = layer.forward(moons).numpy()
log_det = layer.log_det_jacobian(moons).numpy()
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
axes[0].scatter(*moons.T, s=2, c=log_det, cmap="coolwarm")
axes[0].set_title("x, coloured by log|det J| at x")
shown = axes[1].scatter(*y.T, s=2, c=log_det, cmap="coolwarm")
axes[1].set_title("y = forward(x)")
fig.colorbar(shown, ax=axes[1])
plt.show()

# %% [markdown]
# ## Inverse and Jacobian, measured
#
# `backward(forward(x))` should give `x` back to float32 rounding, and your
# `log_det_jacobian(x)` should match the log-determinant of forward's Jacobian computed by
# automatic differentiation, at every point.

# %%
x_back = layer.backward(layer.forward(moons)).numpy()
print(f"max |backward(forward(x)) - x| = {np.abs(x_back - moons).max():.2e}")
measured = autodiff_log_det(layer.forward, moons[:200])
print(f"log|det J| over 200 points: from {measured.min():+.3f} to {measured.max():+.3f}; "
      f"largest gap to yours {np.abs(measured - log_det[:200]).max():.2e}")

# %% [markdown]
# ## What the bound on s buys
#
# Feed the layer points further and further out. An unbounded $s$ grows with its input until
# $e^{s}$ is `inf` in float32 (from $s = 89$ on); a bounded one levels off.

# %%
for size in (1.0, 10.0, 100.0, 1e3, 1e4):
    far = (moons[:500] * size).astype(np.float32)
    values = layer.log_det_jacobian(far).numpy()
    finite = np.isfinite(layer.forward(far).numpy()).all()
    print(f"inputs x {size:>7g}: largest |log det J| {np.abs(values).max():8.3f}, forward finite: {finite}")

# %% [markdown]
# ## RealNVP against NICE on the two moons
#
# The same data, the same network sizes, the same optimizer and number of steps; the NLL under
# a standard Gaussian prior, in nats per point. The moons are turned by 45 degrees, so that no
# coordinate alone separates them.

# %%
turn = np.array([[1.0, -1.0], [1.0, 1.0]], dtype=np.float32) / np.sqrt(2.0)
moons_data = data.load("moons")
train, test = moons_data.train @ turn.T, moons_data.test[:5000] @ turn.T
prior = tfp.distributions.MultivariateNormalDiag(tf.zeros(2), tf.ones(2))


def nll(flow, x):
    """Mean negative log-likelihood in nats: -(log p_H(f(x)) + log|det df/dx|)."""
    if isinstance(flow, model.NICE):
        return -tf.reduce_mean(prior.log_prob(flow.forward(x)) + flow.log_det_jacobian())
    return -tf.reduce_mean(affine.log_likelihood(flow, prior, x))


def fit(flow, steps, batch=256, seed=0):
    flow.forward(train[:2])
    optimizer = tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.CosineDecay(1e-2, steps, 0.0))

    @tf.function
    def step(x):
        with tf.GradientTape() as fit_tape:
            value = nll(flow, x)
        optimizer.apply_gradients(zip(fit_tape.gradient(value, flow.trainable_variables),
                                      flow.trainable_variables, strict=True))

    picks = np.random.default_rng(seed)
    for _ in range(steps):
        step(tf.constant(train[picks.integers(0, len(train), batch)]))
    return float(nll(flow, test))


tf.keras.utils.set_random_seed(0)
sizes = {"num_couplings": 4, "hidden_units": 32, "hidden_layers": 2}
flows = {"NICE": model.NICE(2, **sizes), "RealNVP": affine.RealNVP(2, **sizes)}
scores = {name: fit(flow, 100 * EPOCHS) for name, flow in flows.items()}
for name, score in scores.items():
    print(f"{name:8s} test NLL {score:.3f} nats")

# %%
grid = np.stack(np.meshgrid(np.linspace(-3.5, 3.5, 150), np.linspace(-3.5, 3.5, 150)), -1).reshape(-1, 2)
grid = grid.astype(np.float32)
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
axes[0].scatter(*test[:3000].T, s=1)
axes[0].set_title("test data")
for ax, (name, flow) in zip(axes[1:], flows.items(), strict=True):
    if name == "NICE":
        log_p = prior.log_prob(flow.forward(grid)) + flow.log_det_jacobian()
    else:
        log_p = affine.log_likelihood(flow, prior, grid)
    ax.imshow(np.exp(np.asarray(log_p)).reshape(150, 150), origin="lower", extent=(-3.5, 3.5, -3.5, 3.5))
    ax.set_title(f"{name}: density (NLL {scores[name]:.2f})")
plt.show()

# %% [markdown]
# ## Experiments
#
# * Change the bound: a larger factor, or none at all. What happens to the inputs-far-out table,
#   and to training at a high learning rate?
# * Train longer (`EPOCHS`): does NICE catch up? Where does its density stay wrong?
# * Make RealNVP deeper (`num_couplings`): how much does each pair of couplings buy?
