"""Tests of the embedded synthetic multitrack generator."""
from __future__ import annotations

import numpy as np
import pytest

from svsgan_tf.errors import ConfigError
from svsgan_tf.data.synthetic import Track, make_track, make_tracks

SR = 22050
DURATION = 2.0


def _band_energy_fraction(signal: np.ndarray, sample_rate: int, cutoff: float) -> float:
    """Fraction of the channel-averaged energy below `cutoff` Hz."""
    power = np.abs(np.fft.rfft(signal.astype(np.float64).mean(axis=1))) ** 2
    freqs = np.fft.rfftfreq(signal.shape[0], 1.0 / sample_rate)
    return float(power[freqs < cutoff].sum() / power.sum())


def _rms(signal: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(signal.astype(np.float64)))))


@pytest.fixture(scope="module")
def tracks() -> list[Track]:
    return make_tracks(4, seed=7, duration=DURATION, sample_rate=SR)


def test_default_track_shapes_and_dtypes():
    track = make_track(3)
    assert isinstance(track, Track)
    assert track.name == "synth-3"
    assert track.sample_rate == 44100
    for stem in (track.mixture, track.vocals, track.accompaniment):
        assert stem.shape == (6 * 44100, 2)
        assert stem.dtype == np.float32


def test_make_tracks_names_shapes_and_channels(tracks):
    assert [track.name for track in tracks] == ["synth000", "synth001", "synth002", "synth003"]
    for track in tracks:
        assert track.sample_rate == SR
        for stem in (track.mixture, track.vocals, track.accompaniment):
            assert stem.shape == (int(DURATION * SR), 2)
            assert stem.dtype == np.float32
        assert not np.allclose(track.mixture[:, 0], track.mixture[:, 1])
    named = make_tracks(2, seed=1, duration=0.2, sample_rate=8000, prefix="x")
    assert [track.name for track in named] == ["x000", "x001"]
    assert make_tracks(0) == []


def test_mixture_is_sum_of_stems_peak_and_finite(tracks):
    for track in tracks:
        np.testing.assert_allclose(track.mixture, track.vocals + track.accompaniment, rtol=0.0, atol=1e-6)
        for stem in (track.mixture, track.vocals, track.accompaniment):
            assert np.all(np.isfinite(stem))
        peak = float(np.max(np.abs(track.mixture)))
        assert 0.5 < peak <= 0.9


def test_vocals_to_accompaniment_ratio(tracks):
    for track in tracks:
        ratio_db = 20.0 * np.log10(_rms(track.vocals) / _rms(track.accompaniment))
        assert -6.05 <= ratio_db <= 3.05


def test_same_seed_is_bit_identical(tracks):
    again = make_tracks(4, seed=7, duration=DURATION, sample_rate=SR)
    for first, second in zip(tracks, again):
        assert first.name == second.name
        for stem in ("mixture", "vocals", "accompaniment"):
            assert np.array_equal(getattr(first, stem), getattr(second, stem))
    prefix = make_tracks(2, seed=7, duration=DURATION, sample_rate=SR)
    assert np.array_equal(prefix[1].mixture, tracks[1].mixture)
    one, two = make_track(5, duration=1.0, sample_rate=SR), make_track(5, duration=1.0, sample_rate=SR)
    assert np.array_equal(one.vocals, two.vocals) and np.array_equal(one.accompaniment, two.accompaniment)


def test_different_seeds_differ(tracks):
    for index, first in enumerate(tracks):
        for second in tracks[index + 1:]:
            assert not np.allclose(first.vocals, second.vocals, atol=1e-3)
            assert not np.allclose(first.accompaniment, second.accompaniment, atol=1e-3)
    other_set = make_tracks(1, seed=8, duration=DURATION, sample_rate=SR)[0]
    assert not np.allclose(other_set.mixture, tracks[0].mixture, atol=1e-3)


def test_vocals_are_harmonic_without_bass_while_accompaniment_has_bass(tracks):
    for track in tracks:
        assert _band_energy_fraction(track.vocals, SR, 100.0) < 1e-3
        assert _band_energy_fraction(track.accompaniment, SR, 100.0) > 0.05
        voice = track.vocals.astype(np.float64).mean(axis=1)
        frame = 1024
        frames = voice[: voice.size // frame * frame].reshape(-1, frame)
        loudest = frames[np.argmax(np.sum(frames ** 2, axis=1))]
        loudest = loudest - loudest.mean()
        spectrum = np.fft.rfft(loudest * np.hanning(frame), 4 * frame)
        autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2)[:frame]
        autocorrelation /= autocorrelation[0]
        shortest, longest = int(SR / 750), int(SR / 100)
        assert autocorrelation[shortest:longest].max() > 0.6


def test_mono():
    track = make_track(11, duration=1.0, sample_rate=16000, nb_channels=1)
    for stem in (track.mixture, track.vocals, track.accompaniment):
        assert stem.shape == (16000, 1)
        assert stem.dtype == np.float32
        assert np.all(np.isfinite(stem))
    np.testing.assert_allclose(track.mixture, track.vocals + track.accompaniment, rtol=0.0, atol=1e-6)
    assert float(np.max(np.abs(track.mixture))) <= 0.9


def test_short_and_low_rate_tracks_are_valid():
    for duration, sample_rate in ((1e-3, 8000), (0.05, 2000), (0.3, 48000)):
        track = make_track(2, duration=duration, sample_rate=sample_rate, nb_channels=3)
        assert track.mixture.shape == (int(round(duration * sample_rate)), 3)
        assert np.all(np.isfinite(track.mixture))
        assert float(np.max(np.abs(track.mixture))) <= 0.9


@pytest.mark.parametrize("kwargs", [
    {"seed": -1}, {"seed": 1.5}, {"seed": 0, "duration": 0.0}, {"seed": 0, "duration": float("nan")},
    {"seed": 0, "sample_rate": 1000}, {"seed": 0, "nb_channels": 0},
])
def test_invalid_arguments(kwargs):
    with pytest.raises(ConfigError):
        make_track(**kwargs)
    with pytest.raises(ConfigError):
        make_tracks(-1)
