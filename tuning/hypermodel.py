"""SVSGANHyperModel: fixed settings in the constructor, the search space in `build(hp)` (as HyperResNet)."""
from __future__ import annotations

import logging

import keras_tuner as kt

from svsgan_tf.config import Config

logger = logging.getLogger(__name__)

BATCH_SIZES = (8, 16, 32)
OPTIMIZERS = ("adam", "rmsprop", "sgd")


class SVSGANHyperModel(kt.HyperModel):
    """Builds and trains an SVSGAN whose Config the hyperparameters fill in.

    Args:
        config: every fixed setting (STFT, model, data, epochs per phase); the searched ones override it.
        tracks, validation_tracks: training and validation songs (the objective is `val_sdr`, the
            validation songs' median vocals SDR after each epoch; `val_kl` is logged too).
        strategy: a tf.distribute strategy or its name (see svsgan_tf.training.distribute.make_strategy).
        batch_sizes, optimizers: the choices offered to the search.
    """

    def __init__(self, config: Config, tracks, validation_tracks, strategy=None,
                 batch_sizes=BATCH_SIZES, optimizers=OPTIMIZERS, name: str = "svsgan", tunable: bool = True):
        super().__init__(name=name, tunable=tunable)
        self.config = config
        self.tracks = tracks
        self.validation_tracks = validation_tracks
        self.strategy = strategy
        self.batch_sizes = tuple(batch_sizes)
        self.optimizers = tuple(optimizers)

    def trial_config(self, hp) -> Config:
        """The Config of one trial: the fixed settings with the trial's hyperparameters."""
        return self.config.replace(**{
            "train.batch_size": hp.Choice("batch_size", list(self.batch_sizes)),
            "train.optimizer": hp.Choice("optimizer", list(self.optimizers)),
            "train.g_learning_rate": hp.Float("g_learning_rate", 1e-4, 3e-3, sampling="log"),
        }).validate()

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

        extra = list(kwargs.pop("callbacks", []))
        return fit_svsgan(model, self.trial_config(hp), self.tracks, self.validation_tracks,
                          make_strategy(self.strategy), lambda validation: extra,
                          verbose=kwargs.pop("verbose", "auto"))
