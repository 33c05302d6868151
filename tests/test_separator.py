"""The Separator: stems add up to the mixture, any channel count and rate, silence, Griffin-Lim, the
separation settings (hop, mask smoothing and power)."""
import numpy as np
import pytest

from svsgan_tf.errors import AudioError
from svsgan_tf.separation.separator import Separator
from svsgan_tf.data.synthetic import make_track


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

    from svsgan_tf.audio.spectral import istft, stft, wiener

    track = make_track(6, duration=2.0, sample_rate=8000)
    vocals, accompaniment = (stft(tf.constant(a.T), 256, 128) for a in (track.vocals, track.accompaniment))
    mixture = vocals + accompaniment
    magnitudes = [tf.abs(vocals), tf.abs(accompaniment)]
    ratio = tf.cast(magnitudes[0] / (magnitudes[0] + magnitudes[1] + 1e-8), tf.complex64) * mixture
    filtered = wiener(magnitudes, mixture, iterations=1)[0]
    truth = track.vocals.T
    error = lambda spec: np.linalg.norm(istft(spec, truth.shape[1], 256, 128).numpy() - truth)
    assert error(filtered) < error(ratio)


def test_mask_smoothing_and_power_follow_a_numpy_reference(separator, rng):
    import tensorflow as tf

    magnitude = tf.constant(rng.uniform(0, 5, (2, 7, separator.config.stft.nb_bins)).astype(np.float32))
    plain = separator.mask(magnitude).numpy()                                # (2, 7, nb_bins)
    settings = {"separation.mask_smoothing": 3, "separation.mask_power": 0.7}
    shaped = Separator(separator.config.replace(**settings), separator.generator).mask(magnitude).numpy()
    padded = np.concatenate([plain[:, :1], plain, plain[:, -1:]], axis=1)    # first and last frame repeated
    smoothed = (padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]) / 3
    expected = smoothed ** 0.7 / (smoothed ** 0.7 + (1 - smoothed) ** 0.7)
    np.testing.assert_allclose(shaped, expected, atol=1e-5)
    assert np.abs(shaped - plain).max() > 1e-3
    track = make_track(5, duration=1.0, sample_rate=8000)                    # the stems still add up
    stems = Separator(separator.config.replace(**settings), separator.generator).separate(track.mixture, 8000)
    np.testing.assert_allclose(stems["vocals"] + stems["accompaniment"], track.mixture, atol=1e-4)


def test_magnitude_equals_numpy_abs_from_silence_to_loud_bins(rng):
    import tensorflow as tf

    from svsgan_tf.audio.spectral import magnitude

    values = (rng.normal(size=(2, 5, 9)) + 1j * rng.normal(size=(2, 5, 9))) * 10.0 ** rng.uniform(-6, 4, (2, 5, 9))
    values[0, 0, :3] = [0, 1e-20j, -3e3]
    spectrogram = values.astype(np.complex64)
    np.testing.assert_allclose(magnitude(tf.constant(spectrogram)).numpy(), np.abs(spectrogram), rtol=1e-6, atol=1e-19)


