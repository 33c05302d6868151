"""Training as a library function: data, models, optimizers, callbacks and the two-phase `fit`."""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from typing import Sequence

import keras
import tensorflow as tf

from svsgan_tf import data as data_lib
from svsgan_tf import distribute
from svsgan_tf.config import Config, git_commit
from svsgan_tf.errors import ConfigError, DataError
from svsgan_tf.io_utils import atomic_write_text
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
    """After every epoch, write a complete model directory (config + weights) atomically to `path`;
    when the logs carry `monitor`, also keep the best epoch so far in `best_path`.

    The best value and its epoch are recorded in `<best_path>.json`, so a resumed run compares new
    epochs with the best one of the runs before it.
    """

    def __init__(self, path: str, config: Config, best_path: str | None = None, monitor: str = "val_kl"):
        super().__init__()
        self.path = path
        self.config = config
        self.best_path = best_path
        self.monitor = monitor
        self.best = float("inf")

    def on_train_begin(self, logs=None):
        record = f"{self.best_path}.json" if self.best_path else None
        if record and os.path.isfile(record) and os.path.isdir(self.best_path):
            with open(record, encoding="utf-8") as handle:
                self.best = float(json.load(handle)[self.monitor])

    def on_epoch_end(self, epoch, logs=None):
        save_model(self.path, self.config, self.model.generator, self.model.discriminator)
        value = (logs or {}).get(self.monitor)
        if self.best_path and value is not None and float(value) < self.best:
            self.best = float(value)
            save_model(self.best_path, self.config, self.model.generator, self.model.discriminator)
            atomic_write_text(f"{self.best_path}.json", json.dumps({self.monitor: self.best, "epoch": epoch + 1}))
            logger.info("epoch %d: best %s so far (%.4f), saved to %s", epoch + 1, self.monitor, self.best,
                        self.best_path)


