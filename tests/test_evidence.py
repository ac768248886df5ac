"""Issue 21: verdicts from evidence the grader computes itself.

Whatever runs in the graded process (the student's functions and the recipes run beside them) is
the student's, whatever it claims: the checks derive Jacobians from the answers of ``forward``,
verify every reported gradient against how the answers move, score a training run by the
weights it reports, read the source for TFP themselves, and check an answer's shape before they
compute with it. These tests pin those tools, then grade forgers that replace the recipes (from
the lesson module and from a helper module next to it) and win nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from mutation_support import all_mutants, grade_jobs

from nicelab.grader import evidence
from nicelab.grader.recipes import common

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
MUTANTS = {m.name: m for m in all_mutants()}

#: A helper module next to the lesson: a static import of the recipes (no scan reads helpers),
#: forged gradient reports and log-determinants, and a training run made with a correct step.
FORGE = '''
import numpy as np
import tensorflow as tf
from nicelab.grader.recipes import REGISTRY, common, likelihood as _recipes


def _claims(fn, variables, x, extra=None):
    return [{"name": str(v.name), "has": True, "nonzero": True,
             "grad": np.ones(tuple(v.shape))} for v in variables]


def _log_det(fn, x):
    return np.zeros(len(x))


def _run(likelihood, flow, prior, train, settings):
    optimizer = tf.keras.optimizers.Adam(settings["lr"])
    rng = np.random.default_rng(1)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(likelihood.log_likelihood(flow, prior, batch))
        grads = tape.gradient(loss, flow.trainable_variables)
        optimizer.apply_gradients(zip(grads, flow.trainable_variables))

    for _ in range(settings["steps"]):
        step(tf.constant(train[rng.integers(0, len(train), settings["batch"])]))
    return {**{f"w{i}": w.numpy() for i, w in enumerate(flow.weights)}, "losses": np.zeros(3)}


for _name, _fn in (("gradients_of_sum_of_squares", _claims), ("autodiff_log_det", _log_det)):
    REGISTRY[f"nicelab.grader.recipes.common:{_name}"] = _fn
    setattr(common, _name, _fn)
REGISTRY["nicelab.grader.recipes.likelihood:train_on_parabola"] = _run
'''
#: The same forgery from the lesson module itself, by a dynamic import.
DYNAMIC = '''
import importlib as _il
_il.import_module("nicelab.grader" + ".recipes.common")  # registered before it is replaced
_registry = _il.import_module("nicelab.grader" + ".recipes").REGISTRY
_registry["nicelab.grader.recipes.common:gradients_of_sum_of_squares"] = (
    lambda fn, variables, x, extra=None: [{"name": str(v.name), "has": True, "nonzero": True, "grad": None}
                                          for v in variables])
'''
#: Stage 3's forbidden TFP in logistic_log_density, and a train_step that climbs the gradient.
TFP_DENSITY = "    return tf.reduce_sum(tfp.distributions.Logistic(0.0, 1.0).log_prob(h), axis=-1)\n"
TFP_IMPORT = "import tensorflow as tf\nimport tensorflow_probability as tfp\n"


# ---------------------------------------------------------------------------------------------
# The tools


def test_numerical_log_det_of_a_linear_map_and_of_a_coupling():
    a = np.array([[2.0, 1.0, 0.0], [0.0, 0.5, 0.0], [1.0, 0.0, 3.0]], np.float32)
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    got = evidence.numerical_log_det(lambda z: np.asarray(z) @ a.T, x)
    np.testing.assert_allclose(got, np.log(abs(np.linalg.det(a))), atol=1e-3)
    coupling = __import__("solutions.coupling", fromlist=["AdditiveCoupling"])
    layer = coupling.AdditiveCoupling(6, 0, hidden_units=16, hidden_layers=1)
    batch = np.random.default_rng(1).normal(size=(8, 6)).astype(np.float32)
    layer.forward(batch)
    evidence.assign_random(layer.trainable_variables, seed=0)
    log_det = evidence.numerical_log_det(layer.forward, batch)
    assert np.sum(np.isfinite(log_det)) >= 6 and np.nanmax(np.abs(log_det)) < 1e-2
    scaled = evidence.numerical_log_det(lambda z: 2.0 * np.asarray(layer.forward(z)), batch)
    np.testing.assert_allclose(scaled[np.isfinite(scaled)], 6 * np.log(2.0), atol=1e-2)


def test_numerical_log_det_leaves_out_a_kink():
    x = np.array([[0.001, 1.0], [0.5, 1.0]], np.float32)  # the first straddles the kink at 0
    got = evidence.numerical_log_det(lambda z: np.stack([np.abs(z[:, 0]) * 3 + z[:, 0], z[:, 1]], 1), x)
    assert np.isnan(got[0]) and abs(got[1] - np.log(4.0)) < 1e-3


def test_verify_gradients_accepts_the_tape_and_refuses_forgeries():
    tf.keras.utils.set_random_seed(0)
    dense = tf.keras.layers.Dense(4)
    x = np.random.default_rng(2).normal(size=(16, 4)).astype(np.float32)
    dense(x)
    variables = list(dense.trainable_variables)
    true = common.gradients_of_sum_of_squares(dense, variables, x)
    assert all(c["verified"] for c in evidence.verify_gradients(dense, variables, x, true))
    forged = [{**c, "grad": np.ones_like(c["grad"])} for c in true]
    assert not any(c["verified"] for c in evidence.verify_gradients(dense, variables, x, forged))
    one_false = [dict(c) for c in true]  # the kernel's claim turned a quarter turn: named alone
    one_false[0]["grad"] = np.rot90(one_false[0]["grad"]).copy()
    assert [c["verified"] for c in evidence.verify_gradients(dense, variables, x, one_false)] == [False, True]
    hidden = [{**c, "grad": None} for c in true]
    assert not any(c["verified"] for c in evidence.verify_gradients(dense, variables, x, hidden))
    before = [v.numpy() for v in variables]
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, variables, strict=True))  # restored


def test_names_from_reads_tfp_through_aliases_helpers_and_dynamic_imports(tmp_path):
    (tmp_path / "helpers.py").write_text(
        "import tensorflow_probability as tfp\n\n\n"
        "def density(h):\n    return tfp.distributions.Logistic(0., 1.).log_prob(h)\n")
    cases = {
        "clean": "import tensorflow as tf\n\n\ndef f(h):\n    return -tf.abs(h)\n",
        "alias": "import tensorflow_probability as tfp\ntfd = tfp.distributions\n\n\n"
                 "def g(h):\n    return h\n\n\ndef f(h):\n    return g(tfd.Logistic(0., 1.).log_prob(h))\n",
        "helper": "from .helpers import density\n\n\ndef f(h):\n    return density(h)\n",
        "dynamic": "import importlib\n\n\ndef f(h):\n    return importlib.import_module('x')\n",
        "inside": "def f(h):\n    import tensorflow_probability\n    return h\n",
    }
    for name, source in cases.items():
        (tmp_path / f"{name}.py").write_text(source)
        found = evidence.names_from(tmp_path / f"{name}.py", "f", "tensorflow_probability")
        assert bool(found) == (name != "clean"), (name, found)


def test_an_answer_of_another_shape_is_refused_before_use():
    huge = np.zeros((1_200_000, 1, 1), np.float32)
    with pytest.raises(evidence.AnswerShapeError, match=r"\(1200000, 1, 1\)"):
        evidence.shaped(huge, (50, 4), "sample")
    np.testing.assert_array_equal(evidence.shaped(np.ones((2, 3)), (2, 3), "forward"), np.ones((2, 3)))


# ---------------------------------------------------------------------------------------------
# Forgers graded as in a batch: the recipes they replace change nothing


def _submission(into: Path, mutant: str, forge: str | None = None, extra: str = "") -> Path:
    MUTANTS[mutant].build(into)
    stage_file = into / MUTANTS[mutant].file
    text = stage_file.read_text()
    if forge == "helper":
        (into / "_forge.py").write_text(FORGE)
        text = text.replace("import tensorflow as tf\n", "import tensorflow as tf\nfrom . import _forge\n", 1)
    elif forge == "dynamic":
        text = text.replace("import tensorflow as tf\n", "import tensorflow as tf\n" + DYNAMIC, 1)
    stage_file.write_text(text + extra)
    return into


def _passed(results: list[dict]) -> set[str]:
    return {r["nodeid"] for r in results if r["outcome"] == "passed"}


@pytest.mark.slow
def test_recipe_forgers_win_nothing(tmp_path):
    """The forged recipes' answers are claims the checks no longer take: each forger passes
    no check that its mistake fails without the forgery (graded in-process)."""
    jobs, subs = [], {
        "numpy_plain": (_submission(tmp_path / "numpy_plain", "coupling_numpy_inside"), "coupling", None),
        "numpy_helper": (_submission(tmp_path / "numpy_helper", "coupling_numpy_inside", "helper"),
                         "coupling", "process"),
        "numpy_dynamic": (_submission(tmp_path / "numpy_dynamic", "coupling_numpy_inside", "dynamic"),
                          "coupling", "process"),
    }
    for name, forge in (("climb_plain", None), ("climb_helper", "helper")):
        sub = _submission(tmp_path / name, "likelihood_climbs_the_gradient", forge)
        text = (sub / "likelihood.py").read_text()
        start = text.index("    # BEGIN SOLUTION: logistic_log_density")
        end = text.index("    # END SOLUTION", start)
        text = text[:start] + TFP_DENSITY + text[end:].split("\n", 1)[1]
        (sub / "likelihood.py").write_text(text.replace("import tensorflow as tf\n", TFP_IMPORT, 1))
        subs[name] = (sub, "likelihood", None if forge is None else "process")
    for name, (sub, stage, mode) in subs.items():
        jobs.append({"name": name, "impl": str(sub), "stage": stage, "check": None, "remote": mode})
    results = grade_jobs(jobs, tmp_path)
    by_name = {name: {r["nodeid"]: r for r in rows} for name, rows in results.items()}
    for forger, plain in (("numpy_helper", "numpy_plain"), ("numpy_dynamic", "numpy_plain"),
                          ("climb_helper", "climb_plain")):
        assert _passed(results[forger]) <= _passed(results[plain]), (forger, _passed(results[forger]) -
                                                                     _passed(results[plain]))
    for name in ("numpy_helper", "numpy_dynamic"):
        gradients = by_name[name]["checks/test_coupling.py::test_gradients_reach_every_variable[0]"]
        assert gradients["outcome"] == "failed" and "gradients for" in gradients["message"], gradients
    climb = by_name["climb_helper"]
    by_hand = climb["checks/test_likelihood.py::test_logistic_log_density_is_written_by_hand"]
    assert by_hand["outcome"] == "failed"
    step = climb["checks/test_likelihood.py::test_train_step_returns_the_mean_nll_and_updates"]
    assert step["outcome"] == "failed" and "gradient ascent" in step["message"], step
    assert climb["checks/test_likelihood.py::test_training_gets_near_the_entropy"]["outcome"] == "failed"


@pytest.mark.slow
def test_a_broadcast_answer_is_refused_before_it_costs_memory(tmp_path):
    """``sample`` answering (1.2M, 1, 1): the check fails on the shape, and the grader's process
    peaks no higher than on the reference (a broadcast against (50, 4) would add about 2 GB)."""
    sub = tmp_path / "huge"
    shutil.copytree(SOLUTIONS, sub, ignore=shutil.ignore_patterns("__pycache__"))
    (sub / "likelihood.py").write_text((sub / "likelihood.py").read_text() + textwrap.dedent('''

        def sample(model, prior, n, seed=None):
            import numpy
            return numpy.zeros((1_200_000, 1, 1), numpy.float32)
        '''))
    runs = {}
    for name, impl in (("reference", SOLUTIONS), ("huge", sub)):  # side by side: one peak each
        command = [sys.executable, "-m", "pytest", "checks", "-q", "-p", "no:cacheprovider",
                   "--impl", str(impl), "-m", "likelihood", "-k", "shape_and_seed", "--remote", "process"]
        script = (f"import resource, subprocess; subprocess.run({command!r}); "
                  "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        runs[name] = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    out = {name: run.communicate(timeout=600)[0] for name, run in runs.items()}
    assert "1 failed" in out["huge"] and "(1200000, 1, 1)" in out["huge"], out["huge"][-2000:]
    peaks = {name: int(text.strip().splitlines()[-1]) / 1024 for name, text in out.items()}
    assert peaks["huge"] < peaks["reference"] + 500, json.dumps(peaks)
