"""Real data sets with isolated vocals: DSD100, MUSDB18 (stems and HQ), MIR-1K and plain folders.

Every loader returns `Track`s that read (start, length) excerpts of their stems at the model's sample
rate, so the tf.data pipeline streams long songs without holding them in memory; `materialize` decodes
small sets (such as the 7-second MUSDB18 previews) once into memory. The accompaniment is the sum of
the non-vocal stems and the mixture is vocals + accompaniment, as in `musdb`.
"""
from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from svsgan_tf.audio.io import AUDIO_EXTENSIONS
from svsgan_tf.errors import AudioError, DataError, first_line

logger = logging.getLogger(__name__)

STEMS = ("vocals", "accompaniment")
MUSDB_STEM_IDS = {"mixture": 0, "drums": 1, "bass": 2, "other": 3, "vocals": 4}
MIXTURE_NAMES = ("mixture", "mix")
VOCALS_NAMES = ("vocals", "vocals_true")
ACCOMPANIMENT_NAMES = ("accompaniment", "accompaniment_true")


class Track:
    """A song with isolated vocals, read in excerpts at `sample_rate`.

    Attributes:
        name: track name.
        sample_rate: the rate excerpts are returned at.
        nb_samples: length at that rate.
        nb_channels: channel count of every stem.
    """

    name: str
    sample_rate: int | None
    nb_samples: int
    nb_channels: int

    def read(self, start: int, length: int) -> dict[str, np.ndarray]:
        """{"mixture", "vocals", "accompaniment"}: (length, nb_channels) float32 from sample `start`
        (zero-padded past the end)."""
        raise NotImplementedError

    def load(self) -> dict[str, np.ndarray]:
        """The whole track: {"mixture", "vocals", "accompaniment"} of (nb_samples, nb_channels)."""
        return self.read(0, self.nb_samples)

    @property
    def mixture(self) -> np.ndarray:
        return self.load()["mixture"]

    @property
    def vocals(self) -> np.ndarray:
        return self.load()["vocals"]

    @property
    def accompaniment(self) -> np.ndarray:
        return self.load()["accompaniment"]


@dataclass
class ArrayTrack(Track):
    """A track held in memory."""

    name: str
    vocals_audio: np.ndarray          # (nb_samples, nb_channels) float32
    accompaniment_audio: np.ndarray   # (nb_samples, nb_channels) float32
    sample_rate: int | None
    mixture_audio: np.ndarray | None = None

    def __post_init__(self):
        if self.mixture_audio is None:
            self.mixture_audio = self.vocals_audio + self.accompaniment_audio
        self.nb_samples, self.nb_channels = self.vocals_audio.shape

    def read(self, start: int, length: int) -> dict[str, np.ndarray]:
        stems = {"mixture": self.mixture_audio, "vocals": self.vocals_audio,
                 "accompaniment": self.accompaniment_audio}
        return {k: _excerpt(v, start, length) for k, v in stems.items()}

    def load(self) -> dict[str, np.ndarray]:
        return {"mixture": self.mixture_audio, "vocals": self.vocals_audio,
                "accompaniment": self.accompaniment_audio}


