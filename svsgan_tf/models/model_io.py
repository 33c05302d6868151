"""Model directories: config.json (with seed and git commit) beside the weights of G and D.

Layout of a model directory::

    config.json                 the full Config; the model is rebuilt from it alone
    generator.weights.h5        G's weights
    discriminator.weights.h5    D's weights (absent for a generator-only model)
    weights.sha256.json         {weights file name: SHA-256}, checked on load (absent in older folders)

An ensemble folder (written by `python -m svsgan_tf.pack A B ...`) separates with the mean mask of its
members and cannot be trained further::

    config.json                 the first member's Config: STFT, channels and Separator settings
    members/<i>/                one generator-only model directory per member, i = 0, 1, ...

A folder's checksums cover the weights files in that folder, so an ensemble's are in its members.
"""
from __future__ import annotations

import json
import logging
import os

from svsgan_tf.config import Config
from svsgan_tf.shipped_models import (CONFIG_FILE, DEFAULT_MODEL, PRETRAINED_DIR, default_model_path,  # noqa: F401
                                      pretrained_names, resolve_model)
from svsgan_tf.errors import ConfigError, first_line
from svsgan_tf.io_utils import atomic_directory, file_sha256

logger = logging.getLogger(__name__)

GENERATOR_FILE = "generator.weights.h5"
DISCRIMINATOR_FILE = "discriminator.weights.h5"
CHECKSUM_FILE = "weights.sha256.json"
MEMBERS_DIR = "members"
NOTICE_FILE = "NOTICE.txt"         # the licence of weights that came from elsewhere; travels with them


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
        write_checksums(tmp)
        write_text_files(tmp, extra_files or {})
    return path


def write_text_files(folder: str, files: dict[str, str]) -> None:
    """Write each {name: text} of `files` into `folder` (inside an atomic write's temporary folder)."""
    for name, text in files.items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
            handle.write(text)


def pack_model(sources: list[str], target: str, precision: str = "float32",
               separation: dict[str, object] | None = None):
    """Write `target`, a model folder for distribution, from the model directories `sources`.

    One source: its config.json and G's weights (no discriminator). Several: an ensemble folder (see
    the module docstring) with one such directory per source, in order. `precision` is how the
    weights are stored (WEIGHT_PRECISIONS, see `_save_weights`: float16 halves the size, int8
    quarters it; loading turns them back to float32). `separation` overrides Separator settings of
    the folder's config.json ({"separation.mask_power": 0.8}, say: `separation.*` keys and
    model.swap_average); members keep the configs they trained with. Atomic like save_model; no
    source is ever written. Returns (config, generator) of the float32 model packed (an
    EnsembleGenerator for several sources), to compare the packed folder against.
    """
    if not sources:
        raise ConfigError("pack: no model directory given")
    sources = [resolve_model(source) for source in sources]          # names of shipped models too
    if any(os.path.realpath(s) == os.path.realpath(target) for s in sources):
        raise ConfigError(f"{target}: the packed model must go to another folder than its sources")
    if precision not in WEIGHT_PRECISIONS:
        raise ConfigError(f"pack: unknown precision {precision!r}, expected one of {', '.join(WEIGHT_PRECISIONS)}")
    unknown = sorted(key for key in separation or {} if not _separator_setting(key))
    if unknown:
        raise ConfigError(f"pack: {unknown[0]} is not a Separator setting (separation.*, model.swap_average)")
    loaded = [load_generator(source) for source in sources]
    config = loaded[0][0].replace(**(separation or {})).validate()
    # the members must fit together before anything is written
    packed = (config, loaded[0][1]) if len(loaded) == 1 else ensemble_of(loaded, sources, config)
    notices = model_notices(*sources)
    with atomic_directory(target) as tmp:
        config.save(os.path.join(tmp, CONFIG_FILE))
        write_text_files(tmp, notices)
        folders = [tmp] if len(loaded) == 1 else [os.path.join(tmp, MEMBERS_DIR, str(i))
                                                  for i in range(len(loaded))]
        for folder, (member_config, generator) in zip(folders, loaded):
            os.makedirs(folder, exist_ok=True)
            if folder != tmp:                  # one source: its config, with the settings, is saved above
                member_config.save(os.path.join(folder, CONFIG_FILE))
            _save_weights(generator, os.path.join(folder, GENERATOR_FILE), precision)
            write_checksums(folder)
    return packed


def model_notices(*paths: str) -> dict[str, str]:
    """{NOTICE_FILE: text} joining the notices of the model folders `paths` (each once), or {} when
    none has one: what a model trained from, or packed from, those folders must carry on."""
    texts = []
    for path in paths:
        file = os.path.join(resolve_model(path), NOTICE_FILE)
        if os.path.isfile(file):
            with open(file, encoding="utf-8") as handle:
                text = handle.read()
            if text not in texts:
                texts.append(text)
    return {NOTICE_FILE: "\n".join(texts)} if texts else {}


