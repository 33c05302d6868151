"""KerasTuner: the hypermodel builds from hyperparameters and a tiny search finds a best config."""
import json
import subprocess
import sys

import keras_tuner as kt

from tests.conftest import ROOT, TINY, tiny_config


def test_the_defaults_of_the_space_are_the_configs_and_fixed_values_reach_the_model():
    from svsgan_tf.data.synthetic import make_tracks
    from tuning.hypermodel import SVSGANHyperModel

    config = tiny_config(**{"train.batch_size": 12, "train.g_learning_rate": 2e-4, "train.adversarial_weight": 0.3})
    tracks = make_tracks(2, duration=1.0, sample_rate=8000)
    hypermodel = SVSGANHyperModel(config, tracks[1:], tracks[:1], strategy="one")
    defaults = kt.HyperParameters()
    hypermodel.declare(defaults)
    assert hypermodel.trial_config(defaults).to_dict() == config.to_dict()     # 12 and 0.3 are added choices
    assert 4 in defaults._hps["batch_size"][0].values and 0.0 in defaults._hps["adversarial_weight"][0].values
    hp = kt.HyperParameters()
    hp.Fixed("batch_size", 8)
    hp.Fixed("optimizer", "rmsprop")
    hp.Fixed("g_learning_rate", 5e-4)
    hp.Fixed("width", 2.0)
    trial = hypermodel.trial_config(hp)
    assert (trial.train.batch_size, trial.train.optimizer, trial.train.g_learning_rate) == (8, "rmsprop", 5e-4)
    assert trial.model.encoder_units == tuple(2 * u for u in config.model.encoder_units)
    model = hypermodel.build(hp)
    assert type(model.g_optimizer).__name__ == "RMSprop"
    assert model.generator.encoder[0].units == 2 * config.model.encoder_units[0]
    result = hypermodel.fit(hp, model, verbose=0)
    assert result["epochs_trained"] == config.train.epochs and 1 <= result["best_epoch"] <= config.train.epochs
    assert result["val_sdr"] > -100 and result["wall_seconds"] > 0 and result["g_steps"] > 0


