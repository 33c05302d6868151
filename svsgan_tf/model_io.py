"""Model directories: config.json (with seed and git commit) beside the weights of G and D.

Layout of a model directory::

    config.json                 the full Config; the model is rebuilt from it alone
    generator.weights.h5        G's weights
    discriminator.weights.h5    D's weights (absent for a generator-only model)

An ensemble folder (written by `python -m svsgan_tf.pack A B ...`) separates with the mean mask of its
members and cannot be trained further::

    config.json                 the first member's Config: STFT, channels and Separator settings
    members/<i>/                one generator-only model directory per member, i = 0, 1, ...
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
MEMBERS_DIR = "members"
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


def pack_model(sources: list[str], target: str, float16: bool = False):
    """Write `target`, a model folder for distribution, from the model directories `sources`.

    One source: its config.json and G's weights (no discriminator). Several: an ensemble folder (see
    the module docstring) with one such directory per source, in order. With `float16` every weight
    is stored in half precision (half the size; loading casts them back to float32). Atomic like
    save_model; no source is ever written. Returns (config, generator) of the float32 model packed
    (an EnsembleGenerator for several sources), to compare the packed folder against.
    """
    if not sources:
        raise ConfigError("pack: no model directory given")
    if any(os.path.abspath(s) == os.path.abspath(target) for s in sources):
        raise ConfigError(f"{target}: the packed model must go to another folder than its sources")
    loaded = [load_generator(source) for source in sources]
    # the members must fit together before anything is written
    packed = loaded[0] if len(loaded) == 1 else ensemble_of(loaded, sources)
    with atomic_directory(target) as tmp:
        loaded[0][0].save(os.path.join(tmp, CONFIG_FILE))
        folders = [tmp] if len(loaded) == 1 else [os.path.join(tmp, MEMBERS_DIR, str(i))
                                                  for i in range(len(loaded))]
        for folder, (config, generator) in zip(folders, loaded):
            os.makedirs(folder, exist_ok=True)
            config.save(os.path.join(folder, CONFIG_FILE))
            _save_weights(generator, os.path.join(folder, GENERATOR_FILE), float16)
    return packed


def ensemble_of(loaded: list, names: list[str]):
    """(config, EnsembleGenerator) of [(config, generator), ...] loaded from the folders `names`:
    the first member's config; ConfigError naming the member whose STFT or channel count differs."""
    from svsgan_tf.models import EnsembleGenerator

    first = loaded[0][0]
    for name, (config, _) in zip(names, loaded):
        if config.stft != first.stft or config.model.nb_channels != first.model.nb_channels:
            raise ConfigError(f"{name}: its STFT or model.nb_channels differ from the first member's "
                              f"({names[0]}); an ensemble's members must share them")
    return first, EnsembleGenerator([generator for _, generator in loaded], name="ensemble")


def _save_weights(generator, path: str, float16: bool) -> None:
    """G's weights at `path`, float32 or (float16) every float32 weight in half precision."""
    import h5py
    import numpy as np

    if not float16:
        generator.save_weights(path)
        return
    full = os.path.join(os.path.dirname(path), "float32." + os.path.basename(path))
    generator.save_weights(full)
    with h5py.File(full, "r") as source_file, h5py.File(path, "w") as target_file:
        _copy_h5(source_file, target_file, np.float16)
    os.remove(full)


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
    e.g. another dropout rate) and load its weights. Returns (config, generator). An ensemble folder
    gives (its config, EnsembleGenerator); it takes no `config`, since it cannot be trained further."""
    from svsgan_tf.models import build_generator

    members = os.path.join(path, MEMBERS_DIR)
    if os.path.isdir(members):
        if config is not None:
            raise ConfigError(f"{path}: an ensemble separates but cannot be trained further or re-configured")
        config = load_config(path)
        names = sorted((n for n in os.listdir(members) if n.isdigit()), key=int)
        if not names:
            raise ConfigError(f"{members}: an ensemble folder without members")
        folders = [os.path.join(members, n) for n in names]
        return config, ensemble_of([load_generator(f) for f in folders], folders)[1]
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
