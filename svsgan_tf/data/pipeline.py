"""tf.data pipeline: songs -> waveform excerpts -> channel examples -> in-graph magnitude (-> a teacher's
targets) -> shuffled batches.

Each step is a small named function so that real data sets (later loaders) plug in at the top: all a
source has to provide is a sequence of `TrackLike` objects holding float32 (nb_samples, nb_channels)
`mixture` and `vocals` arrays at the model's sample rate.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Protocol, Sequence

import numpy as np
import tensorflow as tf

from svsgan_tf.config import Config, DataConfig, STFTConfig
from svsgan_tf.errors import ConfigError, DataError
from svsgan_tf.audio import spectral
from svsgan_tf.audio.spectral import unpadded_frames

logger = logging.getLogger(__name__)


class TrackLike(Protocol):
    name: str
    mixture: np.ndarray    # (nb_samples, nb_channels) float32
    vocals: np.ndarray     # (nb_samples, nb_channels) float32
    sample_rate: int


def excerpt_samples(stft: STFTConfig, nb_frames: int) -> int:
    """Waveform length whose unpadded STFT has exactly `nb_frames` frames."""
    return (nb_frames - 1) * stft.hop_length + stft.n_fft


def readable(track):
    """A track with `read(start, length)` and `nb_samples`: data-set tracks as they are, in-memory
    tracks with mixture/vocals/accompaniment arrays (the synthetic set) wrapped."""
    if hasattr(track, "read"):
        return track
    from svsgan_tf.data.datasets import ArrayTrack

    accompaniment = getattr(track, "accompaniment", None)
    if accompaniment is None:
        accompaniment = track.mixture - track.vocals
    return ArrayTrack(track.name, track.vocals, accompaniment, track.sample_rate, track.mixture)


@dataclasses.dataclass(frozen=True)
class Cut:
    """Where one stem of a training excerpt comes from: a track (its index), its first sample, whether
    its stereo channels are swapped, and the gain it is scaled by."""

    track: int
    start: int
    swap: bool = False
    gain: float = 1.0


def excerpt_plan(tracks: Sequence, nb_samples: int, excerpts_per_track: int, rng: np.random.Generator,
                 random: bool, augment: DataConfig | None = None, interleave: bool = False):
    """Step 0: where each excerpt comes from, as (vocals Cut, accompaniment Cut or None) pairs drawn from
    `rng` (None: the vocals cut's track gives its own mixture and vocals there, unaugmented).

    random=True draws `excerpts_per_track` random positions per track: with `interleave`, in rounds of
    one excerpt per track, each round in a new shuffled track order (so neighbouring excerpts, which
    share a shuffle buffer, come from different songs); without, a track's excerpts one after another,
    tracks in a shuffled order. random=False cuts every track into consecutive excerpts (validation).
    With `augment` (training only), each excerpt takes its accompaniment from a random track
    (`random_mix`), scales each stem by a random gain (`gain_range`) and swaps stereo channels at random
    (`channel_swap`). Only the plan is drawn here; waveform_excerpts and data.tfio_reader read it.
    """
    def start_of(track):
        return int(rng.integers(0, max(1, track.nb_samples - nb_samples + 1)))

    def cut(index, start):
        swap = bool(augment.channel_swap and tracks[index].nb_channels == 2 and rng.random() < 0.5)
        return Cut(index, start, swap, float(rng.uniform(*augment.gain_range)))

    def random_excerpt(index):
        start = start_of(tracks[index])
        if augment is None:
            return Cut(index, start), None
        vocals = cut(index, start)
        other = int(rng.integers(len(tracks))) if augment.random_mix else index
        return vocals, cut(other, start_of(tracks[other]) if augment.random_mix else start)

    if not random:
        for index, track in enumerate(tracks):
            for start in range(0, max(1, track.nb_samples - nb_samples + 1), nb_samples):
                yield Cut(index, start), None
    elif interleave:
        for _ in range(excerpts_per_track):               # one excerpt of every track per round
            for index in rng.permutation(len(tracks)):
                yield random_excerpt(int(index))
    else:
        for index in rng.permutation(len(tracks)):         # a track's excerpts one after another
            for _ in range(excerpts_per_track):
                yield random_excerpt(int(index))


def read_excerpt(tracks: Sequence, vocals: Cut, accompaniment: Cut | None, nb_samples: int):
    """The (mixture, vocals) excerpt, each (nb_samples, nb_channels) float32, that one plan entry
    (excerpt_plan) describes, read with each track's `read`."""
    if accompaniment is None:
        excerpt = tracks[vocals.track].read(vocals.start, nb_samples)
        return excerpt["mixture"], excerpt["vocals"]

    def stem(name, where):
        audio = tracks[where.track].read(where.start, nb_samples)[name]
        return (audio[:, ::-1] if where.swap else audio) * np.float32(where.gain)

    voice, backing = stem("vocals", vocals), stem("accompaniment", accompaniment)
    if backing.shape[1] != voice.shape[1]:
        backing = np.repeat(backing.mean(1, keepdims=True), voice.shape[1], axis=1)
    return voice + backing, voice


def waveform_excerpts(tracks: Sequence[TrackLike], nb_samples: int, excerpts_per_track: int,
                      seed: int, random: bool, augment: DataConfig | None = None,
                      interleave: bool = False, key: tuple | None = None) -> tf.data.Dataset:
    """Step 1: excerpts of (mixture, vocals), each (nb_samples, nb_channels), as excerpt_plan describes
    them, read in one Python generator. Tracks shorter than an excerpt are zero-padded.

    The plan is drawn from a generator seeded with (seed, *key) each time the data set is iterated
    (`key`: scalar int64 tensors, such as the epoch and pass of `training_dataset`, so that the draws
    depend on them alone). data.tfio_reader.tfio_excerpts yields the same excerpts, decoded in parallel.
    """
    tracks = [readable(t) for t in tracks]

    def generate(*values):
        rng = np.random.default_rng([seed, *(int(v) for v in values)])
        for vocals, accompaniment in excerpt_plan(tracks, nb_samples, excerpts_per_track, rng, random,
                                                  augment, interleave):
            yield read_excerpt(tracks, vocals, accompaniment, nb_samples)

    spec = tf.TensorSpec((nb_samples, None), tf.float32)              # channel count may vary
    return tf.data.Dataset.from_generator(generate, args=key or None, output_signature=(spec, spec))


def excerpt_reader(data: DataConfig):
    """Step 1's reader that data.reader names: waveform_excerpts, or tfio_reader.tfio_excerpts with
    data.parallel_reads (same arguments, same excerpts)."""
    if data.reader == "python":
        return waveform_excerpts
    import functools

    from svsgan_tf.data.tfio_reader import tfio_excerpts

    return functools.partial(tfio_excerpts, parallel_reads=data.parallel_reads or None)


def split_channels(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Step 2: (nb_samples, nb_channels) pairs -> one mono (nb_samples,) pair per channel."""
    return dataset.map(lambda m, v: (tf.transpose(m), tf.transpose(v))).unbatch()


def stereo_channels(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Step 2 (joint-stereo models): (nb_samples, nb_channels) pairs -> (2, nb_samples) pairs; a mono
    excerpt is duplicated into both channels (the data sets are checked to hold 1 or 2 channels)."""
    def stereo(waveform):
        waveform = tf.cond(tf.shape(waveform)[1] == 1, lambda: tf.tile(waveform, [1, 2]), lambda: waveform)
        return tf.transpose(waveform)                                # (2, nb_samples)
    return dataset.map(lambda m, v: (stereo(m), stereo(v)))


def to_magnitude(dataset: tf.data.Dataset, stft: STFTConfig, target: str = "magnitude") -> tf.data.Dataset:
    """Step 3: waveforms (..., nb_samples) -> magnitude frames (..., nb_frames, nb_bins), in the graph.
    The vocals become their magnitude, or with target="phase_sensitive" their truncated phase-sensitive
    magnitude against the mixture (`spectral.phase_sensitive_magnitude`)."""
    def magnitude(mixture, vocals):
        mixture_spectrum = unpadded_frames(mixture, stft.n_fft, stft.hop_length)
        vocals_spectrum = unpadded_frames(vocals, stft.n_fft, stft.hop_length)
        if target == "magnitude":
            return tf.abs(mixture_spectrum), tf.abs(vocals_spectrum)
        return tf.abs(mixture_spectrum), spectral.phase_sensitive_magnitude(vocals_spectrum, mixture_spectrum)
    return dataset.map(magnitude, num_parallel_calls=tf.data.AUTOTUNE)


def join_channels(dataset: tf.data.Dataset, nb_bins: int) -> tf.data.Dataset:
    """Step 3b (joint-stereo models): (2, nb_frames, nb_bins) -> (nb_frames, 2 * nb_bins) frames, the
    channels' bins side by side (channel-major), the layout the generator takes."""
    return dataset.map(lambda m, v: (spectral.join_channels(m, 2, nb_bins), spectral.join_channels(v, 2, nb_bins)))


def channel_examples(dataset: tf.data.Dataset, config: Config) -> tf.data.Dataset:
    """Steps 2-3: waveform excerpts -> magnitude examples (nb_frames, nb_features), one per channel
    (model.nb_channels 1) or one per excerpt with both channels joined (2)."""
    target = config.data.target
    if config.model.nb_channels == 1:
        return to_magnitude(split_channels(dataset), config.stft, target)
    stereo = stereo_channels(dataset)
    return join_channels(to_magnitude(stereo, config.stft, target), config.stft.nb_bins)


@functools.lru_cache(maxsize=2)
def load_teacher(model: str):
    """The Separator of data.teacher (a model folder or a shipped model's name), loaded once per process."""
    from svsgan_tf.separation.separator import Separator
    from svsgan_tf.shipped_models import resolve_model

    return Separator.from_directory(resolve_model(model), precision="float32")


def check_teacher(teacher, config: Config) -> None:
    """ConfigError unless the teacher's STFT (window, hop, rate) and channel layout (model.nb_channels)
    are the student's: its masks must be the student's frames and bins, estimated from what the
    student sees (a joint-stereo teacher given one channel would see a dual-mono pair)."""
    if teacher.config.stft != config.stft:
        raise ConfigError(f"data.teacher={config.data.teacher}: its STFT {teacher.config.stft} differs from "
                          f"the model's {config.stft}; a student learns on its teacher's frames")
    if teacher.config.model.nb_channels != config.model.nb_channels:
        raise ConfigError(f"data.teacher={config.data.teacher}: it sees {teacher.config.model.nb_channels} "
                          f"channel(s) at once, the model model.nb_channels={config.model.nb_channels}")


def teacher_targets(dataset: tf.data.Dataset, teacher, nb_channels: int, nb_bins: int) -> tf.data.Dataset:
    """Step 3c (distillation, data.teacher): each example's target becomes the teacher's vocals estimate,
    its mask (`Separator.mask`, with its own smoothing and power) times the mixture magnitude.

    Args:
        dataset: (mixture, vocals) examples, each (nb_frames, nb_channels * nb_bins) magnitude.
        teacher: a Separator with the student's STFT (see check_teacher).
    Returns:
        (mixture, teacher's estimate) examples of the same shapes.
    """
    def estimate(mixture, _):
        channels = spectral.split_channels(mixture, nb_channels, nb_bins)     # (nb_channels, nb_frames, nb_bins)
        mask = spectral.join_channels(teacher.mask(channels), nb_channels, nb_bins)
        return mixture, mask * mixture                                        # (nb_frames, nb_channels * nb_bins)
    return dataset.map(estimate, num_parallel_calls=tf.data.AUTOTUNE)


def examples_per_excerpt(track, config: Config) -> int:
    """How many examples one excerpt of `track` gives: its channel count for a channel-by-channel
    model, 1 for a joint-stereo one (which takes mono or stereo tracks only)."""
    nb_channels = readable(track).nb_channels
    if config.model.nb_channels == 1:
        return nb_channels
    if nb_channels not in (1, 2):
        raise DataError(f"{track.name}: has {nb_channels} channels; a joint-stereo model "
                        "(model.nb_channels=2) trains on mono or stereo tracks only")
    return 1


def shuffle_frames(dataset: tf.data.Dataset, nb_frames: int, buffer: int, seed) -> tf.data.Dataset:
    """Step 4 (frame-wise models): shuffle single frames across excerpts and songs, then regroup them
    into pseudo-excerpts of `nb_frames` frames, as the paper's data loader shuffles frame indices.
    `seed` (an int or an int64 tensor) fixes the order."""
    frames = shuffle_blocks(dataset.unbatch(), buffer, seed)     # (nb_bins,) pairs
    return frames.batch(nb_frames, drop_remainder=True)          # (nb_frames, nb_bins) pairs


def shuffle_blocks(dataset: tf.data.Dataset, buffer: int, seed) -> tf.data.Dataset:
    """Shuffle elements within consecutive blocks of `buffer` elements, each block by a permutation drawn
    from (seed, block index) alone (stateless: `tf.data.Dataset.shuffle` takes no seed that varies
    per epoch inside a pipeline, and its own counter restarts when a run resumes).

    `seed`: an int or an int64 scalar tensor. Elements keep their shapes; a block holds at most
    `buffer` of them, as a shuffle buffer would.
    """
    def permute(index, block):
        size = tf.shape(tf.nest.flatten(block)[0])[0]
        order = tf.random.experimental.stateless_shuffle(
            tf.range(size), seed=tf.stack([tf.cast(seed, tf.int64), index]))
        return tf.nest.map_structure(lambda values: tf.gather(values, order), block)
    return dataset.batch(buffer).enumerate().map(permute).unbatch()


def batch_examples(dataset: tf.data.Dataset, batch_size: int, buffer: int | None, seed,
                   drop_remainder: bool) -> tf.data.Dataset:
    """Step 5: shuffle examples (when buffer is given; `seed`, an int or an int64 tensor, fixes the
    order) and batch to (batch, nb_frames, nb_bins)."""
    if buffer:
        dataset = shuffle_blocks(dataset, buffer, seed)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def epoch_steps(tracks: Sequence[TrackLike], config: Config) -> int:
    """Batches per training epoch: train.steps_per_epoch, or else one pass over the data (every track's
    data.excerpts_per_track excerpts, each one example per channel or one joint example)."""
    if config.train.steps_per_epoch:
        return config.train.steps_per_epoch
    nb_examples = sum(examples_per_excerpt(t, config) for t in tracks) * config.data.excerpts_per_track
    return nb_examples // config.train.batch_size


def training_dataset(tracks: Sequence[TrackLike], config: Config, seed: int | None = None,
                     first_epoch: int = 0, nb_epochs: int = 1, shard: tuple[int, int] = (1, 0),
                     replicas: int = 1) -> tf.data.Dataset:
    """Batches of (mixture magnitude, vocals magnitude), each (batch, excerpt_frames, nb_features), for
    epochs first_epoch .. first_epoch + nb_epochs - 1, `epoch_steps` batches each; with data.teacher,
    the vocals are the teacher's estimate (`teacher_targets`).

    An epoch's batches are drawn from (seed, epoch) alone, pass after pass over the data as long as the
    epoch needs: a run resumed at epoch k (`first_epoch=k`) sees the batches an uninterrupted run sees
    there. Frames are shuffled across songs for the frame-wise encoder (or when data.shuffle_frames is
    set); the RNN keeps contiguous excerpts, shuffled as a whole.

    One worker's input under multi-worker training (data.reader=tfio only, see
    distribute.training_input): `shard`=(nb_workers, index) reads and decodes only every nb_workers-th
    excerpt of each pass from `index`, and the batches, of train.batch_size / (nb_workers * replicas)
    examples, feed the worker's `replicas` replicas in turn (`replicas` batches per step), so that a
    step still sees train.batch_size examples in all, as many steps per pass.
    """
    data, stft = config.data, config.stft
    seed = config.train.seed if seed is None else seed
    steps = epoch_steps(tracks, config)
    nb_shards = shard[0]
    if nb_shards > 1 and data.reader != "tfio":
        raise ValueError("only the tfio reader decodes a shard of the excerpts (data.reader=tfio)")
    batch_size = config.train.batch_size // (nb_shards * replicas)
    per_excerpt = [examples_per_excerpt(t, config) for t in tracks]
    # a shard holds len(tracks) * excerpts_per_track // nb_shards excerpts of each pass (tfio_excerpts)
    fewest = (len(tracks) * data.excerpts_per_track // nb_shards) * min(per_excerpt)
    if nb_shards > 1 and fewest < batch_size:
        raise DataError(f"training data: a worker's share of a pass may hold {fewest} examples, fewer than its "
                        f"batch of {batch_size}; add tracks or excerpts, or lower the batch size")
    teacher = load_teacher(data.teacher) if data.teacher else None
    if teacher is not None:
        check_teacher(teacher, config)
    nb_examples = sum(per_excerpt) * data.excerpts_per_track
    if nb_examples < config.train.batch_size:
        raise DataError(f"training data: {nb_examples} examples per pass, fewer than one batch of "
                        f"train.batch_size={config.train.batch_size}; add tracks or lower the batch size")

    def one_pass(epoch, index):
        # every random draw of this pass, in NumPy and in tf.data, is seeded by (seed, epoch, index)
        mixed = (tf.constant(seed, tf.int64) * 1_000_003 + epoch) * 1_009 + index
        sharded = {"shard": shard} if nb_shards > 1 else {}
        dataset = excerpt_reader(data)(tracks, excerpt_samples(stft, data.excerpt_frames),
                                       data.excerpts_per_track, seed, random=True,
                                       augment=data if data.augment else None, interleave=data.interleave_tracks,
                                       key=(epoch, index), **sharded)
        dataset = channel_examples(dataset, config)
        if teacher is not None:
            dataset = teacher_targets(dataset, teacher, config.model.nb_channels, stft.nb_bins)
        if config.shuffles_frames:
            dataset = shuffle_frames(dataset, data.excerpt_frames, data.shuffle_buffer, mixed)
        return batch_examples(dataset, batch_size,
                              max(1, data.shuffle_buffer // data.excerpt_frames), mixed, drop_remainder=True)

    def one_epoch(epoch):
        return tf.data.Dataset.range(MAX_PASSES).flat_map(lambda index: one_pass(epoch, index)).take(steps * replicas)

    dataset = tf.data.Dataset.range(first_epoch, first_epoch + nb_epochs).flat_map(one_epoch)
    return dataset.apply(tf.data.experimental.assert_cardinality(nb_epochs * steps * replicas)).prefetch(
        tf.data.AUTOTUNE)


MAX_PASSES = 2 ** 31       # passes over the data one epoch may take (it takes what epoch_steps needs)


def validation_dataset(tracks: Sequence[TrackLike], config: Config) -> tf.data.Dataset:
    """Consecutive, unshuffled excerpts of every track, batched like the training set."""
    data, stft = config.data, config.stft
    dataset = waveform_excerpts(tracks, excerpt_samples(stft, data.excerpt_frames), 1, 0, random=False)
    dataset = batch_examples(channel_examples(dataset, config), config.train.batch_size, None, 0,
                             drop_remainder=False)
    nb_samples = excerpt_samples(stft, data.excerpt_frames)
    nb_examples = sum(examples_per_excerpt(t, config) * max(1, readable(t).nb_samples // nb_samples)
                      for t in tracks)
    return dataset.apply(tf.data.experimental.assert_cardinality(-(-nb_examples // config.train.batch_size)))


def input_statistics(dataset: tf.data.Dataset, max_batches: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard deviation of log1p(mixture magnitude) over the first batches.

    Returns:
        (mean, std), each (nb_features,) float32.
    """
    total = total_sq = None
    count = 0
    for mixture, _ in dataset.take(max_batches):
        features = tf.reshape(tf.math.log1p(mixture), (-1, mixture.shape[-1])).numpy()  # (frames, nb_features)
        total = features.sum(0) if total is None else total + features.sum(0)
        total_sq = (features ** 2).sum(0) if total_sq is None else total_sq + (features ** 2).sum(0)
        count += features.shape[0]
    if count == 0:
        raise DataError("training data: yields no batch, add tracks or lower train.batch_size")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    return mean.astype(np.float32), std.astype(np.float32)


def synthetic_tracks(data: DataConfig, stft: STFTConfig, seed: int, nb_tracks: int | None = None,
                     prefix: str = "synth"):
    """The embedded synthetic multitrack set at the model's sample rate."""
    from svsgan_tf.data.synthetic import make_tracks

    return make_tracks(nb_tracks or data.nb_tracks, seed=seed, duration=data.track_seconds,
                       sample_rate=stft.sample_rate, prefix=prefix)
