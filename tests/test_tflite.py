"""TFLite: conversion with builtin ops only, the edge runner (NumPy + LiteRT) against the Separator, streaming,
quantization on a real song, the runner without TensorFlow, and bad inputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from svsgan_tf.audio.spectral import stft
from svsgan_tf.edge import EdgeSeparator, StreamingSeparator
from svsgan_tf.edge.model_file import non_builtin_ops, op_names, read_metadata, read_model_bytes
from svsgan_tf.errors import AudioError, ConfigError
from svsgan_tf.export.tflite import convert_function, convert_model
from svsgan_tf.models import build_generator
from svsgan_tf.models.model_io import save_model
from svsgan_tf.separation.separator import Separator
from tests.conftest import ROOT, tiny_config
from tests.test_cli import assert_one_line_error, run

# tiny generators of every kind, with settings that take every path of the runner
KINDS = {
    # joint stereo, swap averaging, smoothing over 3 frames, a softer mask, a smaller separation hop
    "encoder": {"model.nb_channels": 2, "model.swap_average": True, "separation.mask_smoothing": 3,
                "separation.mask_power": 0.8, "separation.hop_length": 64},
    # channel by channel, an LSTM carried from call to call
    "rnn": {"model.generator": "rnn"},
    # Spleeter's layout: segments led by one silent frame, two towers, magnitudes as they are
    "unet_segments": {"model.generator": "unet", "model.nb_channels": 2, "model.unet_segment_frames": 16,
                      "model.unet_stems": 2, "model.compress_input": False},
    # no segments: the whole recording in one call
    "unet": {"model.generator": "unet", "model.nb_channels": 2},
}
STREAMING = ["encoder", "rnn", "unet_segments"]


@pytest.fixture(scope="module")
def real_song():
    """The stempeg example song (real music, shipped in a wheel): {mixture, vocals, accompaniment}, rate."""
    from svsgan_tf.demo import example_track

    with example_track() as track:
        return track.load(), track.sample_rate


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """kind -> (model folder, float32 .tflite), random weights, converted once per module."""
    folder = tmp_path_factory.mktemp("tflite_models")
    made = {}
    for index, (kind, overrides) in enumerate(KINDS.items()):
        config = tiny_config(**overrides)
        tf.keras.utils.set_random_seed(index)
        generator = build_generator(config)
        generator.create_weights()
        model_dir = save_model(str(folder / kind), config, generator)
        convert_model(model_dir, str(folder / f"{kind}.tflite"))
        made[kind] = (model_dir, str(folder / f"{kind}.tflite"))
    return made


def model_rate_clip(real_song, config, seconds=3.0):
    """The first `seconds` of the real mixture at the model's rate: (nb_samples, 2) float32."""
    from svsgan_tf.audio.io import resample

    stems, rate = real_song
    return resample(stems["mixture"][:int(seconds * rate)], rate, config.stft.sample_rate)


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_float_network_gives_the_keras_mask_on_real_audio_with_builtin_ops_only(models, real_song, kind):
    model_dir, path = models[kind]
    separator, edge = Separator.from_directory(model_dir), EdgeSeparator(path)
    clip = model_rate_clip(real_song, separator.config)
    settings = separator.config
    magnitude = tf.abs(stft(tf.constant(clip.T), settings.stft.n_fft, settings.separation_stft.hop_length))
    keras_mask = separator.generator_mask(magnitude).numpy()
    edge_mask = edge.generator_mask(magnitude.numpy())
    assert keras_mask.shape == edge_mask.shape and keras_mask.std() > 1e-3      # a mask that varies
    np.testing.assert_allclose(edge_mask, keras_mask, atol=1e-4)
    ops = op_names(read_model_bytes(path))
    assert ops and not non_builtin_ops(ops), ops
    assert read_metadata(path)["quantize"] == "none"


