"""``nicelab train --flow nice|realnvp|glow`` and the comparison behind ``nicelab bench
--section 5`` and the page "Beyond NICE": tiny sizes, seeded, a few training steps each."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from nicelab.core.quiet import import_tensorflow

tf = import_tensorflow()

from nicelab.cli import main  # noqa: E402
from nicelab.cli.app import build_parser  # noqa: E402
from nicelab.core import comparison, flows, runs  # noqa: E402
from nicelab.core import data as data_mod  # noqa: E402
from nicelab.core.config import PRESETS, TrainConfig  # noqa: E402
from nicelab.core.course import TRAINED_STAGES  # noqa: E402

#: A few steps of a tiny model: one epoch of 4 batches of 4096 parabola points.
TINY = ["--epochs", "1", "--batch-size", "4096", "--couplings", "2", "--hidden-units", "8",
        "--hidden-layers", "1", "--quiet"]


def test_flow_option_parses_and_defaults_to_nice():
    parser, _ = build_parser()
    assert parser.parse_args(["train", "parabola"]).flow == "nice"
    for name in ("nice", "realnvp", "glow"):
        assert parser.parse_args(["train", "parabola", "--flow", name]).flow == name


def test_unknown_flow_gets_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["train", "parabola", "--flow", "maf"])
    err = capsys.readouterr().err
    assert "--flow" in err and "invalid choice: 'maf'" in err and "realnvp" in err and "glow" in err
    with pytest.raises(ValueError, match="unknown flow 'maf'; choose one of: 'nice', 'realnvp', 'glow'"):
        flows.get_flow("maf")
    with pytest.raises(ValueError, match="unknown flow"):
        comparison.compare(data_mod.load("parabola"), ("nice", "maf"))


def test_nice_keeps_its_modules_presets_and_run_folders():
    modules = flows.load_modules("nice", "solutions")
    assert set(modules) == set(TRAINED_STAGES) and hasattr(modules["model"].NICE, "log_det_jacobian")
    for name in ("parabola", "digits", "mnist", "rings"):
        assert flows.preset("nice", name) == PRESETS[name]
    config = PRESETS["parabola"]
    assert flows.run_dir("parabola", config, "solutions") == runs.run_dir("parabola", config, "solutions")
    other = flows.run_dir("parabola", config, "solutions", "realnvp")
    assert other.name.startswith("solutions-realnvp-") and other.parent == runs.run_dir(
        "parabola", config, "solutions").parent
    assert other != flows.run_dir("parabola", config, "solutions", "glow")


@pytest.mark.parametrize("flow", ["realnvp", "glow"])
def test_stand_in_model_is_the_flow_then_a_diagonal_scaling(flow):
    modules = flows.load_modules(flow, "solutions")
    tf.keras.utils.set_random_seed(0)
    model = modules["model"].NICE(3, 2, 8, 1)
    x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    model.forward(x)
    for w in model.flow.trainable_weights:  # a flow far from the identity
        w.assign(w + 0.3 * tf.random.stateless_normal(w.shape, seed=[1, 2]))
    model.log_scale.assign([0.5, -1.0, 2.0])
    inner = flows.FLOWS[flow].model
    assert type(model.flow).__name__ == inner[1]
    np.testing.assert_allclose(model.forward(x), model.flow.forward(x) * np.exp([0.5, -1.0, 2.0]), rtol=1e-5)
    np.testing.assert_allclose(model.backward(model.forward(x)), x, atol=1e-4)
    # log|det df/dx| per example: the inner flow's (which differs between examples) + sum(log_scale).
    ldj = model.log_det_jacobian(x).numpy()
    np.testing.assert_allclose(ldj, model.flow.log_det_jacobian(x).numpy() + 1.5, rtol=1e-5, atol=1e-5)
    assert np.ptp(ldj) > 1e-3
    with tf.GradientTape() as tape:
        tape.watch(x_t := tf.constant(x))
        h = model.forward(x_t)
    jac = tape.batch_jacobian(h, x_t).numpy()
    np.testing.assert_allclose(ldj, np.linalg.slogdet(jac)[1], rtol=1e-4, atol=1e-4)
    prior = modules["likelihood"].make_prior(3, "gaussian")
    expected = prior.log_prob(model.forward(x)) + ldj
    np.testing.assert_allclose(modules["likelihood"].log_likelihood(model, prior, x), expected, rtol=1e-5)


@pytest.mark.parametrize("flow", ["nice", "realnvp", "glow"])
def test_train_trains_each_flow_a_few_steps(flow, tmp_path, capsys):
    out = tmp_path / flow
    assert main(["train", "parabola", "--impl", "solutions", "--flow", flow, "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    title = flows.FLOWS[flow].title
    assert f"training {title} (2 " in printed and "test NLL:" in printed
    result = json.loads((out / "result.json").read_text())
    assert np.isfinite(result["test_nll"]) and result.get("flow", "nice") == flow
    run = json.loads((out / "run.json").read_text())
    assert run["history"]["steps"] == 4 and run["config"]["hidden_units"] == 8
    assert (out / "weights.npz").stat().st_size > 0 and (out / "density.png").exists()


def test_a_saved_flow_is_reused_not_retrained(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NICELAB_RUNS", str(tmp_path))
    config = TrainConfig(epochs=1, batch_size=4096, num_couplings=2, hidden_units=8, hidden_layers=1)
    modules = flows.load_modules("realnvp", "solutions")
    data = data_mod.load("parabola")
    first, folder = flows.load_or_train("realnvp", modules, data, config, "solutions", verbose=False)
    again, same = flows.load_or_train("realnvp", modules, data, config, "solutions")
    assert same == folder and "using the trained model" in capsys.readouterr().out
    x = data.test[:64]
    np.testing.assert_allclose(again.model.forward(x), first.model.forward(x), rtol=1e-6)


def test_matched_widths_stay_within_nices_parameter_count():
    config = TrainConfig(num_couplings=2, hidden_units=32, hidden_layers=2)
    nice = flows.count_parameters("nice", flows.load_modules("nice", "solutions"), 10, config)
    for flow in ("realnvp", "glow"):
        modules = flows.load_modules(flow, "solutions")
        matched = comparison.matched_config(flow, modules, 10, config, nice)
        assert matched.hidden_units < 32  # both have more parameters than NICE at the same width
        assert flows.count_parameters(flow, modules, 10, matched) <= nice
        wider = dataclasses.replace(matched, hidden_units=matched.hidden_units + 1)
        assert flows.count_parameters(flow, modules, 10, wider) > nice


def test_bench_section_prints_the_three_flows_at_a_tiny_size(capsys):
    from nicelab.cli.commands.bench import _benchmarks

    bench = _benchmarks()  # the repository's benchmarks/ package
    settings = bench.BenchSettings.quick()
    rows = bench.Bench(settings, log=lambda msg: None).run((5,))
    printed = capsys.readouterr().out
    for header in comparison.TABLE_HEADER:
        assert header in printed
    assert all(title in printed for title in ("NICE", "RealNVP", "Glow"))
    assert [r.section for r in rows] == [5, 5, 5]
    nice, *others = rows
    assert nice.numbers["time_ratio"] == pytest.approx(1.0)
    assert all(r.numbers["parameters"] <= nice.numbers["parameters"] for r in others)
    assert all(np.isfinite(r.numbers["test_nll"]) and r.numbers["seconds"] > 0 for r in rows)
    assert "5. flows: NICE, RealNVP, Glow" in bench.format_table(rows)


def test_the_pages_numbers_were_made_by_todays_comparison():
    """docs/figures/beyond/*.json (``nicelab figures --only beyond``, ``beyond-mnist``) hold the
    configs today's code trains with, and derived numbers that agree with their log-likelihoods:
    a summary left over from an older preset or budget fails here (rerun the figures)."""
    from nicelab.cli import beyond
    from nicelab.core.dataset import bits_per_dim
    from nicelab.core.impl import PROJECT_ROOT

    folder = PROJECT_ROOT / "docs" / "figures" / "beyond"
    summary = json.loads((folder / "beyond.json").read_text())
    large = {k: getattr(PRESETS[beyond.LARGE], k) for k in ("num_couplings", "hidden_units", "hidden_layers",
                                                            "epochs")}
    expected = {name: None for name in (*beyond.TOYS, *beyond.IMAGES)} | {f"{beyond.LARGE}_large": large}
    assert set(summary) - {"load_average"} == set(expected)
    for key, overrides in expected.items():
        entry = summary[key]
        nice = comparison.base_config("nice", entry["data"], "params", overrides)
        assert entry["nice"]["config"] == dataclasses.asdict(nice), f"beyond.json {key}: another NICE config"
        for flow in ("realnvp", "glow"):
            config = entry[flow]["config"]
            assert {k: v for k, v in config.items() if k != "hidden_units"} == {
                k: v for k, v in dataclasses.asdict(nice).items() if k != "hidden_units"}
            assert entry[flow]["parameters"] <= entry["nice"]["parameters"]
        assert entry["best"] == min(flows.FLOW_NAMES, key=lambda f: entry[f]["test_nll"])
    mnist_file = folder / "mnist.json"
    if mnist_file.is_file():
        entry = json.loads(mnist_file.read_text())
        for flow in flows.FLOW_NAMES:
            run = entry[flow]
            assert run["config"] == dataclasses.asdict(flows.preset(flow, "mnist")), f"mnist.json: {flow}"
            assert abs(run["bits_per_dim"] - bits_per_dim(-run["test_nll"], 784, 256)) < 1e-9
        assert entry["realnvp"]["test_nll"] < entry["nice"]["test_nll"]


def test_a_budget_that_cannot_be_matched_is_refused():
    # Glow's 10 x 10 mixing matrices alone outweigh a NICE of one unit per layer.
    config = TrainConfig(num_couplings=2, hidden_units=1, hidden_layers=1)
    nice = flows.count_parameters("nice", flows.load_modules("nice", "solutions"), 10, config)
    with pytest.raises(ValueError, match="Glow has more than .* parameters .* at any width"):
        comparison.matched_config("glow", flows.load_modules("glow", "solutions"), 10, config, nice)
