# %% [markdown]
# # Stage 5: outlier detection
#
# [Open in Colab]({{COLAB_URL}}) · [the lesson on the course site]({{SITE}}lessons/5-outliers/)
# (or `docs/lessons/5-outliers.md`)
#
# Flag an input as an outlier when its log-likelihood falls below a threshold $\tau$ chosen on
# clean validation data for a false-alarm rate; measure precision and recall on corrupted test
# data. Then the known failure: some corruptions are *more* likely than clean data under the
# model (Nalisnick et al. 2019), and the remedy, a two-sided typicality test on batches.
#
# You write `lessons/outliers.py`; this notebook checks it and runs your detector on digits with
# the reference model of the checks, across corruption kinds, levels and thresholds.

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

import nicelab
from nicelab.grader import fixtures
from nicelab.tasks import corruptions

# %matplotlib inline
outliers = importlib.import_module(f"{IMPL}.outliers")
likelihood = importlib.import_module("solutions.likelihood")  # the reference model's stage 3
print(f"using {outliers.__file__}")

# %% [markdown]
# ## The checks
#
# The same checks as `pytest checks -m outliers`.

# %% tags=["check"]
nicelab.check("outliers", impl=IMPL)

# %%
model, prior, digits = fixtures.trained_reference("digits")


def log_lik(x):
    return likelihood.log_likelihood(model, prior, np.asarray(x, dtype=np.float32)).numpy()


ll_valid, ll_test = log_lik(digits.valid), log_lik(digits.test)
RATE = 0.05
tau = float(outliers.choose_threshold(ll_valid, RATE))
flags = np.asarray(outliers.flag_outliers(ll_test, tau))
print(f"threshold {tau:.2f} nats for a {RATE:.0%} false-alarm rate: flags {flags.mean():.1%} of clean test")

# %% [markdown]
# ## Corruption levels
#
# Each corruption at growing levels, mixed 1:1 with the clean test set: precision and recall of
# your detector (outliers are the positive class).

# %%
LEVELS = {"noise": (0.01, 0.05, 0.1, 0.2), "rotate": (5, 15, 30, 60),
          "contrast": (0.1, 0.2, 0.4, 0.8), "morph": (0.1, 0.2, 0.4, 0.8)}
targets, _ = corruptions.morph_targets(digits.dim, "digits")
is_outlier = np.r_[np.zeros(len(ll_test), bool), np.ones(len(ll_test), bool)]
table = {}
for kind, levels in LEVELS.items():
    for level in levels:
        extra = {"targets": targets} if kind == "morph" else {}
        corrupted = outliers.corrupt(digits.test, kind, level, seed=0, **extra)
        ll = log_lik(corrupted)
        scores = np.concatenate([ll_test, ll])
        precision, recall = outliers.precision_recall(outliers.flag_outliers(scores, tau), is_outlier)
        table[kind, level] = ll
        print(f"{kind:8s} {level:5g}: mean log-lik {ll.mean():8.1f} (clean {ll_test.mean():.1f}), "
              f"precision {precision:.3f}, recall {recall:.3f}")

# %% [markdown]
# ## Thresholds
#
# The false-alarm rate sets $\tau$; recall follows. Pick a corruption and a level and sweep the
# rate.

# %%
KIND, LEVEL = "noise", 0.05
rates = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
recalls, false_alarms = [], []
for rate in rates:
    t = float(outliers.choose_threshold(ll_valid, rate))
    recalls.append(np.asarray(outliers.flag_outliers(table[KIND, LEVEL], t)).mean())
    false_alarms.append(np.asarray(outliers.flag_outliers(ll_test, t)).mean())
plt.plot(false_alarms, recalls, "o-")
plt.xlabel("false alarms on clean test")
plt.ylabel(f"recall on {KIND} {LEVEL:g}")
plt.title("one point per false-alarm rate asked for")
plt.show()

low, high = np.percentile(np.r_[ll_test, table[KIND, LEVEL]], [1, 99.5])
bins = np.linspace(low, high, 40)
plt.hist(np.clip(ll_test, low, high), bins, alpha=0.6, density=True, label="clean test")
plt.hist(np.clip(table[KIND, LEVEL], low, high), bins, alpha=0.6, density=True, label=f"{KIND} {LEVEL:g}")
plt.axvline(tau, color="k", ls="--", label=f"tau at {RATE:.0%}")
plt.xlabel("log-likelihood (nats)")
plt.legend()
plt.show()

# %% [markdown]
# ## The failure, and the typicality test
#
# Find the corruption the model likes *better* than clean data, then test batches of it:
# flag a batch when its mean NLL is more than $\epsilon$ from the entropy estimate, on either
# side. Try other batch sizes.

# %%
worst = max(table, key=lambda key: table[key].mean())
print(f"most likely corruption: {worst[0]} {worst[1]:g}, mean log-lik {table[worst].mean():.1f} "
      f"(clean {ll_test.mean():.1f})")
if not hasattr(outliers, "fit_typicality"):
    print("this outliers module has no fit_typicality / flag_batches yet (see the lesson page)")
for batch_size in (1, 5, 10, 25) if hasattr(outliers, "fit_typicality") else ():
    entropy, epsilon = outliers.fit_typicality(ll_valid, batch_size, RATE, seed=0)
    usable = len(ll_test) // batch_size * batch_size
    clean_batches = ll_test[:usable].reshape(-1, batch_size)
    bad_batches = table[worst][:usable].reshape(-1, batch_size)
    detected = np.mean(outliers.flag_batches(bad_batches, entropy, epsilon))
    flagged = np.mean(outliers.flag_batches(clean_batches, entropy, epsilon))
    print(f"batches of {batch_size:2d}: detected {detected:.0%}, clean batches flagged {flagged:.0%}")
