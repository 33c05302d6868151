"""KerasTuner: the hypermodel builds from hyperparameters and a tiny search finds a best config."""
import json
import subprocess
import sys

import keras_tuner as kt

from tests.conftest import ROOT, TINY, tiny_config


def test_hypermodel_fills_the_config_from_hyperparameters():
    from svsgan_tf.data.synthetic import make_tracks
    from tuning.hypermodel import SVSGANHyperModel

    config = tiny_config()
    tracks = make_tracks(2, duration=1.0, sample_rate=8000)
    hypermodel = SVSGANHyperModel(config, tracks[1:], tracks[:1], strategy="one")
    hp = kt.HyperParameters()
    hp.Fixed("batch_size", 8)
    hp.Fixed("optimizer", "rmsprop")
    hp.Fixed("g_learning_rate", 5e-4)
    trial = hypermodel.trial_config(hp)
    assert (trial.train.batch_size, trial.train.optimizer, trial.train.g_learning_rate) == (8, "rmsprop", 5e-4)
    model = hypermodel.build(hp)
    assert type(model.g_optimizer).__name__ == "RMSprop"
    history = hypermodel.fit(hp, model, verbose=0)
    assert {"val_kl", "val_sdr", "d_loss"} <= set(history.history)


def test_search_cli_writes_the_best_config(tmp_path):
    flags = [item for key, value in TINY.items() for item in ("--set", f"{key}={json.dumps(value)}")]
    result = subprocess.run([sys.executable, "-m", "tuning.search", "--trials", "2", "--strategy", "one",
                             "--out", str(tmp_path / "search"), "--quiet", *flags],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    best = json.loads((tmp_path / "search" / "best_config.json").read_text())
    trials = json.loads((tmp_path / "search" / "trials.json").read_text())
    assert len(trials) == 2 and trials[0]["val_sdr"] >= trials[1]["val_sdr"]
    assert best["train"]["batch_size"] == trials[0]["batch_size"]
    assert best["train"]["optimizer"] == trials[0]["optimizer"]


def test_search_refuses_validation_songs_without_audible_vocals(tmp_path):
    import numpy as np
    import soundfile as sf

    from svsgan_tf.data.synthetic import make_track
    from tests.test_cli import assert_one_line_error

    for seed in (1, 2, 3):
        track = make_track(seed, duration=1.0, sample_rate=8000)
        song = tmp_path / "data" / f"song{seed}"
        song.mkdir(parents=True)
        vocals = track.vocals if seed < 3 else np.zeros_like(track.vocals)   # song3 is held out
        sf.write(song / "mixture.wav", track.accompaniment + vocals, 8000)
        sf.write(song / "vocals.wav", vocals, 8000)
    flags = [item for key, value in {**TINY, "data.source": f"folder:{tmp_path / 'data'}",
                                     "data.validation_tracks": 1}.items()
             for item in ("--set", f"{key}={json.dumps(value)}")]
    result = subprocess.run([sys.executable, "-m", "tuning.search", "--trials", "1", "--strategy", "one",
                             "--out", str(tmp_path / "search"), "--quiet", *flags],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert_one_line_error(result, "song3", "silent", "val_sdr")
    assert not (tmp_path / "search" / "best_config.json").exists()
