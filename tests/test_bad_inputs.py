"""A corpus of bad and unusual inputs, built here, through `separate`, `serving.client`, `evaluate` and
`train`'s data loading: the exit code, one line per bad file naming it and the problem, no traceback,
inputs unchanged, and outputs complete or absent, never partial."""
from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf

from svsgan_tf.audio.io import ffmpeg_executable
from svsgan_tf.io_utils import TEMPORARY_NAME
from svsgan_tf.data.synthetic import make_track
from tests.test_cli import run, tiny_flags

RATE = 8000


@dataclass
class Case:
    """One input: its path and the fragment its error line must hold (None: it must separate)."""

    path: str
    problem: str | None = None
    warning: str | None = None


def song(seed=1, seconds=1.0, rate=RATE, channels=2):
    return make_track(seed, duration=seconds, sample_rate=rate, nb_channels=min(channels, 2)).mixture \
        if channels <= 2 else np.random.default_rng(seed).uniform(-0.3, 0.3, (int(seconds * rate), channels))


def build_corpus(folder) -> list[Case]:
    """Write every input of the corpus into `folder`; return them with what each must give."""
    os.makedirs(folder, exist_ok=True)

    def path(name):
        return os.path.join(folder, name)

    cases = []

    def wav(name, audio, rate=RATE, subtype=None, problem=None, **kwargs):
        sf.write(path(name), audio, rate, subtype=subtype, **kwargs)
        cases.append(Case(path(name), problem))

    # unusual, valid: rates, channel counts, sample formats, containers, lengths, levels
    wav("mono_16k.wav", song(2, rate=16000, channels=1), 16000)
    wav("stereo_44k.wav", song(3, rate=44100), 44100)
    wav("six_channels.wav", song(4, channels=6))
    wav("pcm_u8.wav", song(5), subtype="PCM_U8")
    wav("pcm_24.wav", song(6), subtype="PCM_24")
    wav("float64.wav", song(7), subtype="DOUBLE")
    wav("song.flac", song(8))
    wav("song.ogg", song(9), format="OGG", subtype="VORBIS")
    wav("UPPER.WAV", song(10))
    wav("silent.wav", np.zeros((RATE, 2)))
    wav("full_scale.wav", np.sign(song(11)) * 1.0)
    wav("dc.wav", np.full((RATE, 2), 0.5))
    wav("one_frame.wav", song(12)[:256])
    wav("long_44k.wav", song(13, seconds=50.0, rate=44100), 44100)            # several chunks
    # cut mid-data: the header declares more samples than the file holds
    sf.write(path("cut_short.wav"), song(14, seconds=2.0), RATE, subtype="PCM_16")
    size = os.path.getsize(path("cut_short.wav"))
    with open(path("cut_short.wav"), "r+b") as handle:
        handle.truncate(size - 4000)
    cases.append(Case(path("cut_short.wav"), warning="truncated"))
    ffmpeg = ffmpeg_executable()
    if ffmpeg:                                   # AAC in MP4, a format libsndfile cannot read
        sf.write(path("for_m4a.tmp.wav"), song(15, seconds=2.0), RATE)
        subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-i", path("for_m4a.tmp.wav"), "-c:a", "aac",
                        path("song.m4a")], check=True)
        os.unlink(path("for_m4a.tmp.wav"))
        cases.append(Case(path("song.m4a")))

    # bad: undecodable, empty, too short, not finite, not a file
    open(path("empty_file.wav"), "wb").close()
    cases.append(Case(path("empty_file.wav"), "cannot decode"))
    with open(path("garbage.wav"), "wb") as handle:
        handle.write(b"this is not audio at all " * 40)
    cases.append(Case(path("garbage.wav"), "cannot decode"))
    with open(path("text.flac"), "w") as handle:
        handle.write("fLaC? no\n" * 100)
    cases.append(Case(path("text.flac"), "cannot decode"))
    wav("zero_samples.wav", np.zeros((0, 2)), problem="empty")
    wav("too_short.wav", np.zeros((50, 2)), problem="too short")
    wav("nan.wav", np.full((RATE, 2), np.nan), subtype="FLOAT", problem="non-finite")
    wav("inf.wav", np.where(np.arange(RATE)[:, None] % 97 == 0, np.inf, 0.1) * np.ones((1, 2)), subtype="FLOAT",
        problem="non-finite")
    late = song(16, seconds=60.0)
    late[-RATE:] = np.nan                                                     # in the last chunk only
    wav("nan_at_the_end.wav", late, subtype="FLOAT", problem="non-finite")
    cases.append(Case(path("missing.wav"), "no such file"))
    os.makedirs(path("folder.wav"))                     # a folder is searched: it holds no audio
    cases.append(Case(path("folder.wav"), warning="a folder without audio files"))
    os.mkfifo(path("fifo.wav"))
    cases.append(Case(path("fifo.wav"), "not a regular file"))
    if ffmpeg:
        with open(path("corrupt.m4a"), "wb") as handle:
            handle.write(os.urandom(5000))
        cases.append(Case(path("corrupt.m4a"), "cannot decode"))
    return cases


def file_hashes(folder) -> dict[str, str]:
    """SHA-256 of every regular file below `folder` (FIFOs and folders are left alone)."""
    hashes = {}
    for root, _, names in os.walk(folder):
        for name in names:
            full = os.path.join(root, name)
            if os.path.isfile(full):
                hashes[full] = hashlib.sha256(open(full, "rb").read()).hexdigest()
    return hashes


