"""In-graph STFT / inverse STFT and Griffin-Lim."""
import numpy as np
import pytest
import tensorflow as tf

from svsgan_tf.audio import spectral
from svsgan_tf.data.synthetic import make_track
from tests.conftest import shared_file


def relative_error(estimate, reference):
    return float(np.linalg.norm(estimate - reference) / np.linalg.norm(reference))


def roundtrip(waveform, n_fft=2048, hop=1024):
    """(nb_samples, nb_channels) -> STFT -> inverse STFT -> same shape."""
    x = tf.constant(waveform.T)
    spec = spectral.STFT(n_fft, hop)(x)
    return spectral.ISTFT(n_fft, hop)(spec, nb_samples=x.shape[-1]).numpy().T


def test_stft_shapes_match_frame_count():
    for nb_samples in (2048, 2049, 5000, 44100):
        spec = spectral.stft(tf.zeros((3, nb_samples)), 2048, 1024)
        assert spec.shape == (3, spectral.nb_frames_for(nb_samples, 2048, 1024), 1025)
        assert spec.dtype == tf.complex64


def test_stft_matches_numpy_reference(rng):
    x = rng.standard_normal(3000).astype(np.float32)
    spec = spectral.stft(tf.constant(x[None]), 256, 128).numpy()[0]
    padded = np.pad(x, (128, 128 + (-(3000 + 256 - 256) % 128) + 0))
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(256) / 256)       # periodic Hann
    frame = padded[128 * 5:128 * 5 + 256] * window
    np.testing.assert_allclose(spec[5], np.fft.rfft(frame), atol=1e-3)


def test_reconstruction_on_synthetic_audio():
    track = make_track(3, duration=3.0)
    assert relative_error(roundtrip(track.mixture), track.mixture) < 1e-4


def test_reconstruction_on_real_audio():
    import soundfile as sf

    waveform, _ = sf.read(shared_file("fixtures", "falcon69", "mixture.wav"), dtype="float32", always_2d=True)
    assert relative_error(roundtrip(waveform), waveform) < 1e-4


def test_reconstruction_of_odd_lengths(rng):
    for nb_samples in (2048, 2500, 10001):
        x = rng.standard_normal((nb_samples, 1)).astype(np.float32)
        assert relative_error(roundtrip(x), x) < 1e-4


def test_griffin_lim_spectral_convergence_decreases(rng):
    waveform = tf.constant(make_track(5, duration=2.0, sample_rate=16000, nb_channels=1).vocals.T)
    magnitude = tf.abs(spectral.stft(waveform, 512, 256))
    random_phase = tf.exp(tf.complex(0.0, tf.constant(rng.uniform(-np.pi, np.pi, magnitude.shape),
                                                       tf.float32)))
    errors = []
    for iterations in (0, 5, 20, 60):
        estimate = spectral.griffin_lim(magnitude, random_phase, waveform.shape[-1], 512, 256, iterations)
        errors.append(float(spectral.spectral_convergence(magnitude, estimate, 512, 256)))
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.5 * errors[0]


def test_griffin_lim_on_silence_is_finite():
    magnitude = tf.zeros((1, 10, 129))
    phase = spectral.unit_phase(tf.zeros((1, 10, 129), tf.complex64))
    out = spectral.griffin_lim(magnitude, phase, 1152, 256, 128, 3)       # 1152 samples -> 10 frames
    assert np.all(np.isfinite(out.numpy())) and np.all(out.numpy() == 0)


@pytest.mark.parametrize("frame_length, hop_length", [(16, 4), (16, 8), (12, 5)])   # 4 and 2 parts; no divisor
def test_overlap_add_matches_numpy(frame_length, hop_length, rng):
    from svsgan_tf.audio.spectral import overlap_add

    frames = tf.constant(rng.normal(size=(2, 7, frame_length)).astype(np.float32))
    expected = np.zeros((2, 6 * hop_length + frame_length), np.float32)
    for t in range(7):
        expected[:, t * hop_length:t * hop_length + frame_length] += frames.numpy()[:, t]
    np.testing.assert_allclose(overlap_add(frames, hop_length).numpy(), expected, atol=1e-5)
