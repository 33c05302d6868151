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


def pack_model(source: str, target: str, float16: bool = False) -> str:
    """Write `target`, a model directory for distribution: `source`'s config.json and G's weights
    (no discriminator), with every weight stored as float16 when `float16` (half the size; loading
    casts them back to float32). Atomic like save_model; `source` is never written. Returns `target`."""
    import h5py
    import numpy as np

    if os.path.abspath(source) == os.path.abspath(target):
        raise ConfigError(f"{target}: the packed model must go to another folder than its source")
    config, generator = load_generator(source)
    with atomic_directory(target) as tmp:
        config.save(os.path.join(tmp, CONFIG_FILE))
        weights = os.path.join(tmp, GENERATOR_FILE)
        if not float16:
            generator.save_weights(weights)
        else:
            full = os.path.join(tmp, "float32." + GENERATOR_FILE)
            generator.save_weights(full)
            with h5py.File(full, "r") as source_file, h5py.File(weights, "w") as target_file:
                _copy_h5(source_file, target_file, np.float16)
            os.remove(full)
    return target


def _copy_h5(source, target, float_dtype) -> None:
    """Copy an h5py group into another, attributes included, float32 datasets cast to `float_dtype`
    (a fresh file: HDF5 does not give back the space of datasets replaced in place)."""
    import h5py
    import numpy as np

    for key, value in source.attrs.items():
        target.attrs[key] = value
    for name, item in source.items():
        if isinstance(item, h5py.Group):
            _copy_h5(item, target.create_group(name), float_dtype)
            continue
        values = item[()]
        copied = target.create_dataset(name, data=values.astype(float_dtype) if values.dtype == np.float32
                                       else values)
        for key, value in item.attrs.items():
            copied.attrs[key] = value


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
