"""Training as a library function: data, models, optimizers, callbacks and the two-phase `fit`."""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
from typing import Sequence

import keras
import tensorflow as tf

from svsgan_tf.data import pipeline as data_lib
from svsgan_tf.training import distribute
from svsgan_tf.training.backup import ResumableBackup, last_good_backup
from svsgan_tf.config import OPTIMIZERS, Config, git_commit
from svsgan_tf.errors import ConfigError, DataError
from svsgan_tf.io_utils import remove_stale_temporaries
from svsgan_tf.training.callbacks import HistoryCSV, PhaseSchedule, SaveModelDir, ValidationSDR
from svsgan_tf.models.model_io import load_discriminator, load_generator, model_notices, save_model
from svsgan_tf.models import build_discriminator, build_generator
from svsgan_tf.runtime import set_seed
from svsgan_tf.models.svsgan import SVSGAN

logger = logging.getLogger(__name__)

OPTIMIZER_CLASSES = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
                     "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD,
                     "sgd_momentum": functools.partial(keras.optimizers.SGD, momentum=0.9)}


@dataclasses.dataclass
class TrainResult:
    """What a training run leaves: the model directory, the history of logs, the config used."""

    model_dir: str
    history: dict
    config: Config


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The Keras optimizer that train.optimizer names (config.OPTIMIZERS)."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"config: train.optimizer={name!r} unknown optimizer, expected one of "
                          f"{', '.join(OPTIMIZERS)}")
    return OPTIMIZER_CLASSES[name](learning_rate=learning_rate)


def load_tracks(config: Config, quiet: bool = False):
    """(training tracks, validation tracks) for config.data.source plus config.data.extra_sources.

    The source's train subset is split: its last `validation_tracks` songs are held out. Small sets are
    decoded into memory once (with data.reader=tfio only the validation songs; the training songs
    stream from their files); unusable tracks are skipped with a warning and listed at the end.
    """
    data = config.data
    if data.source == "synthetic":
        tracks = data_lib.synthetic_tracks(data, config.stft, seed=config.train.seed)
        return tracks[data.validation_tracks:], tracks[:data.validation_tracks]
    from svsgan_tf.data.datasets import load_dataset, materialize

    def decoded(tracks):          # the tfio reader streams training songs from their files
        return materialize(tracks, quiet=quiet) if data.reader == "python" else (list(tracks), [])

    report = load_dataset(data.source, "train", config.stft.sample_rate)
    tracks, skipped = decoded(report.tracks)
    if len(tracks) <= data.validation_tracks:
        raise DataError(f"{data.source}: {len(tracks)} usable tracks, need more than "
                        f"data.validation_tracks={data.validation_tracks}")
    split = len(tracks) - data.validation_tracks
    training, validation = tracks[:split], tracks[split:]
    if data.reader != "python" and validation:             # scored whole after every epoch: in memory
        validation, validation_skipped = materialize(validation, quiet=quiet)
        skipped += validation_skipped
    for extra in data.extra_sources:
        extra_report = load_dataset(extra, "train", config.stft.sample_rate)
        extra_tracks, extra_skipped = decoded(extra_report.tracks)
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
        from svsgan_tf.models.model_io import load_config

        init_config = load_config(init_model)
        # dropout has no weights: a model may be fine-tuned with another rate
        if dataclasses.replace(init_config.model, dropout=0.0) != dataclasses.replace(config.model, dropout=0.0) \
                or init_config.stft != config.stft:
            raise ConfigError(f"{init_model}: its model/stft config differs from this run's")
        _, generator = load_generator(init_model, config)
        discriminator = load_discriminator(init_model, init_config) or build_discriminator(config)
    else:
        generator, discriminator = build_generator(config), build_discriminator(config)
    if config.train.freeze_batch_norm:
        for layer in generator._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False                # Keras 3: a frozen BatchNormalization infers
    model = SVSGAN(generator, discriminator, config.train, name="svsgan")
    model(tf.zeros((1, 1, config.nb_features)))
    model.compile(g_optimizer=make_optimizer(config.train.optimizer, config.train.g_learning_rate),
                  d_optimizer=make_optimizer(config.train.optimizer, config.train.d_learning_rate),
                  jit_compile=False)
    return model


