"""`python -m svsgan_tf.separate`: output names that never collide, no silent overwrite, a kill leaves no
temporary file behind, output-side errors in one line, long files in bounded memory."""
import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from svsgan_tf.separation.files import plan_jobs, unique_names
from svsgan_tf.data.synthetic import make_track
from tests.conftest import ROOT
from tests.test_cli import assert_one_line_error, run


def write_song(path, seed=1, seconds=1.0, rate=8000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, make_track(seed, duration=seconds, sample_rate=rate).mixture, rate)
    return path


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_names_follow_the_rule_and_never_collide(tmp_path):
    x, y, z = (write_song(tmp_path / d / n) for d, n in (("x", "song.wav"), ("y", "song.wav"), ("z", "song_2.wav")))
    flac = write_song(tmp_path / "x" / "song.flac")
    write_song(tmp_path / "lib" / "album" / "one.wav")
    write_song(tmp_path / "lib" / "one.wav")
    jobs = plan_jobs([str(x), str(y), str(z), str(flac), str(tmp_path / "lib"), str(x)])
    names = {os.path.relpath(job.path, tmp_path): job.name for job in jobs}
    assert names == {"x/song.wav": "x/song", "y/song.wav": "y/song", "x/song.flac": "song.flac",
                     "z/song_2.wav": "song_2", "lib/album/one.wav": "album/one", "lib/one.wav": "one"}
    assert [n for n in unique_names(["/a/s.wav", "/a/s.flac"], ["s", "s"])] == ["s.wav", "s.flac"]
    assert unique_names(["/a/s.wav", "/b/s.wav"], ["s", "s"]) == ["a/s", "b/s"]
    assert len({job.name.lower() for job in jobs}) == len(jobs) == 6          # x given twice: once
    assert unique_names(["/a/b.wav", "/c/B.wav"], ["b", "B"]) == ["a/b", "c/B"]     # case-insensitive file systems
    # a name that is a folder of another: replacing OUT/a would remove OUT/a/b
    assert unique_names(["/l1/a/b.wav", "/l2/a.wav"], ["a/b", "a"]) == ["a/b.wav", "a.wav"]
    # a renamed name meets a folder-relative one: checked again until none clash
    assert unique_names(["/p/x/song.wav", "/q/y/song.wav", "/lib/x/song.wav"], ["song", "song", "x/song"]) == \
        ["p/x/song", "y/song", "lib/x/song"]