@pytest.mark.parametrize("kind", list(KINDS))
def test_edge_stems_equal_the_separators_for_any_rate_and_channel_count(models, real_song, kind):
    model_dir, path = models[kind]
    separator, edge = Separator.from_directory(model_dir), EdgeSeparator(path)
    stems, rate = real_song
    clip = stems["mixture"][:2 * rate]                                   # 44.1 kHz: resampled to 8 kHz
    for audio in (clip, clip[:, 0], np.stack([clip[:, 0], clip[:, 1], clip.mean(axis=1)], axis=1)):
        want, got = separator.separate(audio, rate), edge.separate(audio, rate)
        for name in want:
            assert got[name].shape == audio.shape
            np.testing.assert_allclose(got[name], want[name], atol=1e-3)


def test_small_batches_give_the_same_stems(models, real_song, monkeypatch):
    """Frames transformed 2 at a time: the calls at the end of a stream wait for every frame that holds
    audio (a call past the end once saw untransformed frames as silence)."""
    from svsgan_tf.edge import runner

    model_dir, path = models["unet_segments"]
    stems, rate = real_song
    clip = stems["mixture"][:rate]
    want = Separator.from_directory(model_dir).separate(clip, rate)
    monkeypatch.setattr(runner, "BATCH_FRAMES", 2)
    got = EdgeSeparator(path).separate(clip, rate)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-3)


@pytest.mark.parametrize("kind", STREAMING)
def test_streaming_blocks_of_random_sizes_equal_the_whole_file_after_the_latency(models, real_song, kind):
    edge = EdgeSeparator(models[kind][1])
    clip = model_rate_clip(real_song, edge.config, 2.0)
    whole = edge.separate(clip, edge.sample_rate)
    stream = StreamingSeparator(edge, nb_channels=2)
    rng = np.random.default_rng(3)
    outputs, position = [], 0
    while position < clip.shape[0]:
        size = int(rng.integers(1, 600))
        block = stream.process(clip[position:position + size])
        assert all(b.shape == clip[position:position + size].shape for b in block.values())
        outputs.append(block)
        position += size
    outputs.append(stream.flush())
    latency = stream.latency_samples
    for name in whole:
        streamed = np.concatenate([o[name] for o in outputs])
        assert streamed.shape[0] == clip.shape[0] + latency
        assert not streamed[:latency].any()                              # silence until the first stems
        np.testing.assert_allclose(streamed[latency:], whole[name], atol=1e-5)
    # the latency is what the layout implies: the frames over a sample and the calls that see them
    n_fft, hop = edge.config.stft.n_fft, edge.config.separation_stft.hop_length
    assert n_fft - 1 <= latency < n_fft + hop * (edge.block_layout(1).window + 1 + edge.config.separation.mask_smoothing)


def test_the_lstm_state_is_carried_from_block_to_block(models, real_song):
    """One frame per call: without the carried state, the mask of a later frame would be the mask of an
    LSTM started afresh; with it, it is the Keras LSTM's over the whole clip."""
    model_dir, path = models["rnn"]
    edge = EdgeSeparator(path)
    assert read_metadata(path)["states"] and edge.block_layout(64).window == 1
    generator = Separator.from_directory(model_dir).generator
    clip = model_rate_clip(real_song, edge.config, 1.0)
    magnitude = tf.abs(stft(tf.constant(clip.T), edge.config.stft.n_fft, edge.config.stft.hop_length))
    whole = generator(magnitude, training=False).numpy()                   # channels as the batch
    fresh = generator(magnitude[:, 20:], training=False).numpy()
    np.testing.assert_allclose(edge.generator_mask(magnitude.numpy()), whole, atol=1e-4)
    assert np.abs(whole[:, 20:] - fresh).max() > 1e-3                      # the state matters


def test_a_unet_without_segments_separates_whole_but_refuses_to_stream(models):
    with pytest.raises(ConfigError, match="cannot stream"):
        StreamingSeparator(models["unet"][1])


def test_bad_blocks_are_one_line_errors(models):
    stream = StreamingSeparator(models["encoder"][1], nb_channels=2)
    with pytest.raises(AudioError, match="0 samples"):
        stream.process(np.zeros((0, 2), np.float32))
    block = np.zeros((100, 2), np.float32)
    block[42, 1] = np.nan
    with pytest.raises(AudioError, match="NaN or Inf at sample 42"):
        stream.process(block)
    with pytest.raises(AudioError, match=r"expected \(n, 2\)"):
        stream.process(np.zeros((10, 3), np.float32))
    with pytest.raises(AudioError, match="at least"):
        stream.flush()                                                     # nothing went in
    with pytest.raises(AudioError, match="flushed"):
        stream.process(np.zeros((10, 2), np.float32))


