"""Typed, JSON round-trippable configuration of the STFT, the models, the data and the training."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

from svsgan_tf.errors import ConfigError

GENERATORS = ("encoder", "rnn", "unet")
MASK_EXTENSIONS = ("edge", "zeros")          # the U-Net's mask above its band: the top bin's, or 0
PHASES = ("pretrain", "gan")
LOSSES = ("kl", "mse", "l1")                  # G's supervised losses (losses.supervised_loss)
# named recipes, as Spleeter names its models: configs/<name>.json inside the package
RECIPES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
# settings retired after the experiments showed them useless (docs/experiments.md); a saved config that
# holds one at the value that turned it off still loads, any other value needs the code of RETIRED_TAG
RETIRED = {"model.channel_basis": "left_right", "model.context_frames": 0, "data.speed_range": [1.0, 1.0],
           "data.eq_db": 0.0, "train.average_epochs": 0}
RETIRED_TAG = "experiments-2026-12 (commit f5b77d0)"
TARGETS = ("vocals", "accompaniment")                  # the stems every separator returns, in order
TRAINING_TARGETS = ("magnitude", "phase_sensitive")   # what G estimates (data.target)
READERS = ("python", "tfio")                            # how training excerpts are read (data.reader)
# the U-Net's arithmetic when separating (separation.precision); "auto": bfloat16 where it is native
PRECISIONS = ("float32", "bfloat16", "auto")


# G's and D's optimizer (train.optimizer); sgd_momentum is SGD with momentum 0.9
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd", "sgd_momentum")

@dataclass
class STFTConfig:
    """Short-time Fourier transform used by every model: periodic Hann window, 50% overlap."""

    sample_rate: int = 44100
    n_fft: int = 2048
    hop_length: int = 1024

    @property
    def nb_bins(self) -> int:
        return self.n_fft // 2 + 1

    def bins_below(self, frequency: float | None) -> int:
        """Number of STFT bins whose centre frequency is <= `frequency` Hz (all bins for None), as
        Open-Unmix's `bandwidth_to_max_bin`."""
        if frequency is None:
            return self.nb_bins
        bin_width = self.sample_rate / self.n_fft
        return max(1, min(self.nb_bins, int(frequency // bin_width) + 1))

    def validate(self) -> None:
        _check(self.sample_rate > 0, "stft.sample_rate", self.sample_rate, "must be > 0")
        _check(self.n_fft >= 16 and self.n_fft & (self.n_fft - 1) == 0,
               "stft.n_fft", self.n_fft, "must be a power of two >= 16")
        _check(0 < self.hop_length <= self.n_fft // 2,
               "stft.hop_length", self.hop_length, "must be in (0, n_fft/2] for exact overlap-add")
        _check(self.n_fft % self.hop_length == 0,
               "stft.hop_length", self.hop_length, "must divide n_fft")


@dataclass
class ModelConfig:
    """Generator and discriminator architecture.

    The generator maps mixture magnitude frames (batch, nb_frames, nb_channels * nb_bins) to a mask in
    [0, 1] of the same shape. `encoder` is the fully connected encoder-decoder of the paper's Fig. 1, applied to each
    frame; `rnn` puts an LSTM between encoder and decoder (Fig. 4); `unet` (beyond the paper) is a
    convolutional U-Net over the spectrogram as Spleeter's, with `unet_filters[i]` filters at depth i
    (models.generator.UNetGenerator). The discriminator is an MLP over the
    candidate vocals frame joined with the mixture frame (Fig. 5).

    `max_frequency` (Hz) limits what the generator sees: only bins up to it enter the encoder (16 kHz,
    as Open-Unmix; AAC-coded training audio such as MUSDB18 holds almost nothing above it, so those
    bins carry no information and only noise once standardised). The mask still covers every bin.
    None: the full band.

    `nb_channels` is how many channels the generator sees at once. 1 (the paper's model): each channel
    is separated on its own. 2 (joint stereo, as in Open-Unmix and Spleeter): a frame holds both
    channels' bins, channel-major, (batch, nb_frames, 2 * nb_bins), so the generator can use the
    inter-channel cues (vocals are mostly panned to the centre) and predicts one mask per channel; it
    separates mono audio as two equal channels, and audio of more channels channel by channel. With
    `swap_average` (joint stereo only; off by default, so older models separate as before), the
    Separator also runs the generator on the channels swapped and averages the two masks (swapped
    back), a test-time augmentation that matches training's channel swaps.

    `dropout` is the fraction of every hidden layer's outputs in G dropped in training (0: none).

    Without `compress_input` the generator sees the band's magnitudes as they are (Spleeter's U-Net),
    not their standardised log1p. The U-Net's own settings: `unet_stems` 2 builds a U-Net per stem
    (vocals, accompaniment) combined by the ratio of squared estimates, as Spleeter's 2stems;
    `unet_segment_frames` cuts the spectrogram into windows of that many frames seen one by one
    (Spleeter: 512); `unet_mask_extension` is the mask above the band: "edge" (its top bin's) or
    "zeros" (Spleeter's). The `spleeter` recipe holds Spleeter's 2stems settings.
    """

    generator: str = "encoder"
    max_frequency: float | None = 16000.0
    nb_channels: int = 1
    swap_average: bool = False
    dropout: float = 0.0
    encoder_units: tuple[int, ...] = (512, 256)
    lstm_units: int = 256
    bidirectional: bool = False
    decoder_units: tuple[int, ...] = (512,)
    discriminator_units: tuple[int, ...] = (512, 512, 512)
    unet_filters: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    unet_stems: int = 1
    unet_segment_frames: int | None = None
    unet_mask_extension: str = "edge"
    compress_input: bool = True

    def validate(self) -> None:
        _check(self.generator in GENERATORS, "model.generator", self.generator,
               f"unknown generator, expected one of {', '.join(GENERATORS)}")
        for name in ("encoder_units", "decoder_units", "discriminator_units", "unet_filters"):
            units = getattr(self, name)
            _check(len(units) > 0 and all(isinstance(u, int) and u > 0 for u in units),
                   f"model.{name}", list(units), "must be a non-empty list of positive integers")
        _check(self.lstm_units > 0, "model.lstm_units", self.lstm_units, "must be > 0")
        _check(self.nb_channels in (1, 2), "model.nb_channels", self.nb_channels,
               "must be 1 (channel by channel) or 2 (joint stereo)")
        _check(not self.swap_average or self.nb_channels == 2, "model.swap_average", self.swap_average,
               "needs a joint-stereo generator (model.nb_channels=2)")
        _check(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "must be in [0, 1)")
        _check(self.max_frequency is None or self.max_frequency > 0, "model.max_frequency",
               self.max_frequency, "must be > 0 Hz or null (full band)")
        _check(self.unet_stems in (1, 2), "model.unet_stems", self.unet_stems,
               "must be 1 (the vocals mask) or 2 (vocals and accompaniment U-Nets, Spleeter's ratio masks)")
        multiple = 2 ** len(self.unet_filters)
        _check(self.unet_segment_frames is None or (self.unet_segment_frames > 0
                                                    and self.unet_segment_frames % multiple == 0),
               "model.unet_segment_frames", self.unet_segment_frames,
               f"must be null or a positive multiple of 2^len(unet_filters) = {multiple}")
        _check(self.unet_mask_extension in MASK_EXTENSIONS, "model.unet_mask_extension",
               self.unet_mask_extension, f"must be one of {', '.join(MASK_EXTENSIONS)}")


@dataclass
class DataConfig:
    """Where training examples come from and how they are cut and augmented.

    `source` is "synthetic" or a data set `[format:]PATH` (see datasets.load_dataset); its train
    subset is split into training and `validation_tracks` held-out songs. `extra_sources` are added to
    training only (e.g. MIR-1K). With `augment`, training excerpts mix stems of random tracks
    (`random_mix`), scale each stem by a gain in `gain_range` and swap channels (`channel_swap`).

    `target` is what G learns to estimate: the vocals' "magnitude" (the paper's), or their
    "phase_sensitive" magnitude |S| cos(angle S - angle X) clipped to [0, |X|], the part of the vocals
    spectrum in phase with the mixture, which is what a mask applied with the mixture's phase can
    reach (Erdogan et al., 2015). Validation uses the same target.

    With a `teacher` (a model folder or a shipped model's name, with the same STFT), G learns the
    teacher's vocals estimate instead, its mask (`Separator.mask`) times the mixture magnitude, on the
    same excerpts (knowledge distillation: every random remix gets a target, see
    data.pipeline.teacher_targets). Validation still scores against the true vocals (`target`).

    With `interleave_tracks`, training excerpts are drawn in rounds of one per track (see
    data.waveform_excerpts), so that the shuffle buffers, which hold a few dozen excerpts, mix many
    songs; without it (the default, which older runs used) a track's excerpts come one after another
    and a buffer holds two or three songs.

    `reader` is how training excerpts are read: "python" (one generator thread; every format, data
    sets small enough are decoded into memory once) or "tfio" (WAV/FLAC stems at the model's rate,
    streamed and decoded by tensorflow-io in `parallel_reads` tf.data lanes side by side, 0: one per core;
    the same excerpts, see data.tfio_reader).
    """

    source: str = "synthetic"
    nb_tracks: int = 16
    track_seconds: float = 6.0
    validation_tracks: int = 2
    excerpt_frames: int = 32
    excerpts_per_track: int = 8
    shuffle_frames: bool | None = None
    shuffle_buffer: int = 2048
    augment: bool = False
    random_mix: bool = True
    gain_range: tuple[float, ...] = (0.25, 1.25)
    channel_swap: bool = True
    extra_sources: tuple[str, ...] = ()
    target: str = "magnitude"
    interleave_tracks: bool = False
    reader: str = "python"
    parallel_reads: int = 0
    teacher: str | None = None

    def validate(self) -> None:
        _check(self.nb_tracks > 0, "data.nb_tracks", self.nb_tracks, "must be > 0")
        _check(self.track_seconds > 0, "data.track_seconds", self.track_seconds, "must be > 0")
        _check(self.validation_tracks >= 0, "data.validation_tracks", self.validation_tracks, "must be >= 0")
        # a data set's track count is known only once it is read (training.load_tracks checks it there)
        _check(self.source != "synthetic" or self.validation_tracks < self.nb_tracks, "data.validation_tracks",
               self.validation_tracks, "must be smaller than data.nb_tracks")
        _check(self.excerpt_frames > 0, "data.excerpt_frames", self.excerpt_frames, "must be > 0")
        _check(self.excerpts_per_track > 0, "data.excerpts_per_track", self.excerpts_per_track,
               "must be > 0")
        _check(self.shuffle_buffer > 0, "data.shuffle_buffer", self.shuffle_buffer, "must be > 0")
        _check(len(self.gain_range) == 2 and 0 < self.gain_range[0] <= self.gain_range[1],
               "data.gain_range", list(self.gain_range), "must be [low, high] with 0 < low <= high")
        _check(self.target in TRAINING_TARGETS, "data.target", self.target,
               f"unknown target, expected one of {', '.join(TRAINING_TARGETS)}")
        _check(self.reader in READERS, "data.reader", self.reader, f"expected one of {', '.join(READERS)}")
        _check(self.teacher is None or (isinstance(self.teacher, str) and self.teacher.strip()), "data.teacher",
               self.teacher, "must be null or a model folder or shipped model's name")
        _check(self.parallel_reads >= 0, "data.parallel_reads", self.parallel_reads, "must be >= 0 (0: one per CPU core)")


@dataclass
class TrainConfig:
    """Two-phase training: supervised pretraining of G (the KL divergence by default), then the conditional GAN.

    G's supervised loss is `loss` (see losses.py): "kl", the generalized KL divergence of the paper's
    eq. (1); "mse", the squared error of the magnitudes (Open-Unmix's), which weighs bins by energy as
    SDR does; "l1", their absolute error (Spleeter's).

    In the GAN phase G's gradient is kl_weight * dL + adversarial_weight * scale * dAdv, where L is the
    supervised loss, whichever it is (kl_weight keeps the paper's name). With balance="gradient",
    scale = ||dL|| / ||dAdv|| at G's last layer, so adversarial_weight is the ratio of the adversarial
    to the supervised gradient there (0.5: half as strong); with "none", scale = 1 and the weights
    multiply the raw losses (the KL or the squared error, summed over bins, then dwarfs the adversarial
    term).

    `freeze_batch_norm` keeps G's batch normalisations in inference mode, their statistics and their
    scale and offset fixed, as
    Keras' transfer-learning guide advises for fine-tuning a pretrained network (the imported Spleeter
    U-Net) on small batches whose statistics are not its training data's.

    G's rate within each phase follows `lr_schedule`: "constant", or "cosine", which decays it per epoch
    from the phase's rate to `final_lr_fraction` times that rate at the phase's last epoch.
    """

    pretrain_epochs: int = 10
    gan_epochs: int = 0
    batch_size: int = 16
    steps_per_epoch: int | None = None
    g_learning_rate: float = 1e-3
    gan_g_learning_rate: float = 1e-4
    d_learning_rate: float = 1e-4
    lr_schedule: str = "constant"
    final_lr_fraction: float = 0.1
    optimizer: str = "adam"
    loss: str = "kl"
    kl_weight: float = 1.0
    adversarial_weight: float = 0.5
    balance: str = "gradient"
    eps: float = 1e-8
    seed: int = 42
    freeze_batch_norm: bool = False

    @property
    def epochs(self) -> int:
        return self.pretrain_epochs + self.gan_epochs

    def phase(self, epoch: int) -> str:
        """Which phase a 0-based epoch belongs to."""
        return "pretrain" if epoch < self.pretrain_epochs else "gan"

    def learning_rate(self, epoch: int) -> float:
        """G's learning rate in a 0-based epoch: its phase's rate, decayed by `lr_schedule`."""
        if self.phase(epoch) == "pretrain":
            rate, position, length = self.g_learning_rate, epoch, self.pretrain_epochs
        else:
            rate, position, length = self.gan_g_learning_rate, epoch - self.pretrain_epochs, self.gan_epochs
        if self.lr_schedule == "constant" or length <= 1:
            return rate
        progress = min(position, length - 1) / (length - 1)        # 0 at the phase's first epoch, 1 at its last
        fraction = self.final_lr_fraction
        return rate * (fraction + (1.0 - fraction) * 0.5 * (1.0 + math.cos(math.pi * progress)))

    def validate(self) -> None:
        _check(self.pretrain_epochs >= 0, "train.pretrain_epochs", self.pretrain_epochs, "must be >= 0")
        _check(self.gan_epochs >= 0, "train.gan_epochs", self.gan_epochs, "must be >= 0")
        _check(self.epochs > 0, "train.epochs", self.epochs, "pretrain_epochs + gan_epochs must be > 0")
        _check(self.batch_size > 0, "train.batch_size", self.batch_size, "must be > 0")
        _check(self.steps_per_epoch is None or self.steps_per_epoch > 0, "train.steps_per_epoch",
               self.steps_per_epoch, "must be > 0 or null")
        for name in ("g_learning_rate", "gan_g_learning_rate", "d_learning_rate", "eps"):
            _check(getattr(self, name) > 0, f"train.{name}", getattr(self, name), "must be > 0")
        _check(self.lr_schedule in ("constant", "cosine"), "train.lr_schedule", self.lr_schedule,
               "unknown schedule, expected constant or cosine")
        _check(0 < self.final_lr_fraction <= 1, "train.final_lr_fraction", self.final_lr_fraction,
               "must be in (0, 1]")
        _check(self.optimizer in OPTIMIZERS, "train.optimizer", self.optimizer,
               f"unknown optimizer, expected one of {', '.join(OPTIMIZERS)}")
        _check(self.loss in LOSSES, "train.loss", self.loss,
               f"unknown supervised loss, expected one of {', '.join(LOSSES)} (kl is the paper's"
               + (f"; snr was retired, see docs/experiments.md and git tag {RETIRED_TAG})" if self.loss == "snr"
                  else ")"))
        _check(self.kl_weight >= 0, "train.kl_weight", self.kl_weight, "must be >= 0")
        _check(self.adversarial_weight >= 0, "train.adversarial_weight", self.adversarial_weight,
               "must be >= 0")
        _check(self.balance in ("gradient", "none"), "train.balance", self.balance,
               "unknown balance, expected gradient or none")


@dataclass
class SeparationConfig:
    """How the Separator turns G's mask into stems; the defaults separate exactly as G was trained.

    `hop_length` is the hop of the Separator's STFT (None: stft.hop_length, the hop G trained at). A
    frame-wise generator (the encoder) sees one frame at a time, whatever the
    hop, so it can separate with a smaller hop than it trained with: each sample then lies under
    n_fft / hop_length frames instead of two, and the overlap-add averages that many estimates.

    `mask_smoothing` = k (odd) averages the mask over k consecutive frames, centred (the first and
    last frame repeated at the edges): a frame-wise mask flickers from frame to frame, which is heard
    as musical noise.

    `mask_power` = a applies the vocals mask m as m^a / (m^a + (1 - m)^a): the vocals share of the two
    estimates' magnitudes m|X| and (1 - m)|X|, each raised to the power a (Liutkus and Badeau's
    generalised Wiener filter with fractional powers). 1: m itself; 2: the single-channel Wiener mask
    of their power spectra; below 1 softens the mask towards 0.5, above 1 sharpens it.

    Smoothing comes first, then the power, for either target; the accompaniment is 1 minus the result.

    `precision` is the arithmetic of a U-Net generator's convolutions when a model folder is loaded to
    separate (`Separator.from_directory`): "float32"; "bfloat16" (variables stay float32, every
    layer but the last runs in bfloat16; the last convolution, the sigmoid and the mask are float32);
    "auto": bfloat16 on a CPU with native bfloat16 instructions (AMX or AVX512-BF16) and no GPU, else
    float32. Training and teachers always run in float32; SavedModel exports too unless exported with
    `--precision bfloat16`.
    """

    hop_length: int | None = None
    mask_smoothing: int = 1
    mask_power: float = 1.0
    precision: str = "float32"

    def validate(self) -> None:
        _check(self.hop_length is None or (isinstance(self.hop_length, int) and self.hop_length > 0),
               "separation.hop_length", self.hop_length, "must be > 0 or null (stft.hop_length)")
        _check(self.mask_smoothing >= 1 and self.mask_smoothing % 2 == 1, "separation.mask_smoothing",
               self.mask_smoothing, "must be an odd number of frames >= 1 (1: no smoothing)")
        _check(0 < self.mask_power <= 8, "separation.mask_power", self.mask_power, "must be in (0, 8]")
        _check(self.precision in PRECISIONS, "separation.precision", self.precision, f"must be one of {PRECISIONS}")


@dataclass
class Config:
    """Everything needed to rebuild a model and repeat its training; saved beside every checkpoint."""

    stft: STFTConfig = field(default_factory=STFTConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    separation: SeparationConfig = field(default_factory=SeparationConfig)
    git_commit: str = ""

    @property
    def separation_stft(self) -> STFTConfig:
        """The STFT the Separator uses: stft with separation.hop_length, when set."""
        if self.separation.hop_length is None:
            return self.stft
        return dataclasses.replace(self.stft, hop_length=self.separation.hop_length)

    @property
    def nb_features(self) -> int:
        """Values per frame that the generator and discriminator see: model.nb_channels * stft.nb_bins."""
        return self.model.nb_channels * self.stft.nb_bins

    @property
    def frame_wise(self) -> bool:
        """Whether G's mask of a frame depends on that frame alone (the encoder)."""
        return self.model.generator == "encoder"

    @property
    def shuffles_frames(self) -> bool:
        """Whether training shuffles frames across excerpts: data.shuffle_frames, or by default for the
        frame-wise encoder only."""
        if self.data.shuffle_frames is not None:
            return self.data.shuffle_frames
        return self.frame_wise

    def validate(self) -> "Config":
        """Raise ConfigError on the first bad value; return self so calls can be chained."""
        for section in (self.stft, self.model, self.data, self.train, self.separation):
            section.validate()
        hop = self.separation.hop_length
        if hop is not None:
            _check(hop <= self.stft.n_fft // 2, "separation.hop_length", hop,
                   "must be in (0, n_fft/2] for exact overlap-add")
            _check(self.stft.n_fft % hop == 0, "separation.hop_length", hop, "must divide n_fft")
            _check(hop == self.stft.hop_length or self.frame_wise, "separation.hop_length", hop,
                   f"needs a frame-wise generator (model.generator=encoder): "
                   f"this one's mask depends on neighbouring frames, {self.stft.hop_length} samples apart "
                   "in training")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        return _from_dict(cls, data, "config")

    @classmethod
    def from_json(cls, text: str) -> "Config":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"config: not valid JSON ({err})") from None
        return cls.from_dict(data)

    def save(self, path: str) -> None:
        """Write the config as JSON to `path` atomically."""
        from svsgan_tf.io_utils import atomic_write_text

        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str) -> "Config":
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
        try:
            return cls.from_json(text).validate()
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None

    def replace(self, **overrides: Any) -> "Config":
        """A copy with dotted overrides applied, e.g. replace(**{"train.batch_size": 8})."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            if _retired(dotted, value):
                continue
            section, _, key = dotted.partition(".")
            if not key or section not in data or not isinstance(data[section], dict) \
                    or key not in data[section]:
                raise ConfigError(f"config: unknown setting {dotted!r}")
            data[section][key] = value
        return Config.from_dict(data)


def _check(ok: bool, name: str, value: Any, problem: str) -> None:
    if not ok:
        raise ConfigError(f"config: {name}={value!r} {problem}")


def _from_dict(cls, data: Any, where: str):
    """Build dataclass `cls` from a dict, rejecting unknown keys and converting lists to tuples."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: {where} must be an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    data = {name: value for name, value in data.items() if not _retired(f"{where}.{name}", value)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"config: unknown setting {where}.{unknown[0]}")
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name) if name in fields else None
        if dataclasses.is_dataclass(default):
            kwargs[name] = _from_dict(type(default), value, name)
        elif isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"config: {where}.{name} must be a list, got {value!r}")
            kwargs[name] = tuple(value)
        else:
            _check_type(default, value, f"{where}.{name}", optional="None" in str(fields[name].type))
            kwargs[name] = value
    return cls(**kwargs)


