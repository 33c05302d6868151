"""Joint-stereo models (model.nb_channels=2): frame layout, band limit per channel, data pipeline,
Separator channel handling against a NumPy reference, training and a round trip through a model folder."""
import numpy as np
import pytest
import tensorflow as tf

from svsgan_tf.data import pipeline as data_lib
from svsgan_tf.data.datasets import ArrayTrack
from svsgan_tf.errors import ConfigError, DataError
from svsgan_tf.models import build_discriminator, build_generator
from svsgan_tf.separation.separator import Separator
from svsgan_tf.export.savedmodel import export_model
from svsgan_tf.audio.spectral import istft, magnitude_frames, stft
from svsgan_tf.data.synthetic import make_track, make_tracks
from svsgan_tf.training.fit import train
from tests.conftest import tiny_config

STEREO = {"model.nb_channels": 2}


def test_config_accepts_one_or_two_channels_only():
    assert tiny_config(**STEREO).nb_features == 2 * tiny_config().stft.nb_bins
    with pytest.raises(ConfigError, match="model.nb_channels"):
        tiny_config(**{"model.nb_channels": 3})


@pytest.mark.parametrize("generator", ["encoder", "rnn"])
def test_generator_and_discriminator_take_both_channels(generator, rng):
    config = tiny_config(**STEREO, **{"model.generator": generator})
    nb_features = config.nb_features
    mask = build_generator(config)(rng.uniform(0, 5, (3, 7, nb_features)).astype(np.float32)).numpy()
    assert mask.shape == (3, 7, nb_features) and mask.min() >= 0 and mask.max() <= 1
    frame = tf.zeros((2, 7, nb_features))
    assert build_discriminator(config)((frame, frame)).shape == (2, 7)


def test_band_limit_applies_to_each_channel(rng):
    config = tiny_config(**STEREO, **{"model.max_frequency": 2000.0})
    nb_bins, nb_input_bins = config.stft.nb_bins, config.stft.bins_below(2000.0)
    generator = build_generator(config)
    assert generator.input_mean.shape == (2 * nb_input_bins,)
    x = rng.uniform(0, 5, (2, 5, 2 * nb_bins)).astype(np.float32)
    above = x.copy()
    above[..., nb_input_bins:nb_bins] *= 10.0             # left channel above the band
    above[..., nb_bins + nb_input_bins:] *= 10.0          # right channel above the band
    np.testing.assert_array_equal(generator(x).numpy(), generator(above).numpy())
    inside = x.copy()
    inside[..., nb_bins] *= 10.0                          # the right channel's first bin is seen
    assert not np.allclose(generator(x).numpy(), generator(inside).numpy())
    mean = rng.uniform(0, 1, 2 * nb_bins).astype(np.float32)
    generator.set_input_statistics(mean, np.ones_like(mean))
    np.testing.assert_array_equal(generator.input_mean.numpy(),
                                  np.concatenate([mean[:nb_input_bins], mean[nb_bins:nb_bins + nb_input_bins]]))


def test_training_examples_join_the_channels_channel_major():
    config = tiny_config(**STEREO, **{"data.augment": False})
    track = make_track(5, duration=1.0, sample_rate=config.stft.sample_rate)
    mono = ArrayTrack("mono", track.vocals[:, :1], track.accompaniment[:, :1], config.stft.sample_rate)
    dataset = data_lib.validation_dataset([track, mono], config).unbatch()
    examples = list(dataset)
    nb_samples = data_lib.excerpt_samples(config.stft, config.data.excerpt_frames)
    per_track = track.mixture.shape[0] // nb_samples
    assert len(examples) == 2 * per_track                # one example per excerpt, not per channel
    nb_bins = config.stft.nb_bins
    mixture, _ = examples[0]
    assert mixture.shape == (config.data.excerpt_frames, 2 * nb_bins)
    for channel in (0, 1):
        expected = magnitude_frames(tf.constant(track.mixture[:nb_samples, channel]), config.stft.n_fft,
                                    config.stft.hop_length).numpy()
        np.testing.assert_allclose(mixture[:, channel * nb_bins:(channel + 1) * nb_bins], expected, atol=1e-5)
    mono_mixture, _ = examples[per_track]
    np.testing.assert_array_equal(mono_mixture[:, :nb_bins], mono_mixture[:, nb_bins:])   # duplicated


def test_tracks_of_more_than_two_channels_are_refused_by_name():
    config = tiny_config(**STEREO)
    audio = np.zeros((8000, 3), np.float32)
    with pytest.raises(DataError, match="surround: has 3 channels"):
        data_lib.training_dataset([ArrayTrack("surround", audio, audio, 8000)], config)


