"""Generators, discriminator and losses: shapes, ranges, numeric checks against NumPy."""
import numpy as np
import pytest
import tensorflow as tf

from svsgan_tf.errors import ConfigError
from svsgan_tf.models.losses import (discriminator_loss, generalized_kl, generator_adversarial_loss, magnitude_mse,
                              supervised_loss)
from svsgan_tf.audio.spectral import phase_sensitive_magnitude
from svsgan_tf.models import build_discriminator, build_generator
from tests.conftest import tiny_config


def numpy_generalized_kl(x, y, eps):
    """Eq. (1) summed over bins, averaged over frames, one value per example."""
    d = x * (np.log(x + eps) - np.log(y + eps)) - x + y
    return d.sum(axis=-1).mean(axis=-1)


def test_generalized_kl_matches_numpy(rng):
    x = rng.uniform(0, 3, (4, 7, 33)).astype(np.float32)
    y = rng.uniform(0, 3, (4, 7, 33)).astype(np.float32)
    x[0, 0, :5] = 0.0                                        # zeros are allowed in the target
    got = generalized_kl(tf.constant(x), tf.constant(y), 1e-8).numpy()
    np.testing.assert_allclose(got, numpy_generalized_kl(x.astype(np.float64), y, 1e-8), rtol=1e-5)
    assert got.shape == (4,)
    np.testing.assert_allclose(generalized_kl(tf.constant(x), tf.constant(x)).numpy(), 0.0, atol=1e-4)


def test_magnitude_mse_matches_numpy_and_weighs_loud_bins_more_than_kl(rng):
    x = rng.uniform(0, 3, (4, 7, 33)).astype(np.float32)
    y = rng.uniform(0, 3, (4, 7, 33)).astype(np.float32)
    got = magnitude_mse(tf.constant(x), tf.constant(y)).numpy()
    np.testing.assert_allclose(got, ((x.astype(np.float64) - y) ** 2).sum(-1).mean(-1), rtol=1e-5)
    np.testing.assert_array_equal(supervised_loss("mse", x, y).numpy(), got)
    np.testing.assert_array_equal(supervised_loss("kl", x, y).numpy(), generalized_kl(x, y).numpy())
    # scaling target and estimate by 10 scales the KL by 10 and the squared error by 100
    ratio = lambda f: float(tf.reduce_sum(f(10 * x, 10 * y)) / tf.reduce_sum(f(x, y)))
    assert ratio(generalized_kl) == pytest.approx(10, rel=1e-3)
    assert ratio(magnitude_mse) == pytest.approx(100, rel=1e-3)


def test_magnitude_l1_matches_numpy(rng):
    x = rng.uniform(0, 3, (4, 7, 33)).astype(np.float32)
    y = rng.uniform(0, 3, (4, 7, 33)).astype(np.float32)
    got = supervised_loss("l1", tf.constant(x), tf.constant(y)).numpy()
    np.testing.assert_allclose(got, np.abs(x.astype(np.float64) - y).sum(-1).mean(-1), rtol=1e-5)
    assert got.shape == (4,)