def check_batch(result, cases: list[Case], out) -> None:
    """What every batch over the corpus must show (separate and serving.client alike)."""
    from svsgan_tf.separation.files import plan_jobs

    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    bad = [case for case in cases if case.problem]
    assert len(errors) == len(bad), "\n".join(errors)
    for case in bad:
        lines = [line for line in errors if line.startswith(f"error: {case.path}")]
        assert len(lines) == 1 and case.problem in lines[0], (case.path, lines)
    for case in cases:
        if case.warning:
            assert any(case.path in line and case.warning in line for line in result.stderr.splitlines()), case
    good = [case for case in cases if not case.problem and os.path.isfile(case.path)]
    assert f"separated {len(good)} of {len(good) + len(bad)} files" in result.stdout
    names = {job.path: job.name for job in plan_jobs([case.path for case in good])}
    for case in good:
        folder = os.path.join(out, names[case.path])
        info = sf.info(case.path) if not case.path.endswith(".m4a") else None
        for stem in ("vocals", "accompaniment"):
            written = sf.info(os.path.join(folder, f"{stem}.wav"))
            if info is not None:
                assert (written.frames, written.channels, written.samplerate) == \
                       (info.frames, info.channels, info.samplerate), case.path
    for case in bad:                                        # nothing at all for a bad input
        assert not os.path.exists(os.path.join(out, os.path.splitext(os.path.basename(case.path))[0])), case.path
    assert not [p for p in os.listdir(out) if TEMPORARY_NAME.match(p)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    cases = build_corpus(str(folder))
    return str(folder), cases, file_hashes(str(folder))


def test_separate_over_the_corpus(corpus, tiny_model_dir, tmp_path):
    folder, cases, hashes = corpus
    out = tmp_path / "out"
    result = run("svsgan_tf.separate", *[c.path for c in cases], "--out", out, "--model", tiny_model_dir,
                 "--chunk-seconds", 20)
    check_batch(result, cases, str(out))
    assert file_hashes(folder) == hashes


def test_serving_client_over_the_corpus(corpus, tiny_model_dir, tmp_path):
    from svsgan_tf.export.savedmodel import export_model
    from tests.test_serving import MODEL, Server

    folder, cases, hashes = corpus
    base = tmp_path / "models" / MODEL
    export_model(tiny_model_dir, str(base))
    server = Server(base, tmp_path / "server.log")
    try:
        server.wait_until_serving()
        out = tmp_path / "out"
        result = run("serving.client", *[c.path for c in cases], "--out", out, "--server", server.address,
                     "--model_name", MODEL, "--max_request_mb", 0.5)
    finally:
        server.stop()
    check_batch(result, cases, str(out))
    assert file_hashes(folder) == hashes


def stem_folder_data_set(root, corpus_cases: list[Case]) -> dict[str, str | None]:
    """A `folder:` data set: one track per case, its mixture and vocals both that file (vocals of the
    right shape for the good ones); returns {track name: expected problem or None}."""
    expected = {}
    for index, case in enumerate(corpus_cases):
        track = os.path.join(root, f"track{index:02d}")
        os.makedirs(track)
        extension = os.path.splitext(case.path)[1].lower() or ".wav"
        if os.path.isfile(case.path) or not os.path.exists(case.path):
            if os.path.exists(case.path):
                os.link(case.path, os.path.join(track, "mixture" + extension))
                os.link(case.path, os.path.join(track, "vocals" + extension))
        expected[os.path.basename(track)] = case.problem
    return expected


def test_evaluate_over_the_corpus_skips_each_bad_track_in_one_line(corpus, tiny_model_dir, tmp_path):
    folder, cases, hashes = corpus
    usable = [c for c in cases if os.path.isfile(c.path) and not c.path.endswith((".m4a", ".ogg"))
              and "44k" not in c.path and "six" not in c.path and "16k" not in c.path]
    data = tmp_path / "data"
    expected = stem_folder_data_set(str(data), usable)
    out = tmp_path / "eval"
    result = run("svsgan_tf.evaluate", "--data", f"folder:{data}", "--subset", "test", "--model", tiny_model_dir,
                 "--out", out, "--quiet")
    assert "Traceback" not in result.stderr, result.stderr
    nb_bad = sum(problem is not None for problem in expected.values())
    assert result.returncode == 1 and f"{nb_bad} of {len(expected)}" in result.stderr, result.stderr
    for track, problem in expected.items():
        if problem:
            assert any(track in line for line in result.stderr.splitlines()), (track, result.stderr)
    assert file_hashes(folder) == hashes
    allowed = run("svsgan_tf.evaluate", "--data", f"folder:{data}", "--subset", "test", "--model",
                  tiny_model_dir, "--out", tmp_path / "eval2", "--quiet", "--allow-skips")
    assert allowed.returncode == 0, allowed.stderr


def test_training_data_loading_over_the_corpus_skips_bad_tracks(corpus, tmp_path):
    folder, cases, hashes = corpus
    usable = [c for c in cases if os.path.isfile(c.path) and c.path.endswith(".wav") and "44k" not in c.path
              and "16k" not in c.path and "six" not in c.path]
    data = tmp_path / "data"
    expected = stem_folder_data_set(str(data), usable)
    result = run("svsgan_tf.train", "--data", f"folder:{data}", "--epochs", 1, "--out", tmp_path / "run",
                 "--quiet", "--no-tensorboard", *tiny_flags())
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    # a track shorter than an excerpt is zero-padded for training, not skipped
    bad = [track for track, problem in expected.items() if problem and problem != "too short"]
    assert f"{len(bad)} tracks skipped" in result.stderr, result.stderr
    for track in bad:
        assert any(track in line for line in result.stderr.splitlines()), (track, result.stderr)
    assert file_hashes(folder) == hashes