def write_checksums(folder: str) -> dict[str, str]:
    """Write folder/weights.sha256.json, the SHA-256 of every weights file (*.weights.h5) in `folder`;
    return it ({file name: hex digest}). Called inside the temporary folder of an atomic write, so the
    checksums change together with the weights."""
    checksums = {name: file_sha256(os.path.join(folder, name))
                 for name in sorted(os.listdir(folder)) if name.endswith(".weights.h5")}
    with open(os.path.join(folder, CHECKSUM_FILE), "w", encoding="utf-8") as handle:
        handle.write(json.dumps(checksums, indent=2) + "\n")
    return checksums


def _check_checksum(weights: str, folder: str) -> None:
    """ConfigError when folder/weights.sha256.json lists `weights` with another SHA-256 (a damaged copy or
    download). A folder without that file (written before it existed), or a file it does not list, is
    not checked."""
    manifest = os.path.join(folder, CHECKSUM_FILE)
    if not os.path.isfile(manifest):
        return
    try:
        with open(manifest, encoding="utf-8") as handle:
            checksums = json.load(handle)
        expected = checksums.get(os.path.basename(weights)) if isinstance(checksums, dict) else None
        if expected is not None and not isinstance(expected, str):
            raise ValueError(f"the checksum of {os.path.basename(weights)} is not a string")
        actual = file_sha256(weights) if expected is not None else None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"{manifest}: cannot read the weights' checksums ({first_line(err)})") from None
    if expected is not None and actual != expected.lower():
        raise ConfigError(f"{weights}: weights do not match their checksum (damaged?): SHA-256 {actual[:12]}..., "
                          f"{CHECKSUM_FILE} says {expected[:12]}...")


def ensemble_of(loaded: list, names: list[str], config: Config | None = None):
    """(config, EnsembleGenerator) of [(config, generator), ...] loaded from the folders `names`.

    `config` is the ensemble's own (its Separator settings; default: the first member's). ConfigError
    naming the member whose STFT, channel count or channel basis differs from the first's, or that is not frame-wise
    when `config` separates with another hop than the members trained at.
    """
    from svsgan_tf.models import EnsembleGenerator

    first = loaded[0][0]
    config = config or first
    for name, (member, _) in zip(names, loaded):
        if member.stft != first.stft or member.model.nb_channels != first.model.nb_channels:
            raise ConfigError(f"{name}: its STFT or model.nb_channels differ from the first member's "
                              f"({names[0]}); an ensemble's members must share them")
        if config.separation_stft != member.stft and not member.frame_wise:
            raise ConfigError(f"{name}: the ensemble separates with separation.hop_length="
                              f"{config.separation.hop_length}, which needs frame-wise members "
                              f"(model.generator=encoder)")
    return config, EnsembleGenerator([generator for _, generator in loaded], name="ensemble")


def _separator_setting(key: str) -> bool:
    """Whether a dotted config key changes how a trained model separates, not the model itself."""
    return key.startswith("separation.") or key == "model.swap_average"


WEIGHT_PRECISIONS = ("float32", "float16", "int8")
INT8_SCALE = "int8_scale"          # attribute of an int8 dataset: float32 step per output unit (last axis)
INT8_FILE = "int8_weights"         # attribute of a file whose matrices are stored as int8


def _save_weights(generator, path: str, precision: str) -> None:
    """G's weights at `path` in one of WEIGHT_PRECISIONS.

    float16: every float32 weight in half precision. int8: every weight matrix as int8 with a
    float32 step per output unit (symmetric, round to nearest, as TFLite's weight quantisation), the
    vectors (biases, input statistics) in half precision; `_load_weights` turns them back to float32.
    """
    import h5py
    import numpy as np

    if precision == "float32":
        generator.save_weights(path)
        return

    def reduce(values, attrs):
        if values.dtype != np.float32:
            return values, attrs
        if precision == "float16" or values.ndim < 2:
            return values.astype(np.float16), attrs
        # (..., nb_units) -> the largest |w| of each unit maps to 127
        step = np.max(np.abs(values), axis=tuple(range(values.ndim - 1))) / 127.0
        step = np.where(step > 0, step, 1.0).astype(np.float32)
        return np.round(values / step).astype(np.int8), {**attrs, INT8_SCALE: step}

    full = os.path.join(os.path.dirname(path), "float32." + os.path.basename(path))
    generator.save_weights(full)
    with h5py.File(full, "r") as source_file, h5py.File(path, "w") as target_file:
        _copy_h5(source_file, target_file, reduce)
        if precision == "int8":
            target_file.attrs[INT8_FILE] = True
    os.remove(full)