def test_phase_sensitive_magnitude_matches_numpy(rng):
    def spectrum(shape):
        return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    source, rest = spectrum((3, 5, 17)), spectrum((3, 5, 17))
    mixture = source + rest
    mixture[0, 0, 0] = 0.0                                   # an exactly silent mixture bin
    expected = np.abs(source) * np.cos(np.angle(source) - np.angle(mixture))
    expected = np.clip(expected, 0.0, np.abs(mixture))
    expected[0, 0, 0] = 0.0
    got = phase_sensitive_magnitude(tf.constant(source), tf.constant(mixture)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.all(got <= np.abs(mixture) + 1e-6) and np.all(got >= 0)
    # the source alone in the mixture: the target is its magnitude
    alone = phase_sensitive_magnitude(tf.constant(source), tf.constant(source)).numpy()
    np.testing.assert_allclose(alone, np.abs(source), rtol=1e-5)


def test_kl_average_is_batch_size_independent(rng):
    x = rng.uniform(0, 1, (8, 5, 9)).astype(np.float32)
    y = rng.uniform(0, 1, (8, 5, 9)).astype(np.float32)
    full = tf.nn.compute_average_loss(generalized_kl(x, y))
    halves = [tf.nn.compute_average_loss(generalized_kl(x[i:i + 4], y[i:i + 4])) for i in (0, 4)]
    np.testing.assert_allclose(float(full), np.mean([float(h) for h in halves]), rtol=1e-6)


def test_adversarial_losses_match_log_formulas(rng):
    real, fake = rng.normal(size=(3, 6)).astype(np.float32), rng.normal(size=(3, 6)).astype(np.float32)
    sig = lambda v: 1 / (1 + np.exp(-v.astype(np.float64)))
    expected_d = -(np.log(sig(real)) + np.log(1 - sig(fake))).mean(-1)
    np.testing.assert_allclose(discriminator_loss(real, fake).numpy(), expected_d, rtol=1e-5)
    np.testing.assert_allclose(generator_adversarial_loss(fake).numpy(), -np.log(sig(fake)).mean(-1), rtol=1e-5)


@pytest.mark.parametrize("generator", ["encoder", "rnn", "unet"])
def test_generator_mask_in_unit_interval_and_shapes(generator, rng):
    config = tiny_config(**{"model.generator": generator})
    model = build_generator(config)
    x = tf.constant(rng.uniform(0, 50, (3, 11, config.stft.nb_bins)).astype(np.float32))
    mask = model(x).numpy()
    assert mask.shape == (3, 11, config.stft.nb_bins)
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    assert np.all(np.isfinite(model(tf.zeros_like(x)).numpy()))


def test_encoder_is_frame_wise_and_rnn_has_temporal_context(rng):
    x = rng.uniform(0, 5, (1, 6, 129)).astype(np.float32)
    changed = x.copy()
    changed[0, 0] *= 3.0                                     # change the first frame only
    for generator, context in (("encoder", False), ("rnn", True), ("unet", True)):
        model = build_generator(tiny_config(**{"model.generator": generator}))
        later_differs = not np.allclose(model(x).numpy()[0, 1:], model(changed).numpy()[0, 1:])
        assert later_differs == context, generator


def test_rnn_state_carried_between_blocks_equals_one_pass(rng):
    model = build_generator(tiny_config(**{"model.generator": "rnn"}))
    x = tf.constant(rng.uniform(0, 5, (2, 12, 129)).astype(np.float32))
    whole = model(x).numpy()
    first, state = model(x[:, :5], return_state=True)
    second, _ = model(x[:, 5:], initial_state=state, return_state=True)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-5)


def test_discriminator_is_conditioned_on_the_mixture(rng):
    config = tiny_config()
    model = build_discriminator(config)
    vocals = tf.constant(rng.uniform(0, 5, (2, 4, 129)).astype(np.float32))
    mixture = tf.constant(rng.uniform(0, 5, (2, 4, 129)).astype(np.float32))
    logits = model((vocals, mixture)).numpy()
    assert logits.shape == (2, 4)
    assert not np.allclose(logits, model((vocals, mixture * 2)).numpy())
    assert [layer.units for layer in build_discriminator(tiny_config(**{
        "model.discriminator_units": [512, 512, 512]})).hidden] == [512, 512, 512]


def test_bins_below_matches_open_unmix_bandwidth_to_max_bin():
    config = tiny_config()
    for sample_rate, n_fft, bandwidth in ((44100, 2048, 16000.0), (8000, 256, 3000.0), (16000, 512, 1e9)):
        stft = type(config.stft)(sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft // 2)
        freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1, endpoint=True)
        assert stft.bins_below(bandwidth) == np.max(np.where(freqs <= bandwidth)[0]) + 1
        assert stft.bins_below(None) == stft.nb_bins


@pytest.mark.parametrize("generator", ["encoder", "rnn", "unet"])
def test_generator_ignores_bins_above_max_frequency_but_masks_all(generator, rng):
    config = tiny_config(**{"model.generator": generator, "model.max_frequency": 2000.0})
    nb_bins, nb_input_bins = config.stft.nb_bins, config.stft.bins_below(2000.0)
    assert nb_input_bins == 65 < nb_bins                      # 8 kHz, 256-point FFT: bins of 31.25 Hz
    if generator == "unet":                                   # the band rounded up to a multiple of 2^3
        nb_input_bins = 72
    model = build_generator(config)
    assert tuple(model.input_mean.shape) == (nb_input_bins,)
    x = rng.uniform(0, 5, (2, 7, nb_bins)).astype(np.float32)
    louder_top = x.copy()
    louder_top[..., nb_input_bins:] *= 100.0                  # change only what lies above the band
    mask = model(x).numpy()
    assert mask.shape == (2, 7, nb_bins)
    np.testing.assert_allclose(model(louder_top).numpy(), mask, rtol=1e-6)


def test_input_standardisation_floors_the_deviation_of_near_constant_bins(rng):
    from svsgan_tf.models.generator import MIN_INPUT_STD

    config = tiny_config()
    model = build_generator(config)
    mean = rng.uniform(0, 1, config.stft.nb_bins).astype(np.float32)
    std = rng.uniform(0.2, 1, config.stft.nb_bins).astype(np.float32)
    std[-10:] = 1e-6                                          # empty above a codec's cut-off
    model.set_input_statistics(mean, std)
    scale = model.input_scale.numpy()
    np.testing.assert_allclose(scale[:-10], 1.0 / std[:-10], rtol=1e-6)
    np.testing.assert_allclose(scale[-10:], 1.0 / MIN_INPUT_STD, rtol=1e-6)


