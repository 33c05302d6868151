"""Evaluation: museval numbers equal a direct museval call, reference rows, NaN handling, the CLI."""
import json

import numpy as np
import pytest
import soundfile as sf

from svsgan_tf.data.datasets import ArrayTrack
from svsgan_tf.evaluation.tracks import evaluate_tracks, summarize
from svsgan_tf.separation.separator import Separator
from svsgan_tf.data.synthetic import make_track
from tests.conftest import shared_file
from tests.test_cli import run


def synthetic_track(seed, rate=8000):
    t = make_track(seed, duration=3.0, sample_rate=rate)
    return ArrayTrack(f"song{seed}", t.vocals, t.accompaniment, rate, t.mixture)


def test_scores_equal_a_direct_museval_call(tiny_model_dir):
    from svsgan_tf.evaluation.bss import import_museval

    museval = import_museval()
    separator = Separator.from_directory(tiny_model_dir)
    track = synthetic_track(1)
    result = evaluate_tracks([track], separator, quiet=True)
    estimates = separator.separate(track.mixture, 8000)
    sdr, isr, sir, sar = museval.evaluate(np.stack([track.vocals, track.accompaniment]),
                                          np.stack([estimates["vocals"], estimates["accompaniment"]]),
                                          win=8000, hop=8000)
    scores = result.scores["model"]["song1"]
    assert scores["vocals"]["SDR"] == pytest.approx(np.nanmedian(sdr[0]), abs=1e-6)
    assert scores["accompaniment"]["SIR"] == pytest.approx(np.nanmedian(sir[1]), abs=1e-6)
    assert scores["vocals"]["SAR"] == pytest.approx(np.nanmedian(sar[0]), abs=1e-6)


def test_silent_reference_gives_nan_excluded_from_medians(tiny_model_dir):
    t = make_track(2, duration=3.0, sample_rate=8000)
    silent = ArrayTrack("instrumental", np.zeros_like(t.vocals), t.accompaniment, 8000)
    result = evaluate_tracks([synthetic_track(3), silent], Separator.from_directory(tiny_model_dir), quiet=True)
    summary = summarize(result)
    assert np.isnan(summary["tracks"]["instrumental"]["vocals"]["SDR"])
    assert summary["median"]["vocals"]["SDR"] == pytest.approx(summary["tracks"]["song3"]["vocals"]["SDR"])
    assert summary["nan_tracks"]["model/vocals"] == ["instrumental"]


def test_oracle_beats_mixture_on_a_real_clip():
    folder = shared_file("fixtures", "falcon69")
    import os

    stems = {n: sf.read(os.path.join(folder, f"{n}.wav"), dtype="float32")[0]
             for n in ("vocals", "accompaniment")}
    track = ArrayTrack("falcon69", stems["vocals"], stems["accompaniment"], 44100)
    result = evaluate_tracks([track], rows=("mixture", "oracle"), quiet=True)
    oracle, mixture = result.scores["oracle"]["falcon69"], result.scores["mixture"]["falcon69"]
    assert oracle["vocals"]["SDR"] > mixture["vocals"]["SDR"] + 3
    assert oracle["accompaniment"]["SDR"] > mixture["accompaniment"]["SDR"]


def write_song_folders(data, seeds=(4, 5)):
    """Synthetic 2 s songs at 8 kHz as a folder data set: data/song<seed>/{mixture,vocals}.wav."""
    for seed in seeds:
        t = make_track(seed, duration=2.0, sample_rate=8000)
        (data / f"song{seed}").mkdir(parents=True)
        sf.write(data / f"song{seed}" / "mixture.wav", t.mixture, 8000)
        sf.write(data / f"song{seed}" / "vocals.wav", t.vocals, 8000)


