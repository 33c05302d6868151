"""Audio file I/O: decoding, validation, resampling and atomic writing of waveforms."""
from __future__ import annotations

import logging
import os

import numpy as np

from svsgan_tf.errors import AudioError
from svsgan_tf.io_utils import atomic_path

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")


def load_audio(path: str) -> tuple[np.ndarray, int]:
    """Decode an audio file.

    Returns:
        (waveform, sample_rate), waveform of shape (nb_samples, nb_channels), float32 in [-1, 1].

    Raises:
        AudioError naming `path` when the file is missing, unreadable, empty or not finite.
    """
    import soundfile as sf

    if not os.path.exists(path):
        raise AudioError(path, "no such file")
    if os.path.isdir(path):
        raise AudioError(path, "is a folder, not an audio file")
    try:
        waveform, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise AudioError(path, f"cannot decode audio ({message})") from None
    check_waveform(waveform, path)
    return waveform, int(sample_rate)


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
    subtype = "PCM_16" if path.lower().endswith(".wav") else None
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(waveform, -1.0, 1.0), sample_rate, subtype=subtype)


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