@dataclass
class FileTrack(Track):
    """A track whose stems are audio files (any format soundfile decodes) of equal length and rate.

    `sources` maps each stem ("vocals", "accompaniment") to the files summed into it; `channel` picks
    one channel of every file (MIR-1K keeps accompaniment left and vocals right).
    """

    name: str
    sources: dict[str, list[str]]
    sample_rate: int | None
    channel_of: dict[str, int] = field(default_factory=dict)
    mixture_file: str | None = None

    def __post_init__(self):
        import soundfile as sf

        infos = {}
        for path in [p for paths in self.sources.values() for p in paths]:
            try:
                infos[path] = sf.info(path)
            except Exception as err:  # noqa: BLE001 - soundfile raises several types for bad files
                raise AudioError(path, f"cannot decode audio ({str(err).splitlines()[0]})") from None
        rates = {i.samplerate for i in infos.values()}
        lengths = {i.frames for i in infos.values()}
        if len(rates) > 1:
            raise DataError(f"{self.name}: stems have different sample rates {sorted(rates)}")
        if len(lengths) > 1:
            first, *_ = infos
            raise DataError(f"{self.name}: stems differ in length ({min(lengths)} to {max(lengths)} samples, "
                            f"e.g. {os.path.basename(first)})")
        self.native_rate = rates.pop()
        if self.sample_rate is None:
            self.sample_rate = self.native_rate
        native_length = lengths.pop()
        if native_length == 0:
            raise AudioError(next(iter(infos)), "audio is empty (0 samples)")
        channels = {i.channels for i in infos.values()}
        self.nb_channels = 1 if self.channel_of else min(channels)
        self.nb_samples = int(round(native_length * self.sample_rate / self.native_rate))

    def read(self, start: int, length: int) -> dict[str, np.ndarray]:
        import soundfile as sf

        from svsgan_tf.audio.io import resample

        ratio = self.native_rate / self.sample_rate
        native_start, native_length = int(start * ratio), int(np.ceil(length * ratio)) + 1
        decoded: dict[str, np.ndarray] = {}          # each file once, even when two stems share it (MIR-1K)
        stems = {}
        for stem, paths in self.sources.items():
            total = None
            for path in paths:
                if path not in decoded:
                    decoded[path], _ = sf.read(path, start=native_start, frames=native_length, dtype="float32",
                                               always_2d=True)
                audio = decoded[path]
                if stem in self.channel_of:
                    audio = audio[:, self.channel_of[stem]:self.channel_of[stem] + 1]
                audio = audio[:, :self.nb_channels]
                total = audio if total is None else total + audio
            if not np.all(np.isfinite(total)):
                raise AudioError(paths[0], "audio contains non-finite samples (NaN or Inf)")
            stems[stem] = _excerpt(resample(total, self.native_rate, self.sample_rate), 0, length)
        stems["mixture"] = stems["vocals"] + stems["accompaniment"]
        if self.mixture_file:
            audio, _ = sf.read(self.mixture_file, start=native_start, frames=native_length, dtype="float32",
                               always_2d=True)
            stems["mixture"] = _excerpt(resample(audio[:, :self.nb_channels], self.native_rate, self.sample_rate),
                                        0, length)
        return stems


@dataclass
class StemTrack(Track):
    """A MUSDB18 Native Instruments stem file (.stem.mp4), decoded with stempeg (ffmpeg).

    Stream 0 is the mixture, 1 drums, 2 bass, 3 other, 4 vocals; the accompaniment is drums + bass +
    other and the mixture used for training is vocals + accompaniment (the stems are the references).
    """

    name: str
    path: str
    sample_rate: int | None
    mixture_stream: bool = False

    def __post_init__(self):
        stempeg = _stempeg()
        try:
            info = stempeg.Info(self.path)
            self.native_rate = int(info.sample_rate(0))
            duration = float(info.duration(0))
            self.nb_channels = int(info.channels(0))
            nb_streams = int(info.nb_audio_streams)
        except Exception as err:  # noqa: BLE001 - ffprobe failures surface as several types
            raise AudioError(self.path, f"cannot read stem file ({first_line(err)})") from None
        if nb_streams < 5:
            raise AudioError(self.path, f"expected 5 stems (mixture, drums, bass, other, vocals), found {nb_streams}")
        if self.sample_rate is None:
            self.sample_rate = self.native_rate
        self.nb_samples = int(duration * self.sample_rate)

    def read(self, start: int, length: int) -> dict[str, np.ndarray]:
        from svsgan_tf.audio.io import resample

        stempeg = _stempeg()
        try:
            # the mix stream (0) is decoded only when it is used (evaluation), not for training excerpts
            stem_ids = [1, 2, 3, 4, 0] if self.mixture_stream else [1, 2, 3, 4]
            stems, rate = stempeg.read_stems(self.path, stem_id=stem_ids, dtype=np.float32,
                                             start=start / self.sample_rate,
                                             duration=(length + 1) / self.sample_rate, sample_rate=None)
        except Exception as err:  # noqa: BLE001
            raise AudioError(self.path, f"cannot decode stems ({first_line(err)})") from None
        stems = np.asarray(stems, np.float32)                  # (4 or 5, nb_samples, nb_channels)
        if not np.all(np.isfinite(stems)):
            raise AudioError(self.path, "stems contain non-finite samples (NaN or Inf)")
        vocals = resample(stems[3], int(rate), self.sample_rate)
        accompaniment = resample(stems[0] + stems[1] + stems[2], int(rate), self.sample_rate)
        vocals, accompaniment = _excerpt(vocals, 0, length), _excerpt(accompaniment, 0, length)
        mixture = vocals + accompaniment
        if self.mixture_stream:
            mixture = _excerpt(resample(stems[4], int(rate), self.sample_rate), 0, length)
        return {"mixture": mixture, "vocals": vocals, "accompaniment": accompaniment}


