"""Training settings: the config dataclass and the per-data-set presets (no TensorFlow here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Everything that defines a training run (and so the key of its saved weights)."""

    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 3e-3
    num_couplings: int = 4
    hidden_units: int = 64
    hidden_layers: int = 3
    prior: str = "gaussian"
    seed: int = 0
    patience: int | None = None  # stop after this many epochs without a better validation NLL
    init_scale: bool = True  # data-dependent start of log_scale (see nicelab.core.training)
    scale_lr_factor: float = 10.0  # log_scale's learning rate / the couplings' (see nicelab.core.training)
    weight_decay: float | None = None  # decoupled (AdamW) decay of the coupling networks' weights


#: Default training settings per data set (``nicelab train`` options override them).
PRESETS: dict[str, TrainConfig] = {
    "parabola": TrainConfig(epochs=100, learning_rate=3e-3, prior="gaussian"),
    # 1258 training images: overfitting is the enemy. Decoupled weight decay on the coupling
    # networks, fresh dequantization noise every epoch, small batches, early stopping (chosen on
    # the validation set; see docs/benchmarks.md).
    "digits": TrainConfig(epochs=120, batch_size=32, learning_rate=3e-3, num_couplings=6,
                          hidden_units=128, hidden_layers=2, prior="logistic", patience=30,
                          weight_decay=1.0),
    # The data-dependent start of the scale makes the first epoch worth hundreds of nats; a
    # larger rate than 1e-3 stalls (every network step is amplified by scales near e^7).
    "mnist": TrainConfig(epochs=100, batch_size=256, learning_rate=1e-3, hidden_units=256,
                         hidden_layers=4, prior="logistic", patience=20, weight_decay=1.0),
    "fashion_mnist": TrainConfig(epochs=100, batch_size=256, learning_rate=1e-3,
                                 hidden_units=256, hidden_layers=4, prior="logistic", patience=20,
                                 weight_decay=1.0),
}
# The 2-D toy sets of nicelab.core.toy (notebooks and `nicelab train moons`): more and wider
# couplings than the parabola's, since their shapes need more bending (6 x 64 at lr 3e-3 left
# the rings a blur and the grid's modes smeared: docs/notebooks.md shows this preset's figures).
PRESETS.update({name: TrainConfig(epochs=80, num_couplings=8, hidden_units=128, learning_rate=1e-3,
                                  prior="gaussian") for name in ("moons", "rings", "gaussian_grid")})
