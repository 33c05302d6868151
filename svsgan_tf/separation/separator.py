"""The Separator: waveform -> STFT -> generator mask -> inverse STFT, the one path used everywhere.

The CLI, the evaluation, the SavedModel export and TF Serving all run `Separator.separate_waveform`,
a tf.function over (nb_channels, nb_samples) audio at the model's sample rate. `Separator.separate`
adds the NumPy conveniences: any channel layout, any sample rate (resampled), checks on the input.
"""
from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from svsgan_tf.audio.io import check_waveform, resample
from svsgan_tf.errors import AudioError
from svsgan_tf.separation.chunking import (DEFAULT_CHUNK_SECONDS, RECURRENT_WARMUP_FRAMES, ChunkLayout, resample_margin,
                                scaled_layout, separate_in_chunks, separation_layout)
from svsgan_tf.config import TARGETS, Config
from svsgan_tf.audio.spectral import griffin_lim, istft, join_channels, split_channels, stft, unit_phase, wiener

logger = logging.getLogger(__name__)



class Separator(tf.Module):
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

    @classmethod
    def from_directory(cls, path: str, griffin_lim_iterations: int = 0, wiener_iterations: int = 0,
                       chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS) -> "Separator":
        """A Separator for the model directory at `path` (see model_io)."""
        from svsgan_tf.models.model_io import load_generator

        config, generator = load_generator(path)
        return cls(config, generator, griffin_lim_iterations, wiener_iterations, chunk_seconds=chunk_seconds)

    @property
    def min_samples(self) -> int:
        """Shortest input accepted at the model's rate: one STFT frame."""
        return self.config.stft.n_fft

    @property
    def chunk_context(self) -> tuple[int, int]:
        """(margin, align) in samples at the model's rate: how far the stems at a sample reach into the
        audio around it, and the multiple that chunk starts keep so that a chunk's frames (and U-Net
        blocks) are those of the whole input.

        margin = n_fft (the frames over a sample) + the mask's reach in frames (the generator's
        receptive field, RECURRENT_WARMUP_FRAMES for an LSTM, half the mask smoothing) x hop +
        2 n_fft per Griffin-Lim iteration (each inverse STFT and STFT pair spreads it by that much).
        """
        n_fft, hop = self.config.stft.n_fft, self.config.separation_stft.hop_length
        reach = self.generator.receptive_frames
        reach = RECURRENT_WARMUP_FRAMES if reach is None else reach
        reach += self.config.separation.mask_smoothing // 2
        margin = n_fft + reach * hop + 2 * n_fft * self.griffin_lim_iterations
        return margin, hop * self.generator.frame_multiple

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

    def mask(self, mixture_magnitude: tf.Tensor) -> tf.Tensor:
        """(nb_channels, nb_frames, nb_bins) magnitude of one song -> vocals mask in [0, 1], same shape:
        G's mask, then the config's separation.mask_smoothing and separation.mask_power.

        A channel-by-channel generator (model.nb_channels 1) takes the channels as its batch. A
        joint-stereo one (2) separates two channels jointly and any other channel count (mono
        included) channel by channel, each channel fed as both of its channels.
        """
        if self.generator.nb_channels == 1:
            mask = self.generator(mixture_magnitude, training=False)
        else:
            mask = tf.cond(tf.equal(tf.shape(mixture_magnitude)[0], 2),
                           lambda: self._joint_stereo_mask(mixture_magnitude),
                           lambda: self._dual_mono_mask(mixture_magnitude))
        settings = self.config.separation
        return power_mask(smooth_mask(mask, settings.mask_smoothing), settings.mask_power)

    def _joint_stereo_mask(self, magnitude: tf.Tensor) -> tf.Tensor:
        """(2, nb_frames, nb_bins) -> (2, nb_frames, nb_bins) with a joint-stereo generator; with
        model.swap_average, the mean of the masks of both channel orders."""
        nb_bins = self.generator.nb_bins
        if not self.config.model.swap_average:
            frames = join_channels(magnitude, 2, nb_bins)[None]          # (1, nb_frames, 2 * nb_bins)
            mask = self.generator(frames, training=False)                # (1, nb_frames, 2 * nb_bins)
            return split_channels(mask[0], 2, nb_bins)                   # (2, nb_frames, nb_bins)
        # (2 orders, nb_frames, 2 * nb_bins): (left, right) and (right, left)
        frames = tf.stack([join_channels(magnitude, 2, nb_bins), join_channels(magnitude[::-1], 2, nb_bins)])
        mask = self.generator(frames, training=False)                    # (2 orders, nb_frames, 2 * nb_bins)
        swapped_back = split_channels(mask[1], 2, nb_bins)[::-1]          # (2, nb_frames, nb_bins)
        return 0.5 * (split_channels(mask[0], 2, nb_bins) + swapped_back)

    def _dual_mono_mask(self, magnitude: tf.Tensor) -> tf.Tensor:
        """(nb_channels, nb_frames, nb_bins) -> same shape, each channel separated as a stereo pair of
        two equal channels, the pair's two masks averaged."""
        nb_bins = self.generator.nb_bins
        pairs = tf.tile(magnitude, [1, 1, 2])                            # (nb_channels, nb_frames, 2 * nb_bins)
        mask = self.generator(pairs, training=False)                     # (nb_channels, nb_frames, 2 * nb_bins)
        shape = tf.shape(magnitude)
        mask = tf.reshape(mask, [shape[0], shape[1], 2, nb_bins])        # (nb_channels, nb_frames, 2, nb_bins)
        return tf.reduce_mean(mask, axis=2)

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
            waveform: (nb_channels, nb_samples) float32 (see `mask` for how channels are treated).
        Returns:
            {"vocals": (nb_channels, nb_samples), "accompaniment": (nb_channels, nb_samples)} float32.
        """
        n_fft, hop = self.config.stft.n_fft, self.config.separation_stft.hop_length
        nb_samples = tf.shape(waveform)[-1]
        spectrogram = stft(waveform, n_fft, hop)                  # (nb_channels, nb_frames, nb_bins)
        magnitude = tf.abs(spectrogram)
        mask = self.mask(magnitude)
        stems = {"vocals": mask, "accompaniment": 1.0 - mask}
        if self.wiener_iterations:
            filtered = wiener([m * magnitude for m in stems.values()], spectrogram, self.wiener_iterations)
            return {name: istft(y, nb_samples, n_fft, hop) for name, y in zip(stems, filtered)}
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

        Audio longer than a chunk is separated in chunks (see `chunk_seconds`).
        """
        return separate_whole(self, waveform, sample_rate, source)


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


