"""The search space: what a search may change in a Config, its ranges, and a `--space FILE.json` narrowing it.

Each hyperparameter sets one or more Config fields. Its default is always the fixed config's value (so
a search with every hyperparameter fixed trains exactly the given config); a choice list or a range is
widened to include that value. The epochs range up to twice the config's.

A space file is a JSON object naming hyperparameters of SPACE:
    {"batch_size": [4, 16],                 a list: the choices
     "g_learning_rate": {"min": 1e-4, "max": 3e-3},   a range (log-scaled for learning rates)
     "optimizer": "adam"}                   a single value: fixed
Hyperparameters it does not name keep the whole of their default range.
"""
from __future__ import annotations

from dataclasses import dataclass

from svsgan_tf.config import OPTIMIZERS, Config
from svsgan_tf.errors import ConfigError


@dataclass(frozen=True)
class Hyperparameter:
    """One searched setting: `kind` is choice (`values`), float (log range `low`..`high`) or int."""

    name: str
    kind: str
    values: tuple = ()
    low: float = 0.0
    high: float | None = 0.0      # None: twice the fixed config's value

    def default(self, config: Config):
        """The fixed config's value of this hyperparameter."""
        if self.name == "width":
            return 1.0
        section, key = CONFIG_KEYS[self.name].split(".")
        return getattr(getattr(config, section), key)


# the config field each hyperparameter sets ("width" scales the generator's layers)
CONFIG_KEYS = {
    "batch_size": "train.batch_size", "optimizer": "train.optimizer",
    "g_learning_rate": "train.g_learning_rate", "d_learning_rate": "train.d_learning_rate",
    "adversarial_weight": "train.adversarial_weight", "kl_weight": "train.kl_weight",
    "pretrain_epochs": "train.pretrain_epochs", "gan_epochs": "train.gan_epochs",
}
SPACE = {hp.name: hp for hp in (
    Hyperparameter("batch_size", "choice", (4, 8, 16, 32, 64)),
    Hyperparameter("optimizer", "choice", OPTIMIZERS),
    Hyperparameter("g_learning_rate", "float", low=1e-5, high=1e-2),
    Hyperparameter("d_learning_rate", "float", low=1e-5, high=1e-2),
    Hyperparameter("width", "choice", (0.5, 1.0, 2.0)),
    Hyperparameter("adversarial_weight", "choice", (0.0, 0.1, 0.5, 1.0)),     # 0: no GAN competes
    Hyperparameter("kl_weight", "float", low=0.1, high=10.0),
    # epochs: up to twice the fixed config's (high None), so a search's budget follows the config's
    Hyperparameter("pretrain_epochs", "int", low=1, high=None),
    Hyperparameter("gan_epochs", "int", low=0, high=None),
)}


def narrowed(space: dict, spec: dict, source: str = "--space") -> dict:
    """`space` with the hyperparameters that `spec` (a space file's object) names narrowed or fixed;
    ConfigError for an unknown name, an empty list or range, or a value of the wrong kind."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{source}: expected a JSON object of hyperparameters, got {type(spec).__name__}")
    result = dict(space)
    for name, value in spec.items():
        if name not in space:
            raise ConfigError(f"{source}: unknown hyperparameter {name!r}, expected one of {', '.join(space)}")
        hp = space[name]
        if isinstance(value, list):
            if not value:
                raise ConfigError(f"{source}: {name}: an empty list of choices")
            result[name] = Hyperparameter(name, "choice", tuple(value))
        elif isinstance(value, dict):
            if set(value) != {"min", "max"} or hp.kind == "choice":
                raise ConfigError(f"{source}: {name}: a range is {{\"min\": ..., \"max\": ...}}, for a number "
                                  "that is not a choice")
            if not value["min"] <= value["max"]:
                raise ConfigError(f"{source}: {name}: an empty range, min {value['min']} > max {value['max']}")
            result[name] = Hyperparameter(name, hp.kind, low=value["min"], high=value["max"])
        else:
            result[name] = Hyperparameter(name, "choice", (value,))
    return result


def load_space(path: str | None) -> dict:
    """SPACE narrowed by the space file at `path` (None: SPACE)."""
    if path is None:
        return dict(SPACE)
    from svsgan_tf.io_utils import read_json

    return narrowed(SPACE, read_json(path, ConfigError, f"--space {path}"), f"--space {path}")


def trial_overrides(values: dict, config: Config) -> dict:
    """Config overrides ("section.key": value) for a trial's hyperparameter values."""
    overrides = {CONFIG_KEYS[name]: value for name, value in values.items() if name in CONFIG_KEYS}
    width = values.get("width", 1.0)
    if width != 1.0:
        def scale(units):
            return [max(1, int(round(u * width))) for u in units]
        model = config.model
        overrides.update({"model.encoder_units": scale(model.encoder_units),
                          "model.decoder_units": scale(model.decoder_units),
                          "model.lstm_units": scale([model.lstm_units])[0],
                          "model.unet_filters": scale(model.unet_filters)})
    return overrides