def test_quantized_variants_convert_run_and_keep_the_sdr_of_a_real_model(real_song, tmp_path):
    """One member of the shipped paper-encoder (a trained model) on the stempeg example song: every
    quantization has builtin ops only, and its vocals SDR is at most 0.3 dB below the float file's."""
    from svsgan_tf.evaluation.bss import bss_eval_frames, median_over_frames

    stems, rate = real_song
    member = os.path.join(ROOT, "svsgan_tf", "pretrained", "paper-encoder", "members", "0")
    references = {name: stems[name] for name in ("vocals", "accompaniment")}
    scores, sizes = {}, {}
    for quantize in ("none", "float16", "dynamic", "int8"):
        path = str(tmp_path / f"{quantize}.tflite")
        convert_model(member, path, quantize)
        assert not non_builtin_ops(op_names(read_model_bytes(path)))
        estimates = EdgeSeparator(path).separate(stems["mixture"], rate)
        scores[quantize] = median_over_frames(bss_eval_frames(references, estimates, rate))["vocals"]["SDR"]
        sizes[quantize] = os.path.getsize(path)
    keras = Separator.from_directory(member).separate(stems["mixture"], rate)
    keras_sdr = median_over_frames(bss_eval_frames(references, keras, rate))["vocals"]["SDR"]
    assert abs(scores["none"] - keras_sdr) < 0.01
    for quantize in ("float16", "dynamic", "int8"):
        assert scores[quantize] >= scores["none"] - 0.3, scores
    assert sizes["float16"] < 0.6 * sizes["none"] and sizes["int8"] < 0.35 * sizes["none"], sizes


def test_an_op_that_is_not_builtin_is_refused_and_named():
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": tf.signal.irfft(tf.complex(x, x))},
                           input_signature=[tf.TensorSpec([4, 9], tf.float32, name="x")])
    with pytest.raises(ConfigError, match="IRFFT"):
        convert_function(module.f.get_concrete_function(), module)
    # a file converted with the Select TF ops delegate is recognised as such
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.f.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    assert any("Flex" in name for name in non_builtin_ops(op_names(converter.convert())))


def test_the_edge_runner_works_where_tensorflow_cannot_be_imported(models, real_song, tmp_path):
    """`python -m svsgan_tf.edge` and EdgeSeparator in a process in which importing tensorflow or keras
    fails: the stems it writes equal this process's."""
    path = models["unet_segments"][1]
    edge = EdgeSeparator(path)
    clip = model_rate_clip(real_song, edge.config, 2.0)
    song = tmp_path / "song.wav"
    sf.write(song, clip, edge.sample_rate, subtype="FLOAT")
    script = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'):\n"
        "            raise ImportError('tensorflow is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.argv = ['svsgan_tf.edge', '--model', {path!r}, {str(song)!r}, '--out', {str(tmp_path / 'out')!r},\n"
        "            '--quiet', '--stream']\n"
        "try:\n"
        "    runpy.run_module('svsgan_tf.edge', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
        "print('no tensorflow')\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "no tensorflow" in result.stdout, result.stderr
    want = edge.separate(clip, edge.sample_rate)
    for name in want:
        got, rate = sf.read(tmp_path / "out" / "song" / f"{name}.wav", dtype="float32")
        assert rate == edge.sample_rate
        np.testing.assert_allclose(got, np.clip(want[name], -1, 1), atol=1.5 / 32768)     # 16-bit WAV