def power_mask(mask: tf.Tensor, power: float) -> tf.Tensor:
    """m^power / (m^power + (1 - m)^power), the vocals share of the estimates m|X| and (1 - m)|X|
    raised to `power`; 1 returns `mask` unchanged. Any shape; values in [0, 1]."""
    if power == 1.0:
        return mask
    vocals, accompaniment = tf.pow(mask, power), tf.pow(1.0 - mask, power)
    return vocals / (vocals + accompaniment)       # the sum is >= 2 * 0.5^power > 0


def separate_whole(engine, waveform: np.ndarray, sample_rate: int | None,
                   source: str = "<array>") -> dict[str, np.ndarray]:
    """`separate_stream` over an in-memory waveform, joined: what `Separator.separate` and the TF Serving
    client's `separate` return.

    Args:
        engine: a Separator or anything with its `sample_rate`, `min_samples`, `chunk_layout` and
            `separate_chunk`.
        waveform: (nb_samples, nb_channels) or (nb_samples,) float audio.
        sample_rate: its rate (None: the engine's).
    Returns:
        {"vocals", "accompaniment"}: arrays shaped like `waveform`, at its sample rate.
    """
    mono = np.ndim(waveform) == 1
    audio = np.asarray(waveform)
    audio = audio[:, None] if mono else audio
    if audio.ndim != 2:
        check_waveform(audio, source)                       # the one-line error for a bad shape
    blocks = list(separate_stream(engine, lambda start, stop: audio[start:stop], audio.shape[0],
                                  audio.shape[1], sample_rate or engine.sample_rate, source))
    stems = {name: np.concatenate([block[name] for block in blocks], axis=0) for name in TARGETS}
    return {name: stem[:, 0] for name, stem in stems.items()} if mono else stems