@pytest.mark.parametrize("generator", ["encoder", "rnn"])
def test_dropout_acts_in_training_only(generator, rng):
    config = tiny_config(**{"model.generator": generator, "model.dropout": 0.5})
    model = build_generator(config)
    x = tf.constant(rng.uniform(0, 5, (2, 6, config.stft.nb_bins)).astype(np.float32))
    plain = build_generator(config.replace(**{"model.dropout": 0.0}))
    plain.set_weights(model.get_weights())                  # dropout adds no weights
    np.testing.assert_allclose(model(x, training=False).numpy(), plain(x, training=True).numpy(), atol=1e-6)
    assert not np.allclose(model(x, training=True).numpy(), model(x, training=True).numpy())
    with pytest.raises(ConfigError, match="model.dropout"):
        tiny_config(**{"model.dropout": 1.0})


def test_unet_pads_to_its_strides_crops_back_and_extends_the_top_band_bin(rng):
    config = tiny_config(**{"model.generator": "unet", "model.max_frequency": 2000.0,
                            "model.nb_channels": 2})
    model = build_generator(config)
    nb_bins, nb_input_bins = config.stft.nb_bins, model.nb_input_bins
    assert (model.multiple, nb_input_bins) == (8, 72)        # 3 levels of stride 2; 65 bins -> 72
    for nb_frames in (1, 8, 13):                             # shorter than, equal to, not a multiple of 8
        x = tf.constant(rng.uniform(0, 5, (2, nb_frames, 2 * nb_bins)).astype(np.float32))
        mask = model(x).numpy()
        assert mask.shape == (2, nb_frames, 2 * nb_bins) and 0.0 <= mask.min() and mask.max() <= 1.0
        # (batch, nb_frames, 2 * nb_bins) -> (batch, nb_frames, 2, nb_bins): each channel's bins above
        # the band repeat the band's top bin
        channels = mask.reshape(2, nb_frames, 2, nb_bins)
        np.testing.assert_array_equal(channels[..., nb_input_bins:],
                                      np.repeat(channels[..., nb_input_bins - 1:nb_input_bins],
                                                nb_bins - nb_input_bins, axis=-1))
    # a frame's mask does not depend on frames more than a receptive field away
    x = rng.uniform(0, 5, (1, 64, 2 * nb_bins)).astype(np.float32)
    changed = x.copy()
    changed[0, -1] *= 3.0
    assert np.allclose(model(x).numpy()[0, :8], model(changed).numpy()[0, :8])
    assert not np.allclose(model(x).numpy()[0, -8:], model(changed).numpy()[0, -8:])


def test_unet_batch_norm_and_dropout_act_in_training_only_and_survive_a_save_load(tmp_path, rng):
    from svsgan_tf.models.model_io import load_generator, save_model

    config = tiny_config(**{"model.generator": "unet", "model.dropout": 0.5})
    assert not config.shuffles_frames                        # it sees neighbouring frames
    model = build_generator(config)
    x = tf.constant(rng.uniform(0, 5, (2, 16, config.stft.nb_bins)).astype(np.float32))
    np.testing.assert_array_equal(model(x, training=False).numpy(), model(x, training=False).numpy())
    assert not np.allclose(model(x, training=True).numpy(), model(x, training=True).numpy())
    moving_means = [v for v in model.non_trainable_variables if "moving_mean" in v.path]
    assert len(moving_means) == 2 * len(config.model.unet_filters) - 1   # none for the bottom of the U
    assert any(np.any(v.numpy() != 0) for v in moving_means)  # training calls updated the statistics
    save_model(str(tmp_path / "m"), config, model)
    _, loaded = load_generator(str(tmp_path / "m"))
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
    with pytest.raises(ConfigError, match="model.unet_filters"):
        tiny_config(**{"model.generator": "unet", "model.unet_filters": []})


