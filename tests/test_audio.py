"""Audio I/O: decoding errors, validation, time-aligned resampling, atomic writes."""
import os

import numpy as np
import pytest
import soundfile as sf

from svsgan_tf.audio.io import check_waveform, find_audio_files, load_audio, resample, write_audio
from svsgan_tf.errors import AudioError
from tests.conftest import shared_file


@pytest.mark.parametrize("rate_in, rate_out", [(22050, 8000), (16000, 44100), (44100, 48000)])
def test_resampling_keeps_time_alignment(rate_in, rate_out):
    t = np.arange(rate_in) / rate_in
    x = (np.sin(2 * np.pi * 220 * t) * np.hanning(rate_in)).astype(np.float32)[:, None]
    y = resample(x, rate_in, rate_out)
    assert y.shape == (rate_out, 1)
    t_out = np.arange(rate_out) / rate_out
    expected = np.sin(2 * np.pi * 220 * t_out) * np.interp(t_out, t, np.hanning(rate_in))
    assert np.abs(y[:, 0] - expected).max() < 1e-2
    back = resample(y, rate_out, rate_in)
    assert np.corrcoef(back[:, 0], x[:, 0])[0, 1] > 0.999


def test_load_real_fixture_and_reject_bad_files(tmp_path):
    waveform, rate = load_audio(shared_file("fixtures", "mir1k_amy_3_01.wav"))
    assert rate == 16000 and waveform.shape[1] == 2 and waveform.dtype == np.float32
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(AudioError, match="bad.flac: cannot decode audio"):
        load_audio(str(bad))
    with pytest.raises(AudioError, match="is a folder"):
        load_audio(str(tmp_path))


def test_check_waveform_accepts_mono_and_rejects_bad_arrays():
    assert check_waveform(np.zeros(10), "x").shape == (10, 1)
    with pytest.raises(AudioError, match="x: audio contains 1 non-finite"):
        check_waveform(np.array([0.0, np.inf]), "x")
    with pytest.raises(AudioError, match="expected \\(nb_samples, nb_channels\\)"):
        check_waveform(np.zeros((2, 2, 2)), "x")


def test_write_is_atomic_and_never_overwrites_an_input(tmp_path):
    target = tmp_path / "a" / "vocals.wav"
    write_audio(str(target), np.zeros((100, 2), np.float32), 8000)
    assert sf.info(str(target)).frames == 100
    assert [p.name for p in target.parent.iterdir()] == ["vocals.wav"]
    with pytest.raises(AudioError, match="refusing to overwrite an input"):
        write_audio(str(target), np.zeros((10, 2), np.float32), 8000, protect=(str(target),))
    assert sf.info(str(target)).frames == 100


def test_find_audio_files_walks_folders(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    for name in ("d/x.wav", "d/e/y.flac", "d/notes.txt"):
        (tmp_path / name).write_bytes(b"")
    found = find_audio_files([str(tmp_path / "d"), str(tmp_path / "missing.wav")])
    assert [p.rsplit("/", 1)[1] for p in found] == ["y.flac", "x.wav", "missing.wav"]   # sorted by path


def test_atomic_writes_get_the_modes_of_plain_writes_not_private_ones(tmp_path):
    import stat

    from svsgan_tf.io_utils import atomic_directory, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(str(tmp_path / "a.json"), "{}")
        with atomic_directory(str(tmp_path / "export")) as folder:
            atomic_write_text(os.path.join(folder, "config.json"), "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o644      # mkstemp alone gives 0600
    assert stat.S_IMODE(os.stat(tmp_path / "export").st_mode) == 0o755      # mkdtemp alone gives 0700
    assert stat.S_IMODE(os.stat(tmp_path / "export" / "config.json").st_mode) == 0o644


def test_a_fifo_or_socket_is_refused_without_being_opened(tmp_path):
    import socket
    import threading

    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            load_audio(str(fifo))
        except AudioError as err:
            outcome.append(str(err))

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():                       # it opened the FIFO and blocks: let it go, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
    assert outcome == [f"{fifo}: not a regular file (a named pipe)"]
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "s.wav"))
        with pytest.raises(AudioError, match="s.wav: not a regular file \\(a socket\\)"):
            load_audio(str(tmp_path / "s.wav"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_an_unreadable_file_is_permission_denied(tmp_path):
    path = tmp_path / "locked.wav"
    sf.write(path, np.zeros((100, 1)), 8000)
    path.chmod(0)
    with pytest.raises(AudioError, match="locked.wav: permission denied"):
        load_audio(str(path))


def test_permission_denied_is_reported_before_libsndfile_says_system_error(tmp_path, monkeypatch):
    import builtins

    import svsgan_tf.audio.io as audio

    path = tmp_path / "locked.flac"
    sf.write(path, np.zeros((100, 1)), 8000)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(path) else real_access(p, mode, **kw))
    with pytest.raises(AudioError, match="^.*locked.flac: permission denied$"):
        load_audio(str(path))
    monkeypatch.undo()

    def denied(file, *args, **kwargs):                 # os.access says yes, opening says no (root, ACLs)
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(audio, "open", denied, raising=False)
    with pytest.raises(AudioError, match="^.*locked.flac: permission denied$"):
        load_audio(str(path))


@pytest.mark.parametrize("fmt, subtype, channels", [("WAV", "PCM_16", 2), ("WAVEX", "FLOAT", 3)])
def test_a_wav_cut_short_is_read_with_a_warning(tmp_path, caplog, fmt, subtype, channels):
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (8000, channels)).astype(np.float32)
    whole = tmp_path / "whole.wav"
    sf.write(whole, audio, 8000, format=fmt, subtype=subtype)
    with caplog.at_level("WARNING", logger="svsgan_tf.audio.io"):
        load_audio(str(whole))
    assert caplog.records == []
    data = whole.read_bytes()
    frame = channels * (2 if subtype == "PCM_16" else 4)
    header = data.index(b"data") + 8
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:header + 3000 * frame + 1])                 # 3000 frames and a partial one
    with caplog.at_level("WARNING", logger="svsgan_tf.audio.io"):
        waveform, rate = load_audio(str(cut))
    assert waveform.shape == (3000, channels) and rate == 8000
    np.testing.assert_allclose(waveform, audio[:3000], atol=1e-4)
    (record,) = caplog.records
    assert record.getMessage() == (f"{cut}: WAV file is truncated: 3000 of the 8000 samples its header "
                                   "declares are present (0.38 s of 1.00 s); using what is there")


