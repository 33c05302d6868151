"""tensorflow-io reader: training excerpts decoded inside tf.data, in parallel maps, from WAV/FLAC files.

The Python reader (pipeline.waveform_excerpts) reads every excerpt in one generator thread. This one
draws the same plan (pipeline.excerpt_plan: which track, where, swapped, at what gain) in that thread,
which is cheap, and decodes the audio in `tf.data` maps that run `parallel_reads` at a time:
`tfio.audio.AudioIOTensor` opens a file and decodes only the slice an excerpt needs. For the same seed
it yields the same excerpts as the Python reader, sample for sample (tested). Under multi-worker
training each worker decodes only its own share of the plan (`shard`).

It reads FileTracks (WAV and FLAC stems: DSD100, MUSDB18-HQ, MIR-1K, folders) whose files are at the
model's sample rate, 16- or 24-bit integer or 32-bit float; stem MP4 (MUSDB18) and files that need
resampling stay with the Python reader, and are refused here in one line.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_io as tfio

from svsgan_tf.config import DataConfig
from svsgan_tf.data.pipeline import Cut, excerpt_plan
from svsgan_tf.errors import DataError

logger = logging.getLogger(__name__)

# soundfile subtype -> (the dtype tensorflow-io decodes it to, the scale soundfile's float32 reading uses)
DTYPES = {"PCM_16": (tf.int16, 32768.0), "PCM_24": (tf.int32, 2.0 ** 31), "FLOAT": (tf.float32, 1.0)}
STEMS = ("vocals", "accompaniment", "mixture")      # rows of the file table


def dtype_code(path: str, subtype: str) -> int:
    """The index in DTYPES of a file's sample format; DataError naming the file for another one."""
    if subtype not in DTYPES:
        raise DataError(f"{path}: {subtype} samples; data.reader=tfio reads {', '.join(DTYPES)} "
                        "(use data.reader=python)")
    return list(DTYPES).index(subtype)


class FileTable:
    """The files of each track's stems as tensors the decoding map can index.

    paths (nb_tracks, 3, nb_files) string, "" where a stem has fewer files; codes (same shape) int32,
    the index in DTYPES of each file's sample format; channel (nb_tracks, 3) int32, the one channel a
    stem takes (MIR-1K) or -1 for all; nb_channels (nb_tracks,) int32.
    """

    def __init__(self, tracks: Sequence, sample_rate: int):
        import soundfile as sf

        from svsgan_tf.data.datasets import FileTrack

        rows, codes, channels = [], [], []
        for track in tracks:
            if not isinstance(track, FileTrack):
                raise DataError(f"{track.name}: data.reader=tfio reads WAV/FLAC stem files only; this "
                                f"track is {type(track).__name__} (use data.reader=python)")
            if track.native_rate != sample_rate:
                raise DataError(f"{track.name}: files at {track.native_rate} Hz, the model's rate is "
                                f"{sample_rate} Hz; data.reader=tfio does not resample (use data.reader=python)")
            files = {"vocals": track.sources["vocals"], "accompaniment": track.sources["accompaniment"],
                     "mixture": [track.mixture_file] if track.mixture_file else []}
            rows.append([list(files[stem]) for stem in STEMS])
            codes.append([[dtype_code(path, sf.info(path).subtype) for path in files[stem]] for stem in STEMS])
            channels.append([track.channel_of.get(stem, -1) for stem in STEMS])
        width = max(1, max(len(paths) for row in rows for paths in row))
        self.paths = tf.constant([[paths + [""] * (width - len(paths)) for paths in row] for row in rows])
        self.codes = tf.constant([[c + [0] * (width - len(c)) for c in row] for row in codes], tf.int32)
        self.channel = tf.constant(channels, tf.int32)
        self.nb_channels = tf.constant([t.nb_channels for t in tracks], tf.int32)
        self.has_mixture_file = tf.constant([bool(t.mixture_file) for t in tracks])
        self.width = width

    def read_file(self, path, code, start, nb_samples):
        """(nb_samples, file channels) float32 from `start`, zero-padded past the end of the file."""
        def decode(dtype, scale):
            def branch():
                audio = tfio.audio.AudioIOTensor(path, dtype=dtype)
                return tf.cast(audio[start:start + nb_samples], tf.float32) / scale
            return branch
        audio = tf.switch_case(code, [decode(dtype, scale) for dtype, scale in DTYPES.values()])
        return tf.pad(audio, [[0, nb_samples - tf.shape(audio)[0]], [0, 0]])

    def read_stem(self, track, stem: str, start, nb_samples):
        """One stem of a track (the sum of its files), (nb_samples, nb_channels) float32."""
        row = STEMS.index(stem)
        channels = self.nb_channels[track]
        total = tf.zeros([nb_samples, channels], tf.float32)
        for k in range(self.width):
            path, code = self.paths[track, row, k], self.codes[track, row, k]

            def add(path=path, code=code):
                audio = self.read_file(path, code, start, nb_samples)
                channel = self.channel[track, row]
                audio = tf.cond(channel >= 0, lambda: audio[:, channel:channel + 1], lambda: audio)
                return total + audio[:, :channels]
            total = tf.cond(path != "", add, lambda total=total: total)
        return total


