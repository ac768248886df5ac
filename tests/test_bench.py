"""``nicelab bench``'s pieces: exact FLOP counts, the PyTorch peer computes the reference's very
log-likelihood (and Adam steps), honest baselines, per-child peak memory, the table. No test
asserts a wall time."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from nicelab.core.quiet import import_tensorflow

tf = import_tensorflow()

import benchmarks as bench  # noqa: E402
from benchmarks import procs, quality  # noqa: E402
from benchmarks import throughput as tp  # noqa: E402
from nicelab.core import data as data_mod  # noqa: E402
from nicelab.core import impl  # noqa: E402
from nicelab.core.config import TrainConfig  # noqa: E402
from nicelab.core.course import STAGE_NAMES  # noqa: E402
from nicelab.core.training import step_flops  # noqa: E402


@pytest.fixture(scope="module")
def reference():
    return impl.load_all("solutions", ("coupling", "model", "likelihood"))


def test_flops_are_counted_exactly_for_a_known_architecture():
    # D = 4, 2 couplings, one hidden layer of 3, batch 2: each coupling is [2, 3, 2],
    # 2 * 2 * (2*3 + 3*2) = 48 forward FLOPs; two couplings: 96; a training step: 3 x 96.
    assert tp.forward_flops(4, 2, 3, 1, batch=2) == 96
    assert tp.train_step_flops(4, 2, 3, 1, batch=2) == 288
    # Odd D = 5: parity 0 keeps 3 and changes 2 ([3, 4, 2]), parity 1 keeps 2, changes 3.
    assert tp.coupling_sizes(5, 0, 4, 1) == [3, 4, 2] and tp.coupling_sizes(5, 1, 4, 1) == [2, 4, 3]
    assert tp.forward_flops(5, 2, 4, 1, batch=1) == 2 * (3 * 4 + 4 * 2) + 2 * (2 * 4 + 4 * 3)
    # The driver's own count (which picks XLA or not) is the same count.
    for dim, hidden in ((2, 64), (64, 256), (7, 10)):
        config = TrainConfig(batch_size=256, hidden_units=hidden, hidden_layers=3, num_couplings=4)
        assert step_flops(dim, config) == tp.train_step_flops(dim, 4, hidden, 3, 256)
    assert tp.model_matmul_shapes(64, 4, 256, 3, 256) == ((256, 32, 256), (256, 256, 256), (256, 256, 32))


def test_flop_count_matches_the_reference_models_dense_layers(reference):
    model = reference["model"].NICE(6, 4, 10, 2)
    model(np.zeros((1, 6), np.float32))
    macs = sum(int(np.prod(layer.kernel.shape)) for c in model.couplings for layer in c.m.layers
               if hasattr(layer, "kernel"))
    assert tp.forward_flops(6, 4, 10, 2, batch=1) == 2 * macs


def test_matmul_rate_is_a_positive_flop_rate():
    rate = tp.matmul_rate(((64, 64, 64),), seconds=0.01, repeats=1)
    assert math.isfinite(rate) and rate > 1e6  # any machine does a million FLOP/s


def test_race_times_every_contender_every_round_in_turn():
    order = []
    contenders = [tp.Contender(name, lambda rows, name=name: order.append(name)) for name in "ab"]
    tp.race(contenders, np.zeros((5, 2), np.int32), rounds=3)
    assert order == ["a", "b"] * 4  # one warm-up call each, then 3 rounds
    assert all(len(c.seconds) == 3 and c.steps == 5 for c in contenders)
    assert all(tp.steps_per_second(c) > 0 for c in contenders)


def random_reference(reference, dim, hidden, seed):
    """A reference NICE with every weight random (the zero-initialised outputs too)."""
    tf.keras.utils.set_random_seed(seed)
    model = reference["model"].NICE(dim, 4, hidden, 2)
    model(np.zeros((1, dim), np.float32))
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(0.3 * rng.standard_normal(w.shape).astype(np.float32))
    return model


@pytest.mark.parametrize("prior", ["logistic", "gaussian"])
@pytest.mark.parametrize("dim", [5, 8])
def test_torch_peer_has_the_references_log_likelihood(reference, prior, dim):
    torch = pytest.importorskip("torch", reason="PyTorch is the bench extra (pip install -e .[bench])")
    from benchmarks.torch_nice import TorchNICE, copy_from_keras

    model = random_reference(reference, dim, 12, seed=dim)
    x = np.random.default_rng(1).standard_normal((32, dim)).astype(np.float32)
    lik = reference["likelihood"]
    expected = lik.log_likelihood(model, lik.make_prior(dim, prior), x)
    peer = copy_from_keras(TorchNICE(dim, 4, 12, 2, prior), model)
    with torch.no_grad():
        got = peer.log_likelihood(torch.from_numpy(x)).numpy()
        h = peer(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(h, model.forward(x).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-3)


def test_torch_peer_takes_the_same_adam_steps(reference):
    torch = pytest.importorskip("torch", reason="PyTorch is the bench extra (pip install -e .[bench])")
    from benchmarks.torch_nice import TorchNICE, copy_from_keras, make_train_step

    lik = reference["likelihood"]
    model = random_reference(reference, 6, 16, seed=2)
    prior = lik.make_prior(6, "logistic")
    optimizer = tf.keras.optimizers.Adam(1e-3)
    peer = copy_from_keras(TorchNICE(6, 4, 16, 2, "logistic"), model)
    peer_step = make_train_step(peer, 1e-3)
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = rng.standard_normal((64, 6)).astype(np.float32)
        tf_loss = float(lik.train_step(model, prior, optimizer, x))
        torch_loss = float(peer_step(torch.from_numpy(x)))
        assert torch_loss == pytest.approx(tf_loss, rel=1e-4)
    np.testing.assert_allclose(peer.log_scale.detach().numpy(), model.log_scale.numpy(), atol=1e-5)


def test_gaussian_baseline_is_the_maximum_likelihood_gaussian():
    rng = np.random.default_rng(0)
    cov = np.array([[2.0, 0.8], [0.8, 1.0]])
    train = rng.multivariate_normal([1.0, -1.0], cov, 20000)
    test = rng.multivariate_normal([1.0, -1.0], cov, 20000)
    base = quality.gaussian_baseline(train, test, test)
    # The expected log-density of a Gaussian is minus its entropy: -(D/2) log(2 pi e) - log det / 2.
    entropy = math.log(2 * math.pi * math.e) + 0.5 * math.log(np.linalg.det(cov))
    assert base.test_log_likelihood == pytest.approx(-entropy, abs=0.03)


def test_per_pixel_gaussian_ignores_correlations():
    rng = np.random.default_rng(0)
    cov = np.array([[2.0, 1.2], [1.2, 1.0]])
    train, test = (rng.multivariate_normal([1.0, -1.0], cov, 20000) for _ in range(2))
    pixels = quality.diagonal_gaussian_baseline(train, test, test)
    # Independent dimensions: the sum of the one-dimensional entropies, above the joint one.
    entropy = math.log(2 * math.pi * math.e) + 0.5 * math.log(cov[0, 0] * cov[1, 1])
    assert pixels.test_log_likelihood == pytest.approx(-entropy, abs=0.03)
    assert pixels.test_log_likelihood < quality.gaussian_baseline(train, test, test).test_log_likelihood
    mixture = quality.gmm(train, test, test, 1, "diag")
    assert mixture.settings == "1 x diag"
    assert mixture.test_log_likelihood == pytest.approx(pixels.test_log_likelihood, abs=1e-3)


def test_gmm_is_chosen_on_the_validation_set():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])

    def draw(n):
        return centres[rng.integers(0, 3, n)] + rng.standard_normal((n, 2))

    best, grid = quality.best_gmm(draw(600), draw(300), draw(300), components=(1, 3), covariances=("full",))
    assert best.settings == "3 x full" and len(grid) == 2
    assert best.valid_log_likelihood == max(row[2] for row in grid)
    gauss = quality.gaussian_baseline(draw(600), draw(10), draw(300))
    assert best.test_log_likelihood > gauss.test_log_likelihood


def test_peak_memory_is_measured_per_child():
    big = procs.run_measured([sys.executable, "-c", "x = bytearray(200 * 2**20); x[::4096] = b'1' * 51200"])
    small = procs.run_measured([sys.executable, "-c", "pass"])
    assert big.returncode == small.returncode == 0
    # The bench itself holds TensorFlow (hundreds of MiB): a child must not report that.
    assert small.peak_mib < 100 and big.peak_mib > small.peak_mib + 150
    failing = procs.run_measured([sys.executable, "-c", "raise SystemExit(3)"])
    assert failing.returncode == 3


def test_pytest_summary_is_parsed():
    result = procs.ProcResult([], 1, 1.0, 1.0, "....F\n=== 1 failed, 12 passed, 2 skipped in 3.21s ===\n")
    assert result.summary == "1 failed, 12 passed, 2 skipped"
    assert (result.count("passed"), result.count("failed"), result.count("error")) == (12, 1, 0)
    assert procs.pytest_command("model")[-2:] == ["-m", "model"]


def test_table_and_markdown_hold_every_row(tmp_path):
    rows = [bench.Row(1, "check suite, cold cache", "20.0 s (40 passed)", "< 30 s", "met"),
            bench.Row(2, "digits: driver", "60 steps/s", "ahead of both peers", "NOT met"),
            bench.Row(3, "MNIST", "skipped: no MNIST file", ">= 1980.5", "skipped"),
            bench.Row(4, "main job peak RSS", "900 MiB"),
            bench.Row(5, "rings: RealNVP against NICE", "-0.35 nats", "ahead", "met")]
    table = bench.format_table(rows)
    for number, title in bench.SECTIONS.items():
        assert f"{number}. {title}" in table
    assert all(r.measure in table and r.value in table for r in rows)
    paths = bench.write(rows, tmp_path, "header")
    saved = json.loads(paths[0].read_text())
    assert [r["measure"] for r in saved["rows"]] == [r.measure for r in rows]
    markdown = paths[1].read_text()
    assert markdown.count("\n| ") == len(rows) + 1 and "NOT met" in markdown


def test_bench_command_rejects_bad_options(capsys):
    from nicelab.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "--section", "6"])
    assert main(["bench", "--rounds", "0", "--section", "2"]) == 2
    assert "--rounds must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_bench_runs_sections_2_and_3_end_to_end(tmp_path, capsys):
    from nicelab.cli import main

    assert main(["bench", "--quick", "--section", "2", "--section", "3", "--no-torch", "--rounds", "1",
                 "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "2. training throughput" in printed and "3. quality against limits" in printed
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    measures = " ".join(r["measure"] for r in rows)
    for expected in ("driver, epoch per call", "tf.function per step", "compute limit",
                     "test NLL - exact entropy", "full-covariance Gaussian", "GaussianMixture"):
        assert expected in measures
    assert any(r["status"] == "skipped" and "PyTorch" in r["measure"] for r in rows)
    driver = next(r for r in rows if "driver, epoch per call" in r["measure"])
    assert driver["numbers"]["steps_per_s"] > 0


def test_digits_split_is_the_one_the_issue_names():
    data = data_mod.load_digits()
    assert (len(data.train), len(data.valid), len(data.test), data.dim) == (1258, 270, 269, 64)


def _functions(text: str) -> dict[str, str]:
    import ast

    return {n.name: ast.dump(n) for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_a_bench_save_changes_one_function_only(tmp_path, stage):
    from benchmarks.watch import EDITED, edit_function

    module = tmp_path / f"{stage}.py"
    source = (impl.PROJECT_ROOT / "solutions" / f"{stage}.py").read_text()
    module.write_text(source)
    edit_function(module, EDITED[stage], 0)
    edit_function(module, EDITED[stage], 1)
    before, after = _functions(source), _functions(module.read_text())
    assert [name for name in before if before[name] != after[name]] == [EDITED[stage]]
    assert "_save = 1\n" in module.read_text()

@pytest.mark.slow
def test_watch_rows_print_the_save_to_verdict_figures(capsys):
    from benchmarks.watch import print_watch_latency

    print_watch_latency(("coupling",), saves=1)
    printed = capsys.readouterr().out
    assert "nicelab watch 1 (coupling): save of forward to verdict" in printed
    for figure in (" s, worst ", "first line ", "first run ", "load average ", "all pass"):
        assert figure in printed
