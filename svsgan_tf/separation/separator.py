"""The Separator: waveform -> STFT -> generator mask -> inverse STFT, the one path used everywhere.

The CLI, the evaluation, the SavedModel export and TF Serving all run `Separator.separate_waveform`,
a tf.function over (nb_channels, nb_samples) audio at the model's sample rate, or its batched twin
`Separator.separate_batch` (songs of equal length; the export's separate_batch signature and the
server's batching). `Separator.separate` adds the NumPy conveniences: any channel layout, any sample
rate (resampled), checks on the input.
"""
from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from svsgan_tf.audio.framing import power_mask
from svsgan_tf.config import PRECISIONS, TARGETS, Config
from svsgan_tf.errors import ConfigError
from svsgan_tf.separation.chunking import DEFAULT_CHUNK_SECONDS, ChunkLayout, chunk_context, separation_layout
from svsgan_tf.separation.stream import WholeSeparation
from svsgan_tf.audio.spectral import (griffin_lim, istft, join_channels, split_channels, stft, unit_phase,
                                      wiener)
from svsgan_tf.audio.spectral import magnitude as spectral_magnitude

logger = logging.getLogger(__name__)



class Separator(WholeSeparation, tf.Module):
    """Separate vocals and accompaniment with a mask generator.

    Args:
        config: the model's Config (STFT settings, sample rate).
        generator: a MaskGenerator: (batch, nb_frames, nb_features) magnitude -> mask in [0, 1].
        griffin_lim_iterations: 0 keeps the mixture phase (the paper's default); > 0 refines each
            stem's phase with that many fast Griffin-Lim iterations, starting from the mixture phase.
        wiener_iterations: > 0 applies the multichannel Wiener post-filter with that many EM
            iterations to the masked estimates (channels are filtered jointly).
        chunk_seconds: `separate` and `separate_stream` cut longer audio into chunks of about this
            length (see svsgan_tf/separation/chunking.py), so memory stays bounded; None: never cut. The result
            equals one-shot separation to float rounding for models with a bounded context (encoder,
            U-Net, mask smoothing, Griffin-Lim). An LSTM restarts each chunk
            RECURRENT_WARMUP_FRAMES frames before the join, and the Wiener filter estimates its
            spatial covariances per chunk, as Open-Unmix's `wiener_win_len` does.
    """

    def __init__(self, config: Config, generator, griffin_lim_iterations: int = 0, wiener_iterations: int = 0,
                 name: str = "separator", chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS):
        super().__init__(name=name)
        if griffin_lim_iterations < 0 or wiener_iterations < 0:
            raise ValueError("griffin_lim_iterations and wiener_iterations must be >= 0")
        if griffin_lim_iterations and wiener_iterations:
            raise ValueError("choose either Griffin-Lim or the Wiener filter, not both")
        self.config = config
        self.generator = generator
        self.griffin_lim_iterations = int(griffin_lim_iterations)
        self.wiener_iterations = int(wiener_iterations)
        self.sample_rate = config.stft.sample_rate
        if chunk_seconds is not None and chunk_seconds <= 0:
            raise ValueError("chunk_seconds must be > 0 (None: never cut)")
        self.chunk_seconds = chunk_seconds

    @property
    def precision(self) -> str:
        """The generator's arithmetic: "bfloat16" once `compute_in("bfloat16")` was applied to it (as
        `from_directory` does for separation.precision), else "float32"."""
        return getattr(self.generator, "precision", "float32")

    @classmethod
    def from_directory(cls, path: str, griffin_lim_iterations: int = 0, wiener_iterations: int = 0,
                       chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS, precision: str | None = None) -> "Separator":
        """A Separator for the model directory (or shipped model name) at `path` (see model_io), its
        generator computing at `precision` (one of config.PRECISIONS; None: the model's
        separation.precision; see `resolve_precision`)."""
        from svsgan_tf.models.model_io import load_generator

        config, generator = load_generator(path)
        precision = resolve_precision(precision or config.separation.precision, generator, path)
        if precision != "float32":
            generator.compute_in(precision)
        return cls(config, generator, griffin_lim_iterations, wiener_iterations, chunk_seconds=chunk_seconds)

    @property
    def min_samples(self) -> int:
        """Shortest input accepted at the model's rate: one STFT frame."""
        return self.config.stft.n_fft

    @property
    def chunk_context(self) -> tuple[int, int]:
        """(margin, align) in samples at the model's rate: how far the stems at a sample reach into the
        audio around it, and the multiple that chunk starts keep so that a chunk's frames (and U-Net
        blocks) are those of the whole input (chunking.chunk_context)."""
        return chunk_context(self.config.stft.n_fft, self.config.separation_stft.hop_length,
                             self.generator.receptive_frames, self.generator.frame_multiple,
                             self.config.separation.mask_smoothing, self.griffin_lim_iterations)

    def chunk_layout(self, nb_channels: int = 2) -> ChunkLayout:
        """How `separate_stream` cuts audio at the model's rate (chunking.separation_layout: chunks of
        `chunk_seconds` on the `chunk_context` grid), whatever the channel count."""
        margin, align = self.chunk_context
        return separation_layout(margin, align, self.sample_rate, self.chunk_seconds)

    def separate_chunk(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        """One call of `separate_waveform`: (nb_channels, nb_samples) float32 at the model's rate ->
        {"vocals", "accompaniment"} NumPy arrays of the same shape."""
        result = self.separate_waveform(tf.constant(waveform))
        return {name: result[name].numpy() for name in TARGETS}

    def mask(self, mixture_magnitude: tf.Tensor, nb_channels=None) -> tf.Tensor:
        """(nb_rows, nb_frames, nb_bins) magnitude -> vocals mask in [0, 1], same shape: G's mask
        (`generator_mask`), then the config's separation.mask_smoothing and separation.mask_power.

        The rows are one song's channels (`nb_channels` None), or the channels of songs after one
        another, `nb_channels` (int or scalar tensor) rows each. Without smoothing the power is
        `generator_mask`'s, which a U-Net folds into its logits."""
        settings = self.config.separation
        if settings.mask_smoothing == 1:
            return self.generator_mask(mixture_magnitude, nb_channels, settings.mask_power)
        return power_mask(smooth_mask(self.generator_mask(mixture_magnitude, nb_channels), settings.mask_smoothing),
                          settings.mask_power)

    def generator_mask(self, mixture_magnitude: tf.Tensor, nb_channels=None, power: float = 1.0) -> tf.Tensor:
        """(nb_rows, nb_frames, nb_bins) magnitude -> G's vocals mask raised to `power` (framing.power_mask;
        1: G's own), same shape, before smoothing; the rows are one song's channels, or the songs'
        channels `nb_channels` by `nb_channels` (see `mask`).

        A channel-by-channel generator (model.nb_channels 1) takes the rows as its batch. A joint-stereo
        one (2) separates each song's two channels jointly and, for any other channel count (mono
        included), channel by channel, each channel fed as both of its channels.
        """
        if self.generator.nb_channels == 1:
            return self._powered_mask(mixture_magnitude, power)
        if nb_channels is None:
            nb_channels = tf.shape(mixture_magnitude)[0]
        return tf.cond(tf.equal(nb_channels, 2),
                       lambda: self.joint_stereo_mask(mixture_magnitude, self._powered_mask, power),
                       lambda: self._dual_mono_mask(mixture_magnitude, self._powered_mask, power))

    def _powered_mask(self, frames: tf.Tensor, power: float) -> tf.Tensor:
        """G's mask of (batch, nb_frames, nb_features) frames raised to `power`, same shape: by the
        generator's `powered_mask` where it has one (a U-Net's folds the power into its logits)."""
        if power != 1.0 and hasattr(self.generator, "powered_mask"):
            return self.generator.powered_mask(frames, power)
        return power_mask(self.generator(frames, training=False), power)

    def joint_stereo_mask(self, magnitude: tf.Tensor, call, power: float = 1.0) -> tf.Tensor:
        """(nb_songs * 2, nb_frames, nb_bins), each song's left then right channel -> mask of that shape
        raised to `power`, with a joint-stereo generator `call` ((batch, nb_frames, 2 * nb_bins), power
        -> its mask raised to that power, of that shape); with model.swap_average, the mean of the masks
        of both channel orders, raised to `power` after averaging."""
        nb_bins = self.generator.nb_bins
        shape = tf.shape(magnitude)
        pairs = tf.reshape(magnitude, [-1, 2, shape[1], nb_bins])          # (nb_songs, 2, nb_frames, nb_bins)
        if not self.config.model.swap_average:
            mask = call(join_channels(pairs, 2, nb_bins), power)           # (nb_songs, nb_frames, 2 * nb_bins)
            return tf.reshape(split_channels(mask, 2, nb_bins), shape)
        # (2 orders * nb_songs, nb_frames, 2 * nb_bins): (left, right) of every song, then (right, left)
        mask = call(tf.concat([join_channels(pairs, 2, nb_bins), join_channels(pairs[:, ::-1], 2, nb_bins)], 0),
                    1.0)
        forward, swapped = tf.split(split_channels(mask, 2, nb_bins), 2)  # each (nb_songs, 2, nb_frames, nb_bins)
        return power_mask(tf.reshape(0.5 * (forward + swapped[:, ::-1]), shape), power)

    def _dual_mono_mask(self, magnitude: tf.Tensor, call, power: float) -> tf.Tensor:
        """(nb_rows, nb_frames, nb_bins) -> same shape, each row separated as a stereo pair of two equal
        channels, the pair's two masks averaged, then raised to `power` (`call` as joint_stereo_mask's)."""
        nb_bins = self.generator.nb_bins
        pairs = tf.tile(magnitude, [1, 1, 2])                            # (nb_rows, nb_frames, 2 * nb_bins)
        mask = call(pairs, 1.0)                                          # (nb_rows, nb_frames, 2 * nb_bins)
        shape = tf.shape(magnitude)
        mask = tf.reshape(mask, [shape[0], shape[1], 2, nb_bins])        # (nb_rows, nb_frames, 2, nb_bins)
        return power_mask(tf.reduce_mean(mask, axis=2), power)

    def separate_magnitude(self, mixture_magnitude: tf.Tensor) -> dict[str, tf.Tensor]:
        """Separate magnitude frames, as `separate_waveform` does between its STFT and inverse STFT.

        Args:
            mixture_magnitude: (nb_channels, nb_frames, nb_bins) float32 mixture magnitude.
        Returns:
            {"mask": vocals mask in [0, 1], "vocals": mask * magnitude,
             "accompaniment": (1 - mask) * magnitude}, each (nb_channels, nb_frames, nb_bins) float32.
        """
        mask = self.mask(mixture_magnitude)
        return {"mask": mask, "vocals": mask * mixture_magnitude,
                "accompaniment": (1.0 - mask) * mixture_magnitude}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform")])
    def separate_waveform(self, waveform: tf.Tensor) -> dict[str, tf.Tensor]:
        """Separate audio at the model's sample rate.

        Args:
            waveform: (nb_channels, nb_samples) float32 (see `generator_mask` for how channels are treated).
        Returns:
            {"vocals": (nb_channels, nb_samples), "accompaniment": (nb_channels, nb_samples)} float32.
        """
        stems = self._separate(waveform[None])                   # each (1, nb_channels, nb_samples)
        return {name: stem[0] for name, stem in stems.items()}

    @tf.function(input_signature=[tf.TensorSpec([None, None, None], tf.float32, name="waveforms")])
    def separate_batch(self, waveforms: tf.Tensor) -> dict[str, tf.Tensor]:
        """Separate songs of equal length and channel count at once, each as `separate_waveform`
        separates it, with one generator call for all of them (server-side batching of requests).

        Args:
            waveforms: (nb_songs, nb_channels, nb_samples) float32 at the model's sample rate.
        Returns:
            {"vocals", "accompaniment"}: (nb_songs, nb_channels, nb_samples) float32.
        """
        return self._separate(waveforms)

    def _separate(self, waveforms: tf.Tensor) -> dict[str, tf.Tensor]:
        """The body of `separate_waveform` and `separate_batch`: (nb_songs, nb_channels, nb_samples) ->
        {"vocals", "accompaniment"} of that shape."""
        n_fft, hop = self.config.stft.n_fft, self.config.separation_stft.hop_length
        shape = tf.shape(waveforms)
        nb_channels, nb_samples = shape[1], shape[2]
        # (nb_songs, nb_channels, nb_samples) -> (nb_songs * nb_channels, nb_samples)
        rows = tf.reshape(waveforms, [-1, nb_samples])
        spectrogram = stft(rows, n_fft, hop)                     # (nb_songs * nb_channels, nb_frames, nb_bins)
        magnitude = spectral_magnitude(spectrogram)
        mask = self.mask(magnitude, nb_channels)
        if self.wiener_iterations:
            stems = self._wiener(mask, magnitude, spectrogram, nb_channels, nb_samples)
        elif self.griffin_lim_iterations == 0:
            # estimated magnitude with the mixture phase: mask * |X| * e^{i angle X} = mask * X; the
            # inverse STFT is linear and inverts `stft` exactly, so the accompaniment, (1 - mask) * X, is
            # the waveform less the vocals: one inverse STFT, not two
            vocals = istft(tf.cast(mask, tf.complex64) * spectrogram, nb_samples, n_fft, hop)
            stems = {"vocals": vocals, "accompaniment": rows - vocals}
        else:
            phase = unit_phase(spectrogram)
            stems = {name: griffin_lim(m * magnitude, phase, nb_samples, n_fft, hop, self.griffin_lim_iterations)
                     for name, m in (("vocals", mask), ("accompaniment", 1.0 - mask))}
        # (nb_songs * nb_channels, nb_samples) -> (nb_songs, nb_channels, nb_samples)
        return {name: tf.reshape(stem, shape) for name, stem in stems.items()}

    def _wiener(self, mask, magnitude, spectrogram, nb_channels, nb_samples) -> dict[str, tf.Tensor]:
        """The Wiener-filtered stems, song by song (it filters a song's channels jointly): mask,
        magnitude and spectrogram (nb_songs * nb_channels, nb_frames, nb_bins) ->
        {name: (nb_songs * nb_channels, nb_samples)}."""
        n_fft, hop = self.config.stft.n_fft, self.config.separation_stft.hop_length
        frames = tf.shape(spectrogram)[1:]
        # (nb_songs * nb_channels, nb_frames, nb_bins) -> (nb_songs, nb_channels, nb_frames, nb_bins)
        by_song = tuple(tf.reshape(x, tf.concat([[-1, nb_channels], frames], 0))
                        for x in (mask, magnitude, spectrogram))

        def song(inputs):
            m, mixture_magnitude, x = inputs
            estimates = [m * mixture_magnitude, (1.0 - m) * mixture_magnitude]
            return tf.stack(wiener(estimates, x, self.wiener_iterations))

        # (nb_songs, 2 stems, nb_channels, nb_frames, nb_bins)
        filtered = tf.map_fn(song, by_song, fn_output_signature=tf.complex64)
        filtered = tf.reshape(tf.transpose(filtered, [1, 0, 2, 3, 4]), tf.concat([[2, -1], frames], 0))
        return {name: istft(filtered[i], nb_samples, n_fft, hop) for i, name in enumerate(TARGETS)}


def resolve_precision(precision: str, generator, source: str) -> str:
    """The arithmetic a generator separates in: "float32" or "bfloat16".

    "auto" is bfloat16 for a U-Net generator on a CPU with native bfloat16 instructions
    (runtime.native_bfloat16) when no GPU is visible, else float32. "bfloat16" needs a U-Net generator
    (ConfigError naming `source` otherwise); without native instructions it is slower, and said so.
    """
    from svsgan_tf.runtime import native_bfloat16

    if precision not in PRECISIONS:
        raise ConfigError(f"{source}: precision {precision!r} must be one of {PRECISIONS}")
    convertible = hasattr(generator, "compute_in")
    if precision == "auto":
        native = native_bfloat16() and not tf.config.list_physical_devices("GPU")
        return "bfloat16" if convertible and native else "float32"
    if precision == "bfloat16":
        if not convertible:
            raise ConfigError(f"{source}: precision bfloat16 is for U-Net generators, not "
                              f"{type(generator).__name__}")
        if not native_bfloat16():
            logger.warning("%s: this CPU has no native bfloat16 instructions; bfloat16 separation will be "
                           "slower than float32", source)
    return precision


def smooth_mask(mask: tf.Tensor, nb_frames: int) -> tf.Tensor:
    """Mean of `mask` over `nb_frames` (odd) consecutive frames, centred, its first and last frame
    repeated at the edges; 1 returns it unchanged.

    Args:
        mask: (nb_channels, nb_frames, nb_bins).
    Returns:
        the same shape.
    """
    if nb_frames == 1:
        return mask
    half = nb_frames // 2
    # (nb_channels, half + nb_frames + half, nb_bins)
    padded = tf.concat([tf.repeat(mask[:, :1], half, axis=1), mask, tf.repeat(mask[:, -1:], half, axis=1)], 1)
    length = tf.shape(mask)[1]
    return tf.add_n([padded[:, i:i + length] for i in range(nb_frames)]) / float(nb_frames)