def numpy_joint_mask(generator, magnitude):
    """Reference: (2, nb_frames, nb_bins) -> one (1, nb_frames, 2 * nb_bins) call, split back."""
    frames = np.concatenate([magnitude[0], magnitude[1]], axis=-1)[None]
    mask = generator(frames).numpy()[0]
    nb_bins = magnitude.shape[-1]
    return np.stack([mask[:, :nb_bins], mask[:, nb_bins:]])


@pytest.fixture(scope="module")
def stereo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("stereo_run")
    # a band limit below the tiny 4 kHz Nyquist, so that training and separation run the per-channel crop
    config = tiny_config(**STEREO, **{"model.generator": "rnn", "model.max_frequency": 3000.0})
    return train(config, str(out), verbose=0, tensorboard=False)


def test_tiny_stereo_run_trains_and_reloads(stereo_run, rng):
    assert len(stereo_run.history["kl"]) == 2 and np.all(np.isfinite(stereo_run.history["kl"]))
    separator = Separator.from_directory(stereo_run.model_dir)
    assert separator.config.model.nb_channels == 2 and separator.generator.nb_features == stereo_run.config.nb_features
    magnitude = rng.uniform(0, 5, (2, 9, separator.config.stft.nb_bins)).astype(np.float32)
    np.testing.assert_allclose(separator.mask(tf.constant(magnitude)).numpy(),
                               numpy_joint_mask(separator.generator, magnitude), atol=1e-6)


def test_separator_uses_the_other_channel_and_handles_any_channel_count(stereo_run, rng):
    separator = Separator.from_directory(stereo_run.model_dir)
    magnitude = rng.uniform(0, 5, (2, 9, separator.config.stft.nb_bins)).astype(np.float32)
    changed = magnitude.copy()
    changed[1] *= 4.0                                        # only the right channel changes
    left, left_changed = (separator.mask(tf.constant(m)).numpy()[0] for m in (magnitude, changed))
    assert not np.allclose(left, left_changed)              # the left mask sees the right channel
    # any other channel count: each channel is separated as a pair of two equal channels
    three = rng.uniform(0, 5, (3, 9, separator.config.stft.nb_bins)).astype(np.float32)
    mask = separator.mask(tf.constant(three)).numpy()
    for channel in range(3):
        pair = numpy_joint_mask(separator.generator, np.stack([three[channel]] * 2))
        np.testing.assert_allclose(mask[channel], pair.mean(0), atol=1e-6)
    track = make_track(4, duration=1.0, sample_rate=8000)
    for audio in (track.mixture, track.mixture[:, 0], np.tile(track.mixture, (1, 2))):
        stems = separator.separate(audio, 8000)
        assert stems["vocals"].shape == audio.shape
        np.testing.assert_allclose(stems["vocals"] + stems["accompaniment"], audio, atol=1e-4)


def test_separated_waveforms_equal_the_numpy_reference(stereo_run, rng):
    """separate_waveform (tf.function, tf.cond) against mask_reference * STFT -> inverse STFT, for 1, 2
    and 3 channels."""
    separator = Separator.from_directory(stereo_run.model_dir)
    n_fft, hop = separator.config.stft.n_fft, separator.config.stft.hop_length
    for nb_channels in (1, 2, 3):
        waveform = rng.normal(scale=0.1, size=(nb_channels, 4000)).astype(np.float32)
        spectrogram = stft(tf.constant(waveform), n_fft, hop).numpy()              # (C, nb_frames, nb_bins)
        magnitude = np.abs(spectrogram)
        if nb_channels == 2:
            mask = numpy_joint_mask(separator.generator, magnitude)
        else:
            mask = np.stack([numpy_joint_mask(separator.generator, np.stack([m, m])).mean(0) for m in magnitude])
        expected = istft(tf.constant(mask * spectrogram), 4000, n_fft, hop).numpy()
        got = separator.separate_waveform(tf.constant(waveform))["vocals"].numpy()
        assert got.shape == waveform.shape
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_export_of_a_stereo_model_equals_the_separator(stereo_run, tmp_path):
    separator = Separator.from_directory(stereo_run.model_dir)
    serve = tf.saved_model.load(export_model(stereo_run.model_dir, str(tmp_path / "export"))).signatures["serving_default"]
    track = make_track(6, duration=1.0, sample_rate=8000)
    for waveform in (track.mixture.T, track.mixture.T[:1]):                       # stereo and mono
        exported = serve(waveform=tf.constant(np.ascontiguousarray(waveform)))
        local = separator.separate_waveform(tf.constant(np.ascontiguousarray(waveform)))
        for name in ("vocals", "accompaniment"):
            np.testing.assert_allclose(exported[name].numpy(), local[name].numpy(), atol=1e-5)


