"""The Separator: waveform -> STFT -> generator mask -> inverse STFT, the one path used everywhere.

The CLI, the evaluation, the SavedModel export and TF Serving all run `Separator.separate_waveform`,
a tf.function over (nb_channels, nb_samples) audio at the model's sample rate. `Separator.separate`
adds the NumPy conveniences: any channel layout, any sample rate (resampled), checks on the input.
"""
from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from svsgan_tf.audio import check_waveform, resample
from svsgan_tf.config import Config
from svsgan_tf.spectral import griffin_lim, istft, stft, unit_phase

logger = logging.getLogger(__name__)

TARGETS = ("vocals", "accompaniment")


class Separator(tf.Module):
    """Separate vocals and accompaniment with a mask generator.

    Args:
        config: the model's Config (STFT settings, sample rate).
        generator: a MaskGenerator: (batch, nb_frames, nb_bins) magnitude -> mask in [0, 1].
        griffin_lim_iterations: 0 keeps the mixture phase (the paper's default); > 0 refines each
            stem's phase with that many fast Griffin-Lim iterations, starting from the mixture phase.
    """

    def __init__(self, config: Config, generator, griffin_lim_iterations: int = 0, name: str = "separator"):
        super().__init__(name=name)
        if griffin_lim_iterations < 0:
            raise ValueError("griffin_lim_iterations must be >= 0")
        self.config = config
        self.generator = generator
        self.griffin_lim_iterations = int(griffin_lim_iterations)
        self.sample_rate = config.stft.sample_rate

    @classmethod
    def from_directory(cls, path: str, griffin_lim_iterations: int = 0) -> "Separator":
        """A Separator for the model directory at `path` (see model_io)."""
        from svsgan_tf.model_io import load_generator

        config, generator = load_generator(path)
        return cls(config, generator, griffin_lim_iterations)

    @property
    def min_samples(self) -> int:
        """Shortest input accepted at the model's rate: one STFT frame."""
        return self.config.stft.n_fft

    def mask(self, mixture_magnitude: tf.Tensor) -> tf.Tensor:
        """(batch, nb_frames, nb_bins) magnitude -> vocals mask in [0, 1], same shape."""
        return self.generator(mixture_magnitude, training=False)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform")])
    def separate_waveform(self, waveform: tf.Tensor) -> dict[str, tf.Tensor]:
        """Separate audio at the model's sample rate.

        Args:
            waveform: (nb_channels, nb_samples) float32; each channel is separated on its own.
        Returns:
            {"vocals": (nb_channels, nb_samples), "accompaniment": (nb_channels, nb_samples)} float32.
        """
        n_fft, hop = self.config.stft.n_fft, self.config.stft.hop_length
        nb_samples = tf.shape(waveform)[-1]
        spectrogram = stft(waveform, n_fft, hop)                  # (nb_channels, nb_frames, nb_bins)
        magnitude = tf.abs(spectrogram)
        mask = self.mask(magnitude)
        stems = {"vocals": mask, "accompaniment": 1.0 - mask}
        if self.griffin_lim_iterations == 0:
            # estimated magnitude with the mixture phase: mask * |X| * e^{i angle X} = mask * X
            return {name: istft(tf.cast(m, tf.complex64) * spectrogram, nb_samples, n_fft, hop)
                    for name, m in stems.items()}
        phase = unit_phase(spectrogram)
        return {name: griffin_lim(m * magnitude, phase, nb_samples, n_fft, hop, self.griffin_lim_iterations)
                for name, m in stems.items()}

    def separate(self, waveform: np.ndarray, sample_rate: int | None = None,
                 source: str = "<array>") -> dict[str, np.ndarray]:
        """Separate a NumPy waveform of any length, channel count and sample rate.

        Args:
            waveform: (nb_samples, nb_channels) or (nb_samples,) float audio.
            sample_rate: its rate; resampled to the model's and back when different.
            source: name used in error messages.
        Returns:
            {"vocals", "accompaniment"}: arrays shaped like `waveform`, at its sample rate.
        """
        mono = np.ndim(waveform) == 1
        rate = sample_rate or self.sample_rate
        min_samples = -(-self.min_samples * rate // self.sample_rate)   # one frame at the input rate
        audio = check_waveform(waveform, source, min_samples)           # (nb_samples, nb_channels)
        nb_samples = audio.shape[0]
        model_audio = resample(audio, rate, self.sample_rate)
        result = self.separate_waveform(tf.constant(model_audio.T))     # (nb_channels, nb_samples)
        stems = {}
        for name in TARGETS:
            stem = resample(result[name].numpy().T, self.sample_rate, rate)[:nb_samples]
            stem = np.pad(stem, [(0, nb_samples - stem.shape[0]), (0, 0)])
            stems[name] = stem[:, 0] if mono else stem
        return stems
