"""The Separator: stems add up to the mixture, any channel count and rate, silence, Griffin-Lim."""
import numpy as np
import pytest

from svsgan_tf.errors import AudioError
from svsgan_tf.separator import Separator
from svsgan_tf.synthetic import make_track


@pytest.fixture(scope="module")
def separator(tiny_model_dir):
    return Separator.from_directory(tiny_model_dir)


def test_stems_sum_to_the_mixture_with_mixture_phase(separator):
    track = make_track(9, duration=1.5, sample_rate=8000)
    stems = separator.separate(track.mixture, 8000)
    assert stems["vocals"].shape == stems["accompaniment"].shape == track.mixture.shape
    np.testing.assert_allclose(stems["vocals"] + stems["accompaniment"], track.mixture, atol=1e-4)
    assert np.abs(stems["vocals"]).max() > 0


def test_mono_and_other_sample_rates(separator):
    track = make_track(9, duration=1.0, sample_rate=22050, nb_channels=1)
    mono = track.mixture[:, 0]
    stems = separator.separate(mono, 22050)
    assert stems["vocals"].shape == mono.shape
    # resampling to the model's 8 kHz and back loses the band above 4 kHz, nothing else
    assert np.all(np.isfinite(stems["vocals"]))
    assert np.corrcoef(stems["vocals"] + stems["accompaniment"], mono)[0, 1] > 0.8


def test_silence_separates_into_silence(separator):
    for iterations in (0, 4):
        stems = Separator(separator.config, separator.generator, iterations).separate(
            np.zeros((4000, 2), np.float32), 8000)
        for audio in stems.values():
            assert np.all(np.isfinite(audio)) and np.abs(audio).max() < 1e-6


def test_griffin_lim_option_gives_finite_audio_of_the_same_length(separator):
    track = make_track(2, duration=1.0, sample_rate=8000)
    stems = Separator(separator.config, separator.generator, griffin_lim_iterations=8).separate(track.mixture, 8000)
    assert stems["vocals"].shape == track.mixture.shape
    assert np.all(np.isfinite(stems["vocals"]))


@pytest.mark.parametrize("waveform, problem", [
    (np.zeros((0, 2), np.float32), "empty"),
    (np.zeros((100, 2), np.float32), "too short"),
    (np.full((5000, 1), np.nan, np.float32), "non-finite"),
])
def test_bad_arrays_raise_one_line_errors(separator, waveform, problem):
    with pytest.raises(AudioError) as err:
        separator.separate(waveform, 8000, source="clip.wav")
    assert str(err.value).startswith("clip.wav: ") and problem in str(err.value)


def test_wiener_post_filter_keeps_the_sum_and_shapes(separator):
    track = make_track(4, duration=1.5, sample_rate=8000)
    filtered = Separator(separator.config, separator.generator, wiener_iterations=2)
    stems = filtered.separate(track.mixture, 8000)
    assert stems["vocals"].shape == track.mixture.shape
    np.testing.assert_allclose(stems["vocals"] + stems["accompaniment"], track.mixture, atol=1e-3)
    plain = separator.separate(track.mixture, 8000)
    assert not np.allclose(stems["vocals"], plain["vocals"], atol=1e-4)
    with pytest.raises(ValueError, match="either Griffin-Lim or the Wiener"):
        Separator(separator.config, separator.generator, griffin_lim_iterations=2, wiener_iterations=1)


def test_wiener_with_oracle_magnitudes_beats_the_mixture_phase_mask(rng):
    """With the true stems' magnitudes, the Wiener filter's complex estimate is closer to the truth
    than the magnitude ratio mask applied to the mixture (what it is for)."""
    import tensorflow as tf

    from svsgan_tf.spectral import istft, stft, wiener

    track = make_track(6, duration=2.0, sample_rate=8000)
    vocals, accompaniment = (stft(tf.constant(a.T), 256, 128) for a in (track.vocals, track.accompaniment))
    mixture = vocals + accompaniment
    magnitudes = [tf.abs(vocals), tf.abs(accompaniment)]
    ratio = tf.cast(magnitudes[0] / (magnitudes[0] + magnitudes[1] + 1e-8), tf.complex64) * mixture
    filtered = wiener(magnitudes, mixture, iterations=1)[0]
    truth = track.vocals.T
    error = lambda spec: np.linalg.norm(istft(spec, truth.shape[1], 256, 128).numpy() - truth)
    assert error(filtered) < error(ratio)
