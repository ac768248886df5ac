"""The training driver: an epoch per compiled call, the same run for the same seed, and any
student step still runs (XLA -> tf.function -> eager, with a one-line notice each time)."""

from __future__ import annotations

import dataclasses
import io
import types

import numpy as np
import pytest

from nicelab.core.quiet import import_tensorflow

tf = import_tensorflow()

from nicelab.core import data as data_mod  # noqa: E402
from nicelab.core import impl  # noqa: E402
from nicelab.core.config import TrainConfig  # noqa: E402
from nicelab.core.training import (  # noqa: E402
    PRIOR_STD,
    EpochRunner,
    TrainingError,
    choose_mode,
    compile_step,
    data_dependent_log_scale,
    step_flops,
    train,
)

CONFIG = TrainConfig(epochs=2, batch_size=250, hidden_units=16, hidden_layers=2, seed=3)


@pytest.fixture(scope="module")
def modules():
    return impl.load_all("solutions", ("coupling", "model", "likelihood"))


@pytest.fixture(scope="module")
def small_parabola():
    data = data_mod.load_parabola()
    return dataclasses.replace(data, train=data.train[:1000], valid=data.valid[:500])


def with_step(modules, step):
    """The reference modules with ``train_step`` replaced by ``step``."""
    lik = modules["likelihood"]
    fake = types.SimpleNamespace(make_prior=lik.make_prior, log_likelihood=lik.log_likelihood,
                                 sample=lik.sample, train_step=step)
    return {"model": modules["model"], "likelihood": fake}


def weights(trained):
    return [w.numpy() for w in trained.model.weights]


def test_same_seed_same_run(modules, small_parabola):
    a = train(modules, small_parabola, CONFIG, verbose=False, first_mode="graph")
    b = train(modules, small_parabola, CONFIG, verbose=False, first_mode="graph")
    assert a.history.mode == b.history.mode == "graph"
    assert a.history.train_nll == b.history.train_nll and a.history.valid_nll == b.history.valid_nll
    assert all(np.array_equal(x, y) for x, y in zip(weights(a), weights(b), strict=True))
    other = train(modules, small_parabola, dataclasses.replace(CONFIG, seed=4), verbose=False,
                  first_mode="graph")
    assert other.history.train_nll != a.history.train_nll