def test_the_conversion_command_and_its_bad_inputs(models, tmp_path):
    model_dir = models["encoder"][0]
    out = tmp_path / "model.tflite"
    result = run("svsgan_tf.tflite", "--model", model_dir, "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "builtin ops:" in result.stdout and "FULLY_CONNECTED" in result.stdout
    metadata = read_metadata(str(out))
    assert metadata["config"]["stft"]["sample_rate"] == 8000 and metadata["window_frames"] is None
    before = out.read_bytes()
    cases = {
        "existing": (["--model", model_dir, "--out", out], "exists; pass --overwrite"),
        "not a model": (["--model", tmp_path, "--out", tmp_path / "a.tflite"], "not a model directory"),
        "suffix": (["--model", model_dir, "--out", tmp_path / "a.bin"], "must end in .tflite"),
        "calibration": (["--model", model_dir, "--out", tmp_path / "b.tflite", "--quantize", "int8",
                         "--calibration", tmp_path / "missing.wav"], "no such file"),
        "unreadable calibration": (["--model", model_dir, "--out", tmp_path / "c.tflite", "--quantize", "int8",
                                    "--calibration", __file__], "test_tflite.py"),
    }
    for name, (args, problem) in cases.items():
        result = run("svsgan_tf.tflite", *args, "--quiet")
        assert_one_line_error(result, problem)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]  # nothing else written
    result = run("svsgan_tf.tflite", "--model", model_dir, "--out", tmp_path / "d.tflite", "--quantize", "int4")
    assert result.returncode == 2 and "invalid choice: 'int4'" in result.stderr


def test_the_edge_command_refuses_bad_models_and_rates(models, tmp_path):
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros((4000, 2), np.float32), 16000)
    text = tmp_path / "not.tflite"
    text.write_text("hello")
    plain = tmp_path / "plain.tflite"             # a TFLite model, not one of ours
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": 2.0 * x}, input_signature=[tf.TensorSpec([2], tf.float32)])
    plain.write_bytes(convert_function(module.f.get_concrete_function(), module)[0])
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(open(models["encoder"][1], "rb").read()[:1000])
    for model, problem in ((text, "not a TFLite model"), (plain, "not one of svsgan_tf's"),
                           (tmp_path / "missing.tflite", "no such .tflite file"),
                           (truncated, "damaged TFLite model")):
        result = run("svsgan_tf.edge", "--model", model, song, "--out", tmp_path / "out", "--quiet")
        assert_one_line_error(result, problem)
    result = run("svsgan_tf.edge", "--model", models["encoder"][1], song, "--out", tmp_path / "out",
                 "--stream", "--quiet")
    assert result.returncode == 1 and "16000 Hz; --stream takes audio at the model's rate, 8000 Hz" in result.stderr
    assert not (tmp_path / "out" / "song").exists()
    result = run("svsgan_tf.edge", "--model", models["unet"][1], song, "--out", tmp_path / "out", "--stream")
    assert_one_line_error(result, "cannot stream")
    result = run("svsgan_tf.edge", "--model", models["encoder"][1], song, "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 0, result.stderr                          # resampled without --stream
    assert sf.info(tmp_path / "out" / "song" / "vocals.wav").samplerate == 16000


def test_evaluate_scores_a_tflite_file_like_the_model_it_came_from(tiny_model_dir, tmp_path):
    from tests.test_evaluate import write_song_folders

    data = tmp_path / "data"
    write_song_folders(data)
    path = tmp_path / "tiny.tflite"
    convert_model(tiny_model_dir, str(path))
    summaries = {}
    for name, model in (("keras", tiny_model_dir), ("tflite", path)):
        result = run("svsgan_tf.evaluate", "--data", data, "--subset", "none", "--model", model,
                     "--out", tmp_path / name, "--quiet")
        assert result.returncode == 0, result.stderr
        summaries[name] = json.loads((tmp_path / name / "summary.json").read_text())
    keras, lite = summaries["keras"], summaries["tflite"]
    assert set(lite) == set(keras) and set(lite["tracks"]) == {"song4", "song5"}
    for target in ("vocals", "accompaniment"):
        for metric in ("SDR", "SIR", "SAR"):
            assert abs(lite["median"][target][metric] - keras["median"][target][metric]) < 0.01
    assert lite["reference"] == keras["reference"]
    result = run("svsgan_tf.evaluate", "--data", data, "--subset", "none", "--model", path, "--wiener", "1",
                 "--out", tmp_path / "w")
    assert_one_line_error(result, "mixture phase only")
