"""Training callbacks: phase and learning-rate schedule, validation SDR, model directories, history.csv."""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from typing import Sequence

import keras
import numpy as np

from svsgan_tf.config import LOSSES, Config
from svsgan_tf.io_utils import atomic_write_text
from svsgan_tf.models.model_io import save_model

logger = logging.getLogger(__name__)


class PhaseSchedule(keras.callbacks.Callback):
    """Put the model in the phase that the config assigns to each epoch, with that epoch's G rate
    (TrainConfig.learning_rate).

    Because phase and rate follow the epoch number, a run resumed by BackupAndRestore continues in the
    phase, and at the rate, it was killed in.
    """

    def __init__(self, config: Config):
        super().__init__()
        self.config = config

    def on_epoch_begin(self, epoch, logs=None):
        phase = self.config.train.phase(epoch)
        self.model.g_optimizer.learning_rate.assign(self.config.train.learning_rate(epoch))
        if phase != self.model.phase or self.model.train_function is None:
            self.model.set_phase(phase)


class ValidationSDR(keras.callbacks.Callback):
    """After every epoch, separate the validation songs whole and log `val_sdr`: the median over songs
    of the vocals' global SDR (evaluation.global_sdr, the SDR of the MDX challenges), in dB.

    It is what the held-out songs say about separation quality, frame KL aside: the model with the best
    `val_sdr` is the one SaveModelDir keeps. Songs whose vocals are silent are left out.

    Args:
        tracks: validation tracks (data-set Tracks, or objects with `mixture` and `vocals` arrays of
            (nb_samples, nb_channels)) at config.stft.sample_rate.
        config: the run's Config.
    """

    def __init__(self, tracks: Sequence, config: Config):
        super().__init__()
        self.tracks = list(tracks)
        self.config = config
        self.separator = None

    def on_train_begin(self, logs=None):
        from svsgan_tf.separation.separator import Separator

        self.separator = Separator(self.config, self.model.generator)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        score = self.score(self.separator)
        if score is None:
            logger.warning("val_sdr: every validation song has silent vocals, no score this epoch")
        else:
            logs["val_sdr"] = score

    def scorable(self):
        """Yield the stems {stem: (nb_samples, nb_channels)} of each validation song with audible
        vocals: the songs `score` uses."""
        from svsgan_tf.data.pipeline import readable

        for track in self.tracks:
            stems = readable(track).load()
            if np.any(stems["vocals"]):
                yield stems

    def nb_scorable(self) -> int:
        """How many validation songs have audible vocals."""
        return sum(1 for _ in self.scorable())

    def score(self, separator) -> float | None:
        """Median global vocals SDR of the validation songs separated by `separator` (a Separator);
        None when every song's vocals are silent."""
        from svsgan_tf.evaluation.bss import global_sdr

        scores = []
        for stems in self.scorable():
            waveform = np.ascontiguousarray(stems["mixture"].T, np.float32)   # (nb_channels, nb_samples)
            vocals = separator.separate_waveform(waveform)["vocals"].numpy().T
            scores.append(global_sdr(stems["vocals"], vocals))
        return float(np.median(scores)) if scores else None


class SaveModelDir(keras.callbacks.Callback):
    """After every epoch, write a complete model directory (config + weights) atomically to `path`;
    when the logs carry `monitor`, also keep the best epoch so far in `best_path` (`mode` "max": the
    highest value is best, "min": the lowest).

    The best value and its epoch are recorded in `<best_path>/best.json`, written in the same atomic
    step as the weights, so a resumed run compares new epochs with the best one of the runs before it
    and a kill can never leave a record that belongs to other weights. `extra_files` ({name: text},
    the notices of the weights the run started from) go into both folders.
    """

    RECORD_FILE = "best.json"

    def __init__(self, path: str, config: Config, best_path: str | None = None, monitor: str = "val_sdr",
                 mode: str = "max", extra_files: dict[str, str] | None = None):
        super().__init__()
        self.extra_files = dict(extra_files or {})
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
        self.path = path
        self.config = config
        self.best_path = best_path
        self.monitor = monitor
        self.sign = 1.0 if mode == "min" else -1.0
        self.best = math.inf

    def on_train_begin(self, logs=None):
        record = os.path.join(self.best_path, self.RECORD_FILE) if self.best_path else None
        if record and not os.path.isfile(record) and os.path.isdir(self.best_path):
            record = f"{self.best_path}.json"             # where runs made before best.json kept it
        if record and os.path.isfile(record):
            with open(record, encoding="utf-8") as handle:
                value = json.load(handle).get(self.monitor)
            if value is not None:
                self.best = self.sign * float(value)
            else:
                logger.warning("%s: records no %s (an older run's); the next epoch replaces %s", record,
                               self.monitor, self.best_path)

    def on_epoch_end(self, epoch, logs=None):
        save_model(self.path, self.config, self.model.generator, self.model.discriminator,
                   extra_files=self.extra_files)
        value = (logs or {}).get(self.monitor)
        if self.best_path and value is not None and self.sign * float(value) < self.best:
            self.best = self.sign * float(value)
            record = json.dumps({self.monitor: float(value), "epoch": epoch + 1})
            save_model(self.best_path, self.config, self.model.generator, self.model.discriminator,
                       extra_files={**self.extra_files, self.RECORD_FILE: record})
            if os.path.isfile(f"{self.best_path}.json"):  # an older run's record, now superseded
                os.remove(f"{self.best_path}.json")
            logger.info("epoch %d: best %s so far (%.4f), saved to %s", epoch + 1, self.monitor, float(value),
                        self.best_path)


class HistoryCSV(keras.callbacks.Callback):
    """history.csv: one row per finished epoch, with fixed columns for both phases and G's and D's
    step counts (optimizer iterations), appended across resumed runs.

    Keras' CSVLogger fixes its columns at the first epoch it logs: it drops the GAN losses after a KL
    epoch and writes them under the KL header when a run resumes in the GAN phase. Rows of epochs that
    a resumed run trains again (killed after logging, before its backup) are dropped when it starts.
    """

    COLUMNS = (("epoch", "phase", "g_steps", "d_steps", "g_learning_rate")
               + tuple(name for loss in LOSSES for name in (loss, f"val_{loss}"))      # kl first: always logged
               + ("val_sdr", "g_loss", "g_adversarial", "d_loss", "d_real", "d_fake", "adv_scale"))

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
                   d_steps=int(self.model.d_optimizer.iterations.numpy()),
                   g_learning_rate=f"{float(self.model.g_optimizer.learning_rate.numpy()):.3g}")
        header = not os.path.isfile(self.path) or os.path.getsize(self.path) == 0
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            handle.write(self._format([row], header))

    def _format(self, rows, header: bool) -> str:
        lines = [",".join(self.COLUMNS)] if header else []
        lines += [",".join(str(row.get(name, "")) for name in self.COLUMNS) for row in rows]
        return "".join(line + "\n" for line in lines)
