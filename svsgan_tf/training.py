"""Training as a library function: data, models, optimizers, callbacks and the two-phase `fit`."""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Sequence

import keras
import tensorflow as tf

from svsgan_tf import data as data_lib
from svsgan_tf.config import Config, git_commit
from svsgan_tf.errors import ConfigError, DataError
from svsgan_tf.model_io import load_discriminator, load_generator, save_model
from svsgan_tf.models import build_discriminator, build_generator
from svsgan_tf.runtime import set_seed
from svsgan_tf.svsgan import SVSGAN

logger = logging.getLogger(__name__)

OPTIMIZERS = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop,
              "sgd": keras.optimizers.SGD}


@dataclasses.dataclass
class TrainResult:
    """What a training run leaves: the model directory, the history of logs, the config used."""

    model_dir: str
    history: dict
    config: Config


class PhaseSchedule(keras.callbacks.Callback):
    """Put the model in the phase that the config assigns to each epoch, with that phase's G rate.

    Because the phase follows the epoch number, a run resumed by BackupAndRestore continues in the
    phase it was killed in.
    """

    def __init__(self, config: Config):
        super().__init__()
        self.config = config

    def on_epoch_begin(self, epoch, logs=None):
        phase = self.config.train.phase(epoch)
        rate = self.config.train.g_learning_rate if phase == "pretrain" else \
            self.config.train.gan_g_learning_rate
        self.model.g_optimizer.learning_rate.assign(rate)
        if phase != self.model.phase or self.model.train_function is None:
            self.model.set_phase(phase)


class SaveModelDir(keras.callbacks.Callback):
    """After every epoch, write a complete model directory (config + weights) atomically."""

    def __init__(self, path: str, config: Config):
        super().__init__()
        self.path = path
        self.config = config

    def on_epoch_end(self, epoch, logs=None):
        save_model(self.path, self.config, self.model.generator, self.model.discriminator)


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name not in OPTIMIZERS:
        raise ConfigError(f"config: train.optimizer={name!r} unknown optimizer, expected one of "
                          f"{', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](learning_rate=learning_rate)


def load_tracks(config: Config):
    """Training and validation tracks for config.data.source."""
    if config.data.source != "synthetic":
        raise DataError(f"{config.data.source}: unknown data source (this version reads 'synthetic')")
    tracks = data_lib.synthetic_tracks(config.data, config.stft, seed=config.train.seed)
    nb_valid = config.data.validation_tracks
    return tracks[nb_valid:], tracks[:nb_valid]


def check_resumable(out_dir: str, config: Config) -> None:
    """Refuse to resume a run folder whose saved config differs from this run's (the code version
    aside): its backup would silently continue another experiment."""
    saved_path = os.path.join(out_dir, "config.json")
    if not os.path.isfile(saved_path):
        return
    saved = Config.load(saved_path)
    if dataclasses.replace(saved, git_commit="") != dataclasses.replace(config, git_commit=""):
        raise ConfigError(f"{out_dir}: holds a run with a different config; choose another --out "
                          "or delete the folder to start over")


def build_svsgan(config: Config, init_model: str | None = None) -> SVSGAN:
    """SVSGAN with compiled optimizers; call inside the strategy scope.

    With `init_model`, G (and D when present) start from that model directory's weights.
    """
    if init_model:
        init_config, generator = load_generator(init_model)
        if init_config.model != config.model or init_config.stft != config.stft:
            raise ConfigError(f"{init_model}: its model/stft config differs from this run's")
        discriminator = load_discriminator(init_model, init_config) or build_discriminator(config)
    else:
        generator, discriminator = build_generator(config), build_discriminator(config)
    model = SVSGAN(generator, discriminator, config.train, name="svsgan")
    model(tf.zeros((1, 1, config.stft.nb_bins)))
    model.compile(g_optimizer=make_optimizer(config.train.optimizer, config.train.g_learning_rate),
                  d_optimizer=make_optimizer(config.train.optimizer, config.train.d_learning_rate),
                  jit_compile=False)
    return model


def train(config: Config, out_dir: str, tracks: Sequence | None = None,
          validation_tracks: Sequence | None = None, init_model: str | None = None,
          strategy: tf.distribute.Strategy | None = None, verbose: int | str = "auto",
          tensorboard: bool = True) -> TrainResult:
    """Train G (and D in the GAN phase) and write `out_dir/model`.

    `out_dir` receives: config.json, model/ (updated after every epoch), backup/ (resume state: run the
    same call again after a kill and it continues where it stopped), logs/ (TensorBoard), history.csv.
    Tracks default to config.data.source; validation tracks are used for val_kl when given.
    """
    config = dataclasses.replace(config, git_commit=git_commit()).validate()
    set_seed(config.train.seed)
    if tracks is None:
        tracks, validation_tracks = load_tracks(config)
    if not tracks:
        raise DataError("training data: no tracks")
    check_resumable(out_dir, config)
    os.makedirs(out_dir, exist_ok=True)
    config.save(os.path.join(out_dir, "config.json"))

    train_ds = data_lib.training_dataset(tracks, config)
    valid_ds = data_lib.validation_dataset(validation_tracks, config) if validation_tracks else None
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = build_svsgan(config, init_model)
    if not init_model:
        model.generator.set_input_statistics(*data_lib.input_statistics(train_ds))

    model_dir = os.path.join(out_dir, "model")
    callbacks = [
        PhaseSchedule(config),
        keras.callbacks.BackupAndRestore(os.path.join(out_dir, "backup"), delete_checkpoint=False),
        SaveModelDir(model_dir, config),
        keras.callbacks.CSVLogger(os.path.join(out_dir, "history.csv"), append=True),
    ]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(out_dir, "logs")))
    history = model.fit(train_ds, validation_data=valid_ds, epochs=config.train.epochs,
                        steps_per_epoch=config.train.steps_per_epoch, callbacks=callbacks, verbose=verbose,
                        shuffle=False)
    if not os.path.isdir(model_dir):
        save_model(model_dir, config, model.generator, model.discriminator)
    return TrainResult(model_dir=model_dir, history=dict(history.history), config=config)
