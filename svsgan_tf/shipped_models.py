"""Names of the models shipped inside the package, and the folders they resolve to (no TensorFlow).

Every command and `Separator.from_directory` take a shipped model's name wherever they take a model
folder: `svsgan_tf/pretrained/<name>/`. This module stays light so that `--help` lists the names
without starting TensorFlow.
"""
from __future__ import annotations

import os

from svsgan_tf.errors import ConfigError

CONFIG_FILE = "config.json"                    # a model folder's config (see models/model_io.py)
PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
DEFAULT_MODEL = "spleeter-svsgan"              # the model used when none is given


def pretrained_names() -> list[str]:
    """Names of the models shipped in the package (folders of PRETRAINED_DIR holding a config)."""
    if not os.path.isdir(PRETRAINED_DIR):
        return []
    return sorted(name for name in os.listdir(PRETRAINED_DIR)
                  if os.path.isfile(os.path.join(PRETRAINED_DIR, name, CONFIG_FILE)))


def resolve_model(model: str | None = None) -> str:
    """The model folder that `model` names: a folder as it is, a shipped model's name (see
    pretrained_names) as its folder inside the package, None as the default shipped model. A folder
    wins over a name it shadows. ConfigError for anything else, listing the names."""
    if model is None:
        model = DEFAULT_MODEL
    elif os.path.exists(model) or os.sep in model or (os.altsep and os.altsep in model):
        return model                                   # a path: load_generator names its problems
    path = os.path.join(PRETRAINED_DIR, model)
    if model in pretrained_names():
        return path
    names = ", ".join(pretrained_names()) or "none in this installation"
    raise ConfigError(f"{model}: neither a model folder nor the name of a shipped model ({names})")


def default_model_path() -> str:
    """The folder of the model used when none is given (DEFAULT_MODEL, shipped in the package)."""
    return resolve_model(None)
