"""Model directories: config.json (with seed and git commit) beside the weights of G and D.

Layout of a model directory::

    config.json                 the full Config; the model is rebuilt from it alone
    generator.weights.h5        G's weights
    discriminator.weights.h5    D's weights (absent for a generator-only model)
"""
from __future__ import annotations

import logging
import os

from svsgan_tf.config import Config
from svsgan_tf.errors import ConfigError
from svsgan_tf.io_utils import atomic_directory

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
GENERATOR_FILE = "generator.weights.h5"
DISCRIMINATOR_FILE = "discriminator.weights.h5"
PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")


def save_model(path: str, config: Config, generator, discriminator=None,
               extra_files: dict[str, str] | None = None) -> str:
    """Write a model directory atomically (a temporary folder renamed onto `path`); return `path`.

    `extra_files` maps file names to text written into the same folder, so that they change together
    with the weights (a kill leaves either the old folder or the new one, never a mix).
    """
    with atomic_directory(path) as tmp:
        config.save(os.path.join(tmp, CONFIG_FILE))
        generator.save_weights(os.path.join(tmp, GENERATOR_FILE))
        if discriminator is not None:
            discriminator.save_weights(os.path.join(tmp, DISCRIMINATOR_FILE))
        for name, text in (extra_files or {}).items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as handle:
                handle.write(text)
    return path


def load_config(path: str) -> Config:
    """The Config of a model directory; ConfigError naming the folder if it is not one."""
    if not os.path.isdir(path):
        raise ConfigError(f"{path}: model directory not found")
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise ConfigError(f"{path}: not a model directory (no {CONFIG_FILE})")
    return Config.load(config_path)


def load_generator(path: str, config: Config | None = None):
    """Rebuild G from the directory's config (or from `config`, whose model must have the same weights,
    e.g. another dropout rate) and load its weights. Returns (config, generator)."""
    from svsgan_tf.models import build_generator

    config = config or load_config(path)
    generator = build_generator(config)
    _load_weights(generator, os.path.join(path, GENERATOR_FILE), path)
    return config, generator


def load_discriminator(path: str, config: Config):
    """D of a model directory, or None when the directory holds none."""
    from svsgan_tf.models import build_discriminator

    weights = os.path.join(path, DISCRIMINATOR_FILE)
    if not os.path.isfile(weights):
        return None
    discriminator = build_discriminator(config)
    _load_weights(discriminator, weights, path)
    return discriminator


def default_model_path() -> str:
    """The model used when none is given: the one shipped inside the package."""
    if not os.path.isfile(os.path.join(PRETRAINED_DIR, CONFIG_FILE)):
        raise ConfigError(f"{PRETRAINED_DIR}: no pretrained model is shipped in this version; "
                          "train one with `python -m svsgan_tf.train --out DIR` and pass --model DIR/model")
    return PRETRAINED_DIR


def _load_weights(model, weights: str, folder: str) -> None:
    if not os.path.isfile(weights):
        raise ConfigError(f"{folder}: not a model directory (no {os.path.basename(weights)})")
    try:
        model.load_weights(weights)
    except (ValueError, OSError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{weights}: weights do not fit the model of config.json ({first})") from None
