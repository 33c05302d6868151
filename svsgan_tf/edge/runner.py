"""Separation with a converted `.tflite` model: NumPy STFT -> the LiteRT mask network -> NumPy inverse STFT,
for whole recordings (EdgeSeparator) and for live input block by block (StreamingSeparator).

NumPy and ai-edge-litert only: nothing on this path imports TensorFlow. The arithmetic is the
Separator's (svsgan_tf/separation/separator.py, svsgan_tf/audio/spectral.py): the same padded framing,
periodic Hann window and weighted overlap-add, the same channel pairs, mask smoothing and mask power,
so the stems equal `Separator.separate` of the model the file was converted from.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np

from svsgan_tf.audio.framing import nb_frames_for, padded_length, power_mask
from svsgan_tf.config import TARGETS, Config
from svsgan_tf.edge.model_file import (MAGNITUDE_INPUT, MASK_OUTPUT, SIGNATURE, load_interpreter, read_metadata,
                                       state_name)
from svsgan_tf.errors import AudioError, ConfigError
from svsgan_tf.separation.chunking import DEFAULT_CHUNK_SECONDS, ChunkLayout, chunk_context, separation_layout
from svsgan_tf.separation.stream import WholeSeparation

logger = logging.getLogger(__name__)

# frames per network call for a frame-wise model (any number works): whole files, and live streams
WHOLE_FILE_BLOCK_FRAMES = 64
STREAM_BLOCK_FRAMES = 1
BATCH_FRAMES = 256                # frames transformed and added at a time: bounds the runner's memory


@functools.lru_cache(maxsize=8)
def hann_window(n_fft: int) -> np.ndarray:
    """The periodic Hann window of tf.signal.hann_window: (n_fft,) float32."""
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    window.flags.writeable = False                   # cached: shared by every caller
    return window


@functools.lru_cache(maxsize=8)
def inverse_window(n_fft: int, hop_length: int) -> np.ndarray:
    """tf.signal.inverse_stft_window_fn of the Hann window: the window divided by the sum of the squared
    windows of the frames overlapping each sample, (n_fft,) float32."""
    window = hann_window(n_fft).astype(np.float64)
    overlaps = -(-n_fft // hop_length)
    squared = np.pad(window ** 2, (0, overlaps * hop_length - n_fft)).reshape(overlaps, hop_length)
    denominator = np.tile(squared.sum(axis=0), overlaps)[:n_fft]
    inverse = (window / denominator).astype(np.float32)
    inverse.flags.writeable = False                  # cached: shared by every caller
    return inverse


def stft_magnitude(waveform: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """|STFT| with the padded framing of svsgan_tf.audio.spectral.stft: (nb_samples, nb_channels) ->
    (nb_channels, nb_frames, nb_bins) float32."""
    left = n_fft - hop_length
    nb_frames = nb_frames_for(waveform.shape[0], n_fft, hop_length)
    right = padded_length(nb_frames, n_fft, hop_length) - waveform.shape[0] - left
    padded = np.pad(waveform, [(left, right), (0, 0)])
    return np.abs(windowed_rfft(padded, hop_length * np.arange(nb_frames), n_fft)).transpose(1, 0, 2)


def windowed_rfft(samples: np.ndarray, starts: np.ndarray, n_fft: int) -> np.ndarray:
    """The Hann-windowed rfft of the frames of (nb_samples, nb_channels) `samples` that start at
    `starts`: (nb_frames, nb_channels, nb_bins) complex64."""
    # (nb_samples - n_fft + 1, nb_channels, n_fft) windows of the samples, a view -> the frames at `starts`
    frames = np.lib.stride_tricks.sliding_window_view(samples, n_fft, axis=0)[starts]
    spectra = _fft().rfft(frames * hann_window(n_fft), axis=-1)          # (nb_frames, nb_channels, nb_bins)
    return spectra.astype(np.complex64, copy=False)


def _fft():
    """scipy.fft where installed (single precision for float32 input: twice as fast), else numpy.fft."""
    try:
        import scipy.fft
        return scipy.fft
    except ImportError:
        return np.fft


@dataclass(frozen=True)
class BlockLayout:
    """Which frames one network call sees (see svsgan_tf/edge/model_file.py): call k sees frames
    [first + k * step, first + k * step + window) and gives the masks of the `step` frames from
    `valid` on."""

    window: int
    step: int
    first: int
    valid: int
    whole: bool = False

    @classmethod
    def whole_song(cls, nb_frames: int) -> "BlockLayout":
        """One call over all `nb_frames` frames."""
        return cls(nb_frames, nb_frames, 0, 0, True)

    def window_start(self, call: int) -> int:
        return self.first + call * self.step

    def last_frame(self, frame: int) -> int:
        """The last frame of the call whose masks include `frame`."""
        call = (frame - self.first - self.valid) // self.step
        return self.window_start(call) + self.window - 1


class MaskNetwork:
    """The converted network: magnitude (2, W, nb_bins) float32 [+ states] -> G's mask (2, W, nb_bins)
    [+ states]. A frame-wise model takes any W (resized when it changes)."""

    def __init__(self, path: str, metadata: dict, threads: int | None = None):
        self.path = path
        self.interpreter = load_interpreter(path, threads)
        self.state_shapes = [tuple(shape) for shape in metadata["states"]]
        names = [state_name(i) for i in range(len(self.state_shapes))]
        try:
            runner = self.interpreter.get_signature_runner(SIGNATURE)
            inputs = runner.get_input_details()
            # the converter names the outputs output_<i>; the metadata lists their names in that order
            outputs = {name: runner.get_output_details()[f"output_{i}"]
                       for i, name in enumerate(metadata["outputs"])}
            self.magnitude_index = inputs[MAGNITUDE_INPUT]["index"]
            self.mask_index = outputs[MASK_OUTPUT]["index"]
            self.state_inputs = [inputs[name]["index"] for name in names]
            self.state_outputs = [outputs[name]["index"] for name in names]
        except (KeyError, ValueError) as err:
            raise ConfigError(f"{path}: the network's signature does not match its metadata ({err})") from None
        self.frames = int(inputs[MAGNITUDE_INPUT]["shape"][1])

    def initial_states(self) -> list[np.ndarray]:
        """Zero states (an LSTM's h and c before the first frame)."""
        return [np.zeros(shape, np.float32) for shape in self.state_shapes]

    def __call__(self, magnitude: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        if magnitude.shape[1] != self.frames:
            self.interpreter.resize_tensor_input(self.magnitude_index, list(magnitude.shape))
            self.interpreter.allocate_tensors()
            self.frames = magnitude.shape[1]
        self.interpreter.set_tensor(self.magnitude_index, np.ascontiguousarray(magnitude, np.float32))
        for index, state in zip(self.state_inputs, states):
            self.interpreter.set_tensor(index, state)
        self.interpreter.invoke()
        return (self.interpreter.get_tensor(self.mask_index),
                [self.interpreter.get_tensor(index) for index in self.state_outputs])


def channel_pairs(nb_channels: int) -> list[tuple[int, int]]:
    """The stereo pairs the network sees: (0, 1) for stereo, (c, c) for each channel of anything else."""
    return [(0, 1)] if nb_channels == 2 else [(c, c) for c in range(nb_channels)]


def network_call(network: MaskNetwork, pairs: list[tuple[int, int]], states: list, magnitude: np.ndarray) -> np.ndarray:
    """G's mask of one call: (nb_channels, W, nb_bins) magnitude -> mask of that shape, each pair through
    the network with its own state (`states[p]`, replaced by the new one); a pair of one channel
    with itself gives that channel the mean of its two masks (as `Separator.generator_mask`)."""
    masks = np.empty_like(magnitude)
    for p, (a, b) in enumerate(pairs):
        mask, states[p] = network(magnitude[[a, b]], states[p])
        if a == b:
            masks[a] = mask.mean(axis=0)
        else:
            masks[[a, b]] = mask
    return masks


class FrameEngine:
    """Separates one stream of `nb_channels` channels incrementally: `push` samples, then `finish`.

    Each returns the stem samples that are final so far (all of them, after `finish`): the frames over a
    sample have their masks and have been added. Channels are fed to the network as stereo pairs: the
    two channels of stereo audio together, any other channel as a pair of itself whose two masks are
    averaged (as `Separator.mask`); each pair carries its own state.
    """

    def __init__(self, network: MaskNetwork, config: Config, layout: BlockLayout, nb_channels: int,
                 source: str = "<stream>"):
        self.network, self.layout, self.source = network, layout, source
        self.n_fft, self.hop = config.stft.n_fft, config.separation_stft.hop_length
        self.left = self.n_fft - self.hop
        self.smoothing_half = config.separation.mask_smoothing // 2
        self.power = config.separation.mask_power
        self.nb_channels = nb_channels
        self.pairs = channel_pairs(nb_channels)
        self.states = [network.initial_states() for _ in self.pairs]
        self.inverse = inverse_window(self.n_fft, self.hop)
        self.nb_bins = self.n_fft // 2 + 1
        self.buffer = np.zeros((self.left, nb_channels), np.float32)   # padded samples from buffer_start
        self.buffer_start = 0
        self.received = 0
        self.spectra: dict[int, np.ndarray] = {}     # frame -> (nb_channels, nb_bins) complex64
        self.masks: dict[int, np.ndarray] = {}       # frame -> G's mask (nb_channels, nb_bins)
        self.next_frame = 0                          # next frame to transform
        self.next_call = 0
        self.next_added = 0                          # next frame to overlap-add
        self.output = np.zeros((2, 0, nb_channels), np.float32)       # (stem, padded samples, channel)
        self.output_start = 0
        self.emitted = 0
        self.nb_frames: int | None = None            # known once the stream ends

    def push(self, samples: np.ndarray) -> dict[str, np.ndarray]:
        """Add (n, nb_channels) float32 samples; return the stems' newly final samples."""
        self.buffer = np.concatenate([self.buffer, samples.astype(np.float32, copy=False)])
        self.received += samples.shape[0]
        return self._advance()

    def finish(self) -> dict[str, np.ndarray]:
        """End the stream (silence after it, as the padded framing has); return the remaining samples."""
        self.nb_frames = nb_frames_for(self.received, self.n_fft, self.hop)
        end = padded_length(self.nb_frames, self.n_fft, self.hop)
        missing = end - (self.buffer_start + self.buffer.shape[0])
        if missing > 0:
            self.buffer = np.concatenate([self.buffer, np.zeros((missing, self.nb_channels), np.float32)])
        return self._advance()

    def _advance(self) -> dict[str, np.ndarray]:
        """Transform, mask and add frames a batch at a time (memory bounded by the batch, not the input)."""
        blocks = []
        while True:
            before = (self.next_frame, self.next_added)
            self._transform()
            self._run_network()
            self._overlap_add()
            blocks.append(self._emit())
            if (self.next_frame, self.next_added) == before:
                break
        return {name: np.concatenate([b[name] for b in blocks]) for name in TARGETS}

    def _transform(self) -> None:
        """STFT of every frame whose samples have all arrived."""
        available = self.buffer_start + self.buffer.shape[0]
        last = (available - self.n_fft) // self.hop                  # last complete frame
        if self.nb_frames is not None:
            last = min(last, self.nb_frames - 1)
        if last < self.next_frame:
            return
        last = min(last, self.next_frame + BATCH_FRAMES - 1)
        offset = self.next_frame * self.hop - self.buffer_start
        count = last - self.next_frame + 1
        spectra = windowed_rfft(self.buffer, offset + self.hop * np.arange(count), self.n_fft)
        for i in range(count):
            self.spectra[self.next_frame + i] = spectra[i]
        self.next_frame = last + 1
        keep = self.next_frame * self.hop - self.buffer_start        # samples still needed by later frames
        self.buffer = self.buffer[keep:]
        self.buffer_start += keep

    def _magnitude(self, frame: int) -> np.ndarray:
        spectrum = self.spectra.get(frame)
        if spectrum is None:                         # before frame 0 or after the end: silence
            return np.zeros((self.nb_channels, self.nb_bins), np.float32)
        return np.abs(spectrum)

    def _run_network(self) -> None:
        """Every call whose frames have all been transformed (or lie after the end)."""
        layout = self.layout
        if layout.whole:                                 # one call, once the song has ended
            if self.nb_frames is None or self.next_call:
                return
            layout = self.layout = BlockLayout.whole_song(self.nb_frames)
        while True:
            start = layout.window_start(self.next_call)
            first_valid = start + layout.valid
            if self.nb_frames is not None and first_valid >= self.nb_frames:
                return
            # the call's last frame that holds audio (frames after the end are silent) must be transformed
            needed = start + layout.window - 1
            last = needed if self.nb_frames is None else min(needed, self.nb_frames - 1)
            if last >= self.next_frame:
                return
            # (W, nb_channels, nb_bins) -> (nb_channels, W, nb_bins)
            magnitude = np.stack([self._magnitude(f) for f in range(start, start + layout.window)], axis=1)
            masks = network_call(self.network, self.pairs, self.states, magnitude)
            for i in range(layout.valid, layout.valid + layout.step):
                if start + i >= 0:
                    self.masks[start + i] = masks[:, i]
            self.next_call += 1
            self._forget(self.next_frame_needed())

    def next_frame_needed(self) -> int:
        """The first frame whose spectrum a later call or the overlap-add still reads."""
        return min(self.layout.window_start(self.next_call), self.next_added)

    def _forget(self, first_needed: int) -> None:
        for frame in [f for f in self.spectra if f < first_needed]:
            del self.spectra[frame]

    def _final_mask(self, frame: int) -> np.ndarray:
        """The Separator's smoothing (mean over 2 * smoothing_half + 1 frames, edge frames repeated)
        and power of G's masks, for `frame`."""
        last = self.nb_frames - 1 if self.nb_frames is not None else None
        neighbours = [min(max(f, 0), last) if last is not None else max(f, 0)
                      for f in range(frame - self.smoothing_half, frame + self.smoothing_half + 1)]
        mask = np.mean([self.masks[f] for f in neighbours], axis=0) if self.smoothing_half else self.masks[frame]
        return power_mask(mask, self.power)

    def _overlap_add(self) -> None:
        """Add each frame whose smoothed mask is known to the stems' overlap-add."""
        ready = []
        frame = self.next_added
        while (self.nb_frames is None or frame < self.nb_frames) and len(ready) < BATCH_FRAMES:
            reach = frame + self.smoothing_half
            if self.nb_frames is not None:
                reach = min(reach, self.nb_frames - 1)
            if reach not in self.masks:
                break
            ready.append(frame)
            frame += 1
        if not ready:
            return
        masks = np.stack([self._final_mask(f) for f in ready])           # (count, nb_channels, nb_bins)
        spectra = np.stack([self.spectra[f] for f in ready])            # (count, nb_channels, nb_bins)
        vocals = masks * spectra
        stems = np.stack([vocals, spectra - vocals])                    # (2, count, nb_channels, nb_bins)
        frames = _fft().irfft(stems, n=self.n_fft, axis=-1).astype(np.float32, copy=False) * self.inverse
        frames = frames.transpose(0, 1, 3, 2)                           # (2, count, n_fft, nb_channels)
        end = ready[-1] * self.hop + self.n_fft - self.output_start
        if end > self.output.shape[1]:
            grow = np.zeros((2, end - self.output.shape[1], self.nb_channels), np.float32)
            self.output = np.concatenate([self.output, grow], axis=1)
        start = ready[0] * self.hop - self.output_start
        count = len(ready)
        if self.n_fft % self.hop == 0:
            # frame i's piece j (of n_fft / hop) lands on hop block i + j: one vectorised add per piece
            pieces = frames.reshape(2, count, self.n_fft // self.hop, self.hop, self.nb_channels)
            for j in range(self.n_fft // self.hop):
                target = self.output[:, start + j * self.hop:start + (j + count) * self.hop]
                target += pieces[:, :, j].reshape(2, count * self.hop, self.nb_channels)
        else:
            for i in range(count):
                self.output[:, start + i * self.hop:start + i * self.hop + self.n_fft] += frames[:, i]
        self.next_added = ready[-1] + 1
        for f in [f for f in self.masks if f < self.next_added - self.smoothing_half]:
            del self.masks[f]
        self._forget(self.next_frame_needed())

    def _emit(self) -> dict[str, np.ndarray]:
        """The samples no later frame adds to, from the last emitted on."""
        final = self.next_added * self.hop - self.left             # audio samples before this are final
        if self.nb_frames is not None and self.next_added >= self.nb_frames:
            final = self.received
        final = min(final, self.received)
        count = max(0, final - self.emitted)
        start = self.emitted + self.left - self.output_start
        block = self.output[:, start:start + count]
        self.emitted += count
        drop = self.emitted + self.left - self.output_start
        drop = min(drop, self.next_added * self.hop - self.output_start)
        if drop > 0:
            self.output = self.output[:, drop:]
            self.output_start += drop
        return {name: block[i].copy() for i, name in enumerate(TARGETS)}


def latency_samples(config: Config, layout: BlockLayout) -> int:
    """The fixed delay of StreamingSeparator: the most input samples that arrive after an input sample
    before its stems are final (the frames over it, the frames its network calls see, the mask
    smoothing's frames after it)."""
    n_fft, hop = config.stft.n_fft, config.separation_stft.hop_length
    left = n_fft - hop
    smoothing_half = config.separation.mask_smoothing // 2
    worst = 0
    period = hop * layout.step
    for sample in range(2 * period):
        last_frame = (sample + left) // hop                      # the last frame over the sample
        needed_frame = layout.last_frame(last_frame + smoothing_half)
        needed_sample = needed_frame * hop + n_fft - 1 - left    # the last input sample that frame holds
        worst = max(worst, needed_sample - sample)
    return worst


def file_config(path: str, metadata: dict | None = None) -> Config:
    """The model's Config that a converted .tflite file carries (validated); ConfigError naming the file."""
    metadata = metadata or read_metadata(path)
    try:
        return Config.from_dict(metadata["config"]).validate()
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


class EdgeSeparator(WholeSeparation):
    """Separate vocals and accompaniment with a converted .tflite model (python -m svsgan_tf.tflite).

    Args:
        path: the .tflite file.
        threads: CPU threads for the interpreter (None: its default).
        chunk_seconds: as the Separator's: longer audio is separated in chunks of about this length
            (memory bounded, the stems equal one-shot separation for models of bounded reach).

    `separate(waveform, sample_rate)` -> {"vocals", "accompaniment"} like `Separator.separate`.
    """

    def __init__(self, path: str, threads: int | None = None, chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS):
        self.path = path
        self.metadata = read_metadata(path)
        self.config = file_config(path, self.metadata)
        self.network = MaskNetwork(path, self.metadata, threads)
        self.sample_rate = self.config.stft.sample_rate
        self.chunk_seconds = chunk_seconds

    def block_layout(self, block_frames: int) -> BlockLayout:
        """The frames per call: the file's, or `block_frames` for a frame-wise model."""
        m = self.metadata
        if m["whole_song"]:
            return BlockLayout.whole_song(0)
        if m["window_frames"] is None:
            return BlockLayout(block_frames, block_frames, 0, 0)
        return BlockLayout(m["window_frames"], m["step_frames"], m["first_frame"], m["valid_offset"])

    @property
    def min_samples(self) -> int:
        """Shortest input accepted at the model's rate: one STFT frame (as the Separator's)."""
        return self.config.stft.n_fft

    def chunk_layout(self, nb_channels: int = 2) -> ChunkLayout:
        """How `separate` cuts long audio at the model's rate (as `Separator.chunk_layout`)."""
        margin, align = chunk_context(self.config.stft.n_fft, self.config.separation_stft.hop_length,
                                      self.metadata["receptive_frames"], self.metadata["frame_multiple"],
                                      self.config.separation.mask_smoothing)
        return separation_layout(margin, align, self.sample_rate, self.chunk_seconds)

    def engine(self, nb_channels: int, block_frames: int, source: str = "<stream>") -> FrameEngine:
        """A fresh FrameEngine for a stream of `nb_channels` channels."""
        return FrameEngine(self.network, self.config, self.block_layout(block_frames), nb_channels, source)

    def generator_mask(self, magnitude: np.ndarray, block_frames: int = WHOLE_FILE_BLOCK_FRAMES) -> np.ndarray:
        """G's mask of a whole song, as `Separator.generator_mask`: (nb_channels, nb_frames, nb_bins)
        magnitude -> mask of that shape (the calls of the block layout, silence outside the song)."""
        nb_channels, nb_frames, nb_bins = magnitude.shape
        layout = self.block_layout(block_frames)
        layout = BlockLayout.whole_song(nb_frames) if layout.whole else layout
        pairs = channel_pairs(nb_channels)
        states = [self.network.initial_states() for _ in pairs]
        before = max(0, -layout.first)
        calls = -(-(nb_frames - layout.first - layout.valid) // layout.step)
        after = max(0, layout.window_start(calls - 1) + layout.window - nb_frames)
        padded = np.pad(magnitude, [(0, 0), (before, after), (0, 0)])     # silence outside the song
        mask = np.zeros_like(magnitude)
        for call in range(calls):
            start = layout.window_start(call)
            masks = network_call(self.network, pairs, states, padded[:, before + start:before + start + layout.window])
            first, last = max(start + layout.valid, 0), min(start + layout.valid + layout.step, nb_frames)
            mask[:, first:last] = masks[:, first - start:last - start]
        return mask

    def separate_chunk(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        """(nb_channels, nb_samples) float32 at the model's rate -> {"vocals", "accompaniment"} of that shape."""
        engine = self.engine(waveform.shape[0], WHOLE_FILE_BLOCK_FRAMES)
        first = engine.push(np.ascontiguousarray(waveform.T))
        rest = engine.finish()
        return {name: np.concatenate([first[name], rest[name]]).T for name in TARGETS}


class StreamingSeparator:
    """Separate live audio block by block with a fixed delay.

    `process(block)` takes (n, nb_channels) float samples at the model's rate (blocks of any size) and
    returns {"vocals", "accompaniment"}, each (n, nb_channels): the stems delayed by `latency_samples`
    (the first latency_samples output samples are silence). `flush()` ends the stream and returns the
    last latency_samples samples. The output, shifted back by latency_samples, equals EdgeSeparator's
    separation of the whole stream when that is one chunk (for longer audio, EdgeSeparator restarts an
    LSTM at each chunk with a warm-up, as the Separator does; the stream never restarts it).
    It shares the EdgeSeparator's interpreter (when given one): use one of them at a time, from one
    thread. The state (overlap-add, frames awaiting their network call, an LSTM's h and c) is carried
    from block to block.

    Args:
        path: the .tflite file (or an EdgeSeparator to share).
        nb_channels: channels of the stream (2: stereo).
        block_frames: frames per network call for a frame-wise model (fewer: less delay, more calls).
        threads: CPU threads for the interpreter.
    """

    def __init__(self, path, nb_channels: int = 2, block_frames: int = STREAM_BLOCK_FRAMES,
                 threads: int | None = None, source: str = "<stream>"):
        self.separator = path if isinstance(path, EdgeSeparator) else EdgeSeparator(path, threads)
        if nb_channels < 1 or block_frames < 1:
            raise ConfigError(f"{source}: nb_channels and block_frames must be >= 1")
        self.source = source
        self.nb_channels = nb_channels
        self.sample_rate = self.separator.sample_rate
        layout = self.separator.block_layout(block_frames)
        if layout.whole:
            raise ConfigError(f"{self.separator.path}: this model (a U-Net without segments) sees a whole "
                              "recording at once and cannot stream; use EdgeSeparator or python -m svsgan_tf.edge "
                              "without --stream")
        self.latency_samples = latency_samples(self.separator.config, layout)
        self.engine = FrameEngine(self.separator.network, self.separator.config, layout, nb_channels, source)
        self.pending = {name: np.zeros((self.latency_samples, nb_channels), np.float32) for name in TARGETS}
        self.received = 0
        self.flushed = False

    @property
    def latency_seconds(self) -> float:
        return self.latency_samples / self.sample_rate

    def process(self, block: np.ndarray) -> dict[str, np.ndarray]:
        """Separate the next (n, nb_channels) block; return n samples of each stem, latency_samples late."""
        if self.flushed:
            raise AudioError(self.source, "the stream was flushed; start a new StreamingSeparator")
        block = np.asarray(block, np.float32)
        block = block[:, None] if block.ndim == 1 and self.nb_channels == 1 else block
        if block.ndim != 2 or block.shape[1] != self.nb_channels:
            raise AudioError(self.source, f"a block of shape {block.shape}, expected (n, {self.nb_channels})")
        if block.shape[0] == 0:
            raise AudioError(self.source, f"a block of 0 samples at sample {self.received}")
        if not np.isfinite(block).all():
            bad = int(np.argwhere(~np.isfinite(block))[0][0])
            raise AudioError(self.source, f"NaN or Inf at sample {self.received + bad}")
        self.received += block.shape[0]
        return self._delayed(self.engine.push(block), block.shape[0])

    def flush(self) -> dict[str, np.ndarray]:
        """End the stream: the last latency_samples samples of each stem."""
        if self.flushed:
            raise AudioError(self.source, "the stream was already flushed")
        self.flushed = True
        if self.received < self.separator.min_samples:
            raise AudioError(self.source, f"the stream ended after {self.received} samples; at least "
                                          f"{self.separator.min_samples} (one STFT frame) are needed")
        return self._delayed(self.engine.finish(), self.latency_samples)

    def _delayed(self, final: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
        out = {}
        for name in TARGETS:
            pending = np.concatenate([self.pending[name], final[name]])
            if pending.shape[0] < count:             # latency_samples bounds the engine's delay
                raise RuntimeError(f"stream delay exceeded latency_samples={self.latency_samples}")
            out[name], self.pending[name] = pending[:count], pending[count:]
        return out