def test_history_counts_steps_epochs_and_time(modules, small_parabola):
    trained = train(modules, small_parabola, CONFIG, verbose=False, first_mode="graph")
    h = trained.history
    assert h.steps == CONFIG.epochs * (1000 // 250)
    assert len(h.train_nll) == len(h.valid_nll) == len(h.epoch_seconds) == CONFIG.epochs
    assert h.compiled and 0 <= h.best_epoch < CONFIG.epochs
    assert h.seconds >= sum(h.epoch_seconds) > 0
    assert h.train_nll[-1] < h.train_nll[0]


@pytest.mark.slow
def test_xla_and_graph_and_eager_train_the_same_model(modules, small_parabola):
    runs = {mode: train(modules, small_parabola, CONFIG, verbose=False, first_mode=mode)
            for mode in ("xla", "graph", "eager")}
    assert {mode: r.history.mode for mode, r in runs.items()} == {m: m for m in runs}
    for mode in ("xla", "eager"):
        np.testing.assert_allclose(runs[mode].history.valid_nll, runs["graph"].history.valid_nll,
                                   rtol=1e-4)


@pytest.mark.slow
def test_a_step_that_cannot_be_traced_runs_eagerly_with_one_notice(modules, small_parabola):
    lik = modules["likelihood"]

    def numpy_step(model, prior, optimizer, x):
        loss = lik.train_step(model, prior, optimizer, x)
        return float(loss.numpy())  # .numpy() fails while tracing

    out = io.StringIO()
    trained = train(with_step(modules, numpy_step), small_parabola, CONFIG, out=out, first_mode="xla")
    notices = [line for line in out.getvalue().splitlines() if line.startswith("note:")]
    assert trained.history.mode == "eager" and not trained.history.compiled
    assert len(notices) == 2, notices  # XLA, then tf.function
    assert "running it eagerly" in notices[-1] and "numpy" in notices[-1]
    reference = train(modules, small_parabola, CONFIG, verbose=False, first_mode="graph")
    # The failed attempts left nothing behind: the run is the compiled one's.
    np.testing.assert_allclose(trained.history.valid_nll, reference.history.valid_nll, rtol=1e-4)


@pytest.mark.slow
def test_a_step_xla_cannot_compile_falls_back_to_tf_function(modules, small_parabola):
    lik = modules["likelihood"]

    def py_function_step(model, prior, optimizer, x):
        loss = lik.train_step(model, prior, optimizer, x)
        return tf.py_function(lambda v: v, [loss], tf.float32)  # no XLA kernel for this

    out = io.StringIO()
    trained = train(with_step(modules, py_function_step), small_parabola, CONFIG, out=out,
                    first_mode="xla")
    notices = [line for line in out.getvalue().splitlines() if line.startswith("note:")]
    assert trained.history.mode == "graph"
    assert len(notices) == 1 and "XLA" in notices[0]
    reference = train(modules, small_parabola, CONFIG, verbose=False, first_mode="graph")
    pairs = zip(weights(trained), weights(reference), strict=True)
    assert all(np.allclose(a, b, atol=1e-5) for a, b in pairs)


def test_quiet_training_prints_no_notice(modules, small_parabola, capsys):
    lik = modules["likelihood"]

    def numpy_step(model, prior, optimizer, x):
        return float(lik.train_step(model, prior, optimizer, x).numpy())

    train(with_step(modules, numpy_step), small_parabola, CONFIG, verbose=False)
    assert "note:" not in capsys.readouterr().out


def test_a_stub_raises_not_implemented_without_a_notice(modules, small_parabola):
    def stub(model, prior, optimizer, x):
        raise NotImplementedError("train_step")

    out = io.StringIO()
    with pytest.raises(NotImplementedError):
        train(with_step(modules, stub), small_parabola, CONFIG, out=out)
    assert "note:" not in out.getvalue()


def test_nan_loss_stops_training_with_a_clear_error(modules, small_parabola):
    def nan_step(model, prior, optimizer, x):
        return tf.constant(float("nan"))

    with pytest.raises(TrainingError, match="NaN or infinite at epoch 1"):
        train(with_step(modules, nan_step), small_parabola, CONFIG, verbose=False)


@pytest.mark.parametrize("change, error", [
    ({"batch_size": 0}, ValueError), ({"epochs": 1.5}, ValueError), ({"learning_rate": -1.0}, ValueError),
    ({"batch_size": 5000}, ValueError),
])
def test_bad_config_is_a_clear_error(modules, small_parabola, change, error):
    with pytest.raises(error, match="config.batch_size|config.epochs|config.learning_rate"):
        train(modules, small_parabola, dataclasses.replace(CONFIG, **change), verbose=False)


def test_bad_arguments_are_clear_errors(modules, small_parabola):
    with pytest.raises(TypeError, match="TrainConfig"):
        train(modules, small_parabola, {"epochs": 1}, verbose=False)
    with pytest.raises(TypeError, match="Dataset"):
        train(modules, small_parabola.train, CONFIG, verbose=False)
    with pytest.raises(TrainingError, match="likelihood"):
        train({"model": modules["model"]}, small_parabola, CONFIG, verbose=False)
    with pytest.raises(ValueError, match="first_mode"):
        EpochRunner(lambda x: x, [], first_mode="fast")


def test_epoch_runner_runs_every_row_in_order():
    seen = tf.Variable(tf.zeros(6))
    x = tf.constant(np.arange(6, dtype=np.float32)[:, None])

    def step(batch):
        seen.assign(seen * 10.0 + tf.scatter_nd(tf.cast(batch, tf.int32), tf.ones(2), (6,)))
        return tf.reduce_sum(batch)

    rows = np.array([[0, 1], [2, 3], [5, 4]], dtype=np.int32)
    runner = EpochRunner(step, [seen], notice=lambda m: None, first_mode="graph")
    losses = runner(x, rows)
    np.testing.assert_array_equal(losses, [1.0, 5.0, 9.0])
    np.testing.assert_array_equal(seen.numpy(), [100, 100, 10, 10, 1, 1])


def test_compile_step_falls_back_with_one_notice():
    notices = []
    step = compile_step(lambda x: tf.constant(float(np.sum(x.numpy()))), notices.append)
    assert float(step(tf.ones((2, 2)))) == 4.0 and float(step(tf.ones((1, 2)))) == 2.0
    assert len(notices) == 1 and not step.is_compiled()
    good = compile_step(lambda x: tf.reduce_sum(x), notices.append)
    assert float(good(tf.ones((2, 2)))) == 4.0 and good.is_compiled() and len(notices) == 1


def test_choose_mode_uses_xla_for_long_runs_of_small_steps():
    parabola = TrainConfig(batch_size=256, hidden_units=64)
    digits = TrainConfig(batch_size=256, hidden_units=256)
    assert choose_mode(2, parabola, 7800) == "xla"
    assert choose_mode(2, parabola, 500) == "graph"  # compiling would cost more than it saves
    assert choose_mode(64, digits, 100_000) == "graph"  # compute-bound
    # 4 couplings of [32, 256, 256, 256, 32] at batch 256: 3 x 2 x 256 x 147456 x 4.
    assert step_flops(64, digits) == 3 * 2 * 256 * 147456 * 4


class LazyNICE(tf.keras.Model):
    """A correct NICE whose coupling networks build lazily on their first call (no Input
    layer), split in halves, with random (not identity) couplings at the start."""

    def __init__(self, dim, num_couplings=4, hidden_units=64, hidden_layers=3, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.half = dim, dim // 2
        self.nets = [tf.keras.Sequential(
            [tf.keras.layers.Dense(hidden_units, activation="relu") for _ in range(hidden_layers)]
            + [tf.keras.layers.Dense(dim - self.half if i % 2 == 0 else self.half)])
            for i in range(num_couplings)]
        self.log_scale = self.add_weight(shape=(dim,), initializer="zeros", name="log_scale")

    def _couple(self, x, sign, order):
        x = tf.convert_to_tensor(x, tf.float32)
        for i in order:
            a, b = x[:, :self.half], x[:, self.half:]
            if i % 2 == 0:
                x = tf.concat([a, b + sign * self.nets[i](a)], axis=1)
            else:
                x = tf.concat([a + sign * self.nets[i](b), b], axis=1)
        return x

    def forward(self, x):
        return self._couple(x, 1.0, range(len(self.nets))) * tf.exp(self.log_scale)

    def backward(self, h):
        return self._couple(tf.convert_to_tensor(h, tf.float32) * tf.exp(-self.log_scale), -1.0,
                            reversed(range(len(self.nets))))

    def log_det_jacobian(self):
        return tf.reduce_sum(self.log_scale)


@pytest.mark.parametrize("kind", sorted(PRIOR_STD))
@pytest.mark.parametrize("which", ["reference", "lazy"])
def test_data_dependent_start_gives_each_latent_dimension_the_prior_spread(modules, kind, which):
    """Whether the couplings start as the identity (the reference) or not (LazyNICE)."""
    x = data_mod.load_digits().train
    model = modules["model"].NICE(64, 2, 16, 1) if which == "reference" else LazyNICE(64, 2, 16, 1)
    model.log_scale.assign(np.full(64, 0.5, np.float32))  # whatever it was: the start ignores it
    log_scale = data_dependent_log_scale(model, x, kind)
    assert log_scale.shape == (64,) and np.all(np.isfinite(log_scale))
    assert np.all(model.log_scale.numpy() == 0), "the model's own variable is the caller's to set"
    model.log_scale.assign(log_scale)
    spread = np.asarray(model.forward(x)).std(axis=0)
    np.testing.assert_allclose(spread, PRIOR_STD[kind], rtol=1e-3)
    if which == "reference":  # identity couplings: a near-constant pixel (the corner, almost
        assert log_scale.max() > 3  # always level 0) needs a scale far from the zero start


class OneScaleNICE(LazyNICE):
    """A model that breaks stage 2's contract: one log-scale shared by every dimension."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log_scale = self.add_weight(shape=(1,), initializer="zeros", name="one_log_scale")


def test_the_start_needs_a_log_scale_of_the_right_shape():
    with pytest.raises(TrainingError, match=r"log_scale variable of shape \(4,\)"):
        data_dependent_log_scale(OneScaleNICE(4, 2, 8, 1), np.ones((8, 4), np.float32), "logistic")


def test_a_lazily_built_model_trains(modules, small_parabola):
    lazy = {"model": types.SimpleNamespace(NICE=LazyNICE), "likelihood": modules["likelihood"]}
    trained = train(lazy, small_parabola, CONFIG, verbose=False, first_mode="graph")
    assert trained.history.train_nll[-1] < trained.history.train_nll[0]
    assert all(np.isfinite(v) for v in trained.history.valid_nll)
    started = train(lazy, small_parabola, dataclasses.replace(CONFIG, init_scale=False), verbose=False,
                    first_mode="graph")
    assert started.history.train_nll[-1] < started.history.train_nll[0]


def test_the_data_dependent_start_trains_faster(modules):
    """One epoch on digits: from the data-dependent start, far better than from log_scale = 0."""
    digits = data_mod.load_digits()
    config = TrainConfig(epochs=1, batch_size=64, hidden_units=32, hidden_layers=1, prior="logistic")
    fast = train(modules, digits, config, verbose=False, first_mode="graph")
    slow = train(modules, digits, dataclasses.replace(config, init_scale=False), verbose=False,
                 first_mode="graph")
    assert fast.history.valid_nll[0] < slow.history.valid_nll[0] - 20  # nats per image


def test_training_data_is_dequantized_afresh_every_epoch(modules):
    digits = data_mod.load_digits()
    small = dataclasses.replace(digits, train=digits.train[:64], train_levels=digits.train_levels[:64])
    seen = []
    lik = modules["likelihood"]

    def recording_step(model, prior, optimizer, x):
        seen.append(np.asarray(x))
        return lik.train_step(model, prior, optimizer, x)

    config = TrainConfig(epochs=3, batch_size=64, hidden_units=8, hidden_layers=1, prior="logistic")
    train(with_step(modules, recording_step), small, config, verbose=False, first_mode="eager")
    assert len(seen) == 3
    rows = [{tuple(np.floor(r * 17).astype(int)): r for r in epoch} for epoch in seen]
    levels = {tuple(r) for r in small.train_levels}
    assert all(set(epoch) == levels for epoch in rows), "each epoch sees every training example's levels"
    for key in levels:  # the same example, new noise each epoch, never the fixed copy
        assert not np.array_equal(rows[0][key], rows[1][key])
        assert not np.array_equal(rows[1][key], rows[2][key])
    assert not any(np.array_equal(epoch[tuple(np.floor(r * 17).astype(int))], r)
                   for epoch in rows for r in small.train)