def _stempeg():
    from svsgan_tf.evaluation.bss import import_museval

    import_museval()                      # puts the bundled ffmpeg/ffprobe on PATH first
    import stempeg

    return stempeg


def _excerpt(audio: np.ndarray, start: int, length: int) -> np.ndarray:
    """audio[start:start+length], zero-padded at the end to exactly `length` samples."""
    part = audio[start:start + length]
    if part.shape[0] < length:
        part = np.pad(part, [(0, length - part.shape[0]), (0, 0)])
    return np.ascontiguousarray(part, dtype=np.float32)


@dataclass
class LoadReport:
    """Tracks that loaded and (file, problem) lines for those that did not."""

    tracks: list[Track]
    skipped: list[str]


def load_dataset(spec: str, subset: str = "train", sample_rate: int | None = 44100,
                 true_mixture: bool = False) -> LoadReport:
    """Tracks of a data set given as `[format:]PATH`.

    Formats: `musdb` (PATH holds train/ and test/ with .stem.mp4 files or HQ track folders),
    `dsd100` (PATH holds Mixtures/ and Sources/; subset train/dev -> Dev, test -> Test), `mir1k`
    (stereo clips, left accompaniment, right vocals; subset = the sub-folder, if any) and `folder`
    (one sub-folder per track with mixture/vocals[/accompaniment] files). Without a format the layout
    is detected. sample_rate=None keeps each track's own rate. true_mixture=True reads the data set's
    own mixture (the MUSDB18 mix stream, DSD100's and folders' mixture files) instead of the sum of the
    stems, as evaluation does. A track that cannot be used is skipped and listed in `skipped`; a missing
    or empty data set raises DataError.
    """
    fmt, _, path = spec.partition(":") if spec.split(":", 1)[0] in FORMATS else ("", "", spec)
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
        raise DataError(f"{path}: data set folder not found")
    fmt = fmt or detect_format(path)
    candidates = FORMATS[fmt](path, subset, true_mixture)
    tracks, skipped = [], []
    for name, make in candidates:
        try:
            tracks.append(make(sample_rate))
        except (AudioError, DataError) as err:
            skipped.append(str(err))
            logger.warning("skipping %s", err)
    if not tracks:
        raise DataError(f"{path}: no usable {fmt} tracks for subset {subset!r}"
                        + (f" ({len(skipped)} skipped)" if skipped else ""))
    return LoadReport(tracks, skipped)


def detect_format(path: str) -> str:
    if os.path.isdir(os.path.join(path, "Mixtures")) and os.path.isdir(os.path.join(path, "Sources")):
        return "dsd100"
    if glob.glob(os.path.join(path, "*.stem.mp4")) or glob.glob(os.path.join(path, "*", "*.stem.mp4")):
        return "musdb"
    if glob.glob(os.path.join(path, "*", "*", "drums.wav")) or glob.glob(os.path.join(path, "*", "drums.wav")):
        return "musdb"
    if "mir" in os.path.basename(os.path.normpath(path)).lower():
        return "mir1k"
    return "folder"


def _musdb(path: str, subset: str, true_mixture: bool):
    folder = os.path.join(path, subset) if os.path.isdir(os.path.join(path, subset)) else path
    stems = sorted(glob.glob(os.path.join(folder, "*.stem.mp4")))
    if stems:
        return [(os.path.basename(p)[:-9],
                 lambda rate, p=p: StemTrack(os.path.basename(p)[:-9], p, rate, true_mixture)) for p in stems]
    folders = sorted(d for d in glob.glob(os.path.join(folder, "*")) if os.path.isdir(d))
    if not folders:
        raise DataError(f"{folder}: no .stem.mp4 files or track folders (MUSDB18 {subset})")
    return [(os.path.basename(d), lambda rate, d=d: _stem_folder_track(
        d, rate, os.path.join(d, "mixture.wav") if true_mixture else None)) for d in folders]


def _stem_folder_track(folder: str, rate: int | None, mixture_file: str | None = None) -> FileTrack:
    """MUSDB18-HQ / DSD100 Sources layout: vocals.wav plus drums, bass, other."""
    def need(name):
        path = os.path.join(folder, f"{name}.wav")
        if not os.path.isfile(path):
            raise DataError(f"{folder}: missing {name}.wav")
        return path
    return FileTrack(os.path.basename(folder), {"vocals": [need("vocals")],
                                                "accompaniment": [need(s) for s in ("drums", "bass", "other")]},
                     rate, mixture_file=mixture_file if mixture_file and os.path.isfile(mixture_file) else None)


