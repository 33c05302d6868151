"""Config: JSON round trip, validation with one-line errors, model rebuilt from the config alone."""
import json
import math
import os
import re

import numpy as np
import pytest

from svsgan_tf.config import Config
from svsgan_tf.errors import ConfigError
from tests.conftest import ROOT, tiny_config


def test_defaults_follow_the_paper():
    config = Config()
    assert (config.stft.n_fft, config.stft.hop_length, config.stft.sample_rate) == (2048, 1024, 44100)
    assert config.stft.nb_bins == 1025
    assert config.model.discriminator_units == (512, 512, 512)


def test_json_round_trip(tmp_path):
    config = tiny_config(**{"model.generator": "rnn", "train.seed": 7})
    assert Config.from_json(config.to_json()) == config
    path = tmp_path / "config.json"
    config.save(str(path))
    assert Config.load(str(path)) == config
    assert isinstance(Config.load(str(path)).model.encoder_units, tuple)


def test_optional_settings_take_null_and_others_do_not():
    full_band = Config.from_json(tiny_config(**{"model.max_frequency": None}).to_json())
    assert full_band.model.max_frequency is None
    assert Config.from_json(tiny_config().to_json()).model.max_frequency == 16000.0
    data = json.loads(tiny_config().to_json())
    data["train"]["g_learning_rate"] = None
    with pytest.raises(ConfigError, match="g_learning_rate"):
        Config.from_json(json.dumps(data))


@pytest.mark.parametrize("overrides, message", [
    ({"model.generator": "transformer"}, "unknown generator"),
    ({"stft.n_fft": 1000}, "power of two"),
    ({"stft.hop_length": 2048}, "hop_length"),
    ({"train.batch_size": 0}, "batch_size"),
    ({"train.batch_size": "big"}, "must be of type int"),
    ({"train.g_learning_rate": -1.0}, "g_learning_rate"),
    ({"train.optimizer": "adagrad"}, "unknown optimizer"),
    ({"model.encoder_units": []}, "encoder_units"),
    ({"model.max_frequency": -1.0}, "max_frequency"),
    ({"data.validation_tracks": 99}, "validation_tracks"),
    ({"train.lr_schedule": "step"}, "unknown schedule"),
    ({"train.final_lr_fraction": 0.0}, "final_lr_fraction"),
    ({"train.loss": "l2"}, "unknown supervised loss"),
    ({"data.target": "complex"}, "unknown target"),
    ({"separation.hop_length": 768}, "separation.hop_length=768 must divide n_fft"),
    ({"separation.hop_length": 512, "model.generator": "rnn"}, "needs a frame-wise generator"),
    ({"separation.mask_smoothing": 2}, "odd number of frames"),
    ({"separation.mask_power": 0.0}, "separation.mask_power"),
])
def test_bad_values_raise_one_line_errors(overrides, message):
    with pytest.raises(ConfigError) as err:
        Config().replace(**overrides).validate()
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_keys_and_bad_json_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting"):
        Config().replace(**{"train.learning_rate": 1.0})
    with pytest.raises(ConfigError, match="unknown setting"):
        Config.from_dict({"stft": {"window": "hamming"}})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=str(bad)):
        Config.load(str(bad))


@pytest.mark.parametrize("generator", ["encoder", "rnn"])
def test_model_rebuilt_from_config_alone(tmp_path, generator):
    import tensorflow as tf

    from svsgan_tf.models.model_io import load_generator, save_model
    from svsgan_tf.models import build_discriminator, build_generator

    config = tiny_config(**{"model.generator": generator})
    generator_model = build_generator(config)
    save_model(str(tmp_path / "model"), config, generator_model, build_discriminator(config))
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["model"]["generator"] == generator and "seed" in saved["train"]
    loaded_config, rebuilt = load_generator(str(tmp_path / "model"))
    assert loaded_config == config
    x = tf.random.uniform((2, 5, config.stft.nb_bins)) * 3
    np.testing.assert_allclose(rebuilt(x).numpy(), generator_model(x).numpy(), atol=1e-6)


def test_cosine_schedule_decays_within_each_phase():
    train = Config().replace(**{"train.pretrain_epochs": 5, "train.gan_epochs": 3, "train.g_learning_rate": 1e-3,
                                "train.gan_g_learning_rate": 1e-4, "train.lr_schedule": "cosine",
                                "train.final_lr_fraction": 0.1}).validate().train
    rates = [train.learning_rate(epoch) for epoch in range(8)]
    expected_kl = [1e-4 + 9e-4 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(5)]
    expected_gan = [1e-5 + 9e-5 * 0.5 * (1 + math.cos(math.pi * e / 2)) for e in range(3)]
    np.testing.assert_allclose(rates, expected_kl + expected_gan, rtol=1e-12)
    constant = Config().replace(**{"train.pretrain_epochs": 5}).train
    assert {constant.learning_rate(e) for e in range(5)} == {constant.g_learning_rate}


def test_named_recipes_resolve_and_match_what_they_name(tmp_path):
    from svsgan_tf.config import Config, config_path, recipe_names
    from svsgan_tf.errors import ConfigError

    assert {"paper", "paper_encoder", "paper_encoder_base", "spleeter"} <= set(recipe_names())
    paper = Config.load(config_path("paper"))
    assert (paper.stft.n_fft, paper.stft.hop_length, paper.train.batch_size) == (2048, 1024, 4)   # the paper's
    assert paper.model.generator == "encoder" and paper.train.loss == "kl" and paper.train.gan_epochs > 0
    # the paper_encoder recipes are the shipped paper-encoder members' configs, with the ensemble's
    # separation settings
    for name, member in (("paper_encoder", 0), ("paper_encoder_base", 1)):
        recipe = Config.load(config_path(name))
        trained = Config.load(os.path.join(ROOT, "svsgan_tf", "pretrained", "paper-encoder", "members", str(member),
                                            "config.json"))
        assert recipe.replace(**{"separation.hop_length": None, "separation.mask_smoothing": 1,
                                 "separation.mask_power": 1.0}).to_dict() == \
            {**trained.to_dict(), "git_commit": ""}
    shipped = Config.load(os.path.join(ROOT, "svsgan_tf", "pretrained", "paper-encoder", "config.json"))
    assert Config.load(config_path("paper_encoder")).separation == shipped.separation
    own = tmp_path / "mine.json"
    own.write_text(paper.to_json())
    assert config_path(str(own)) == str(own)
    with pytest.raises(ConfigError, match="no recipe of that name"):
        config_path("papr")


def test_retired_settings_load_when_off_and_are_refused_in_one_line_when_on(tmp_path):
    from svsgan_tf.config import RETIRED, RETIRED_TAG

    saved = json.loads(Config().to_json())
    for key, value in RETIRED.items():                          # a config saved before they were retired
        section, name = key.split(".")
        saved[section][name] = value
    path = tmp_path / "old.json"
    path.write_text(json.dumps(saved))
    assert Config.load(str(path)) == Config()
    assert Config().replace(**{"model.context_frames": 0}) == Config()
    for key, on in (("model.channel_basis", "mid_side"), ("model.context_frames", 2), ("data.eq_db", 3.0),
                    ("data.speed_range", [0.9, 1.1]), ("train.average_epochs", 2)):
        with pytest.raises(ConfigError, match=f"{key}=.*retired.*{re.escape(RETIRED_TAG)}"):
            Config().replace(**{key: on})
    with pytest.raises(ConfigError, match="snr was retired"):
        tiny_config(**{"train.loss": "snr"})
