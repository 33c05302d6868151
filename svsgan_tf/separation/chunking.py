"""Long audio in fixed-size, overlapping chunks: the plan, the crossfade gains, and the join (NumPy only).

A model whose output at a sample depends only on the input within `margin` samples of it (its
*context*) gives, on a chunk, the same output as on the whole file everywhere farther than `margin`
from the chunk's inner ends. Consecutive chunks therefore overlap by `2 * margin + crossfade` samples
and are crossfaded over the `crossfade` samples in the middle of that overlap, where both equal the
one-shot result; the linear crossfade (gains adding up to 1) is right for two near-identical signals,
an equal-power one would raise them by up to 3 dB. Chunk starts are multiples of `align` (the STFT hop
times whatever frame multiple the model needs), so a chunk's frames are the frames of the whole file.

Models with an unbounded context (an LSTM) get a warm-up `margin` instead: their state at the crossfade
is then close to, not equal to, the state of one-shot separation (see chunk_context).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterator


import numpy as np

DEFAULT_CHUNK_SECONDS = 30.0      # longest piece separated at once: bounds memory, not the result
DEFAULT_CROSSFADE_SECONDS = 0.1
# context given to a model whose output depends on every earlier (or later) frame, an LSTM: its state
# after this many frames from a fresh start is used in place of the state of one-shot separation
RECURRENT_WARMUP_FRAMES = 256
RESAMPLE_TAPS_PER_SIDE = 10       # scipy.signal.resample_poly's default window: 10 taps per side per phase


def resample_margin(rate_in: int, rate_out: int) -> int:
    """Input samples that resampling `rate_in` -> `rate_out` and back reaches beyond a sample (0 when
    the rates are equal), with room to spare."""
    if rate_in == rate_out:
        return 0
    divisor = math.gcd(int(rate_in), int(rate_out))
    up, down = rate_out // divisor, rate_in // divisor
    return 2 * RESAMPLE_TAPS_PER_SIDE * int(math.ceil(max(up, down) / min(up, down))) + 32


def chunk_context(n_fft: int, hop_length: int, receptive_frames: int | None, frame_multiple: int,
                  mask_smoothing: int = 1, griffin_lim_iterations: int = 0) -> tuple[int, int]:
    """(margin, align) in samples for a separator: how far the stems at a sample reach into the audio
    around it, and the multiple that chunk starts keep so that a chunk's frames (and U-Net blocks) are
    those of the whole input.

    margin = n_fft (the frames over a sample) + the mask's reach in frames (the generator's receptive
    field, RECURRENT_WARMUP_FRAMES when it is unbounded (None, an LSTM), half the mask smoothing) x hop
    + 2 n_fft per Griffin-Lim iteration (each inverse STFT and STFT pair spreads it by that much);
    align = hop x frame_multiple.
    """
    reach = RECURRENT_WARMUP_FRAMES if receptive_frames is None else receptive_frames
    reach += mask_smoothing // 2
    return n_fft + reach * hop_length + 2 * n_fft * griffin_lim_iterations, hop_length * frame_multiple


@dataclass(frozen=True)
class ChunkLayout:
    """How one recording is cut, in samples at one rate.

    chunk: the longest chunk; margin: the model's context (output closer than this to an inner chunk
    end is discarded); crossfade: the length of each join; align: chunk starts are multiples of it.
    """

    chunk: int
    margin: int
    crossfade: int
    align: int = 1

    @property
    def overlap(self) -> int:
        """Samples shared by consecutive chunks: 2 * margin + crossfade."""
        return 2 * self.margin + self.crossfade

    @property
    def step(self) -> int:
        """Distance between consecutive chunk starts, a multiple of `align`."""
        return (self.chunk - self.overlap) // self.align * self.align

    def fitted(self) -> "ChunkLayout":
        """This layout, its chunk lengthened where its alignment leaves no valid step (a resampled input
        whose rate maps onto the model's grid only every many samples)."""
        needed = minimum_chunk(self.margin, self.crossfade, self.align)
        return self if self.chunk >= needed else dataclasses.replace(self, chunk=needed)

    def check(self) -> "ChunkLayout":
        """ValueError unless a chunk leaves room between its two joins."""
        if self.step < self.crossfade or self.chunk < 2 * (self.margin + self.crossfade):
            raise ValueError(f"chunks of {self.chunk} samples are too short for a context of {self.margin} "
                             f"samples, crossfades of {self.crossfade} and starts on multiples of {self.align}: "
                             f"use at least {minimum_chunk(self.margin, self.crossfade, self.align)}")
        return self

    def plan(self, nb_samples: int) -> list[tuple[int, int]]:
        """The (start, stop) ranges of `nb_samples` samples (see `plan_chunks`): chunks of step + overlap
        samples (at most `chunk`), so that both chunks of a join crossfade over the same samples."""
        return plan_chunks(nb_samples, self.step + self.overlap, self.step)


def separation_layout(margin: int, align: int, sample_rate: int,
                      chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS) -> ChunkLayout:
    """The layout of a separator with this context (chunk_context), at its `sample_rate`:
    chunks of `chunk_seconds` (at least three overlaps long, so that at most a third of the work is
    redone; None: one chunk, whatever the length), crossfades of DEFAULT_CROSSFADE_SECONDS, both on
    the `align` grid."""
    crossfade = max(align, int(round(DEFAULT_CROSSFADE_SECONDS * sample_rate / align)) * align)
    if chunk_seconds is None:
        return ChunkLayout(chunk=2 ** 62, margin=margin, crossfade=crossfade, align=align)
    chunk = max(int(chunk_seconds * sample_rate), 3 * (2 * margin + crossfade), minimum_chunk(margin, crossfade, align))
    return ChunkLayout(chunk=-(-chunk // align) * align, margin=margin, crossfade=crossfade, align=align)


def minimum_chunk(margin: int, crossfade: int, align: int = 1) -> int:
    """The shortest chunk for which a layout with this margin, crossfade and alignment is valid: its
    step (a multiple of `align`) at least one crossfade, so that a chunk's two crossfades never meet."""
    overlap = 2 * margin + crossfade
    return max(2 * (margin + crossfade), -(-max(crossfade, 1) // align) * align + overlap)


def scaled_layout(layout: ChunkLayout, rate_in: int, rate_out: int, extra_margin: int = 0) -> ChunkLayout:
    """`layout`, given at `rate_out`, expressed at `rate_in`: lengths rounded up, `extra_margin` input
    samples added to the margin (a resampling filter's reach), and starts aligned so that each maps to
    an integer, `layout.align`-multiple sample at `rate_out`."""
    if rate_in == rate_out and not extra_margin:
        return layout
    divisor = math.gcd(int(rate_in), int(rate_out))
    up, down = rate_out // divisor, rate_in // divisor           # rate_out / rate_in = up / down
    align = down * (layout.align // math.gcd(up, layout.align))
    scale = rate_in / rate_out
    return ChunkLayout(chunk=max(int(math.ceil(layout.chunk * scale)), 1),
                       margin=int(math.ceil(layout.margin * scale)) + extra_margin,
                       crossfade=max(int(math.ceil(layout.crossfade * scale)), 1), align=align)


def plan_chunks(nb_samples: int, chunk_samples: int, step: int) -> list[tuple[int, int]]:
    """(start, stop) sample ranges covering [0, nb_samples) in chunks of at most `chunk_samples`.

    Starts are multiples of `step` (keep it a multiple of the alignment); consecutive chunks overlap by
    chunk_samples - step. The last chunk ends at nb_samples.
    """
    if nb_samples <= chunk_samples:
        return [(0, nb_samples)]
    if step <= 0:
        raise ValueError(f"chunk step {step} must be > 0")
    starts = [0]
    while starts[-1] + chunk_samples < nb_samples:
        starts.append(starts[-1] + step)
    return [(start, min(start + chunk_samples, nb_samples)) for start in starts]


def chunk_weights(length: int, first: bool, last: bool, margin: int, crossfade: int) -> np.ndarray:
    """Gain of one chunk's output, (length,) float32: 0 within `margin` of an inner end, a linear ramp
    over the next `crossfade` samples, 1 elsewhere. The gains of two overlapping chunks add up to 1."""
    weights = np.ones(length, np.float32)
    ramp = (np.arange(crossfade, dtype=np.float32) + 0.5) / crossfade
    if not first:
        weights[:margin] = 0.0
        weights[margin:margin + crossfade] = ramp
    if not last:
        weights[length - margin - crossfade:length - margin] = 1.0 - ramp
        weights[length - margin:] = 0.0
    return weights


class ChunkJoiner:
    """Crossfades chunk outputs into consecutive finished blocks, holding one overlap at a time.

    Push the output of each chunk of `plan` in order, (stop - start, nb_channels) float; each push
    returns the samples that no later chunk reaches, and `finish` the rest. The blocks' lengths add up
    to plan[-1][1].
    """

    def __init__(self, plan: list[tuple[int, int]], margin: int, crossfade: int):
        self.plan, self.margin, self.crossfade = plan, margin, crossfade
        self.index = 0
        self.pending: np.ndarray | None = None          # covers [pending_start, the last chunk's stop)
        self.pending_start = 0

    def push(self, piece: np.ndarray) -> np.ndarray:
        """Add chunk `self.index`'s output (stop - start, nb_channels); return the finished samples."""
        start, stop = self.plan[self.index]
        piece = np.asarray(piece, np.float32)
        if piece.shape[0] != stop - start:
            raise ValueError(f"chunk {self.index} output has {piece.shape[0]} samples, expected {stop - start}")
        if len(self.plan) == 1:                          # one chunk: nothing to fade
            weighted = piece
        else:
            weights = chunk_weights(stop - start, self.index == 0, self.index == len(self.plan) - 1,
                                    self.margin, self.crossfade)
            weighted = piece * weights.reshape((-1,) + (1,) * (piece.ndim - 1))
        self.index += 1
        if self.pending is None:
            self.pending, self.pending_start = weighted, start
            return weighted[:0]
        offset = start - self.pending_start
        finished, overlap = self.pending[:offset], self.pending[offset:]
        weighted[:len(overlap)] += overlap
        self.pending, self.pending_start = weighted, start
        return finished

    def finish(self) -> np.ndarray:
        """The samples after the last finished block (call once every chunk is pushed)."""
        if self.index != len(self.plan):
            raise ValueError(f"{len(self.plan) - self.index} chunks missing")
        rest, self.pending = self.pending, None
        return rest


def separate_in_chunks(layout: ChunkLayout, nb_samples: int, separate, names) -> Iterator[dict]:
    """Run `separate` on each chunk of `layout.plan(nb_samples)` and join the outputs as they come.

    Args:
        separate: (start, stop) -> {name: (stop - start, nb_channels) float} for each of `names`.
    Yields:
        {name: (nb_block_samples, nb_channels) float32}: consecutive finished blocks whose lengths add
        up to nb_samples; memory holds one chunk and one overlap per name.
    """
    plan = layout.plan(nb_samples)
    joiners = {name: ChunkJoiner(plan, layout.margin, layout.crossfade) for name in names}
    for start, stop in plan:
        pieces = separate(start, stop)
        yield {name: joiners[name].push(pieces[name]) for name in names}
    yield {name: joiners[name].finish() for name in names}


def join_chunks(pieces: list[np.ndarray], plan: list[tuple[int, int]], margin: int, crossfade: int) -> np.ndarray:
    """Crossfade chunk outputs (nb_channels, stop - start) back into (nb_channels, nb_samples)."""
    joiner = ChunkJoiner(plan, margin, crossfade)
    blocks = [joiner.push(piece.T) for piece in pieces] + [joiner.finish()]
    return np.concatenate(blocks, axis=0).T