def test_collisions_write_every_song_and_a_second_run_refuses_to_overwrite(tiny_model_dir, tmp_path):
    inputs = [write_song(tmp_path / "x" / "song.wav", 1), write_song(tmp_path / "y" / "song.wav", 2),
              write_song(tmp_path / "z" / "song_2.wav", 3)]
    out = tmp_path / "out"
    result = run("svsgan_tf.separate", *inputs, "--out", out, "--model", tiny_model_dir, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "separated 3 of 3" in result.stdout
    folders = sorted(str(p.parent.relative_to(out)) for p in out.rglob("vocals.wav"))
    assert len(folders) == 3 and len(set(folders)) == 3, folders
    # each folder holds its own song's stems: they add up to that song
    for job in plan_jobs([str(p) for p in inputs]):
        mixture, _ = sf.read(job.path)
        vocals, _ = sf.read(out / job.name / "vocals.wav")
        accompaniment, _ = sf.read(out / job.name / "accompaniment.wav")
        assert np.abs(vocals + accompaniment - mixture).max() < 1e-3
    before = {p: digest(p) for p in out.rglob("*.wav")}

    again = run("svsgan_tf.separate", *inputs, "--out", out, "--model", tiny_model_dir, "--quiet")
    assert again.returncode == 1
    assert "Traceback" not in again.stderr
    errors = [line for line in again.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and all("exists, from an earlier run" in e and "--overwrite" in e for e in errors)
    assert {p: digest(p) for p in out.rglob("*.wav")} == before

    kept = run("svsgan_tf.separate", *inputs, "--out", out, "--model", tiny_model_dir, "--quiet", "--skip-existing")
    assert kept.returncode == 0 and "separated 3 of 3" in kept.stdout
    assert {p: digest(p) for p in out.rglob("*.wav")} == before
    replaced = run("svsgan_tf.separate", inputs[0], "--out", out, "--model", tiny_model_dir, "--quiet",
                   "--overwrite")
    assert replaced.returncode == 0, replaced.stderr


def test_a_kill_mid_batch_leaves_nothing_partial_and_the_rerun_cleans_up(tiny_model_dir, tmp_path):
    from svsgan_tf.io_utils import TEMPORARY_NAME

    # long songs (the tiny model separates 8 kHz audio fast): one chunk of several is in progress
    inputs = [write_song(tmp_path / "in" / f"song{i}.wav", i, seconds=240.0) for i in range(4)]
    hashes = {p: digest(p) for p in inputs}
    out = tmp_path / "out"
    args = [sys.executable, "-m", "svsgan_tf.separate", *map(str, inputs), "--out", str(out), "--model",
            tiny_model_dir, "--quiet", "--chunk-seconds", "20"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    victim = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, caught = time.monotonic() + 300, []
    while victim.poll() is None and time.monotonic() < deadline:
        if out.is_dir() and any((out / f"song{i}").is_dir() for i in range(4)):
            caught = [p for p in out.iterdir() if TEMPORARY_NAME.match(p.name)]
            if caught:
                victim.send_signal(signal.SIGKILL)
                break
        time.sleep(0.005)
    assert victim.wait(timeout=60) == -signal.SIGKILL, victim.stderr.read().decode()
    victim.stderr.close()
    left = [p for p in out.iterdir() if TEMPORARY_NAME.match(p.name)]
    assert left, "the kill landed between two files"
    done = [p for p in out.iterdir() if not TEMPORARY_NAME.match(p.name)]
    for folder in done:                                        # finished folders are complete
        assert sorted(q.name for q in folder.iterdir()) == ["accompaniment.wav", "vocals.wav"]

    rerun = run("svsgan_tf.separate", *inputs, "--out", out, "--model", tiny_model_dir, "--skip-existing",
                "--chunk-seconds", "20")
    assert rerun.returncode == 0, rerun.stderr
    assert "left by a killed run" in rerun.stderr
    assert not [p for p in out.rglob("*") if TEMPORARY_NAME.match(p.name)]
    for path in inputs:
        vocals = sf.info(str(out / path.stem / "vocals.wav"))
        assert vocals.frames == sf.info(str(path)).frames
    assert {p: digest(p) for p in inputs} == hashes


@pytest.mark.parametrize("make_out, problem", [
    (lambda base: (base / "file").write_text("x") and base / "file", "not a directory"),
    (lambda base: base / "file" / "below", "not a directory"),
    (lambda base: "/proc/svsgan_out", "no such file or directory"),
])
def test_an_unusable_output_folder_is_one_line_with_exit_1(tiny_model_dir, tmp_path, make_out, problem):
    (tmp_path / "file").write_text("x")
    out = make_out(tmp_path)
    song = write_song(tmp_path / "song.wav")
    result = run("svsgan_tf.separate", song, "--out", out, "--model", tiny_model_dir)
    assert result.returncode == 1
    assert_one_line_error(result, str(out), problem)


def test_a_full_disk_stops_the_batch_in_one_line(tiny_model_dir, tmp_path):
    """A 1 MiB tmpfs: the first song's stems do not fit."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        songs = [write_song(tmp_path / f"s{i}.wav", i, seconds=60.0) for i in range(2)]
        result = run("svsgan_tf.separate", *songs, "--out", mount / "out", "--model", tiny_model_dir)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert "no space left on device" in errors[0]
        assert "separated 0 of 2" in result.stdout
        assert not [p for p in (mount / "out").rglob("*") if p.is_file()]          # nothing partial
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def peak_rss_mb(args) -> float:
    """Peak resident memory of a child process running `python -m args...`, in MB."""
    code = ("import resource, runpy, sys; sys.argv = sys.argv[1:]; "
            "exit_code = 0\n"
            "try:\n    runpy.run_module(sys.argv[0], run_name='__main__')\n"
            "except SystemExit as e:\n    exit_code = e.code or 0\n"
            "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(exit_code)")
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                            cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=900)
    assert result.returncode == 0, result.stderr
    peak = [line for line in result.stderr.splitlines() if line.startswith("PEAK")][-1]
    return int(peak.split()[1]) / 1024


def test_a_long_file_separates_in_bounded_memory(tmp_path):
    """Four minutes of 44.1 kHz stereo through the shipped model: whole-file separation needs several GB,
    chunked separation stays under the bound."""
    rate, seconds = 44100, 240
    song = tmp_path / "long.wav"
    with sf.SoundFile(song, "w", samplerate=rate, channels=2, subtype="PCM_16") as handle:
        for start in range(0, seconds, 30):
            handle.write(make_track(start, duration=30.0, sample_rate=rate).mixture * 0.5)
    # measured: the default model (Spleeter's U-Net) peaks at 1.7 GB chunked and 2.5 GB whole for these
    # 4 minutes (2.2 and 3.1 GB with an inverse STFT per stem); the chunked peak does not grow with the length
    bound = 2100.0
    chunked = peak_rss_mb(["svsgan_tf.separate", song, "--out", tmp_path / "chunked", "--quiet"])
    whole = peak_rss_mb(["svsgan_tf.separate", song, "--out", tmp_path / "whole", "--quiet",
                         "--chunk-seconds", 10 * seconds])
    assert chunked < bound < whole, (chunked, whole)
    vocals, got_rate = sf.read(tmp_path / "chunked" / "long" / "vocals.wav", dtype="float32")
    reference, _ = sf.read(tmp_path / "whole" / "long" / "vocals.wav", dtype="float32")
    assert got_rate == rate and vocals.shape == (rate * seconds, 2)
    assert np.abs(vocals - reference).max() <= 2 / 32768                  # the same to 16-bit rounding


def test_the_next_file_is_opened_while_one_is_separated_and_a_bad_one_is_one_line(tmp_path, monkeypatch):
    import threading

    from svsgan_tf.separation import files
    from tests.test_chunking import _SlowIdentity

    paths = []
    for index in range(3):
        paths.append(str(tmp_path / f"song{index}.wav"))
        sf.write(paths[-1], np.random.default_rng(index).normal(scale=0.1, size=(1500, 2)), 8000)   # one chunk each
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    paths.insert(2, str(tmp_path / "bad.wav"))
    events, original = [], files._open_entered

    def logged_open(path):
        events.append(("open", os.path.basename(path), threading.current_thread().name))
        return original(path)

    monkeypatch.setattr(files, "_open_entered", logged_open)
    engine = _SlowIdentity(events)
    errors = files.separate_files(engine, files.plan_jobs(paths), str(tmp_path / "out"), quiet=True)
    assert len(errors) == 1 and errors[0].startswith(f"error: {paths[2]}: ")
    for index in (0, 1, 3):
        vocals, _ = sf.read(tmp_path / "out" / f"song{min(index, 2)}" / "vocals.wav")
        assert vocals.shape == (1500, 2)
    opens = [i for i, event in enumerate(events) if event[0] == "open"]
    ends = [i for i, event in enumerate(events) if event[0] == "separated"]
    assert [events[i][1] for i in opens] == ["song0.wav", "song1.wav", "bad.wav", "song2.wav"]
    assert opens[1] < ends[0] and opens[2] < ends[1], events      # opened while the file before was separated
    assert all(events[i][2].startswith("open-ahead") for i in opens)


def test_an_existing_output_folder_is_named_before_the_input_opened_ahead_is(tmp_path):
    from svsgan_tf.separation import files
    from tests.test_chunking import _SlowIdentity

    good, bad = str(tmp_path / "a.wav"), str(tmp_path / "b.wav")
    sf.write(good, np.zeros((1500, 2)), 8000)
    (tmp_path / "b.wav").write_bytes(b"not audio")
    (tmp_path / "out" / "b").mkdir(parents=True)
    errors = files.separate_files(_SlowIdentity([]), files.plan_jobs([good, bad]), str(tmp_path / "out"), quiet=True)
    assert errors == [f"error: {tmp_path / 'out' / 'b'}: exists, from an earlier run; pass --overwrite to replace "
                      "it or --skip-existing to keep it"]
