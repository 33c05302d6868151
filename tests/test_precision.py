"""separation.precision: a U-Net separating in bfloat16, close to float32, chosen only where asked."""
import numpy as np
import pytest
import tensorflow as tf

from svsgan_tf import runtime
from svsgan_tf.errors import ConfigError
from svsgan_tf.models import build_generator
from svsgan_tf.models.model_io import save_model
from svsgan_tf.separation.separator import Separator, resolve_precision
from svsgan_tf.data.synthetic import make_track
from tests.conftest import tiny_config

UNET = {"model.generator": "unet", "model.nb_channels": 2}


@pytest.fixture(scope="module")
def unet_dir(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("unet") / "model")
    config = tiny_config(**UNET)
    save_model(folder, config, build_generator(config))
    return folder


def test_precision_is_validated_and_round_trips():
    config = tiny_config(**{"separation.precision": "auto"})
    assert type(config).from_json(config.to_json()).separation.precision == "auto"
    assert tiny_config().separation.precision == "float32"
    with pytest.raises(ConfigError, match="separation.precision"):
        tiny_config(**{"separation.precision": "float16"})


def test_bfloat16_separation_is_close_to_float32_and_returns_float32(unet_dir):
    exact = Separator.from_directory(unet_dir, precision="float32")
    fast = Separator.from_directory(unet_dir, precision="bfloat16")
    assert (exact.precision, fast.precision) == ("float32", "bfloat16")
    assert fast.generator.towers[0].down[0].compute_dtype == "bfloat16"
    assert fast.generator.towers[0].down[0].kernel.dtype == "float32"          # weights stay float32
    waveform = tf.constant(np.ascontiguousarray(make_track(3, duration=1.0, sample_rate=8000).mixture.T))
    reference, rounded = exact.separate_waveform(waveform), fast.separate_waveform(waveform)
    for name in ("vocals", "accompaniment"):
        assert rounded[name].dtype == tf.float32
    error = rounded["vocals"].numpy() - reference["vocals"].numpy()
    relative = np.sum(error ** 2) / np.sum(reference["vocals"].numpy() ** 2)
    assert 0 < relative < 1e-3, relative                     # rounded, yet within 30 dB of float32
    np.testing.assert_allclose(rounded["vocals"].numpy() + rounded["accompaniment"].numpy(), waveform.numpy(),
                               atol=1e-5)


def test_auto_is_bfloat16_only_for_a_unet_on_a_cpu_with_native_bfloat16(unet_dir, monkeypatch, tiny_model_dir):
    unet = Separator.from_directory(unet_dir, precision="float32").generator
    encoder = Separator.from_directory(tiny_model_dir).generator
    monkeypatch.setattr(runtime, "native_bfloat16", lambda: True)
    assert resolve_precision("auto", unet, "m") == ("float32" if tf.config.list_physical_devices("GPU") else "bfloat16")
    assert resolve_precision("auto", encoder, "m") == "float32"
    monkeypatch.setattr(runtime, "native_bfloat16", lambda: False)
    assert resolve_precision("auto", unet, "m") == "float32"
    assert resolve_precision("bfloat16", unet, "m") == "bfloat16"          # asked for: slower, with a warning
    with pytest.raises(ConfigError, match="m: precision bfloat16 is for U-Net generators"):
        resolve_precision("bfloat16", encoder, "m")


def test_a_separator_given_a_generator_never_changes_its_arithmetic(unet_dir):
    """Training's validation separates with the generator being trained: it must stay float32."""
    from svsgan_tf.models.model_io import load_generator

    config, generator = load_generator(unet_dir)
    separator = Separator(config.replace(**{"separation.precision": "bfloat16"}), generator)
    assert separator.precision == "float32" and generator.towers[0].down[0].compute_dtype == "float32"


def test_an_export_computes_in_float32_and_its_config_says_so(tmp_path):
    """A model that separates in bfloat16 exports a float32 graph, so it serves alike on every server."""
    from svsgan_tf.config import Config
    from svsgan_tf.export.savedmodel import export_model

    folder = str(tmp_path / "bf16_model")
    config = tiny_config(**UNET, **{"separation.precision": "bfloat16"})
    save_model(folder, config, build_generator(config))
    exported = export_model(folder, str(tmp_path / "export"))
    assert Config.load(f"{exported}/config.json").separation.precision == "float32"
    serve = tf.saved_model.load(exported).signatures["serving_default"]
    waveform = tf.constant(np.ascontiguousarray(make_track(3, duration=1.0, sample_rate=8000).mixture.T))
    separator = Separator.from_directory(folder, precision="float32")
    exact = separator.separate_waveform(waveform)["vocals"].numpy()
    np.testing.assert_allclose(serve(waveform=waveform)["vocals"].numpy(), exact, atol=1e-5)
    # asked for, an export computes in bfloat16 (for servers with native instructions) and says so
    rounded = export_model(folder, str(tmp_path / "export"), precision="bfloat16")
    assert Config.load(f"{rounded}/config.json").separation.precision == "bfloat16"
    reloaded = tf.saved_model.load(rounded)
    vocals = reloaded.signatures["serving_default"](waveform=waveform)["vocals"].numpy()
    assert vocals.dtype == np.float32
    relative = np.sum((vocals - exact) ** 2) / np.sum(exact ** 2)
    assert 0 < relative < 1e-3, relative
    fast = Separator.from_directory(folder, precision="bfloat16")
    np.testing.assert_allclose(vocals, fast.separate_waveform(waveform)["vocals"].numpy(), atol=1e-5)
    with pytest.raises(ConfigError, match="export precision 'auto'"):
        export_model(folder, str(tmp_path / "export"), precision="auto")


def test_precision_on_a_tflite_file_or_estimates_is_a_one_line_error(tmp_path):
    from tests.test_cli import assert_one_line_error, run

    song = tmp_path / "data"
    song.mkdir()
    result = run("svsgan_tf.evaluate", "--data", song, "--model", tmp_path / "m.tflite", "--precision", "bfloat16",
                 "--out", tmp_path / "out")
    assert_one_line_error(result, "--precision", "m.tflite")
    result = run("svsgan_tf.evaluate", "--data", song, "--estimates", tmp_path, "--precision", "float32",
                 "--out", tmp_path / "out2")
    assert_one_line_error(result, "--estimates with --wiener or --precision")
