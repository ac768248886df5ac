# %% [markdown]
# # Stage 4: inpainting
#
# [Open in Colab]({{COLAB_URL}}) · [the lesson on the course site]({{SITE}}lessons/4-inpainting/)
# (or `docs/lessons/4-inpainting.md`)
#
# A model with an exact, differentiable density can fill in missing values: keep the observed
# entries $x_O$ fixed and climb $\log p_X$ over the hidden ones $x_H$ by projected gradient
# ascent (NICE paper, section 5.2), with steps $\alpha_i = \alpha_0 \cdot 100 / (100 + i)$, an
# optional Gaussian noise term, and a projection onto the data's box after every step.
#
# You write `inpaint` in `lessons/inpainting.py`; this notebook checks it and runs it on the
# parabola and on digits, with any set of hidden pixels you like. The models are the reference
# ones the checks use (trained once, shipped with nicelab), so your stage 4 is all that runs
# of yours; set `OWN_MODEL = True` below to use a model trained with your stages 1-3 instead.

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
OWN_MODEL = False  # True: train (once, then reuse) a model with your own stages 1-3

import matplotlib.pyplot as plt
import numpy as np

import nicelab
from nicelab.core import runs
from nicelab.core.config import PRESETS
from nicelab.core.data import load
from nicelab.grader import fixtures
from nicelab.plots.training import image_grid
from nicelab.tasks.inpaint import make_masks

# %matplotlib inline
inpainting = importlib.import_module(f"{IMPL}.inpainting")
print(f"using {inpainting.__file__}")

# %% [markdown]
# ## The checks
#
# The same checks as `pytest checks -m inpainting` (your stage 4 on the reference stages 1-3).

# %% tags=["check"]
nicelab.check("inpainting", impl=IMPL)

# %%
def trained_model(name):
    """(model, prior, data): the reference model of the checks, or your own (OWN_MODEL)."""
    if not OWN_MODEL:
        return fixtures.trained_reference(name)
    own = {s: importlib.import_module(f"{IMPL}.{s}") for s in runs.TRAINED_STAGES}
    dataset = load(name)
    trained, _ = runs.load_or_train(own, dataset, PRESETS[name], IMPL)
    return trained.model, trained.prior, dataset


def log_lik(model, prior, x):
    likelihood = importlib.import_module(f"{'solutions' if not OWN_MODEL else IMPL}.likelihood")
    return likelihood.log_likelihood(model, prior, x).numpy()

# %% [markdown]
# ## The parabola: one coordinate from the other
#
# Hide $x_1$ and keep $x_2$: the filled $x_1$ should land near the curve $x_1 = x_2^2/4$. The
# hidden values start at random training values.

# %%
model, prior, parabola = trained_model("parabola")
rng = np.random.default_rng(0)
truth = parabola.test[:500]
known = make_masks("x1", len(truth), 2, None, rng)
start = np.where(known, truth, parabola.train[rng.integers(0, len(parabola.train), len(truth))])
filled = np.asarray(inpainting.inpaint(model, prior, start, known, steps=300, step_size=0.1, seed=0))
print(f"mean log-likelihood: start {log_lik(model, prior, start).mean():.2f}, "
      f"inpainted {log_lik(model, prior, filled).mean():.2f}, "
      f"truth {log_lik(model, prior, truth).mean():.2f}")
print(f"observed x2 unchanged: {np.array_equal(filled[:, 1], start[:, 1])}")
curve = np.linspace(-12, 12, 200)
plt.scatter(*parabola.test[:3000].T, s=2, color="lightgrey", label="data")
plt.scatter(*start.T, s=4, alpha=0.5, label="start")
plt.scatter(*filled.T, s=4, label="inpainted x1")
plt.plot(curve**2 / 4, curve, "k", lw=0.8, label="x1 = x2^2 / 4")
plt.xlim(-4, 30)
plt.legend(markerscale=3)
plt.show()

# %% [markdown]
# ## Digits: hide any set of pixels
#
# `HIDDEN` is an 8 x 8 boolean image: True where the pixel is hidden. Draw your own (a stripe,
# a corner, a checkerboard), or use one of the named masks of `nicelab inpaint`. Hidden pixels
# start at the mean training image, the baseline to beat.

# %%
model, prior, digits = trained_model("digits")
HIDDEN = np.zeros((8, 8), dtype=bool)
HIDDEN[4:, :] = True  # the bottom half; try HIDDEN[:, ::2] = True, HIDDEN[2:6, 2:6] = True, ...

n = 10
truth = digits.test[:n]
known = np.broadcast_to(~HIDDEN.ravel(), truth.shape).copy()
start = np.where(known, truth, digits.train.mean(axis=0)).astype(np.float32)


def fill(step_size, steps=300, noise=0.0, bounds=(0.0, 1.0)):
    result = inpainting.inpaint(model, prior, start, known, steps=steps, step_size=step_size,
                                noise=noise, bounds=bounds, seed=0)
    return np.asarray(result)


def show(result, title):
    masked = np.where(known, truth, 0.0)
    rows = np.concatenate([image_grid(x, (8, 8), columns=n) for x in (truth, masked, result)])
    plt.figure(figsize=(8, 2.8))
    plt.imshow(rows, cmap="gray", vmin=0, vmax=1)
    plt.title(f"{title}: original | hidden set to 0 | inpainted", fontsize=9)
    plt.axis("off")
    plt.show()


def mse(result):
    return float(np.mean((result - truth)[~known] ** 2))


# A sharp density needs a small step: pick the one that climbs highest.
scores = {size: log_lik(model, prior, fill(size)).mean() for size in (0.1, 0.01, 0.001)}
print("mean log-likelihood reached per step size:", {k: round(float(v), 1) for k, v in scores.items()})
STEP = max(scores, key=lambda k: scores[k] if np.isfinite(scores[k]) else -np.inf)
result = fill(STEP)
print(f"step size {STEP}: MSE of the hidden pixels {mse(result):.4f}, mean fill {mse(start):.4f}")
show(result, f"step size {STEP}")

# %% [markdown]
# ## Experiments
#
# * Hide a random fraction of the pixels (`random25` ... `random90`): when does inpainting stop
#   beating the mean image?
# * The noise term (`noise=0.1`) and the projection (`bounds=None`): what changes?
# * Fewer steps: how fast does the log-likelihood climb?

# %%
for kind in ("random25", "random50", "random90"):
    known = make_masks(kind, n, 64, (8, 8), np.random.default_rng(1))
    start = np.where(known, truth, digits.train.mean(axis=0)).astype(np.float32)
    result = fill(STEP)
    print(f"{kind}: MSE inpainted {mse(result):.4f}, mean fill {mse(start):.4f}")
show(result, "random90")

# %%
for label, kwargs in {"noise 0.1": {"noise": 0.1}, "no projection": {"bounds": None},
                      "30 steps": {"steps": 30}}.items():
    result = fill(STEP, **kwargs)
    print(f"{label}: MSE {mse(result):.4f}, "
          f"mean log-likelihood {log_lik(model, prior, result).mean():.1f}, "
          f"range of the filled pixels [{result[~known].min():.2f}, {result[~known].max():.2f}]")
