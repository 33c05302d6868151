"""SavedModel export: layout, signatures, equality with the in-memory Separator, versions, the CLI."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from svsgan_tf.config import Config
from svsgan_tf.errors import ConfigError
from svsgan_tf.export.savedmodel import SIGNATURES, export_model, next_version
from svsgan_tf.models.model_io import DEFAULT_MODEL, default_model_path, pretrained_names
from svsgan_tf.separation.separator import Separator
from svsgan_tf.audio.framing import nb_frames_for
from svsgan_tf.audio.spectral import stft
from svsgan_tf.data.synthetic import make_track
from tests.conftest import ROOT

SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


def run(*args, module=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", module, *map(str, args)] if module else list(map(str, args))
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture(scope="module")
def separator(tiny_model_dir):
    return Separator.from_directory(tiny_model_dir)


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    return export_model(tiny_model_dir, str(tmp_path_factory.mktemp("export")))


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported)


def test_versioned_layout_with_the_config_inside(exported, tiny_model_dir):
    assert os.path.basename(exported) == "1"
    for name in ("saved_model.pb", "variables", "assets/config.json", "config.json"):
        assert os.path.exists(os.path.join(exported, name)), name
    model_config = Config.load(os.path.join(tiny_model_dir, "config.json"))
    assert Config.load(os.path.join(exported, "assets", "config.json")) == model_config
    assert Config.load(os.path.join(exported, "config.json")) == model_config
    assert os.listdir(os.path.dirname(exported)) == ["1"]          # no temporary folder left


def test_waveform_signature_equals_the_separator(loaded, separator):
    assert set(loaded.signatures) == set(SIGNATURES)
    serve = loaded.signatures["serving_default"]
    stereo = make_track(4, duration=1.5, sample_rate=8000).mixture.T          # (nb_channels, nb_samples)
    mono = make_track(5, duration=0.7, sample_rate=8000, nb_channels=1).mixture.T[:, :5555]
    for waveform in (stereo, mono):
        exported = serve(waveform=tf.constant(waveform))
        local = separator.separate_waveform(tf.constant(waveform))
        assert set(exported) == {"vocals", "accompaniment"}
        for name in ("vocals", "accompaniment"):
            assert exported[name].shape == waveform.shape
            assert np.abs(exported[name].numpy() - local[name].numpy()).max() < 1e-5


def test_batch_signature_equals_the_waveform_signature_song_by_song(loaded):
    serve, batch = loaded.signatures["serving_default"], loaded.signatures["separate_batch"]
    songs = np.stack([make_track(seed, duration=1.0, sample_rate=8000).mixture.T for seed in (4, 5, 6)])
    exported = batch(waveforms=tf.constant(songs))              # (nb_songs, nb_channels, nb_samples)
    assert set(exported) == {"vocals", "accompaniment"}
    for i, song in enumerate(songs):
        alone = serve(waveform=tf.constant(song))
        for name in ("vocals", "accompaniment"):
            assert exported[name].shape == songs.shape
            assert np.abs(exported[name][i].numpy() - alone[name].numpy()).max() < 1e-5
    with pytest.raises(tf.errors.InvalidArgumentError, match="2 non-finite"):
        songs[1, 0, :2] = np.nan
        batch(waveforms=tf.constant(songs))
    with pytest.raises(tf.errors.InvalidArgumentError, match="no songs"):
        batch(waveforms=tf.zeros((0, 2, 4000)))


def test_magnitude_signature_equals_the_generator(loaded, separator):
    stft_config = separator.config.stft
    waveform = tf.constant(make_track(6, duration=1.0, sample_rate=8000).mixture.T)
    magnitude = tf.abs(stft(waveform, stft_config.n_fft, stft_config.hop_length))  # (nb_channels, nb_frames, nb_bins)
    out = loaded.signatures["separate_magnitude"](magnitude=magnitude)
    mask = separator.mask(magnitude).numpy()
    assert np.abs(out["vocals_mask"].numpy() - mask).max() < 1e-5
    np.testing.assert_allclose(out["vocals_magnitude"].numpy() + out["accompaniment_magnitude"].numpy(),
                               magnitude.numpy(), atol=1e-5)


def test_model_info_signature_holds_the_config(loaded, separator):
    info = loaded.signatures["model_info"](nb_samples=tf.constant(12345, tf.int64))
    stft_config = separator.config.stft
    assert Config.from_json(info["config_json"].numpy().decode()) == separator.config
    assert int(info["sample_rate"]) == stft_config.sample_rate
    assert (int(info["n_fft"]), int(info["hop_length"])) == (stft_config.n_fft, stft_config.hop_length)
    assert int(info["nb_bins"]) == stft_config.nb_bins and int(info["min_samples"]) == separator.min_samples
    assert int(info["nb_frames"]) == nb_frames_for(12345, stft_config.n_fft, stft_config.hop_length)
    assert (int(info["margin_samples"]), int(info["align_samples"])) == separator.chunk_context


@pytest.mark.parametrize("waveform, problem", [
    (np.zeros((2, 100), np.float32), "too short: 100 samples"),
    (np.zeros((0, 1000), np.float32), "no channels"),
    (np.full((1, 1000), np.inf, np.float32), "1000 non-finite"),
])
def test_bad_audio_fails_inside_the_graph(loaded, waveform, problem):
    with pytest.raises(tf.errors.InvalidArgumentError, match=problem):
        loaded.signatures["serving_default"](waveform=tf.constant(waveform))


def test_next_version_and_an_existing_version_is_never_overwritten(tiny_model_dir, tmp_path):
    base = tmp_path / "base"
    for name in ("1", "5", "notes", "7x"):
        (base / name).mkdir(parents=True)
    (base / "5" / "keep.txt").write_text("old")
    assert next_version(str(base)) == 6
    with pytest.raises(ConfigError, match="version 5 already exists"):
        export_model(tiny_model_dir, str(base), version=5)
    assert sorted(os.listdir(base)) == ["1", "5", "7x", "notes"]
    assert os.listdir(base / "5") == ["keep.txt"]
    assert export_model(tiny_model_dir, str(base)) == str(base / "6")
    assert next_version(str(tmp_path / "new")) == 1


def test_cli_exports_and_saved_model_cli_lists_the_signatures(exported, tiny_model_dir, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # both start TensorFlow: run them side by side
    show = subprocess.Popen([SAVED_MODEL_CLI, "show", "--dir", exported, "--all"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    base = tmp_path / "svsgan"
    result = run("--model", tiny_model_dir, "--out", base, "--quiet", module="svsgan_tf.export")
    shown, errors = show.communicate(timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"to {base / '1'}" in result.stdout
    assert sorted(os.listdir(base / "1")) == ["assets", "config.json", "fingerprint.pb", "saved_model.pb", "variables"]
    assert show.returncode == 0, errors
    for fragment in ("signature_def['serving_default']", "signature_def['separate_magnitude']",
                     "signature_def['model_info']", "inputs['waveform']", "outputs['vocals']",
                     "outputs['accompaniment']", "inputs['magnitude']", "outputs['vocals_mask']",
                     "inputs['nb_samples']", "outputs['config_json']", "shape: (-1, -1, 129)"):
        assert fragment in shown, fragment
    error = one_error_line(run("--model", tiny_model_dir, "--out", base, "--version", 1, module="svsgan_tf.export"))
    assert str(base / "1") in error and "already exists" in error
    assert sorted(os.listdir(base)) == ["1"]


def test_cli_defaults_to_the_shipped_model(tmp_path):
    base = tmp_path / "base"
    if not pretrained_names():
        error = one_error_line(run("--out", base, module="svsgan_tf.export"))
        assert DEFAULT_MODEL in error and "neither a model folder nor the name of a shipped model" in error
        assert not base.exists()
        return
    result = run("--out", base, module="svsgan_tf.export")
    assert result.returncode == 0, result.stderr
    # the same config (settings added since the model was shipped take their defaults in both), but for
    # the arithmetic: an export computes in float32 unless asked, whatever the model's own setting
    exported = Config.load(str(base / "1" / "config.json"))
    shipped = Config.load(os.path.join(default_model_path(), "config.json"))
    assert exported.separation.precision == "float32"
    assert exported == shipped.replace(**{"separation.precision": "float32"})


def test_help_does_not_start_tensorflow():
    code = ("import sys, contextlib, io\nimport svsgan_tf.export.__main__ as export\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
            "    export.main(['--help'])\n"
            "print('--version N' in out.getvalue(), 'tensorflow' in sys.modules)")
    result = run(sys.executable, "-c", code)
    assert result.stdout.split() == ["True", "False"], result.stderr


def test_pack_keeps_g_only_halves_the_size_with_float16_and_separates_alike(tiny_model_dir, tmp_path):
    import hashlib

    from svsgan_tf.models.model_io import DISCRIMINATOR_FILE, GENERATOR_FILE, pack_model
    from svsgan_tf.pack import mask_difference

    def digest(folder):
        return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
                for name in sorted(os.listdir(folder))}

    before = digest(tiny_model_dir)
    full, half = str(tmp_path / "full"), str(tmp_path / "half")
    reference = pack_model([tiny_model_dir], full)                      # the float32 model packed
    result = run(tiny_model_dir, "--out", half, "--float16", "--quiet", module="svsgan_tf.pack")
    assert result.returncode == 0, result.stderr
    assert "float16" in result.stdout and "largest mask change" in result.stdout
    assert digest(tiny_model_dir) == before                              # the source is never written
    assert not os.path.exists(os.path.join(half, DISCRIMINATOR_FILE))
    sizes = [os.path.getsize(os.path.join(d, GENERATOR_FILE)) for d in (full, half)]
    nb_weights = sum(int(np.prod(v.shape)) for v in Separator.from_directory(full).generator.weights)
    assert sizes[0] - sizes[1] >= 1.5 * nb_weights     # 2 bytes saved per weight, less the file overhead
    assert mask_difference(reference, full) == 0.0
    assert 0.0 < mask_difference(reference, half) < 1e-2                    # rounding, no more
    separator = Separator.from_directory(half)
    assert all(v.dtype == "float32" for v in separator.generator.weights)
    with pytest.raises(ConfigError, match="another folder"):
        pack_model([full], full)


def test_pack_int8_stores_matrices_in_a_quarter_of_the_size_within_half_a_step(tiny_model_dir, tmp_path):
    import h5py

    from svsgan_tf.models.model_io import GENERATOR_FILE, pack_model
    from svsgan_tf.pack import mask_difference

    full, small = str(tmp_path / "full"), str(tmp_path / "int8")
    reference = pack_model([tiny_model_dir], full)
    result = run(tiny_model_dir, "--out", small, "--int8", "--quiet", module="svsgan_tf.pack")
    assert result.returncode == 0, result.stderr
    assert "(int8)" in result.stdout
    with h5py.File(os.path.join(small, GENERATOR_FILE), "r") as handle:
        stored = []
        handle.visititems(lambda name, item: stored.append(item.dtype) if isinstance(item, h5py.Dataset) else None)
    assert np.dtype("int8") in stored and np.dtype("float32") not in stored
    original = Separator.from_directory(full).generator.weights
    restored = Separator.from_directory(small).generator.weights
    for before, after in zip(original, restored):
        before, after = before.numpy(), after.numpy()
        assert after.dtype == np.float32
        if before.ndim == 2:       # int8: within half a step, the step being max |w| of the unit / 127
            step = np.abs(before).max(axis=0) / 127
            assert np.all(np.abs(after - before) <= step / 2 + 1e-7)
        else:                      # vectors in half precision
            np.testing.assert_allclose(after, before, rtol=1e-3, atol=1e-4)
    matrices = sum(int(np.prod(w.shape)) for w in original if len(w.shape) == 2)
    sizes = [os.path.getsize(os.path.join(d, GENERATOR_FILE)) for d in (full, small)]
    assert sizes[0] - sizes[1] >= 2.5 * matrices       # 3 bytes saved per matrix weight, less the overhead
    assert 0.0 < mask_difference(reference, small) < 5e-2
    with pytest.raises(ConfigError, match="unknown precision"):
        pack_model([full], str(tmp_path / "bad"), precision="int4")


def test_an_ensemble_separates_with_the_mean_mask_exports_alike_and_cannot_be_trained(tiny_model_dir, tmp_path):
    from svsgan_tf.models.model_io import load_generator, pack_model, save_model
    from svsgan_tf.models import build_generator
    from tests.conftest import tiny_config

    other_config = tiny_config(**{"model.encoder_units": [24, 8], "train.seed": 5})
    other = str(tmp_path / "other")
    save_model(other, other_config, build_generator(other_config))
    ensemble = str(tmp_path / "ensemble")
    result = run(tiny_model_dir, other, "--out", ensemble, "--quiet", module="svsgan_tf.pack")
    assert result.returncode == 0, result.stderr
    assert "an ensemble of 2" in result.stdout
    assert sorted(os.listdir(os.path.join(ensemble, "members"))) == ["0", "1"]
    separator = Separator.from_directory(ensemble)
    magnitude = tf.constant(np.random.default_rng(0).uniform(0, 5, (1, 7, 129)).astype(np.float32))
    members = [Separator.from_directory(d).mask(magnitude).numpy() for d in (tiny_model_dir, other)]
    np.testing.assert_allclose(separator.mask(magnitude).numpy(), np.mean(members, axis=0), atol=1e-6)
    assert not np.allclose(members[0], members[1])
    # the SavedModel of the ensemble separates as the Separator does
    serve = tf.saved_model.load(export_model(ensemble, str(tmp_path / "export"))).signatures["serving_default"]
    waveform = np.ascontiguousarray(make_track(3, duration=1.0, sample_rate=8000).mixture.T[:1])
    np.testing.assert_allclose(serve(waveform=tf.constant(waveform))["vocals"].numpy(),
                               separator.separate_waveform(tf.constant(waveform))["vocals"].numpy(), atol=1e-5)
    with pytest.raises(ConfigError, match="cannot be trained"):
        load_generator(ensemble, separator.config)
    mismatched = str(tmp_path / "stereo")
    stereo_config = tiny_config(**{"model.nb_channels": 2})
    save_model(mismatched, stereo_config, build_generator(stereo_config))
    with pytest.raises(ConfigError, match="differ from the first member"):
        pack_model([tiny_model_dir, mismatched], str(tmp_path / "bad"))
    assert not os.path.exists(tmp_path / "bad")


def test_pack_sets_how_the_folder_separates_and_nothing_else(tiny_model_dir, tmp_path):
    from svsgan_tf.models.model_io import load_config, pack_model, save_model
    from svsgan_tf.models import build_generator
    from tests.conftest import tiny_config

    ensemble = str(tmp_path / "ensemble")
    result = run(tiny_model_dir, tiny_model_dir, "--out", ensemble, "--quiet", "--set", "separation.hop_length=64",
                 "--set", "separation.mask_power=0.8", module="svsgan_tf.pack")
    assert result.returncode == 0, result.stderr
    packed = load_config(ensemble)
    assert (packed.separation.hop_length, packed.separation.mask_power) == (64, 0.8)
    assert load_config(os.path.join(ensemble, "members", "0")) == load_config(tiny_model_dir)   # as trained
    assert Separator.from_directory(ensemble).config == packed
    single = str(tmp_path / "single")                       # one source: the settings reach its config too
    result = run(tiny_model_dir, "--out", single, "--quiet", "--set", "separation.mask_smoothing=3",
                 module="svsgan_tf.pack")
    assert result.returncode == 0, result.stderr
    assert load_config(single) == load_config(tiny_model_dir).replace(**{"separation.mask_smoothing": 3})
    assert "largest mask change on noise 0.00e+00" in result.stdout       # float32: the same mask
    result = run(tiny_model_dir, "--out", str(tmp_path / "bad"), "--set", "train.seed=3", module="svsgan_tf.pack")
    assert result.returncode == 2 and "train.seed is not a Separator setting" in result.stderr
    rnn = str(tmp_path / "rnn")
    rnn_config = tiny_config(**{"model.generator": "rnn"})
    save_model(rnn, rnn_config, build_generator(rnn_config))
    with pytest.raises(ConfigError, match="needs frame-wise members"):        # an RNN depends on the hop
        pack_model([tiny_model_dir, rnn], str(tmp_path / "mixed"), separation={"separation.hop_length": 64})
    assert not os.path.exists(tmp_path / "bad") and not os.path.exists(tmp_path / "mixed")
