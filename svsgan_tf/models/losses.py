"""Per-example losses: the generalized KL divergence of eq. (1), squared and absolute errors, the cGAN losses of eq. (3).

Every function returns one value per example, shape (batch,), so that callers reduce with
`tf.nn.compute_average_loss` and get the right gradient under a distribution strategy.
"""
from __future__ import annotations

import tensorflow as tf

from svsgan_tf.config import LOSSES


def _per_example(values):
    """(batch, nb_frames, nb_bins) -> (batch,): summed over bins, averaged over frames, so that songs
    and batches of different lengths compare."""
    per_frame = tf.reduce_sum(values, axis=-1)                 # (batch, nb_frames)
    return tf.reduce_mean(per_frame, axis=-1)                  # (batch,)


def generalized_kl(target, estimate, eps: float = 1e-8):
    """Generalized KL divergence D(target || estimate) of eq. (1), per example.

    D(X||Y) = sum_ij x_ij (log(x_ij + eps) - log(y_ij + eps)) - x_ij + y_ij, summed over bins and
    averaged over time steps (frames), so that songs and batches of different lengths compare.

    Args:
        target: (batch, nb_frames, nb_bins) true vocals magnitude x >= 0.
        estimate: (batch, nb_frames, nb_bins) estimated vocals magnitude y >= 0.
    Returns:
        (batch,) float32.
    """
    divergence = target * (tf.math.log(target + eps) - tf.math.log(estimate + eps)) - target + estimate
    return _per_example(divergence)


def magnitude_mse(target, estimate):
    """Squared error ||x - y||^2 per example, summed over bins and averaged over frames (Open-Unmix's
    loss, up to its mean over bins). It weighs each bin by its energy, as BSS Eval's SDR does; the
    KL divergence grows only linearly with magnitude, so it weighs quiet bins more.

    Args:
        target, estimate: (batch, nb_frames, nb_bins) magnitudes.
    Returns:
        (batch,) float32.
    """
    return _per_example(tf.square(target - estimate))


def magnitude_l1(target, estimate):
    """Absolute error ||x - y||_1 per example, summed over bins and averaged over frames (Spleeter's
    training loss, up to its mean over bins): between the KL and the squared error in how it weighs
    loud bins against quiet ones.

    Args:
        target, estimate: (batch, nb_frames, nb_bins) magnitudes.
    Returns:
        (batch,) float32.
    """
    return _per_example(tf.abs(target - estimate))


def supervised_loss(name: str, target, estimate, eps: float = 1e-8):
    """The supervised term G trains on (train.loss): "kl" (eq. 1, the paper's), "mse" or "l1", per
    example (batch,)."""
    if name == "kl":
        return generalized_kl(target, estimate, eps)
    if name == "mse":
        return magnitude_mse(target, estimate)
    if name == "l1":
        return magnitude_l1(target, estimate)
    raise ValueError(f"unknown supervised loss {name!r}, expected one of {LOSSES}")


def _bce_with_logits(labels_value: float, logits):
    labels = tf.fill(tf.shape(logits), labels_value)
    per_frame = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_mean(per_frame, axis=-1)                  # (batch,)


def discriminator_loss(real_logits, fake_logits):
    """-[log D(s, z) + log(1 - D(G(z), z))] per example, the negated inner maximisation of eq. (3).

    Args:
        real_logits, fake_logits: (batch, nb_frames) discriminator logits.
    Returns:
        (batch,) float32.
    """
    return _bce_with_logits(1.0, real_logits) + _bce_with_logits(0.0, fake_logits)


def generator_adversarial_loss(fake_logits):
    """Non-saturating generator loss -log D(G(z), z) per example (Goodfellow et al. 2014, sec. 3).

    Args:
        fake_logits: (batch, nb_frames).
    Returns:
        (batch,) float32.
    """
    return _bce_with_logits(1.0, fake_logits)