def test_evaluate_cli_writes_summary_tables_and_figures(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    write_song_folders(data)
    (data / "broken").mkdir()
    (data / "broken" / "vocals.wav").write_bytes(b"no audio")
    (data / "broken" / "mixture.wav").write_bytes(b"no audio")
    out = tmp_path / "eval"
    result = run("svsgan_tf.evaluate", "--data", data, "--subset", "none", "--model", tiny_model_dir,
                 "--out", out, "--quiet")
    assert result.returncode == 1, result.stderr                # a skipped track fails the run...
    assert "Traceback" not in result.stderr and "broken" in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: skipped 1 of 3 tracks (1 cannot decode audio); the results cover the other 2; "
                      "exit code 1 (--allow-skips accepts skips)"], result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tracks"]) == {"song4", "song5"}
    assert set(summary["median"]) == {"vocals", "accompaniment"}
    assert set(summary["median"]["vocals"]) == {"SDR", "SIR", "SAR"}
    assert set(summary["reference"]) == {"mixture", "oracle"}
    assert summary["reference"]["oracle"]["median"]["vocals"]["SDR"] > summary["reference"]["mixture"]["median"]["vocals"]["SDR"]
    assert any("broken" in line for line in summary["skipped"])
    assert (out / "museval" / "song4.json").exists() and (out / "results.md").exists()
    assert (out / "vocals_sdr.png").stat().st_size > 0 and (out / "spectrogram.png").stat().st_size > 0
    held_out = tmp_path / "eval_held_out"
    result = run("svsgan_tf.evaluate", "--data", data, "--subset", "none", "--model", tiny_model_dir,
                 "--out", held_out, "--held-out", "1", "--quiet", "--allow-skips")
    assert result.returncode == 0, result.stderr                # ...unless skips are allowed
    assert "warning: skipped 1 of 2 tracks (1 cannot decode audio)" in result.stderr
    assert set(json.loads((held_out / "summary.json").read_text())["tracks"]) == {"song5"}


def test_skipped_tracks_are_counted_by_problem_in_one_line():
    from svsgan_tf.evaluation.tracks import skipped_line

    skipped = ["a/vocals.wav: cannot decode audio (Error opening 'a/vocals.wav': Format not recognised.)",
               "b: stems differ in length (100 to 200 samples, e.g. vocals.wav)",
               "c/mix.wav: cannot decode audio (System error.)"]
    assert skipped_line(skipped, 25, 22) == ("skipped 3 of 25 tracks (2 cannot decode audio; 1 stems differ in "
                                             "length); the results cover the other 22")


@pytest.mark.parametrize("where, problem", [("file", "not a directory"), ("under_file", "not a directory"),
                                            ("proc", "no such file or directory")])
def test_an_unusable_out_folder_is_one_line_and_exit_1_before_anything_runs(tmp_path, where, problem):
    from tests.test_cli import assert_one_line_error

    (tmp_path / "file").write_text("x")
    out = {"file": tmp_path / "file", "under_file": tmp_path / "file" / "eval",
           "proc": "/proc/svsgan-evaluate-out"}[where]
    result = run("svsgan_tf.evaluate", "--data", tmp_path / "no-data", "--out", out, "--quiet")
    assert result.returncode == 1
    assert_one_line_error(result, f"{out}: {problem}")
    assert (tmp_path / "file").read_text() == "x"