def tfio_excerpts(tracks: Sequence, nb_samples: int, excerpts_per_track: int, seed: int, random: bool,
                  augment: DataConfig | None = None, interleave: bool = False, key: tuple | None = None,
                  sample_rate: int | None = None, parallel_reads: int | None = None,
                  shard: tuple[int, int] = (1, 0)) -> tf.data.Dataset:
    """Step 1 with tensorflow-io: the (mixture, vocals) excerpts, each (nb_samples, nb_channels)
    float32, that pipeline.waveform_excerpts yields for the same arguments, in the plan's order,
    decoded in `parallel_reads` lanes side by side (None: one per CPU core).

    shard=(nb_shards, index) keeps every nb_shards-th entry of the plan from `index` (a worker's share),
    of the plan's first entries in a multiple of nb_shards, so that every share is as long.
    """
    table = FileTable(tracks, sample_rate or tracks[0].sample_rate)

    def plan(*values):
        rng = np.random.default_rng([seed, *(int(v) for v in values)])
        for vocals, accompaniment in excerpt_plan(tracks, nb_samples, excerpts_per_track, rng, random,
                                                  augment, interleave):
            other = accompaniment or Cut(-1, 0)
            yield (vocals.track, vocals.start, vocals.swap, vocals.gain,
                   other.track, other.start, other.swap, other.gain)

    ints, flags, gains = (tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.bool), tf.TensorSpec((), tf.float32))
    entries = tf.data.Dataset.from_generator(plan, args=key or None,
                                             output_signature=(ints, ints, flags, gains) * 2)
    if shard[0] > 1:
        if random:                                            # excerpt_plan's length is then known
            entries = entries.take(len(tracks) * excerpts_per_track // shard[0] * shard[0])
        entries = entries.shard(*shard)

    def stem(track, name, start, swap, gain):
        audio = table.read_stem(track, name, start, nb_samples)
        return tf.cond(swap, lambda: audio[:, ::-1], lambda: audio) * gain

    def read(v_track, v_start, v_swap, v_gain, a_track, a_start, a_swap, a_gain):
        def own():                                   # unaugmented: the track's own mixture and vocals
            vocals = table.read_stem(v_track, "vocals", v_start, nb_samples)
            mixture = tf.cond(table.has_mixture_file[v_track],
                              lambda: table.read_stem(v_track, "mixture", v_start, nb_samples),
                              lambda: vocals + table.read_stem(v_track, "accompaniment", v_start, nb_samples))
            return mixture, vocals

        def mixed():                                 # augmented: stems of two cuts, swapped and scaled
            vocals = stem(v_track, "vocals", v_start, v_swap, v_gain)
            backing = stem(a_track, "accompaniment", a_start, a_swap, a_gain)
            backing = tf.cond(tf.shape(backing)[1] == tf.shape(vocals)[1], lambda: backing,
                              lambda: tf.repeat(tf.reduce_mean(backing, 1, keepdims=True), tf.shape(vocals)[1], 1))
            return vocals + backing, vocals

        mixture, vocals = tf.cond(a_track < 0, own, mixed)
        return tf.ensure_shape(mixture, (nb_samples, None)), tf.ensure_shape(vocals, (nb_samples, None))

    # An AudioIOTensor op keeps one file resource per op and re-opens it on every call, so two calls of one
    # map function at once can read each other's file (tensorflow/io issues 1647, 1764). Each lane is
    # its own map, traced apart (its own ops), whose calls run one at a time; the lanes run side by side
    # (prefetch threads) and are read round robin, which restores the plan's order.
    lanes = parallel_reads or os.cpu_count() or 1
    if lanes == 1:
        return entries.map(read)
    return tf.data.Dataset.choose_from_datasets(
        [entries.shard(lanes, index).map(read).prefetch(2) for index in range(lanes)],
        tf.data.Dataset.range(lanes).repeat(), stop_on_empty_dataset=True)