def test_search_cli_writes_the_best_config(tmp_path):
    flags = [item for key, value in TINY.items() for item in ("--set", f"{key}={json.dumps(value)}")]
    space = tmp_path / "space.json"                  # the tiny set holds 24 excerpts: batches of 4 or 8
    space.write_text(json.dumps({"batch_size": [4, 8], "optimizer": ["adam", "sgd_momentum"]}))
    result = subprocess.run([sys.executable, "-m", "tuning.search", "--trials", "2", "--strategy", "one",
                             "--space", str(space), "--out", str(tmp_path / "search"), "--quiet", *flags],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    best = json.loads((tmp_path / "search" / "best_config.json").read_text())
    trials = json.loads((tmp_path / "search" / "trials.json").read_text())
    assert len(trials) == 2 and trials[0]["val_sdr"] >= trials[1]["val_sdr"]
    assert best["train"]["batch_size"] == trials[0]["batch_size"]
    assert best["train"]["optimizer"] == trials[0]["optimizer"]
    table = (tmp_path / "search" / "trials.md").read_text().splitlines()
    assert table[0].startswith("| trial | val_sdr |") and table[4] == ""
    fixed = next((line for line in table if line.startswith("Fixed: ")), "")
    for name in ("batch_size", "optimizer"):        # a varied one has a row per value below, a fixed one a note
        values = {trial[name] for trial in trials}
        assert (all(f"| {name} | {value} | 1 |" in "\n".join(table) for value in values) if len(values) == 2
                else f"{name} = {values.pop()}" in fixed and f"| {name} |" not in table[0])
    assert (tmp_path / "search" / "trials.csv").read_text().startswith("trial,val_sdr,")
    assert (tmp_path / "search" / "trials.png").stat().st_size > 0
    result = subprocess.run([sys.executable, "-m", "svsgan_tf.train", "--config",          # trains as it is
                             str(tmp_path / "search" / "best_config.json"), "--out", str(tmp_path / "train"),
                             "--no-tensorboard", "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    trained = json.loads((tmp_path / "train" / "model" / "config.json").read_text())
    assert trained["train"]["batch_size"] == best["train"]["batch_size"]


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


def test_a_space_file_narrows_or_fixes_and_bad_ones_are_one_line(tmp_path):
    from svsgan_tf.errors import ConfigError
    from tuning.space import load_space
    from tests.test_cli import assert_one_line_error

    good = tmp_path / "space.json"
    good.write_text(json.dumps({"batch_size": [4, 16], "g_learning_rate": {"min": 1e-4, "max": 1e-3},
                                "optimizer": "adamw"}))
    space = load_space(str(good))
    assert space["batch_size"].values == (4, 16) and space["optimizer"].values == ("adamw",)
    assert (space["g_learning_rate"].low, space["g_learning_rate"].high) == (1e-4, 1e-3)
    for name, spec, problem in (("unknown", {"momentum": [0.9]}, "unknown hyperparameter 'momentum'"),
                                ("empty", {"batch_size": []}, "empty list"),
                                ("range", {"g_learning_rate": {"min": 1e-2, "max": 1e-3}}, "empty range"),
                                ("notjson", None, "not valid JSON")):
        path = tmp_path / f"{name}.json"
        path.write_text("{" if spec is None else json.dumps(spec))
        try:
            load_space(str(path))
        except ConfigError as err:
            assert problem in str(err) and str(path) in str(err)
        else:
            raise AssertionError(name)
    result = subprocess.run([sys.executable, "-m", "tuning.search", "--space", str(tmp_path / "empty.json"),
                             "--out", str(tmp_path / "search")], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert_one_line_error(result, "empty list")
    assert not (tmp_path / "search").exists()


def test_a_search_killed_during_its_second_trial_resumes_without_rerunning_the_first(tmp_path):
    import glob
    import os
    import signal
    import time

    out = tmp_path / "search"
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"batch_size": [4, 8]}))
    flags = [item for key, value in {**TINY, "train.pretrain_epochs": 3}.items()
             for item in ("--set", f"{key}={json.dumps(value)}")]
    command = [sys.executable, "-m", "tuning.search", "--trials", "3", "--strategy", "one", "--space", str(space),
               "--out", str(out), "--quiet", *flags]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "trial_1").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)                                          # inside the second trial's training
    process.send_signal(signal.SIGKILL)
    process.wait()

    def statuses():
        return {os.path.basename(folder): json.loads(open(os.path.join(folder, "trial.json")).read())["status"]
                for folder in sorted(glob.glob(str(out / "trial_*")))
                if os.path.exists(os.path.join(folder, "trial.json"))}

    assert statuses() == {"trial_0": "COMPLETED", "trial_1": "RUNNING"}
    first = (out / "trial_0" / "trial.json").read_text()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    assert statuses() == {"trial_0": "COMPLETED", "trial_1": "COMPLETED", "trial_2": "COMPLETED"}
    assert (out / "trial_0" / "trial.json").read_text() == first           # not run again
    assert len(json.loads((out / "trials.json").read_text())) == 3


