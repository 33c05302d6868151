"""Audio I/O: decoding errors, validation, time-aligned resampling, atomic writes."""
import os

import numpy as np
import pytest
import soundfile as sf

from svsgan_tf.audio import check_waveform, find_audio_files, load_audio, resample, write_audio
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