def test_swap_average_is_the_mean_of_both_channel_orders_and_survives_export(stereo_run, tmp_path, rng):
    from svsgan_tf.models.model_io import load_generator

    config, generator = load_generator(stereo_run.model_dir)
    plain = Separator(config, generator)
    averaged = Separator(config.replace(**{"model.swap_average": True}), generator)
    magnitude = rng.uniform(0, 5, (2, 9, config.stft.nb_bins)).astype(np.float32)
    forward = numpy_joint_mask(generator, magnitude)
    backward = numpy_joint_mask(generator, magnitude[::-1].copy())[::-1]        # swapped back
    np.testing.assert_allclose(averaged.mask(tf.constant(magnitude)).numpy(), 0.5 * (forward + backward),
                               atol=1e-6)
    np.testing.assert_allclose(plain.mask(tf.constant(magnitude)).numpy(), forward, atol=1e-6)
    assert not np.allclose(forward, backward, atol=1e-4)     # the two orders do differ
    mono = magnitude[:1]                                     # mono: one channel as an equal pair, unchanged
    np.testing.assert_allclose(averaged.mask(tf.constant(mono)).numpy(), plain.mask(tf.constant(mono)).numpy(),
                               atol=1e-6)
    # the setting travels with the model folder into the SavedModel
    folder = str(tmp_path / "swap_model")
    from svsgan_tf.models.model_io import save_model
    save_model(folder, averaged.config, generator)
    serve = tf.saved_model.load(export_model(folder, str(tmp_path / "export"))).signatures["serving_default"]
    waveform = np.ascontiguousarray(make_track(6, duration=1.0, sample_rate=8000).mixture.T)
    np.testing.assert_allclose(serve(waveform=tf.constant(waveform))["vocals"].numpy(),
                               averaged.separate_waveform(tf.constant(waveform))["vocals"].numpy(), atol=1e-5)
    with pytest.raises(ConfigError, match="model.swap_average"):
        tiny_config(**{"model.swap_average": True})




@pytest.mark.parametrize("settings", [{}, {"model.swap_average": True}], ids=["joint", "swap_average"])
@pytest.mark.parametrize("post", [{}, {"wiener_iterations": 1}, {"griffin_lim_iterations": 2}],
                         ids=["mixture_phase", "wiener", "griffin_lim"])
def test_separate_batch_equals_each_song_separated_alone(stereo_run, tiny_model_dir, settings, post, rng):
    """separate_batch (one generator call for every song) against separate_waveform song by song, for a
    joint-stereo model (stereo, mono and 3-channel songs) and a channel-by-channel one."""
    from svsgan_tf.models.model_io import load_generator

    for model_dir in (stereo_run.model_dir, tiny_model_dir):
        config, generator = load_generator(model_dir)
        if config.model.nb_channels == 1 and settings:
            continue                                      # swap_average needs a joint-stereo model
        separator = Separator(config.replace(**settings), generator, **post)
        for nb_channels in (2, 1, 3):
            songs = rng.normal(scale=0.1, size=(3, nb_channels, 3000)).astype(np.float32)
            batch = separator.separate_batch(tf.constant(songs))
            for i, song in enumerate(songs):
                alone = separator.separate_waveform(tf.constant(song))
                for name in ("vocals", "accompaniment"):
                    assert batch[name].shape == songs.shape
                    np.testing.assert_allclose(batch[name][i].numpy(), alone[name].numpy(), atol=2e-5)
            assert not np.allclose(batch["vocals"][0].numpy(), batch["vocals"][1].numpy(), atol=1e-3)


@pytest.mark.parametrize("swap_average", [False, True])
def test_a_unets_folded_mask_power_equals_the_power_of_its_mask_for_any_channel_count(swap_average, rng):
    from svsgan_tf.audio.framing import power_mask

    config = tiny_config(**STEREO, **{"model.generator": "unet", "model.swap_average": swap_average,
                                      "separation.mask_power": 0.6})
    separator = Separator(config, build_generator(config))
    plain = Separator(config.replace(**{"separation.mask_power": 1.0}), separator.generator)
    for nb_channels in (2, 1, 3):                    # joint stereo, then the dual-mono path
        magnitude = tf.constant(rng.uniform(0, 5, (nb_channels, 9, config.stft.nb_bins)).astype(np.float32))
        mask = plain.mask(magnitude).numpy()
        assert not np.allclose(mask, power_mask(mask, 0.6), atol=1e-3)
        # near 1 the float32 mask has lost digits of 1 - m that the folded power keeps
        np.testing.assert_allclose(separator.mask(magnitude).numpy(), power_mask(mask, 0.6), atol=1e-4)