def test_a_hyperband_search_honours_epochs_and_carries_the_optimizers_across_rounds(tmp_path):
    out = tmp_path / "search"
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"batch_size": 4, "width": 1.0}))
    flags = [item for key, value in {**TINY, "train.pretrain_epochs": 2, "train.gan_epochs": 1}.items()
             for item in ("--set", f"{key}={json.dumps(value)}")]
    result = subprocess.run([sys.executable, "-m", "tuning.search", "--tuner", "hyperband", "--strategy", "one",
                             "--space", str(space), "--out", str(out), "--quiet", *flags],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    trials = json.loads((out / "trials.json").read_text())
    assert len(trials) >= 3 and all(t["pretrain_epochs"] == 2 and t["gan_epochs"] == 1 for t in trials)
    for trial in trials:                                    # each round trains only its own epochs
        assert trial["epochs"] == trial["tuner/epochs"] - trial["tuner/initial_epoch"], trial
    fresh = [t for t in trials if t["tuner/initial_epoch"] == 0]
    continued = [t for t in trials if t["tuner/initial_epoch"] > 0]
    assert continued and {t["tuner/epochs"] for t in trials} == {1, 3}
    steps_per_epoch = {trial_metric(out, t["trial"], "g_steps") / t["tuner/epochs"] for t in fresh}
    assert len(steps_per_epoch) == 1 and steps_per_epoch.pop() > 0
    for trial in continued:      # G's optimizer state came along: it counts the earlier rounds' steps too
        fresh_like = trial_metric(out, trial["trial"], "g_steps") / trial["tuner/epochs"]
        assert fresh_like == trial_metric(out, fresh[0]["trial"], "g_steps") / fresh[0]["tuner/epochs"]
    assert f"trial {trials[0]['trial']}: val_sdr" in result.stderr                      # a line per trial


def trial_metric(out, trial_id, name):
    """The value keras-tuner recorded for metric `name` of one trial."""
    record = json.loads((out / f"trial_{trial_id}" / "trial.json").read_text())
    return record["metrics"]["metrics"][name]["observations"][-1]["value"][-1]


def test_a_results_folder_of_another_search_or_of_something_else_is_refused(tmp_path):
    from svsgan_tf.config import Config
    from tests.test_cli import assert_one_line_error
    from tuning.search import check_search_folder, search_identity, write_search_file
    from tuning.space import SPACE

    out = tmp_path / "search"
    assert check_search_folder(str(out), search_identity("random", Config(), SPACE)) is False     # new
    write_search_file(str(out), search_identity("random", Config(), SPACE))
    before = (out / "search.json").read_text()
    assert check_search_folder(str(out), search_identity("random", Config(), SPACE)) is True      # resumes
    for extra, problem in ((["--tuner", "bayesian"], "tuner"), (["--set", "train.seed=7"], "train.seed")):
        result = subprocess.run([sys.executable, "-m", "tuning.search", "--out", str(out), *extra],
                                capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert_one_line_error(result, str(out), "different search", problem)
    assert (out / "search.json").read_text() == before and sorted(p.name for p in out.iterdir()) == ["search.json"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = subprocess.run([sys.executable, "-m", "tuning.search", "--out", str(other)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert_one_line_error(result, str(other), "not a tuning.search results folder")
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_hyperband_refuses_a_space_that_searches_the_epochs(tmp_path):
    from tests.test_cli import assert_one_line_error

    space = tmp_path / "space.json"
    space.write_text(json.dumps({"gan_epochs": [1, 2]}))
    result = subprocess.run([sys.executable, "-m", "tuning.search", "--tuner", "hyperband", "--space", str(space),
                             "--out", str(tmp_path / "search")], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert_one_line_error(result, "gan_epochs", "hyperband chooses the epochs")
    assert not (tmp_path / "search").exists()


def test_an_unknown_tuner_or_too_few_songs_to_hold_out_are_one_line_errors(tmp_path):
    import soundfile as sf

    from svsgan_tf.data.synthetic import make_track
    from tests.test_cli import assert_one_line_error

    result = subprocess.run([sys.executable, "-m", "tuning.search", "--tuner", "grid", "--out", str(tmp_path / "s")],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 2 and "invalid choice: 'grid'" in result.stderr and "Traceback" not in result.stderr
    for seed in (1, 2):
        track = make_track(seed, duration=1.0, sample_rate=8000)
        song = tmp_path / "data" / f"song{seed}"
        song.mkdir(parents=True)
        sf.write(song / "mixture.wav", track.mixture, 8000)
        sf.write(song / "vocals.wav", track.vocals, 8000)
    flags = [item for key, value in {**TINY, "data.source": f"folder:{tmp_path / 'data'}",
                                     "data.validation_tracks": 2}.items()
             for item in ("--set", f"{key}={json.dumps(value)}")]
    result = subprocess.run([sys.executable, "-m", "tuning.search", "--out", str(tmp_path / "search"), "--quiet",
                             *flags], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert_one_line_error(result, "2 usable tracks", "data.validation_tracks=2")
    assert not (tmp_path / "search").exists() and not (tmp_path / "s").exists()
