"""The NumPy side of separation, shared by every engine (the Separator, the TF Serving client, the edge
runner): checks, resampling and cutting audio into the chunks an engine separates. No TensorFlow here."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import nullcontext

import numpy as np

from svsgan_tf.audio.io import check_waveform, resample
from svsgan_tf.config import TARGETS
from svsgan_tf.errors import AudioError
from svsgan_tf.separation.chunking import resample_margin, scaled_layout, separate_in_chunks


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
    stems = {name: join_blocks([block[name] for block in blocks]) for name in TARGETS}
    return {name: stem[:, 0] for name, stem in stems.items()} if mono else stems


def separate_stream(engine, read, nb_samples: int, nb_channels: int, sample_rate: int,
                    source: str = "<audio>"):
    """Separate audio read piece by piece, yielding the stems as consecutive blocks.

    Memory is bounded by two chunks of `engine.chunk_layout` (the one being separated and the next,
    read ahead), whatever the length: a 60-minute file is read, separated and written a chunk at a
    time (python -m svsgan_tf.separate does).

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
    plan = layout.plan(nb_samples)
    whole = len(plan) == 1
    ahead = nullcontext(read) if whole else Ahead(read, plan, "read-ahead")

    def separate(start: int, stop: int) -> dict[str, np.ndarray]:
        part = source if whole else f"{source} [samples {start}:{stop}]"
        audio = np.asarray(reader(start, stop))
        if audio.ndim == 2 and audio.shape[0] != stop - start:
            raise AudioError(source, f"the decoder gave {audio.shape[0]} samples at sample {start}, expected "
                                     f"{stop - start} (the file is shorter than its header says)")
        return separate_array(engine.separate_chunk, audio, sample_rate, model_rate, engine.min_samples, part)

    with ahead as reader:
        yield from separate_in_chunks(layout, nb_samples, separate, TARGETS)


class Ahead:
    """`fn(*item)` for each item of `items`, in order, each computed in a background thread (`name`)
    while the caller works on the one before: the next chunk read while one is separated, the next file
    opened (for ffmpeg formats, decoded) while one is separated. soundfile and ffmpeg release the GIL.

    Call `ahead(*item)` for the items in order; fn's error for an item is raised there. An item asked
    out of order is computed directly, once the call in flight has finished, and running ahead stops,
    so that fn never runs twice at once. `discard(result)` releases a result that was computed ahead
    and never taken (on `close`, or when waiting for it was interrupted). `close(wait=True)` (also on
    leaving a `with` block) waits for the call in flight, which may still use what the caller is about
    to close; `wait=False` leaves it to finish and be discarded.
    """

    def __init__(self, fn, items, name: str, discard=None):
        self.fn, self.items, self.discard, self.next = fn, [tuple(item) for item in items], discard, 0
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.pending = self._submit()

    def _submit(self):
        if self.next >= len(self.items):
            return None
        item, self.next = self.items[self.next], self.next + 1
        return item, self.pool.submit(self.fn, *item)

    def __call__(self, *item):
        pending, self.pending = self.pending, None
        if pending is None or pending[0] != item:
            if pending is not None:                        # out of order: running ahead stops here
                wait([pending[1]])
                self._release(pending[1])
                self.next = len(self.items)
            return self.fn(*item)
        self.pending = self._submit()
        try:
            return pending[1].result()
        except BaseException:                              # interrupted while waiting: release it once done
            pending[1].add_done_callback(self._release)
            raise

    def _release(self, future) -> None:
        if self.discard is not None and not future.cancelled() and future.exception() is None:
            self.discard(future.result())

    def close(self, wait: bool = True) -> None:
        pending, self.pending = self.pending, None
        try:
            if pending is not None:
                pending[1].add_done_callback(self._release)    # at once when it is done, else once it is
        finally:
            self.pool.shutdown(wait=wait, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


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
        if stem.shape[0] < nb_samples:
            stem = np.pad(stem, [(0, nb_samples - stem.shape[0]), (0, 0)])
        stems[name] = stem[:, 0] if mono else stem
    return stems


def join_blocks(blocks: list[np.ndarray]) -> np.ndarray:
    """Consecutive (nb_block_samples, nb_channels) blocks as one array; a lone non-empty block as it is
    (audio that fits in one chunk is not copied again)."""
    filled = [block for block in blocks if block.shape[0]]
    return filled[0] if len(filled) == 1 else np.concatenate(blocks, axis=0)


class WholeSeparation:
    """`separate` for an engine of the `separate_stream` interface (`sample_rate`, `min_samples`,
    `chunk_layout`, `separate_chunk`): the Separator, the TF Serving client, the edge runner."""

    def separate(self, waveform: np.ndarray, sample_rate: int | None = None,
                 source: str = "<array>") -> dict[str, np.ndarray]:
        """Separate a NumPy waveform of any length, channel count and sample rate.

        Args:
            waveform: (nb_samples, nb_channels) or (nb_samples,) float audio.
            sample_rate: its rate; resampled to the model's and back when different.
            source: name used in error messages.
        Returns:
            {"vocals", "accompaniment"}: arrays shaped like `waveform`, at its sample rate.

        Audio longer than a chunk is separated in chunks (see the engine's `chunk_layout`).
        """
        return separate_whole(self, waveform, sample_rate, source)