def test_a_full_disk_while_writing_is_one_line_and_exit_1(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import errno

    from svsgan_tf import evaluate, io_utils

    t = make_track(6, duration=2.0, sample_rate=8000)
    (tmp_path / "data" / "song6").mkdir(parents=True)
    sf.write(tmp_path / "data" / "song6" / "mixture.wav", t.mixture, 8000)
    sf.write(tmp_path / "data" / "song6" / "vocals.wav", t.vocals, 8000)

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(io_utils, "atomic_write_text", full)
    out = tmp_path / "eval"
    from svsgan_tf import cli

    with pytest.raises(SystemExit) as exit_:
        cli.run(lambda: evaluate.main(["--data", str(tmp_path / "data"), "--subset", "none", "--model",
                                       tiny_model_dir, "--out", str(out), "--quiet"]))
    assert exit_.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {out / 'museval' / 'song6.json'}: no space left on device"]


def test_global_sdr_against_its_definition():
    from svsgan_tf.evaluation.bss import global_sdr

    rng = np.random.default_rng(0)
    reference = rng.standard_normal((1000, 2))
    noise = 0.1 * rng.standard_normal((1000, 2))
    expected = 10 * np.log10(np.sum(reference ** 2) / np.sum(noise ** 2))
    assert abs(global_sdr(reference, reference + noise) - expected) < 1e-6
    assert abs(global_sdr(reference[:, 0], 0.5 * reference[:, 0]) - 10 * np.log10(4)) < 1e-6
    assert np.isnan(global_sdr(np.zeros((10, 2)), np.ones((10, 2))))


def test_compare_pairs_the_common_tracks_and_matches_scipy(tmp_path):
    from scipy.stats import wilcoxon

    from tests.test_cli import assert_one_line_error

    rng = np.random.default_rng(3)
    names = [f"t{i:02d}" for i in range(12)]
    base, other = rng.normal(3, 2, 12), rng.normal(3.5, 2, 12)
    other[4] = np.nan                                        # a silent reference: left out of the pairing

    def summary(values, extra=()):
        tracks = {n: {"vocals": {"SDR": v}, "accompaniment": {"SDR": 0.0}} for n, v in zip(names, values)}
        tracks.update({n: {"vocals": {"SDR": 9.0}} for n in extra})
        return {"tracks": tracks}

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "summary.json").write_text(json.dumps(summary(base, extra=["only_in_a"])))
    (tmp_path / "b.json").write_text(json.dumps(summary(other)))
    result = run("svsgan_tf.compare", tmp_path / "a", tmp_path / "b.json", "--labels", "base,new",
                 "--out", tmp_path / "cmp.json")
    assert result.returncode == 0, result.stderr
    got = json.loads((tmp_path / "cmp.json").read_text())
    assert got["tracks"] == names                            # the track only one model scored is left out
    keep = ~np.isnan(other)
    difference = other[keep] - base[keep]
    paired = got["paired"]["new"]
    assert paired["tracks"] == 11 and paired["better"] == int((difference > 0).sum())
    np.testing.assert_allclose(paired["mean_delta"], difference.mean())
    np.testing.assert_allclose(paired["p_value"], wilcoxon(difference).pvalue)
    np.testing.assert_allclose(got["models"]["base"]["median"], np.median(base))
    assert "| new |" in result.stdout and "| base |" in result.stdout
    assert_one_line_error(run("svsgan_tf.compare", tmp_path / "a", tmp_path / "b.json", "--metric", "SIR"),
                          "no vocals SIR score")
    (tmp_path / "bad.json").write_text("{not json")
    assert_one_line_error(run("svsgan_tf.compare", tmp_path / "a", tmp_path / "bad.json"), "bad.json", "JSON")


def test_estimates_of_another_tool_score_as_the_model_that_wrote_them(tiny_model_dir, tmp_path):
    """Stems that `separate` wrote, scored with --estimates, give the model row's numbers; a stem of
    another length is a one-line error naming the file and the track is skipped."""
    from svsgan_tf.audio.io import write_audio
    from svsgan_tf.evaluation.tracks import EstimateFolder

    separator = Separator.from_directory(tiny_model_dir)
    tracks = [synthetic_track(6), synthetic_track(7)]
    folder = tmp_path / "estimates"
    for track in tracks:
        stems = separator.separate(track.mixture, 8000)
        for target, audio in stems.items():
            (folder / track.name).mkdir(parents=True, exist_ok=True)
            sf.write(folder / track.name / f"{target}.wav", audio, 8000, subtype="FLOAT")
    direct = evaluate_tracks(tracks, separator, quiet=True)
    scored = evaluate_tracks(tracks, EstimateFolder(str(folder)), quiet=True,
                             stft=separator.config.separation_stft)
    for name in ("song6", "song7"):
        for target in ("vocals", "accompaniment"):
            assert scored.scores["model"][name][target]["SDR"] == pytest.approx(
                direct.scores["model"][name][target]["SDR"], abs=1e-4)
    assert scored.scores["oracle"] == direct.scores["oracle"]
    write_audio(str(folder / "song7" / "vocals.wav"), tracks[1].vocals[:-10], 8000)
    short = evaluate_tracks(tracks, EstimateFolder(str(folder)), quiet=True, stft=separator.config.separation_stft)
    assert set(short.scores["model"]) == {"song6"}
    assert len(short.skipped) == 1 and "song7/vocals.wav" in short.skipped[0] and "samples" in short.skipped[0]
