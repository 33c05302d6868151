"""End-to-end command lines: train -> separate, and one-line errors for every kind of bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from svsgan_tf.data.synthetic import make_track
from tests.conftest import ROOT, TINY


def run(module, *args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=600)


def tiny_flags():
    return [item for key, value in TINY.items() for item in ("--set", f"{key}={json.dumps(value)}")]


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_run")
    result = run("svsgan_tf.train", "--model", "rnn", "--gan", "--gan-epochs", 1, "--epochs", 1,
                 "--out", out, "--quiet", *tiny_flags())
    assert result.returncode == 0, result.stderr
    assert "model written to" in result.stdout
    return out / "model"


def test_train_then_separate_files_and_folders(trained, tmp_path):
    songs = tmp_path / "songs"
    (songs / "album").mkdir(parents=True)
    for i, path in enumerate([songs / "one.wav", songs / "album" / "two.flac"]):
        sf.write(path, make_track(i, duration=1.5, sample_rate=8000).mixture, 8000)
    single = tmp_path / "single.wav"
    sf.write(single, make_track(5, duration=1.0, sample_rate=16000, nb_channels=1).mixture, 16000)
    out = tmp_path / "out"
    result = run("svsgan_tf.separate", songs, single, "--out", out, "--model", trained)
    assert result.returncode == 0, result.stderr
    assert "separated 3 of 3" in result.stdout
    # a file found in a folder keeps its path below that folder
    for name, rate, channels in (("one", 8000, 2), ("album/two", 8000, 2), ("single", 16000, 1)):
        vocals, vocals_rate = sf.read(out / name / "vocals.wav", always_2d=True)
        accompaniment, _ = sf.read(out / name / "accompaniment.wav", always_2d=True)
        assert vocals_rate == rate and vocals.shape[1] == channels
        assert vocals.shape == accompaniment.shape
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_bad_files_are_reported_and_the_others_separated(trained, tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, make_track(1, duration=1.0, sample_rate=8000).mixture, 8000)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 2)), 8000)
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros((50, 2)), 8000)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full((4000, 2), np.nan), 8000, subtype="FLOAT")
    missing = tmp_path / "missing.wav"
    out = tmp_path / "out"
    result = run("svsgan_tf.separate", garbage, empty, good, short, nan, missing, "--out", out, "--model", trained)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    expected = {garbage: "cannot decode", empty: "empty", short: "too short", nan: "non-finite",
                missing: "no such file"}
    assert len(errors) == len(expected), result.stderr
    for path, problem in expected.items():
        assert any(str(path) in line and problem in line for line in errors), (path, errors)
    assert (out / "good" / "vocals.wav").exists()
    assert "separated 1 of 6" in result.stdout


def test_silent_file_separates_into_silent_stems(trained, tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros((8000, 2)), 8000)
    result = run("svsgan_tf.separate", silent, "--out", tmp_path / "out", "--model", trained)
    assert result.returncode == 0, result.stderr
    vocals, _ = sf.read(tmp_path / "out" / "silent" / "vocals.wav")
    assert np.all(np.isfinite(vocals)) and np.all(vocals == 0)


def test_an_input_is_never_overwritten(trained, tmp_path):
    folder = tmp_path / "out" / "vocals"
    folder.mkdir(parents=True)
    source = folder / "vocals.wav"                 # its output would be out/vocals/vocals.wav itself
    sf.write(source, make_track(1, duration=1.0, sample_rate=8000).mixture, 8000)
    before = source.read_bytes()
    result = run("svsgan_tf.separate", source, "--out", tmp_path / "out", "--model", trained)
    assert result.returncode == 1
    assert_one_line_error(result, str(folder / "vocals.wav"), "overwrite an input")
    assert source.read_bytes() == before


@pytest.mark.parametrize("args, fragments", [
    (["--model", "transformer"], ["model.generator", "unknown generator"]),
    (["--set", "train.batch_size=0"], ["train.batch_size", "must be > 0"]),
    (["--set", "stft.n_fft=1000"], ["stft.n_fft", "power of two"]),
    (["--set", "train.nonsense=1"], ["unknown setting"]),
    (["--config", "/nonexistent/config.json"], ["/nonexistent/config.json", "cannot read config"]),
])
def test_train_rejects_bad_settings_in_one_line(args, fragments, tmp_path):
    assert_one_line_error(run("svsgan_tf.train", "--out", tmp_path, *args), *fragments)


def test_separate_rejects_a_missing_model_in_one_line(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros((4000, 1)), 8000)
    assert_one_line_error(run("svsgan_tf.separate", wav, "--out", tmp_path / "o", "--model", tmp_path / "nope"),
                          str(tmp_path / "nope"), "not found")


def test_experiment_generators_flag_names_each_model_and_rejects_unknown_names(tmp_path):
    from svsgan_tf.errors import ConfigError
    from svsgan_tf.evaluation.paper import models, parse_generators

    assert parse_generators("encoder,rnn") == ("encoder", "rnn")
    assert [m[0] for m in models(parse_generators("unet, encoder"))] == \
        ["U-Net", "U-Net-GAN", "Encoder", "Encoder-GAN"]
    for bad in ("", "encoder,encoder", "cnn"):
        with pytest.raises(ConfigError, match="--generators"):
            parse_generators(bad)
    assert_one_line_error(run("svsgan_tf.experiment", "--out", tmp_path, "--generators", "encoder,lstm"),
                          "--generators", "encoder,lstm")


def test_experiment_prints_the_table_with_seeds_and_significance(tmp_path):
    skip = ("data.nb_tracks", "data.validation_tracks", "train.pretrain_epochs", "train.gan_epochs")
    flags = [item for key, value in TINY.items() if key not in skip
             for item in ("--set", f"{key}={json.dumps(value)}")]
    result = run("svsgan_tf.experiment", "--out", tmp_path, "--pretrain-epochs", 1, "--finetune-epochs", 1,
                 "--train-tracks", 2, "--validation-tracks", 1, "--test-songs", 2, "--seeds", 2, "--quiet",
                 *flags)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for row in ("Mixture", "Oracle", "Encoder", "Encoder-GAN", "RNN", "RNN-GAN"):       # a table row each
        assert any(line.startswith(f"| {row} | ") for line in lines), row
    assert any(line.startswith("| Encoder-GAN vs Encoder | ") for line in lines)      # the paired test
    assert "Wilcoxon" in result.stdout
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert set(scores["models"]) == {"0", "1"}
    stats = scores["statistics"]
    assert len(stats["models"]["RNN-GAN"]["median_per_seed"]) == 2
    assert 0.0 <= stats["significance"]["Encoder-GAN"]["p_value"] <= 1.0
    assert stats["models"]["Oracle"]["median_mean"] > stats["models"]["Mixture"]["median_mean"]


def test_demo_separates_the_real_example_song_and_scores_it(trained, tmp_path):
    result = run("svsgan_tf.demo", "--model", trained, "--skip-experiment", "--quiet", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Falcon 69" in result.stdout
    for row in ("| model |", "| mixture |", "| oracle |"):
        assert row in result.stdout
    (song,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    vocals, rate = sf.read(song / "vocals.wav")
    assert rate == 44100 and vocals.shape[1] == 2


@pytest.mark.parametrize("recipe", ["paper", "paper_encoder", "spleeter"])
def test_a_named_recipe_trains_on_the_synthetic_set_when_its_data_set_is_absent(recipe, tmp_path):
    env_cwd = tmp_path                       # ../shared/data does not exist from here
    result = run("svsgan_tf.train", "--config", recipe, "--epochs", 1, "--gan-epochs", 0, "--steps-per-epoch", 2,
                 "--out", tmp_path / "run", "--quiet", "--no-tensorboard", cwd=env_cwd)
    assert result.returncode == 0, result.stderr
    assert f"note: recipe '{recipe}' trains on musdb:" in result.stderr
    assert "embedded synthetic set instead" in result.stderr
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["source"] == "synthetic" and saved["train"]["pretrain_epochs"] == 1
    expected = json.loads(open(os.path.join(ROOT, "svsgan_tf", "configs", f"{recipe}.json")).read())
    assert saved["stft"] == expected["stft"] and saved["model"] == expected["model"]
    assert "model written to" in result.stdout


@pytest.mark.parametrize("model, env, expected", [("fast", {}, "1"), ("fast", {"TF_NUM_INTEROP_THREADS": "2"}, "0"),
                                                 ("spleeter-svsgan", {}, "0")])
def test_separation_runs_a_one_tower_unet_one_op_at_a_time(model, env, expected):
    code = (f"from svsgan_tf.runtime import separation_threads; separation_threads({model!r}); "
            "import tensorflow as tf; tf.constant(1.0) + 1.0; separation_threads('fast'); "
            "print(tf.config.threading.get_inter_op_parallelism_threads())")
    environment = {k: v for k, v in os.environ.items() if k != "TF_NUM_INTEROP_THREADS"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**environment, "TF_CPP_MIN_LOG_LEVEL": "3", **env}, check=True)
    assert result.stdout.strip().splitlines()[-1] == expected     # 0: TensorFlow's default, not set