class HistoryCSV(keras.callbacks.Callback):
    """history.csv: one row per finished epoch, with fixed columns for both phases and G's and D's
    step counts (optimizer iterations), appended across resumed runs.

    Keras' CSVLogger fixes its columns at the first epoch it logs: it drops the GAN losses after a KL
    epoch and writes them under the KL header when a run resumes in the GAN phase. Rows of epochs that
    a resumed run trains again (killed after logging, before its backup) are dropped when it starts.
    """

    COLUMNS = ("epoch", "phase", "g_steps", "d_steps", "kl", "val_kl", "g_loss", "g_adversarial",
               "d_loss", "d_real", "d_fake", "adv_scale")

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.first_epoch = True

    def on_train_begin(self, logs=None):
        self.first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if not self.first_epoch or not os.path.isfile(self.path):
            return
        self.first_epoch = False
        with open(self.path, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle)
                    if (row.get("epoch") or "").isdigit() and int(row["epoch"]) < epoch]
        atomic_write_text(self.path, self._format(rows, header=True))

    def on_epoch_end(self, epoch, logs=None):
        self.first_epoch = False
        row = {name: value for name, value in (logs or {}).items() if name in self.COLUMNS}
        row.update(epoch=epoch, phase=self.model.phase,
                   g_steps=int(self.model.g_optimizer.iterations.numpy()),
                   d_steps=int(self.model.d_optimizer.iterations.numpy()))
        header = not os.path.isfile(self.path) or os.path.getsize(self.path) == 0
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            handle.write(self._format([row], header))

    def _format(self, rows, header: bool) -> str:
        lines = [",".join(self.COLUMNS)] if header else []
        lines += [",".join(str(row.get(name, "")) for name in self.COLUMNS) for row in rows]
        return "".join(line + "\n" for line in lines)


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    if name not in OPTIMIZERS:
        raise ConfigError(f"config: train.optimizer={name!r} unknown optimizer, expected one of "
                          f"{', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](learning_rate=learning_rate)


def load_tracks(config: Config, quiet: bool = False):
    """(training tracks, validation tracks) for config.data.source plus config.data.extra_sources.

    The source's train subset is split: its last `validation_tracks` songs are held out. Small sets are
    decoded into memory once; unusable tracks are skipped with a warning and listed at the end.
    """
    data = config.data
    if data.source == "synthetic":
        tracks = data_lib.synthetic_tracks(data, config.stft, seed=config.train.seed)
        return tracks[data.validation_tracks:], tracks[:data.validation_tracks]
    from svsgan_tf.datasets import load_dataset, materialize

    report = load_dataset(data.source, "train", config.stft.sample_rate)
    tracks, skipped = materialize(report.tracks, quiet=quiet)
    if len(tracks) <= data.validation_tracks:
        raise DataError(f"{data.source}: {len(tracks)} usable tracks, need more than "
                        f"data.validation_tracks={data.validation_tracks}")
    split = len(tracks) - data.validation_tracks
    training, validation = tracks[:split], tracks[split:]
    for extra in data.extra_sources:
        extra_report = load_dataset(extra, "train", config.stft.sample_rate)
        extra_tracks, extra_skipped = materialize(extra_report.tracks, quiet=quiet)
        training += extra_tracks
        skipped += extra_report.skipped + extra_skipped
    skipped = report.skipped + skipped
    if skipped:
        logger.warning("%d tracks skipped:\n  %s", len(skipped), "\n  ".join(skipped))
    logger.info("%d training and %d validation tracks", len(training), len(validation))
    return training, validation


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
          strategy: str | tf.distribute.Strategy | None = None, verbose: int | str = "auto",
          tensorboard: bool = True) -> TrainResult:
    """Train G (and D in the GAN phase) and write `out_dir/model`.

    `out_dir` receives: config.json, model/ (updated after every epoch), backup/ (resume state: run the
    same call again after a kill and it continues where it stopped), logs/ (TensorBoard), history.csv.
    Tracks default to config.data.source; validation tracks are used for val_kl when given.
    `strategy` is a tf.distribute strategy or its name (see distribute.make_strategy; None: the current
    one); config.train.batch_size is the global batch. Under multi-worker training only the chief
    writes to `out_dir`, which every worker must be able to read.
    """
    config = dataclasses.replace(config, git_commit=git_commit()).validate()
    strategy = distribute.make_strategy(strategy)           # first: a cluster must form before any op
    distribute.check_global_batch(config.train.batch_size, strategy)
    chief = distribute.is_chief(strategy)
    set_seed(config.train.seed)
    check_resumable(out_dir, config)
    model_dir, backup_dir = os.path.join(out_dir, "model"), os.path.join(out_dir, "backup")
    done = distribute.backup_epoch(backup_dir)
    if done is not None and done >= config.train.epochs and os.path.isdir(model_dir):
        logger.info("%s: finished already (%d epochs), nothing to do", out_dir, done)
        return TrainResult(model_dir=model_dir, history={}, config=config)
    if tracks is None:
        tracks, validation_tracks = load_tracks(config)
    if not tracks:
        raise DataError("training data: no tracks")
    if chief:
        os.makedirs(out_dir, exist_ok=True)
        config.save(os.path.join(out_dir, "config.json"))

    train_ds = data_lib.training_dataset(tracks, config)
    valid_ds = data_lib.validation_dataset(validation_tracks, config) if validation_tracks else None
    train_ds = distribute.shard_by_data(train_ds)
    if valid_ds is not None:
        valid_ds = distribute.shard_by_data(valid_ds)
    with strategy.scope():
        model = build_svsgan(config, init_model)
    if not init_model:
        model.generator.set_input_statistics(*data_lib.input_statistics(train_ds))

    callbacks = [PhaseSchedule(config)]
    if chief:                       # only the chief writes the model directories, the history and logs
        callbacks += [
            SaveModelDir(model_dir, config, os.path.join(out_dir, "best_model")),
            HistoryCSV(os.path.join(out_dir, "history.csv")),
        ]
        if tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(os.path.join(out_dir, "logs")))
    # last: an epoch counts as done (and is skipped on resume) only once it is exported and logged
    callbacks.append(distribute.backup_and_restore(backup_dir, strategy))
    history = model.fit(train_ds, validation_data=valid_ds, epochs=config.train.epochs,
                        steps_per_epoch=config.train.steps_per_epoch, callbacks=callbacks, verbose=verbose,
                        shuffle=False)
    if chief and not os.path.isdir(model_dir):
        save_model(model_dir, config, model.generator, model.discriminator)
    return TrainResult(model_dir=model_dir, history=dict(history.history), config=config)