def _retired(key: str, value: Any) -> bool:
    """Whether `key` is a retired setting (RETIRED) that `value` leaves off, so that it can be dropped;
    ConfigError for a retired setting turned on."""
    if key not in RETIRED:
        return False
    if (list(value) if isinstance(value, (list, tuple)) else value) != RETIRED[key]:
        raise ConfigError(f"config: {key}={value!r}: this setting was retired (it did not help, see "
                          f"docs/experiments.md); the code of git tag {RETIRED_TAG} still runs it")
    return True


def _check_type(default: Any, value: Any, name: str, optional: bool = False) -> None:
    """Reject a value whose JSON type differs from the default's (ints are accepted as floats, null
    where the field is Optional)."""
    if default is None or (value is None and optional):
        return
    expected = type(default)
    ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
    if expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise ConfigError(f"config: {name}={value!r} must be of type {expected.__name__}")


def git_commit() -> str:
    """The commit of the source tree this package runs from, or 'unknown' outside a git checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5, check=True)
        commit = out.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def recipe_names() -> list[str]:
    """The named recipes shipped in svsgan_tf/configs (paper, paper_encoder, spleeter, ...)."""
    return sorted(name[:-5] for name in os.listdir(RECIPES_DIR) if name.endswith(".json"))


def is_recipe_name(value: str) -> bool:
    """Whether `value` names a shipped recipe rather than a file."""
    return not os.path.exists(value) and value in recipe_names()


def config_path(value: str) -> str:
    """The file behind `--config VALUE`: a path as it is, or a recipe name (`paper`, `spleeter`, ...).
    ConfigError (one line) when it is neither."""
    if os.path.exists(value) or os.sep in value or value.endswith(".json"):
        return value
    if value in recipe_names():
        return os.path.join(RECIPES_DIR, f"{value}.json")
    raise ConfigError(f"--config {value}: no such file, and no recipe of that name (recipes: "
                      f"{', '.join(recipe_names())})")

