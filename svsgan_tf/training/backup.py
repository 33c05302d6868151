"""Resume state of a training run: atomic, checksummed backups after every epoch, and the last good one.

A run folder's `backup/` holds, after epoch N:

    epoch-0000N.weights.h5    G's and D's weights and both optimizers' state (slots, iterations)
    epoch-0000M.weights.h5    the previous epoch's, kept until the next one is complete
    state.json                {"epoch": N, "weights": ..., "sha256": ..., "previous": {the same for M}}

Each weights file is written under a temporary name, flushed to disk and renamed; `state.json` is
replaced (atomically) only after that, and the file before the previous is removed only then. A kill at
any moment therefore leaves a state.json that names complete files. A backup damaged anyway (a disk
error, a file edited by hand) fails its checksum: the run says so in one line and resumes from the
previous backup, or starts over when there is none.

The data pipeline draws each epoch's examples from (seed, epoch) alone (data.training_dataset), so a
resumed run sees the batches, and reaches the weights, of an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile

import keras

from svsgan_tf.errors import ConfigError
from svsgan_tf.io_utils import atomic_path, atomic_write_text, file_sha256, fsync_file

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
WEIGHTS_NAME = re.compile(r"^epoch-(\d+)\.weights\.h5$")


@dataclasses.dataclass(frozen=True)
class Backup:
    """One complete backup: the number of epochs done and its weights file (with its checksum)."""

    epoch: int
    weights: str
    sha256: str | None = None


def weights_name(epoch: int) -> str:
    """The file name of the backup after `epoch` epochs."""
    return f"epoch-{epoch:05d}.weights.h5"


def backup_epoch(backup_dir: str) -> int | None:
    """Epochs completed according to `backup_dir`'s state.json, or None when it holds no backup."""
    try:
        with open(os.path.join(backup_dir, STATE_FILE), encoding="utf-8") as handle:
            return int(json.load(handle)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def candidates(backup_dir: str) -> list[Backup]:
    """The backups to try, newest first: those state.json names (with checksums), then any other
    epoch-N.weights.h5 in the folder (a state.json that is itself damaged)."""
    found: list[Backup] = []
    try:
        with open(os.path.join(backup_dir, STATE_FILE), encoding="utf-8") as handle:
            state = json.load(handle)
        for entry in (state, state.get("previous")):
            if entry:
                found.append(Backup(int(entry["epoch"]), os.path.join(backup_dir, entry["weights"]),
                                    entry.get("sha256")))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        logger.warning("%s: damaged (%s); looking for backups by name", os.path.join(backup_dir, STATE_FILE),
                       type(err).__name__)
    known = {b.weights for b in found}
    if os.path.isdir(backup_dir):
        for name in os.listdir(backup_dir):
            match = WEIGHTS_NAME.match(name)
            path = os.path.join(backup_dir, name)
            if match and path not in known:
                found.append(Backup(int(match.group(1)), path))
    return sorted(found, key=lambda b: -b.epoch)


def last_good_backup(backup_dir: str) -> Backup | None:
    """The newest backup whose weights file is present and matches its checksum, or None. Every one
    passed over is reported in one warning line."""
    for backup in candidates(backup_dir):
        if not os.path.isfile(backup.weights):
            problem = "missing"
        elif backup.sha256 is not None and file_sha256(backup.weights) != backup.sha256:
            problem = "damaged (checksum mismatch)"
        else:
            return backup
        logger.warning("%s: %s; resuming from an earlier backup", backup.weights, problem)
    return None


class ResumableBackup(keras.callbacks.Callback):
    """Restore `backup` (from `last_good_backup`) when training begins; write a backup after every epoch.

    Args:
        backup_dir: where backups are kept.
        backup: the one to restore, or None to start from scratch.
        keep: False for a worker that is not the chief: it writes each backup (saving reads every
            variable, which may need every worker) into a scratch folder and removes it.
    """

    def __init__(self, backup_dir: str, backup: Backup | None, keep: bool = True):
        super().__init__()
        self.backup_dir = backup_dir
        self.backup = backup
        self.keep = keep

    def on_train_begin(self, logs=None):
        if self.backup is None:
            return
        for optimizer in (getattr(self.model, "g_optimizer", None), getattr(self.model, "d_optimizer", None),
                          getattr(self.model, "optimizer", None)):
            if optimizer is not None and not optimizer.built:
                optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(self.backup.weights)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{self.backup.weights}: cannot restore this backup ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}); delete it to resume from "
                              "the previous one") from None
        logger.info("resumed from %s (%d epochs done)", self.backup.weights, self.backup.epoch)

    def on_epoch_end(self, epoch, logs=None):
        if not self.keep:
            scratch = tempfile.mkdtemp(prefix="svsgan-worker-backup-")
            try:
                self.model.save_weights(os.path.join(scratch, weights_name(epoch + 1)))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            return
        self.backup = write_backup(self.backup_dir, self.model, epoch + 1, self.backup)


def write_backup(backup_dir: str, model, epoch: int, previous: Backup | None) -> Backup:
    """Write the backup after `epoch` epochs (see the module docstring); return it."""
    os.makedirs(backup_dir, exist_ok=True)
    path = os.path.join(backup_dir, weights_name(epoch))
    with atomic_path(path) as tmp:
        model.save_weights(tmp)
        fsync_file(tmp)
    backup = Backup(epoch, path, file_sha256(path))
    state = {"epoch": epoch, "weights": os.path.basename(path), "sha256": backup.sha256}
    if (previous is not None and previous.epoch != epoch and os.path.isfile(previous.weights)
            and os.path.samefile(os.path.dirname(previous.weights), backup_dir)):   # not another run's
        state["previous"] = {"epoch": previous.epoch, "weights": os.path.basename(previous.weights),
                             "sha256": previous.sha256}
    atomic_write_text(os.path.join(backup_dir, STATE_FILE), json.dumps(state, indent=2) + "\n")
    kept = {os.path.basename(path)} | ({state["previous"]["weights"]} if "previous" in state else set())
    for name in os.listdir(backup_dir):
        if WEIGHTS_NAME.match(name) and name not in kept:
            os.unlink(os.path.join(backup_dir, name))
    return backup