def test_power_mask_is_exact_at_0_and_1_in_numpy_and_tensorflow():
    import warnings

    import tensorflow as tf

    from svsgan_tf.audio.framing import power_mask

    m = np.array([0.0, 1e-30, 0.25, 0.5, 0.9, 1.0], np.float32)
    expected = m ** 0.7 / (m ** 0.7 + (1 - m) ** 0.7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # no division or log warnings at 0 and 1
        got = power_mask(m, 0.7)
    for values in (got, power_mask(tf.constant(m), 0.7).numpy()):
        np.testing.assert_allclose(values, expected, atol=1e-6)
        assert values[0] == 0.0 and values[-1] == 1.0 and values[3] == 0.5
    assert power_mask(m, 1.0) is m


def test_a_frame_wise_model_separates_with_a_smaller_hop(separator, tmp_path):
    import tensorflow as tf

    from svsgan_tf.export.savedmodel import export_model
    from svsgan_tf.models.model_io import save_model
    from svsgan_tf.audio.spectral import stft

    config = separator.config.replace(**{"separation.hop_length": 32})      # trained at 128, n_fft 256
    assert config.separation_stft.hop_length == 32 and config.stft.hop_length == 128
    finer = Separator(config, separator.generator)
    track = make_track(7, duration=1.0, sample_rate=8000)
    waveform = tf.constant(np.ascontiguousarray(track.mixture.T))
    stems = finer.separate_waveform(waveform)
    np.testing.assert_allclose((stems["vocals"] + stems["accompaniment"]).numpy(), track.mixture.T, atol=1e-4)
    # the mask is G's on the frames of an STFT with hop 32: four times as many frames as with 128
    spectrogram = stft(waveform, 256, 32)                                   # (2, nb_frames, 129)
    mask = separator.generator(tf.abs(spectrogram), training=False)
    expected = tf.signal.inverse_stft(tf.cast(mask, tf.complex64) * spectrogram, 256, 32, 256,
                                      window_fn=tf.signal.inverse_stft_window_fn(32))[:, 224:224 + 8000]
    np.testing.assert_allclose(stems["vocals"].numpy(), expected.numpy(), atol=1e-5)
    assert not np.allclose(stems["vocals"].numpy(), separator.separate_waveform(waveform)["vocals"].numpy(),
                           atol=1e-4)
    # the export separates the same way and tells clients the hop it frames with
    folder = str(tmp_path / "finer")
    save_model(folder, config, separator.generator)
    loaded = tf.saved_model.load(export_model(folder, str(tmp_path / "export")))
    np.testing.assert_allclose(loaded.signatures["serving_default"](waveform=waveform)["vocals"].numpy(),
                               stems["vocals"].numpy(), atol=1e-5)
    assert int(loaded.signatures["model_info"](nb_samples=tf.constant(8000, tf.int64))["hop_length"]) == 32


def test_one_graph_serves_every_length_channel_count_and_rate(tiny_model_dir, rng):
    """separate_waveform is traced once (its input signature is (None, None)): files of other lengths,
    channel counts and sample rates reuse the graph instead of retracing it per call."""
    fresh = Separator.from_directory(tiny_model_dir)
    rate = fresh.sample_rate
    for seconds, channels, sample_rate in ((1.0, 2, rate), (1.7, 1, rate), (2.3, 3, rate), (1.2, 2, 2 * rate)):
        audio = rng.normal(scale=0.1, size=(int(seconds * sample_rate), channels)).astype(np.float32)
        stems = fresh.separate(audio, sample_rate)
        assert stems["vocals"].shape == stems["accompaniment"].shape == audio.shape
        if sample_rate == rate:                  # (resampling drops what lies above the model's band)
            np.testing.assert_allclose(stems["vocals"] + stems["accompaniment"], audio, atol=1e-4)
    assert fresh.separate_waveform.experimental_get_tracing_count() == 1


def test_the_accompaniment_is_the_inverse_stft_of_one_minus_the_mask(separator):
    """One inverse STFT per separation: the accompaniment, the mixture less the vocals, equals the
    inverse STFT of (1 - mask) * X that a second inverse STFT would give."""
    import tensorflow as tf

    from svsgan_tf.audio.spectral import istft, stft

    track = make_track(5, duration=1.3, sample_rate=8000)
    waveform = tf.constant(np.ascontiguousarray(track.mixture.T))
    n_fft, hop = separator.config.stft.n_fft, separator.config.separation_stft.hop_length
    spectrogram = stft(waveform, n_fft, hop)
    mask = separator.mask(tf.abs(spectrogram))
    expected = istft(tf.cast(1.0 - mask, tf.complex64) * spectrogram, waveform.shape[1], n_fft, hop)
    result = separator.separate_waveform(waveform)
    np.testing.assert_allclose(result["accompaniment"].numpy(), expected.numpy(), atol=2e-6)
    assert np.abs(expected.numpy()).max() > 0.01
