"""SVSGANHyperModel: fixed settings in the constructor, the search space in `build(hp)` (as HyperResNet)."""
from __future__ import annotations

import logging
import time

import keras
import keras_tuner as kt

from svsgan_tf.config import Config
from svsgan_tf.errors import ConfigError
from tuning.space import SPACE, trial_overrides

logger = logging.getLogger(__name__)


class SVSGANHyperModel(kt.HyperModel):
    """Builds and trains an SVSGAN whose Config the hyperparameters fill in (keras-tuner's HyperResNet
    style: the fixed settings are checked here, the search space is declared in `build(hp)`).

    Args:
        config: every fixed setting (STFT, model, data, epochs per phase); the searched ones override it,
            and each hyperparameter's default is its value here.
        tracks, validation_tracks: training and validation songs (the objective is `val_sdr`, the
            validation songs' median vocals SDR after each epoch; `val_kl` is logged too).
        strategy: a tf.distribute strategy or its name (see svsgan_tf.training.distribute.make_strategy).
        space: {name: tuning.space.Hyperparameter}, default tuning.space.SPACE (see `--space`).
    """

    def __init__(self, config: Config, tracks, validation_tracks, strategy=None, space: dict | None = None,
                 name: str = "svsgan", tunable: bool = True):
        super().__init__(name=name, tunable=tunable)
        self.config = config.validate()
        if not validation_tracks:
            raise ConfigError("tuning: needs validation tracks (set data.validation_tracks > 0): the "
                              "objective is their val_sdr")
        self.tracks = tracks
        self.validation_tracks = validation_tracks
        self.strategy = strategy
        self.space = dict(SPACE if space is None else space)

    def declare(self, hp) -> dict:
        """Declare the search space on `hp` and return the trial's values {name: value}; each
        default is the fixed config's value (a choice list or range is widened to hold it)."""
        values = {}
        for name, spec in self.space.items():
            default = spec.default(self.config)
            if spec.kind == "choice":
                choices = list(spec.values)
                if len(choices) == 1:
                    values[name] = hp.Fixed(name, choices[0])
                    continue
                choices += [] if default in choices else [default]
                values[name] = hp.Choice(name, choices, default=default)
            elif spec.kind == "int":
                high = 2 * default if spec.high is None else int(spec.high)
                low, high = min(int(spec.low), default), max(high, default)
                values[name] = (hp.Fixed(name, low) if low == high
                                else hp.Int(name, low, high, default=default))
            else:
                low, high = min(spec.low, default), max(spec.high, default)
                values[name] = (hp.Fixed(name, low) if low == high
                                else hp.Float(name, low, high, sampling="log", default=default))
        return values

    def trial_config(self, hp) -> Config:
        """The Config of one trial: the fixed settings with the trial's hyperparameters."""
        return self.config.replace(**trial_overrides(self.declare(hp), self.config)).validate()

    def build(self, hp):
        """An SVSGAN compiled with the trial's optimizer, inside the strategy scope."""
        from svsgan_tf.training.distribute import make_strategy
        from svsgan_tf.training.fit import build_svsgan

        config = self.trial_config(hp)
        with make_strategy(self.strategy).scope():
            return build_svsgan(config)

    def fit(self, hp, model, *args, **kwargs):
        """Train with the trial's batch size through both phases (training.fit_svsgan, as
        `python -m svsgan_tf.train` does); returns the Keras History."""
        from svsgan_tf.training.distribute import make_strategy
        from svsgan_tf.training.fit import fit_svsgan

        # the wall clock goes into each epoch's logs before the tuner's own callbacks record them
        extra = [WallClock()] + list(kwargs.pop("callbacks", []))
        return fit_svsgan(model, self.trial_config(hp), self.tracks, self.validation_tracks,
                          make_strategy(self.strategy), lambda validation: extra,
                          verbose=kwargs.pop("verbose", "auto"))


class WallClock(keras.callbacks.Callback):
    """Adds `wall_seconds`, the seconds since the trial's training began (both phases), and
    `epochs_trained` to each epoch's logs, so that the tuner records it with the trial (the trials table's wall time)."""

    def __init__(self):
        super().__init__()
        self.start = None
        self.epochs = 0

    def on_train_begin(self, logs=None):
        if self.start is None:                       # fit_svsgan may call fit once per phase
            self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1
        if logs is not None:
            logs["wall_seconds"] = time.perf_counter() - self.start
            logs["epochs_trained"] = self.epochs