def separate_stream(engine, read, nb_samples: int, nb_channels: int, sample_rate: int,
                    source: str = "<audio>"):
    """Separate audio read piece by piece, yielding the stems as consecutive blocks.

    Memory is bounded by one chunk of `engine.chunk_layout`, whatever the length: a 60-minute file
    is read, separated and written a chunk at a time (python -m svsgan_tf.separate does).

    Args:
        engine: a Separator, or anything with its `sample_rate`, `min_samples`, `chunk_layout(nb_channels)`
            and `separate_chunk` (the TF Serving client).
        read: (start, stop) -> the input's samples [start, stop) as (stop - start, nb_channels) float.
        nb_samples, nb_channels, sample_rate: the input's length, channels and rate.
        source: the input's name in error messages (a chunk adds its sample range).
    Yields:
        {"vocals", "accompaniment"}: (nb_block_samples, nb_channels) float32 blocks at `sample_rate`
        whose lengths add up to nb_samples.
    """
    model_rate = engine.sample_rate
    layout = scaled_layout(engine.chunk_layout(nb_channels), sample_rate, model_rate,
                           resample_margin(sample_rate, model_rate))
    if nb_samples > layout.chunk:           # what fits in one chunk is separated in one piece
        layout = layout.fitted().check()
    whole = len(layout.plan(nb_samples)) == 1

    def separate(start: int, stop: int) -> dict[str, np.ndarray]:
        part = source if whole else f"{source} [samples {start}:{stop}]"
        audio = np.asarray(read(start, stop))
        if audio.ndim == 2 and audio.shape[0] != stop - start:
            raise AudioError(source, f"the decoder gave {audio.shape[0]} samples at sample {start}, expected "
                                     f"{stop - start} (the file is shorter than its header says)")
        return separate_array(engine.separate_chunk, audio, sample_rate, model_rate, engine.min_samples, part)

    yield from separate_in_chunks(layout, nb_samples, separate, TARGETS)


def separate_array(separate_fn, waveform: np.ndarray, sample_rate: int | None, model_rate: int,
                   min_samples: int, source: str = "<array>") -> dict[str, np.ndarray]:
    """The NumPy side of `Separator.separate`, shared with the TF Serving client (serving/client.py).

    Checks the waveform, resamples it to `model_rate`, calls `separate_fn` and resamples the stems back.

    Args:
        separate_fn: (nb_channels, nb_samples) float32 at `model_rate` -> {"vocals", "accompaniment"}
            NumPy arrays of the same shape (`Separator.separate_waveform` or a remote call).
        waveform: (nb_samples, nb_channels) or (nb_samples,) float audio.
        sample_rate: its rate (None: `model_rate`).
        min_samples: shortest input accepted at `model_rate` (one STFT frame).
        source: name used in error messages.
    Returns:
        {"vocals", "accompaniment"}: arrays shaped like `waveform`, at its sample rate.
    """
    mono = np.ndim(waveform) == 1
    rate = sample_rate or model_rate
    min_input = -(-min_samples * rate // model_rate)               # one frame at the input rate
    audio = check_waveform(waveform, source, min_input)             # (nb_samples, nb_channels)
    nb_samples = audio.shape[0]
    model_audio = resample(audio, rate, model_rate)
    result = separate_fn(np.ascontiguousarray(model_audio.T))       # (nb_channels, nb_samples)
    stems = {}
    for name in TARGETS:
        stem = resample(np.asarray(result[name]).T, model_rate, rate)[:nb_samples]
        stem = np.pad(stem, [(0, nb_samples - stem.shape[0]), (0, 0)])
        stems[name] = stem[:, 0] if mono else stem
    return stems