def test_unet_upsampling_equals_keras_transposed_convolution_and_relu_and_runs_with_unknown_frames(rng):
    import keras

    from svsgan_tf.models.generator import _Upsample

    x = tf.constant(rng.normal(size=(3, 5, 6, 4)).astype(np.float32))
    ours, reference = _Upsample(2, 5), keras.layers.Conv2DTranspose(2, 5, strides=2, padding="same")
    reference(x)
    ours(x)
    ours.set_weights([reference.get_weights()[0], rng.normal(size=2).astype(np.float32)])
    reference.set_weights(ours.get_weights())
    expected = tf.nn.relu(reference(x)).numpy()
    assert 0 < np.mean(expected == 0) < 1                       # the ReLU cuts some values, not all
    for training in (True, False):
        np.testing.assert_allclose(ours(x, training=training).numpy(), expected, atol=1e-5)
    ours.dtype_policy = "mixed_bfloat16"                       # inference: bias and ReLU in one fused op
    for training in (True, False):
        np.testing.assert_allclose(tf.cast(ours(x, training=training), tf.float32).numpy(), expected,
                                   atol=0.05, rtol=0.02)
    # a training batch: batch size known, frame count not
    upsample = tf.function(lambda x: ours(x, training=True), input_signature=[tf.TensorSpec((3, None, 6, 4))])
    assert upsample(x).shape == (3, 10, 12, 2)


def test_unet_inference_normalisation_and_dilated_convolution_equal_the_keras_layers(rng):
    import keras

    from svsgan_tf.models.generator import _DilatedConv, normalise

    # wide; three channels and one (in bfloat16 viewed 12 and 4 wide); one with an odd width
    for channels, width in ((16, 4), (3, 8), (1, 12), (1, 7)):
        x = tf.constant(rng.normal(size=(2, 6, width, channels)).astype(np.float32))
        norm = keras.layers.BatchNormalization()
        norm.build(x.shape)
        norm.set_weights([rng.uniform(0.5, 2, channels), rng.normal(size=channels), rng.normal(size=channels),
                          rng.uniform(0.5, 2, channels)])
        expected = norm(x, training=False).numpy()
        np.testing.assert_allclose(normalise(norm, x, False).numpy(), expected, atol=1e-5)
        for dtype in (tf.float32, tf.bfloat16):
            for spec in ((None, None, width, channels), (None, None, None, channels)):   # known width or not
                traced = tf.function(lambda x: normalise(norm, x, False), input_signature=[tf.TensorSpec(spec, dtype)])
                rounded = traced(tf.cast(x, dtype))
                assert rounded.dtype == dtype
                tolerance = {"atol": 1e-5} if dtype == tf.float32 else {"atol": 0.05, "rtol": 0.02}
                np.testing.assert_allclose(tf.cast(rounded, tf.float32).numpy(), expected, **tolerance)
        assert not np.allclose(normalise(norm, x, True).numpy(), expected, atol=0.1)   # batch statistics
    ours, reference = _DilatedConv(2, 4, dilation_rate=2, padding="same"), keras.layers.Conv2D(
        2, 4, dilation_rate=2, padding="same")
    reference(x)
    ours(x)
    ours.set_weights(reference.get_weights())
    for training in (False, True):                             # training keeps Keras' form
        np.testing.assert_allclose(ours(x, training=training).numpy(), reference(x).numpy(), atol=1e-5)


def test_unet_frozen_bfloat16_weights_equal_the_cast_variables_and_thaw_in_float32(rng):
    config = tiny_config(**{"model.generator": "unet", "model.nb_channels": 2})
    model = build_generator(config)
    x = tf.constant(rng.uniform(0, 5, (1, 16, 2 * config.stft.nb_bins)).astype(np.float32))
    exact = model(x, training=False).numpy()
    model.compute_in("bfloat16")
    tower = model.towers[0]
    assert all(layer.frozen[0].dtype == tf.bfloat16 for layer in [*tower.down, *tower.up])
    frozen = model(x, training=False).numpy()
    for layer in [*tower.down, *tower.up]:                       # the variables, cast by Keras per call
        layer.frozen = None
    np.testing.assert_array_equal(frozen, model(x, training=False).numpy())
    assert 0 < np.abs(frozen - exact).max() < 0.05
    model.compute_in("float32")
    assert tower.down[0].frozen is None
    np.testing.assert_allclose(model(x, training=False).numpy(), exact, atol=1e-6)


@pytest.mark.parametrize("stems", [1, 2])
def test_unet_powered_mask_equals_the_power_of_its_mask(stems, rng):
    from svsgan_tf.audio.framing import power_mask

    config = tiny_config(**{"model.generator": "unet", "model.unet_stems": stems, "model.nb_channels": 2})
    model = build_generator(config)
    x = tf.constant(rng.uniform(0, 5, (2, 11, 2 * config.stft.nb_bins)).astype(np.float32))
    mask = model(x, training=False).numpy()
    powered = model.powered_mask(x, 0.6).numpy()
    # near 1 the float32 mask has lost digits of 1 - m that the folded power keeps
    np.testing.assert_allclose(powered, power_mask(mask, 0.6), atol=1e-4)
    assert np.abs(powered - mask).max() > 1e-3