def fit_svsgan(model: SVSGAN, config: Config, tracks: Sequence, validation_tracks: Sequence | None,
               strategy: tf.distribute.Strategy, extra_callbacks=lambda validation: [], first_epoch: int = 0,
               input_statistics: bool = True, verbose: int | str = "auto",
               last_epoch: int | None = None) -> keras.callbacks.History:
    """Both phases of `model.fit` on `tracks`, as `train` and the tuner's hypermodel run them.

    The global batch is checked against the strategy's replicas; the training batches of epochs
    first_epoch .. last_epoch - 1 (last_epoch: train.epochs by default, earlier for a Hyperband round;
    drawn from the seed and the epoch, see data.training_dataset) and the validation batches are sharded
    by data; with `input_statistics`, G's input standardisation is set from the first batches of the
    whole schedule, wherever this call starts. The callbacks are the phase schedule, `val_sdr` on
    `validation_tracks` (ValidationSDR, when there are any), then `extra_callbacks(validation)`, which
    may read `val_sdr` from the logs.
    """
    distribute.check_global_batch(config.train.batch_size, strategy)
    last_epoch = config.train.epochs if last_epoch is None else last_epoch
    train_ds = distribute.training_input(strategy, config.data.reader, lambda shard, replicas: data_lib.training_dataset(
        tracks, config, first_epoch=first_epoch, nb_epochs=last_epoch - first_epoch, shard=shard, replicas=replicas))
    valid_ds = (distribute.shard_by_data(data_lib.validation_dataset(validation_tracks, config))
                if validation_tracks else None)
    if input_statistics:               # from the schedule's first batches, wherever this call starts or stops
        # the mixtures alone, which a teacher leaves as they are, so without running it
        mixtures = dataclasses.replace(config, data=dataclasses.replace(config.data, teacher=None))
        schedule = data_lib.training_dataset(tracks, mixtures, nb_epochs=config.train.epochs)
        model.generator.set_input_statistics(*data_lib.input_statistics(distribute.shard_by_data(schedule)))
    validation = ValidationSDR(validation_tracks, config) if validation_tracks else None
    callbacks = [PhaseSchedule(config)] + ([validation] if validation is not None else [])
    callbacks += list(extra_callbacks(validation))
    return model.fit(train_ds, validation_data=valid_ds, epochs=last_epoch, initial_epoch=first_epoch,
                     steps_per_epoch=data_lib.epoch_steps(tracks, config), callbacks=callbacks, verbose=verbose,
                     shuffle=False)


def train(config: Config, out_dir: str, tracks: Sequence | None = None,
          validation_tracks: Sequence | None = None, init_model: str | None = None,
          strategy: str | tf.distribute.Strategy | None = None, verbose: int | str = "auto",
          tensorboard: bool = True) -> TrainResult:
    """Train G (and D in the GAN phase) and write `out_dir/model`.

    `out_dir` receives: config.json, model/ (updated after every epoch), backup/ (resume state, see
    svsgan_tf/training/backup.py: run the same call again after a kill and it continues where it stopped, with
    the batches and weights of an uninterrupted run), logs/ (TensorBoard), history.csv.
    Tracks default to config.data.source; validation tracks give val_kl and val_sdr (ValidationSDR),
    and best_model/ keeps the epoch with the highest val_sdr.
    `strategy` is a tf.distribute strategy or its name (see distribute.make_strategy; None: the current
    one); config.train.batch_size is the global batch. Under multi-worker training only the chief
    writes to `out_dir`, which every worker must be able to read.
    """
    config = dataclasses.replace(config, git_commit=git_commit()).validate()
    strategy = distribute.make_strategy(strategy)           # first: a cluster must form before any op
    distribute.check_global_batch(config.train.batch_size, strategy)      # before any data is read
    chief = distribute.is_chief(strategy)
    set_seed(config.train.seed)
    check_resumable(out_dir, config)
    model_dir, backup_dir = os.path.join(out_dir, "model"), os.path.join(out_dir, "backup")
    if chief and os.path.isdir(out_dir):
        for path in remove_stale_temporaries(out_dir):
            logger.warning("removed %s, left by a killed run", path)
    backup = last_good_backup(backup_dir)
    done = backup.epoch if backup is not None else None
    if done is not None and done >= config.train.epochs and os.path.isdir(model_dir):
        logger.info("%s: finished already (%d epochs), nothing to do", out_dir, done)
        return TrainResult(model_dir=model_dir, history={}, config=config)
    if tracks is None:
        tracks, validation_tracks = load_tracks(config, quiet=verbose == 0)
    if not tracks:
        raise DataError("training data: no tracks")
    if chief:
        os.makedirs(out_dir, exist_ok=True)
        config.save(os.path.join(out_dir, "config.json"))

    with strategy.scope():
        model = build_svsgan(config, init_model)
    # imported weights keep their licence: from the start model, or, resuming, from this run's model
    starts = ([init_model] if init_model else []) + ([model_dir] if os.path.isdir(model_dir) else [])
    notices = model_notices(*starts)

    def run_callbacks(validation):
        callbacks = []
        if chief:                   # only the chief writes the model directories, the history and logs
            callbacks += [
                SaveModelDir(model_dir, config, os.path.join(out_dir, "best_model"), monitor="val_sdr", mode="max",
                             extra_files=notices),
                HistoryCSV(os.path.join(out_dir, "history.csv")),
            ]
            if tensorboard:
                callbacks.append(keras.callbacks.TensorBoard(os.path.join(out_dir, "logs")))
        # last: an epoch counts as done (and is skipped on resume) only once it is exported and logged
        return callbacks + [ResumableBackup(backup_dir, backup, keep=chief)]

    history = fit_svsgan(model, config, tracks, validation_tracks, strategy, run_callbacks,
                         first_epoch=done or 0, input_statistics=not init_model, verbose=verbose)
    if chief and not os.path.isdir(model_dir):
        save_model(model_dir, config, model.generator, model.discriminator, extra_files=notices)
    return TrainResult(model_dir=model_dir, history=dict(history.history), config=config)
