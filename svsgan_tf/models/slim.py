"""Start a U-Net from a trained one: one of its towers, at its widths or narrower (structured pruning).

`slim_unet` copies, layer by layer, the filters with the largest L1 norm (Li et al., 2017, "Pruning
filters for efficient ConvNets") of one of the teacher's towers into a U-Net of the student's widths,
with the matching input channels, biases and batch normalisations. At the teacher's own widths this is
the teacher's vocals tower alone, without the ratio of two towers. Measured on the 20 held-out songs
(docs/experiments.md, "The distilled fast model"): Spleeter's vocals tower alone scores 5.17 dB
against the two-stem model's 5.69 before any training, and halving every width drops it to -2.39 dB,
so a narrower student has to be trained back from far below.
"""
from __future__ import annotations

import logging

import numpy as np

from svsgan_tf.config import Config
from svsgan_tf.errors import ConfigError

logger = logging.getLogger(__name__)

# what a student may change against its teacher: the widths, the stem count and the segments
STUDENT_KEYS = ("unet_filters", "unet_stems", "unet_segment_frames", "dropout")


def check_slimmable(teacher: Config, student: Config) -> None:
    """ConfigError unless `student` is `teacher` with narrower U-Net filters (same depth), as many stems
    or fewer, any segments, and the same STFT, band, channels and input scaling."""
    import dataclasses

    fields = {key: None for key in STUDENT_KEYS}
    problems = []
    if teacher.model.generator != "unet" or student.model.generator != "unet":
        problems.append("both models must be U-Nets (model.generator=unet)")
    elif dataclasses.replace(teacher.model, **fields) != dataclasses.replace(student.model, **fields):
        problems.append("the models differ in more than unet_filters, unet_stems, unet_segment_frames and dropout")
    elif student.model.unet_stems > teacher.model.unet_stems:
        problems.append(f"model.unet_stems={student.model.unet_stems} exceeds the teacher's "
                        f"{teacher.model.unet_stems} (two copies of one tower make a constant ratio mask)")
    elif len(student.model.unet_filters) != len(teacher.model.unet_filters) or any(
            s > t for s, t in zip(student.model.unet_filters, teacher.model.unet_filters)):
        problems.append(f"model.unet_filters={list(student.model.unet_filters)} must have the teacher's depth "
                        f"and be at most its widths {list(teacher.model.unet_filters)}")
    if teacher.stft != student.stft:
        problems.append(f"the STFTs differ ({teacher.stft} against {student.stft})")
    if problems:
        raise ConfigError("slim: " + "; ".join(problems))


def strongest(kernel: np.ndarray, axis: int, count: int) -> np.ndarray:
    """Indices (sorted) of the `count` slices of `kernel` along `axis` with the largest L1 norm."""
    other = tuple(a for a in range(kernel.ndim) if a != axis % kernel.ndim)
    norms = np.abs(kernel).sum(axis=other)
    return np.sort(np.argsort(-norms, kind="stable")[:count])


def slim_tower(source, target) -> None:
    """Copy the strongest filters of UNetTower `source` into the narrower UNetTower `target` (same
    depth, filters <= source's). Conv2D kernels are (5, 5, in, out); the transposed convolutions' are
    (5, 5, out, in); a tower's up layer j >= 1 takes [skip of down layer depth-1-j, up layer j-1]."""
    depth = len(source.filters)
    kept_down = []                                   # per down layer: the source filters kept
    inputs = np.arange(source.down[0].kernel.shape[2])             # the channels of the image: all
    for i, (src, dst) in enumerate(zip(source.down, target.down)):
        kernel = src.kernel.numpy()[:, :, inputs]                  # (5, 5, kept in, out)
        keep = strongest(kernel, -1, target.filters[i])
        dst.kernel.assign(kernel[..., keep])
        dst.bias.assign(src.bias.numpy()[keep])
        if i < len(source.down_norm):
            copy_norm(source.down_norm[i], target.down_norm[i], keep)
        kept_down.append(keep)
        inputs = keep
    inputs = kept_down[-1]                           # the bottom of the U goes up unnormalised
    for j, (src, dst) in enumerate(zip(source.up, target.up)):
        kernel = src.kernel.numpy()[:, :, :, inputs]               # (5, 5, out, kept in)
        keep = strongest(kernel, 2, dst.filters)
        dst.kernel.assign(kernel[:, :, keep])
        dst.bias.assign(src.bias.numpy()[keep])
        copy_norm(source.up_norm[j], target.up_norm[j], keep)
        if j < depth - 1:
            skip = depth - 2 - j                                   # the skip joined after this layer
            # the next layer's input: [skip (source.filters[skip] channels), this layer's output]
            inputs = np.concatenate([kept_down[skip], source.filters[skip] + keep])
    target.mask_layer.kernel.assign(source.mask_layer.kernel.numpy())
    target.mask_layer.bias.assign(source.mask_layer.bias.numpy())


def copy_norm(source, target, keep: np.ndarray) -> None:
    """Copy a BatchNormalization's scale, offset and moving statistics at the channels `keep`."""
    for src, dst in zip(source.weights, target.weights):
        dst.assign(src.numpy()[keep])


def slim_unet(teacher_generator, student_config: Config, teacher_config: Config):
    """A U-Net of `student_config` (built by the factory) holding the strongest filters of the
    teacher's vocals tower (see slim_tower), with the teacher's input standardisation.

    Returns:
        the student generator.
    """
    from svsgan_tf.models.factory import build_generator

    check_slimmable(teacher_config, student_config)
    if not hasattr(teacher_generator, "towers"):
        raise ConfigError("slim: the teacher must be one U-Net, not an ensemble of models")
    student = build_generator(student_config)
    student.input_mean.assign(teacher_generator.input_mean.numpy())
    student.input_scale.assign(teacher_generator.input_scale.numpy())
    for source, tower in zip(teacher_generator.towers, student.towers):      # vocals (then accompaniment)
        slim_tower(source, tower)
    kept = student.count_params() / max(1, teacher_generator.count_params())
    logger.info("slimmed the teacher's U-Net to %d weights (%.0f%% of its %d)", student.count_params(),
                100 * kept, teacher_generator.count_params())
    return student