def _dequantize(values, attrs):
    """(values, attributes) of a dataset `_save_weights` wrote in int8 -> float32 weights."""
    import numpy as np

    if INT8_SCALE not in attrs:
        return values, attrs
    attrs = dict(attrs)
    return values.astype(np.float32) * np.asarray(attrs.pop(INT8_SCALE), np.float32), attrs


def _copy_h5(source, target, convert) -> None:
    """Copy an h5py group into another, each dataset's values and attributes through
    `convert(values, attrs) -> (values, attrs)` (into a fresh file: HDF5 does not give back the space
    of datasets replaced in place)."""
    import h5py

    for key, value in source.attrs.items():
        target.attrs[key] = value
    for name, item in source.items():
        if isinstance(item, h5py.Group):
            _copy_h5(item, target.create_group(name), convert)
            continue
        values, attrs = convert(item[()], dict(item.attrs))
        copied = target.create_dataset(name, data=values)
        for key, value in attrs.items():
            copied.attrs[key] = value


def load_config(path: str) -> Config:
    """The Config of a model directory (or shipped model name); ConfigError naming the folder if it is not one."""
    path = resolve_model(path)
    if not os.path.isdir(path):
        raise ConfigError(f"{path}: model directory not found")
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise ConfigError(f"{path}: not a model directory (no {CONFIG_FILE})")
    return Config.load(config_path)


def is_ensemble(path: str) -> bool:
    """Whether the model directory (or shipped model name) at `path` is an ensemble folder."""
    return os.path.isdir(os.path.join(resolve_model(path), MEMBERS_DIR))


def load_generator(path: str, config: Config | None = None):
    """Rebuild G from the directory's config (or from `config`, whose model must have the same weights,
    e.g. another dropout rate) and load its weights. Returns (config, generator). An ensemble folder
    gives (its config, EnsembleGenerator); it takes no `config`, since it cannot be trained further.
    `path` may be a shipped model's name (resolve_model)."""
    from svsgan_tf.models import build_generator

    path = resolve_model(path)
    members = os.path.join(path, MEMBERS_DIR)
    if is_ensemble(path):
        if config is not None:
            raise ConfigError(f"{path}: an ensemble separates but cannot be trained further or re-configured")
        config = load_config(path)
        names = sorted((n for n in os.listdir(members) if n.isdigit()), key=int)
        if not names:
            raise ConfigError(f"{members}: an ensemble folder without members")
        folders = [os.path.join(members, n) for n in names]
        return ensemble_of([load_generator(f) for f in folders], folders, config)
    config = config or load_config(path)
    generator = build_generator(config)
    _load_weights(generator, os.path.join(path, GENERATOR_FILE), path)
    return config, generator


def load_discriminator(path: str, config: Config):
    """D of a model directory (or shipped model name), or None when the directory holds none."""
    from svsgan_tf.models import build_discriminator

    path = resolve_model(path)
    weights = os.path.join(path, DISCRIMINATOR_FILE)
    if not os.path.isfile(weights):
        return None
    discriminator = build_discriminator(config)
    _load_weights(discriminator, weights, path)
    return discriminator


def _load_weights(model, weights: str, folder: str) -> None:
    """Load a weights file of any of WEIGHT_PRECISIONS (Keras casts float16 itself; int8 files are
    turned back to float32 in a temporary copy first), after checking its checksum (`_check_checksum`).
    Every failure is a ConfigError naming the file."""
    import tempfile

    import h5py

    if not os.path.isfile(weights):
        raise ConfigError(f"{folder}: not a model directory (no {os.path.basename(weights)})")
    _check_checksum(weights, folder)
    try:
        with h5py.File(weights, "r") as source_file:
            quantized = bool(source_file.attrs.get(INT8_FILE, False))
        if not quantized:
            model.load_weights(weights)
            return
        with tempfile.TemporaryDirectory() as tmp:
            restored = os.path.join(tmp, os.path.basename(weights))
            with h5py.File(weights, "r") as source_file, h5py.File(restored, "w") as target_file:
                _copy_h5(source_file, target_file, _dequantize)
                del target_file.attrs[INT8_FILE]
            model.load_weights(restored)
    # a damaged file fails in h5py (OSError, KeyError) or in Keras (TypeError, ValueError, IndexError...)
    except (OSError, TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError) as err:
        raise ConfigError(f"{weights}: cannot load the weights, the file is damaged or they do not fit the "
                          f"model of config.json ({type(err).__name__}: {first_line(err)})") from None