def test_rf64_and_other_formats_are_not_looked_into(tmp_path, caplog):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros((4000, 1)), 8000, format="RF64", subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 1000])
    with caplog.at_level("WARNING", logger="svsgan_tf.audio.io"):
        waveform, _ = load_audio(str(path))
    assert waveform.shape[0] < 4000 and caplog.records == []


def _ffmpeg(*args):
    import subprocess

    from svsgan_tf.audio.io import ffmpeg_executable

    executable = ffmpeg_executable()
    if executable is None:
        pytest.skip("no ffmpeg")
    subprocess.run([executable, "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True)


def test_formats_libsndfile_cannot_read_are_decoded_with_ffmpeg_through_a_private_temporary_wav(tmp_path,
                                                                                                monkeypatch):
    import stat
    import tempfile

    from svsgan_tf.audio.io import open_audio

    audio = np.random.default_rng(1).uniform(-0.5, 0.5, (6000, 2)).astype(np.float32)
    source = tmp_path / "source.wav"
    sf.write(source, audio, 8000, subtype="PCM_16")
    expected, _ = sf.read(source, dtype="float32")
    song = tmp_path / "song.m4a"
    _ffmpeg("-i", source, "-c:a", "alac", song)                            # lossless, in an MP4 container
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    waveform, rate = load_audio(str(song))
    assert rate == 8000 and waveform.dtype == np.float32
    np.testing.assert_array_equal(waveform, expected)
    with open_audio(str(song)) as reader:
        (private,) = scratch.iterdir()
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        assert (reader.frames, reader.samplerate, reader.channels) == (6000, 8000, 2)
        reader.seek(1000)
        chunk = reader.read(500)
        assert chunk.dtype == np.float32 and chunk.shape == (500, 2)
        np.testing.assert_array_equal(chunk, expected[1000:1500])
    assert list(scratch.iterdir()) == []
    assert song.stat().st_size > 0 and find_audio_files([str(tmp_path)]).count(str(song)) == 1


def test_an_ffmpeg_failure_is_one_line_with_its_last_message(tmp_path):
    garbage = tmp_path / "broken.m4a"
    garbage.write_bytes(b"not an mp4 at all" * 10)
    with pytest.raises(AudioError) as caught:
        load_audio(str(garbage))
    assert str(caught.value) == f"{garbage}: cannot decode audio with ffmpeg (Invalid data found when processing input)"
    video = tmp_path / "silent.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=duration=0.2:size=32x32", video)
    with pytest.raises(AudioError, match="silent.mp4: cannot decode audio with ffmpeg \\(the file has no audio stream\\)"):
        load_audio(str(video))


def test_one_list_of_extensions_serves_folder_search_data_sets_and_decoding(tmp_path):
    from svsgan_tf.audio import io as audio
    from svsgan_tf.data import datasets

    assert datasets.AUDIO_EXTENSIONS is audio.AUDIO_EXTENSIONS
    assert set(audio.AUDIO_EXTENSIONS) == set(audio.SOUNDFILE_EXTENSIONS) | set(audio.FFMPEG_EXTENSIONS)
    for name in ("a.m4a", "b.aac", "c.opus", "d.WMA", "e.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [os.path.basename(p) for p in find_audio_files([str(tmp_path)])] == ["a.m4a", "b.aac", "c.opus", "d.WMA"]


def test_open_audio_reads_float32_frames_by_channel_and_load_audio_still_refuses_non_finite(tmp_path):
    from svsgan_tf.audio.io import open_audio

    mono = tmp_path / "mono.flac"
    sf.write(mono, np.linspace(-0.5, 0.5, 1000), 8000, subtype="PCM_24")
    with open_audio(str(mono)) as reader:
        assert (reader.frames, reader.samplerate, reader.channels) == (1000, 8000, 1)
        reader.seek(990)
        tail = reader.read(100)
        assert tail.shape == (10, 1) and tail.dtype == np.float32
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full((100, 2), np.nan), 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: audio contains 200 non-finite"):
        load_audio(str(nan))
    with pytest.raises(AudioError, match="missing.m4a: no such file"):
        load_audio(str(tmp_path / "missing.m4a"))
