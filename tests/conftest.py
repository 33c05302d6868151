"""Shared fixtures: a tiny configuration, a tiny trained model, the real-data folder."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from svsgan_tf.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.abspath(os.path.join(ROOT, "..", "shared", "data"))

# Every setting that makes a model tiny and fast; used as --set overrides by the CLI tests too.
TINY = {
    "stft.sample_rate": 8000, "stft.n_fft": 256, "stft.hop_length": 128,
    "model.encoder_units": [32, 16], "model.decoder_units": [32], "model.lstm_units": 16,
    "model.discriminator_units": [32, 32, 32], "model.unet_filters": [4, 8, 16],
    "data.nb_tracks": 4, "data.validation_tracks": 1, "data.track_seconds": 2.0,
    "data.excerpt_frames": 16, "data.excerpts_per_track": 4, "data.shuffle_buffer": 256,
    "train.batch_size": 4, "train.pretrain_epochs": 1, "train.gan_epochs": 1,
}


def tiny_config(**overrides) -> Config:
    """The tiny Config with dotted overrides."""
    return Config().replace(**{**TINY, **overrides}).validate()


def shared_file(*parts: str) -> str:
    """Path of a file in ../shared/data, or skip the test with the reason when it is absent."""
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"real data not available: {path} is absent (a fresh clone has no ../shared/data)")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny encoder trained for one KL and one GAN epoch on the synthetic set."""
    from svsgan_tf.training.fit import train

    out = tmp_path_factory.mktemp("tiny_run")
    result = train(tiny_config(), str(out), verbose=0, tensorboard=False)
    return result.model_dir


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