def _dsd100(path: str, subset: str, true_mixture: bool):
    split = "Test" if subset.lower() == "test" else "Dev"
    folder = os.path.join(path, "Sources", split)
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: missing (DSD100 needs Mixtures/{split} and Sources/{split})")
    mixtures = os.path.join(path, "Mixtures", split)
    return [(os.path.basename(d), lambda rate, d=d: _stem_folder_track(
        d, rate, os.path.join(mixtures, os.path.basename(d), "mixture.wav") if true_mixture else None))
        for d in sorted(glob.glob(os.path.join(folder, "*"))) if os.path.isdir(d)]


def _mir1k(path: str, subset: str, true_mixture: bool):
    folder = os.path.join(path, subset) if os.path.isdir(os.path.join(path, subset)) else path
    files = sorted(p for p in glob.glob(os.path.join(folder, "*")) if p.lower().endswith(AUDIO_EXTENSIONS))
    return [(os.path.splitext(os.path.basename(p))[0],
             lambda rate, p=p: FileTrack(os.path.splitext(os.path.basename(p))[0],
                                         {"vocals": [p], "accompaniment": [p]}, rate,
                                         channel_of={"accompaniment": 0, "vocals": 1})) for p in files]


def _folder(path: str, subset: str, true_mixture: bool):
    folder = os.path.join(path, subset) if os.path.isdir(os.path.join(path, subset)) else path
    return [(os.path.basename(d), lambda rate, d=d: _pair_track(d, rate, true_mixture))
            for d in sorted(glob.glob(os.path.join(folder, "*"))) if os.path.isdir(d)]


def _find(folder: str, names) -> str | None:
    for name in names:
        for ext in AUDIO_EXTENSIONS:
            path = os.path.join(folder, name + ext)
            if os.path.isfile(path):
                return path
    return None


def _pair_track(folder: str, rate: int | None, true_mixture: bool = False) -> Track:
    """A folder with mixture and vocals files (accompaniment optional: mixture - vocals otherwise)."""
    vocals, accompaniment = _find(folder, VOCALS_NAMES), _find(folder, ACCOMPANIMENT_NAMES)
    mixture = _find(folder, MIXTURE_NAMES)
    if vocals is None or (accompaniment is None and mixture is None):
        raise DataError(f"{folder}: needs a vocals file and a mixture or accompaniment file")
    if accompaniment is not None:
        return FileTrack(os.path.basename(folder), {"vocals": [vocals], "accompaniment": [accompaniment]}, rate,
                         mixture_file=mixture if true_mixture else None)
    track = FileTrack(os.path.basename(folder), {"vocals": [vocals], "accompaniment": [mixture]}, rate)
    stems = track.load()
    return ArrayTrack(track.name, stems["vocals"], stems["accompaniment"] - stems["vocals"], track.sample_rate,
                      stems["accompaniment"] if true_mixture else None)


FORMATS = {"musdb": _musdb, "dsd100": _dsd100, "mir1k": _mir1k, "folder": _folder}


def materialize(tracks: list[Track], max_bytes: float = 4e9, quiet: bool = False) -> tuple[list[Track], list[str]]:
    """Decode tracks into memory when their stems fit in `max_bytes`; else keep them streaming.

    Returns (tracks, skipped error lines); a track that fails to decode is skipped, not fatal.
    """
    total = sum(t.nb_samples * t.nb_channels * 4 * 3 for t in tracks)
    if total > max_bytes:
        logger.info("data set is %.1f GB: streaming excerpts from the files", total / 1e9)
        return tracks, []
    from tqdm import tqdm

    loaded, skipped = [], []
    for track in tqdm(tracks, desc="decoding", unit="track", disable=quiet):
        if isinstance(track, ArrayTrack):
            loaded.append(track)
            continue
        try:
            stems = track.load()
        except (AudioError, DataError) as err:
            skipped.append(str(err))
            logger.warning("skipping %s", err)
            continue
        # the track's own mixture: with true_mixture, the data set's mix (MUSDB's AAC mix stream, say),
        # which differs from the sum of the stems
        loaded.append(ArrayTrack(track.name, stems["vocals"], stems["accompaniment"], track.sample_rate,
                                 stems["mixture"]))
    return loaded, skipped
