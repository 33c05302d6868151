"""Distillation: a teacher's targets in the training pipeline, and a narrower U-Net started from a wider one."""
import numpy as np
import pytest
import tensorflow as tf

from svsgan_tf.audio import spectral
from svsgan_tf.data import pipeline
from svsgan_tf.errors import ConfigError
from svsgan_tf.models.factory import build_generator
from svsgan_tf.models.model_io import save_model
from svsgan_tf.models.slim import check_slimmable, slim_unet, strongest
from svsgan_tf.separation.separator import Separator
from tests.conftest import tiny_config

STEREO = {"model.nb_channels": 2}


def saved_teacher(tmp_path, **overrides):
    """A tiny joint-stereo encoder saved as a model folder, (folder, its Separator): its mask is near 0.95
    in the lower half of each channel's bins and near 0.05 in the upper, far from an untrained 0.5."""
    config = tiny_config(**{**STEREO, "separation.mask_power": 0.5, **overrides})
    generator = build_generator(config)
    layer, nb_bins = generator.mask_layer, config.stft.nb_bins
    layer.kernel.assign(0.01 * layer.kernel.numpy())
    layer.bias.assign(np.tile(np.where(np.arange(nb_bins) < nb_bins // 2, 3.0, -3.0), 2).astype("float32"))
    folder = str(tmp_path / "teacher")
    save_model(folder, config, generator)
    pipeline.load_teacher.cache_clear()
    return folder, Separator.from_directory(folder)


def test_teacher_targets_are_its_mask_times_the_mixture_and_leave_the_mixtures_alone(tmp_path):
    folder, teacher = saved_teacher(tmp_path)
    student = tiny_config(**{**STEREO, "model.generator": "unet", "data.teacher": folder})
    tracks = pipeline.synthetic_tracks(student.data, student.stft, seed=0)
    taught = next(iter(pipeline.training_dataset(tracks, student)))
    plain = next(iter(pipeline.training_dataset(tracks, student.replace(**{"data.teacher": None}))))
    np.testing.assert_array_equal(taught[0].numpy(), plain[0].numpy())        # the same excerpts
    nb_bins = student.stft.nb_bins
    for mixture, target, vocals in zip(taught[0].numpy(), taught[1].numpy(), plain[1].numpy()):
        # the teacher's Separator.mask (its mask power 0.5 included) on this example's two channels
        mask = teacher.mask(spectral.split_channels(mixture, 2, nb_bins)).numpy()
        expected = spectral.join_channels(mask, 2, nb_bins).numpy() * mixture
        np.testing.assert_allclose(target, expected, rtol=1e-5, atol=1e-6)
        assert not np.allclose(target, vocals)                               # not the true vocals


def test_a_teacher_with_another_stft_or_a_bad_name_is_refused_in_one_line(tmp_path):
    folder, _ = saved_teacher(tmp_path)
    student = tiny_config(**{**STEREO, "stft.hop_length": 64, "data.teacher": folder})
    tracks = pipeline.synthetic_tracks(student.data, student.stft, seed=0)
    with pytest.raises(ConfigError, match=r"^data.teacher=.*teacher: its STFT .* differs from the model's"):
        pipeline.training_dataset(tracks, student)
    mono = tiny_config(**{"model.nb_channels": 1, "data.teacher": folder})
    with pytest.raises(ConfigError, match=r"sees 2 channel\(s\) at once, the model model.nb_channels=1"):
        pipeline.training_dataset(tracks, mono)
    with pytest.raises(ConfigError, match="data.teacher"):
        tiny_config(**{"data.teacher": " "})
    assert tiny_config(**{"data.teacher": folder}).data.teacher == folder   # round trip through validate


def test_training_with_a_teacher_learns_its_targets(tmp_path):
    """A student trained on a teacher's targets moves towards the teacher's masks (tiny-data overfit)."""
    from svsgan_tf.training.fit import train

    folder, teacher = saved_teacher(tmp_path, **{"separation.mask_power": 1.0})
    student = tiny_config(**{**STEREO, "data.teacher": folder, "train.pretrain_epochs": 6, "train.gan_epochs": 0,
                             "train.loss": "mse", "train.g_learning_rate": 3e-3, "data.validation_tracks": 1})
    tracks = pipeline.synthetic_tracks(student.data, student.stft, seed=0)
    magnitude = tf.abs(spectral.stft(tf.constant(tracks[0].mixture.T), 256, 128))

    def distance(separator):
        return float(tf.reduce_mean(tf.abs(separator.mask(magnitude) - teacher.mask(magnitude))))

    untrained = Separator(student, build_generator(student))
    result = train(student, str(tmp_path / "run"), verbose=0, tensorboard=False)
    trained = Separator.from_directory(result.model_dir)
    assert trained.config.data.teacher == folder                     # the student's config names its teacher
    assert distance(untrained) > 0.3
    assert distance(trained) < 0.5 * distance(untrained), (distance(trained), distance(untrained))


UNET = {**STEREO, "model.generator": "unet", "model.unet_filters": [4, 8, 16], "model.compress_input": False,
        "model.max_frequency": None}


def test_slimming_keeps_the_strongest_filters_and_is_exact_when_the_dropped_ones_are_silent(rng):
    """A teacher whose weakest filters are zero gives a slimmed student with the very same mask: the
    kept filters, their input channels (skips included), biases and normalisations all line up."""
    teacher_config = tiny_config(**UNET)
    student_config = tiny_config(**{**UNET, "model.unet_filters": [2, 5, 9]})
    teacher = build_generator(teacher_config)
    tower = teacher.towers[0]
    for layer, kept in zip(tower.down + tower.up[:-1], [2, 5, 9, 5, 2]):
        kernel = layer.kernel.numpy()
        axis = 3 if layer in tower.down else 2                     # Conv2D (.., in, out), transposed (.., out, in)
        drop = rng.permutation(kernel.shape[axis])[kept:]
        kernel = np.moveaxis(kernel, axis, 0)
        kernel[drop] = 0.0
        layer.kernel.assign(np.moveaxis(kernel, 0, axis))
        bias = rng.normal(size=layer.bias.shape).astype("float32")
        bias[drop] = 0.0
        layer.bias.assign(bias)
    for norm in tower.down_norm + tower.up_norm:                   # BN(0) = 0: a silent filter stays silent
        norm.beta.assign(np.zeros(norm.beta.shape, "float32"))
        norm.moving_mean.assign(np.zeros(norm.moving_mean.shape, "float32"))
        norm.gamma.assign(rng.uniform(0.5, 2.0, norm.gamma.shape).astype("float32"))
        norm.moving_variance.assign(rng.uniform(0.5, 2.0, norm.moving_variance.shape).astype("float32"))
    student = slim_unet(teacher, student_config, teacher_config)
    frames = tf.constant(rng.uniform(0, 2, (2, 24, teacher.nb_features)).astype("float32"))
    assert student.count_params() < teacher.count_params()
    np.testing.assert_allclose(student(frames).numpy(), teacher(frames).numpy(), atol=1e-5)


def test_strongest_and_what_may_not_be_slimmed():
    kernel = np.zeros((1, 1, 2, 4))
    kernel[..., 0], kernel[..., 2], kernel[..., 3] = 3.0, -5.0, 1.0
    assert strongest(kernel, -1, 2).tolist() == [0, 2]
    teacher = tiny_config(**UNET)
    with pytest.raises(ConfigError, match="at most its widths"):
        check_slimmable(teacher, tiny_config(**{**UNET, "model.unet_filters": [2, 16, 32]}))
    with pytest.raises(ConfigError, match="the teacher's depth"):
        check_slimmable(teacher, tiny_config(**{**UNET, "model.unet_filters": [2, 4]}))
    with pytest.raises(ConfigError, match="differ in more than"):
        check_slimmable(teacher, tiny_config(**{**UNET, "model.max_frequency": 2000.0}))
    with pytest.raises(ConfigError, match="STFTs differ"):
        check_slimmable(teacher, tiny_config(**{**UNET, "stft.hop_length": 64}))
    with pytest.raises(ConfigError, match="exceeds the teacher's 1"):
        check_slimmable(teacher, tiny_config(**{**UNET, "model.unet_stems": 2}))
    with pytest.raises(ConfigError, match="U-Nets"):
        check_slimmable(tiny_config(**STEREO), tiny_config(**STEREO))
