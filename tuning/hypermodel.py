"""SVSGANHyperModel: fixed settings in the constructor, the search space in `build(hp)` (as HyperResNet)."""
from __future__ import annotations

import logging
import os
import time

import keras_tuner as kt
import numpy as np

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
        strategy: a tf.distribute strategy or its name (see svsgan_tf.training.distribute.make_strategy),
            resolved once here: every trial builds and trains in that one strategy.
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
        from svsgan_tf.training.distribute import make_strategy

        self.strategy = make_strategy(strategy)
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
        from svsgan_tf.training.fit import build_svsgan

        config = self.trial_config(hp)
        with self.strategy.scope():
            return build_svsgan(config)

    def fit(self, hp, model, *args, epochs: int | None = None, initial_epoch: int = 0,
            trial_dir: str | None = None, previous_trial_dir: str | None = None, **kwargs) -> dict:
        """Train with the trial's batch size through both phases (training.fit_svsgan, as
        `python -m svsgan_tf.train` does), epochs initial_epoch .. epochs - 1 of the trial's schedule
        (all of them by default; a Hyperband round gives `epochs` and `initial_epoch`).

        With `trial_dir` (SVSGANHyperband) a backup of G, D and both optimizers is written after every
        epoch into trial_dir/backup, and a round that continues `previous_trial_dir` starts from its
        backup: weights and optimizer state carry across Hyperband's rounds.

        Returns the trial's metrics: `val_sdr` (the best epoch's, the objective), `epochs_trained` and
        `wall_seconds` (this call's), `best_epoch` and `g_steps` (G's optimizer steps so far).
        """
        from svsgan_tf.training.backup import ResumableBackup, last_good_backup
        from svsgan_tf.training.distribute import is_chief
        from svsgan_tf.training.fit import fit_svsgan

        config = self.trial_config(hp)
        last_epoch = config.train.epochs if epochs is None else min(int(epochs), config.train.epochs)
        callbacks = list(kwargs.pop("callbacks", []))
        start_from = None
        if initial_epoch:
            backup_dir = os.path.join(previous_trial_dir or "<no continued trial>", "backup")
            start_from = last_good_backup(backup_dir)
            if start_from is None or start_from.epoch != initial_epoch:
                raise ConfigError(f"{backup_dir}: no backup after epoch {initial_epoch} to continue this "
                                  "Hyperband round from")
        if trial_dir is not None:            # only the chief keeps backups, as in training.fit.train
            callbacks.append(ResumableBackup(os.path.join(trial_dir, "backup"), start_from,
                                             keep=is_chief(self.strategy)))
        started = time.perf_counter()
        history = fit_svsgan(model, config, self.tracks, self.validation_tracks, self.strategy,
                             lambda validation: callbacks, first_epoch=initial_epoch, last_epoch=last_epoch,
                             input_statistics=start_from is None, verbose=kwargs.pop("verbose", "auto"))
        scores = np.asarray(history.history.get("val_sdr", [np.nan]), dtype=float)
        best = int(np.nanargmax(scores)) if np.isfinite(scores).any() else len(scores) - 1
        return {"val_sdr": float(scores[best]), "epochs_trained": len(history.epoch),
                "wall_seconds": time.perf_counter() - started, "best_epoch": initial_epoch + best + 1,
                "g_steps": int(model.g_optimizer.iterations.numpy())}


class TrialRunner:
    """Mixin for keras-tuner tuners running SVSGANHyperModel: a progress line per trial, and, where
    `continues_rounds` (Hyperband), each trial's folder and that of the trial it continues passed to
    SVSGANHyperModel.fit, which restores G, D and both optimizers from the continued trial's last epoch
    (keras-tuner's Hyperband itself reloads only the weights of its best epoch)."""

    continues_rounds = False

    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        if self.continues_rounds:
            kwargs["trial_dir"] = self.get_trial_dir(trial.trial_id)
            if "tuner/trial_id" in hp.values:
                kwargs["previous_trial_dir"] = self.get_trial_dir(hp.values["tuner/trial_id"])
        results = super().run_trial(trial, *args, **kwargs)
        for result in results if isinstance(results, list) else [results]:
            logger.info("trial %s: val_sdr %.3f dB (epoch %d), %d epochs in %.0f s; %d trials done",
                        trial.trial_id, result["val_sdr"], result["best_epoch"], result["epochs_trained"],
                        result["wall_seconds"], 1 + sum(t.status == "COMPLETED" for t in self.oracle.trials.values()))
        return results


class SVSGANRandomSearch(TrialRunner, kt.RandomSearch):
    """Random search over SVSGANHyperModel's space."""


class SVSGANBayesianOptimization(TrialRunner, kt.BayesianOptimization):
    """Bayesian optimisation (Gaussian process) over SVSGANHyperModel's space."""


class SVSGANHyperband(TrialRunner, kt.Hyperband):
    """Hyperband over SVSGANHyperModel's space; each round continues the previous round's run."""

    continues_rounds = True

    def _build_hypermodel(self, hp):
        # a continued trial's weights (and optimizer state) are restored in fit, not here
        return kt.Tuner._build_hypermodel(self, hp)


TUNERS = {"random": SVSGANRandomSearch, "bayesian": SVSGANBayesianOptimization, "hyperband": SVSGANHyperband}
