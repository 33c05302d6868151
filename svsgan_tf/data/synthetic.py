"""Seeded synthetic multitracks (sung-like vocals, bass, chords, drums) so training and tests need no data."""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np

from svsgan_tf.errors import ConfigError

MIN_SAMPLE_RATE = 2000
MAX_HARMONICS = 40
HARMONIC_LIMIT = 0.45
PEAK = 0.9 * (1.0 - 2.0 ** -18)
VOCALS_TO_ACCOMPANIMENT_DB = (-6.0, 3.0)
TEMPO_BPM = (80.0, 140.0)
VOICE_MIDI = (46.0, 75.0)

_SCALES = ((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10))
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3), (0, 3, 0, 4), (0, 5, 2, 6),
                 (0, 6, 5, 4))
_NOTE_EIGHTHS = (1, 2, 2, 2, 3, 4, 4, 6)
_MELODY_STEPS = (-3, -2, -1, -1, 0, 1, 1, 2, 3)

# Formants of the vowels a, e, i, o, u: centre frequencies (Hz), bandwidths (Hz) and linear gains.
_VOWEL_FREQS = np.array([[800, 1150, 2900, 3900], [450, 2000, 2700, 3600], [320, 2400, 3000, 3700],
                         [480, 820, 2800, 3600], [340, 720, 2600, 3500]], dtype=np.float64)
_VOWEL_BANDS = np.array([[90, 110, 150, 180], [70, 100, 140, 170], [60, 100, 150, 180],
                         [80, 90, 140, 170], [60, 80, 140, 170]], dtype=np.float64)
_VOWEL_GAINS = np.array([[1.0, 0.5, 0.25, 0.15], [1.0, 0.45, 0.3, 0.15], [1.0, 0.3, 0.3, 0.15],
                         [1.0, 0.6, 0.15, 0.1], [1.0, 0.4, 0.1, 0.08]], dtype=np.float64)

_KICK_PATTERNS = ((0, 8), (0, 8, 10), (0, 6, 8), (0, 3, 8, 11), (0, 4, 8, 12), (0, 7, 10))
_HAT_PATTERNS = (tuple(range(0, 16, 2)), tuple(range(16)), (2, 6, 10, 14), tuple(range(0, 16, 2)) + (15,))
_BASS_PATTERNS = ((0, 3, 4, 6), (0, 2, 4, 6), (0, 4), tuple(range(8)), (0, 3, 6), (0, 1, 4, 5))
_PLUCK_PATTERNS = ((0, 3, 6), (0, 2, 4, 6), (1, 3, 5, 7), (0, 3, 4, 7))


@dataclass(frozen=True)
class Track:
    """One synthetic song.

    mixture, vocals and accompaniment: (nb_samples, nb_channels) float32, mixture = vocals + accompaniment.
    """

    name: str
    mixture: np.ndarray
    vocals: np.ndarray
    accompaniment: np.ndarray
    sample_rate: int


@dataclass(frozen=True)
class _Song:
    tonic: int
    scale: tuple
    beat: float
    chords: tuple
    sevenths: bool
    duration: float

    @property
    def bar(self) -> float:
        return 4.0 * self.beat

    def chord_degree(self, time: float) -> int:
        return self.chords[int(time // self.bar) % len(self.chords)]

    def pitch_class(self, degree: int) -> int:
        return (self.tonic + self.scale[degree % 7]) % 12

    def nb_bars(self) -> int:
        return int(math.ceil(self.duration / self.bar))


def make_track(seed: int, duration: float = 6.0, sample_rate: int = 44100, nb_channels: int = 2,
               name: str | None = None) -> Track:
    """Generate one song from `seed`; the same arguments give bit-identical arrays.

    The key, mode, tempo (80-140 BPM), chord progression, melody, singer (register, formants,
    vibrato, breathiness), instrument sounds, panning and the vocals-to-accompaniment ratio
    (-6..+3 dB RMS) all come from the seed.

    Returns:
        Track whose mixture, vocals and accompaniment have shape (round(duration * sample_rate),
        nb_channels), float32; mixture == vocals + accompaniment and max |mixture| <= 0.9.

    Raises:
        ConfigError for a negative or non-integer seed, a duration that gives no samples, a sample
        rate below 2000 Hz (the sung fundamental must stay under 0.45 * sample_rate) or no channel.
    """
    seed, nb_samples, sample_rate, nb_channels = _check(seed, duration, sample_rate, nb_channels)
    rng = np.random.default_rng(seed)
    song = _draw_song(rng, nb_samples / sample_rate)

    voice = _voice(rng, song, nb_samples, sample_rate)
    vocals = _mix([(voice, rng.uniform(-0.12, 0.12), 1.0)], nb_samples, nb_channels)
    accompaniment = _accompaniment(rng, song, nb_samples, sample_rate, nb_channels)

    rms_vocals, rms_accompaniment = _rms(vocals), _rms(accompaniment)
    if rms_vocals > 0.0 and rms_accompaniment > 0.0:
        ratio_db = rng.uniform(*VOCALS_TO_ACCOMPANIMENT_DB)
        vocals *= np.float32(10.0 ** (ratio_db / 20.0) * rms_accompaniment / rms_vocals)
    peak = float(np.max(np.abs(vocals + accompaniment)))
    gain = PEAK / peak if peak > 0.0 else 1.0
    vocals *= np.float32(gain)
    accompaniment *= np.float32(gain)
    mixture = vocals + accompaniment
    return Track(name=f"synth-{seed}" if name is None else str(name), mixture=mixture, vocals=vocals,
                 accompaniment=accompaniment, sample_rate=sample_rate)


def make_tracks(nb_tracks: int, seed: int = 0, duration: float = 6.0, sample_rate: int = 44100,
                nb_channels: int = 2, prefix: str = "synth") -> list[Track]:
    """Generate `nb_tracks` different songs named f"{prefix}{i:03d}".

    Track i is make_track(s_i, ...) where s_i comes from np.random.SeedSequence(seed).spawn, so it
    depends only on (seed, i): make_tracks(n, seed) is a prefix of make_tracks(m, seed) for n <= m.

    Returns:
        list of nb_tracks Track, each with arrays of shape (round(duration * sample_rate), nb_channels).
    """
    try:
        nb_tracks = operator.index(nb_tracks)
    except TypeError:
        raise ConfigError(f"nb_tracks must be an integer, got {nb_tracks!r}") from None
    if nb_tracks < 0:
        raise ConfigError(f"nb_tracks must be >= 0, got {nb_tracks}")
    seed = _check_seed(seed)
    children = np.random.SeedSequence(seed).spawn(nb_tracks)
    return [make_track(int(child.generate_state(1)[0]), duration=duration, sample_rate=sample_rate,
                       nb_channels=nb_channels, name=f"{prefix}{index:03d}")
            for index, child in enumerate(children)]


def _check_seed(seed) -> int:
    try:
        seed = operator.index(seed)
    except TypeError:
        raise ConfigError(f"seed must be an integer, got {seed!r}") from None
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    return seed


def _check(seed, duration, sample_rate, nb_channels) -> tuple[int, int, int, int]:
    seed = _check_seed(seed)
    try:
        sample_rate = operator.index(sample_rate)
        nb_channels = operator.index(nb_channels)
    except TypeError:
        raise ConfigError(f"sample_rate and nb_channels must be integers, "
                          f"got {sample_rate!r} and {nb_channels!r}") from None
    if sample_rate < MIN_SAMPLE_RATE:
        raise ConfigError(f"sample_rate must be >= {MIN_SAMPLE_RATE} Hz, got {sample_rate}")
    if nb_channels < 1:
        raise ConfigError(f"nb_channels must be >= 1, got {nb_channels}")
    try:
        duration = float(duration)
    except (TypeError, ValueError):
        raise ConfigError(f"duration must be a number of seconds, got {duration!r}") from None
    nb_samples = int(round(duration * sample_rate)) if math.isfinite(duration) else 0
    if nb_samples < 1:
        raise ConfigError(f"duration must be finite and give at least one sample, got {duration!r} s")
    return seed, nb_samples, sample_rate, nb_channels


def _draw_song(rng: np.random.Generator, duration: float) -> _Song:
    progression = _PROGRESSIONS[rng.integers(len(_PROGRESSIONS))]
    return _Song(tonic=int(rng.integers(12)), scale=_SCALES[rng.integers(len(_SCALES))],
                 beat=60.0 / rng.uniform(*TEMPO_BPM), chords=progression, sevenths=bool(rng.random() < 0.4),
                 duration=duration)


def _rms(signal: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(signal, dtype=np.float64))))


def _smooth(values: np.ndarray, length: float) -> np.ndarray:
    """Hann-window moving average of a 1-D control signal, edges held, same length."""
    length = int(round(length))
    if length < 2:
        return values.copy()
    window = np.hanning(length + 2)[1:-1]
    window /= window.sum()
    before = length // 2
    padded = np.pad(values, (before, length - 1 - before), mode="edge")
    return np.convolve(padded, window, mode="valid")


def _smooth_noise(rng: np.random.Generator, size: int, length: float) -> np.ndarray:
    """Low-passed Gaussian noise of unit standard deviation, shape (size,)."""
    noise = _smooth(rng.standard_normal(size), length)
    std = noise.std()
    return noise / std if std > 0.0 else noise


def _upsample(control: np.ndarray, hop: int, nb_samples: int) -> np.ndarray:
    """Linear interpolation of control points at samples 0, hop, 2 hop, ... to (nb_samples,)."""
    fraction = (np.arange(hop) / hop).astype(control.dtype)
    ramps = control[:-1, None] + np.diff(control)[:, None] * fraction[None, :]
    return ramps.reshape(-1)[:nb_samples]


def _raised_cosine(x: np.ndarray) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def _ramps(nb_samples: int, attack: float, release: float) -> np.ndarray:
    """Envelope (nb_samples,) float32 rising over `attack` samples and falling over the last `release`."""
    envelope = np.ones(nb_samples, dtype=np.float32)
    attack = int(max(1, min(attack, nb_samples // 2)))
    release = int(max(1, min(release, nb_samples // 2)))
    envelope[:attack] = _raised_cosine(np.arange(1, attack + 1) / attack)
    envelope[nb_samples - release:] *= _raised_cosine(np.arange(release, 0, -1) / release)
    return envelope


def _add(out: np.ndarray, start: int, signal: np.ndarray) -> None:
    """Add `signal` into `out` from sample `start`, cropping what falls outside."""
    if start < 0:
        signal = signal[-start:]
        start = 0
    end = min(out.shape[0], start + signal.shape[0])
    if end > start:
        out[start:end] += signal[:end - start]


def _band_noise(rng: np.random.Generator, nb_samples: int, sample_rate: int, low: float,
                high: float | None = None) -> np.ndarray:
    """Unit-RMS Gaussian noise (nb_samples,) float32: 4th-order high-pass at `low`, low-pass at `high` Hz."""
    spectrum = np.fft.rfft(rng.standard_normal(nb_samples, dtype=np.float32))
    freqs = np.fft.rfftfreq(nb_samples, 1.0 / sample_rate)
    with np.errstate(divide="ignore"):
        gain = np.square(low / freqs)
    gain = 1.0 / (1.0 + np.square(gain))
    if high is not None:
        gain /= 1.0 + np.square(np.square(freqs / high))
    noise = np.fft.irfft(spectrum * gain, nb_samples)
    rms = _rms(noise)
    return (noise / rms if rms > 0.0 else noise).astype(np.float32)


def _pan_gains(position: float, nb_channels: int) -> np.ndarray:
    """Constant-power gains (nb_channels,) for a source at `position` in [-1, 1]; -1 is the first channel."""
    if nb_channels == 1:
        return np.ones(1)
    centres = np.linspace(-1.0, 1.0, nb_channels)
    spacing = 2.0 / (nb_channels - 1)
    return np.sqrt(np.clip(1.0 - np.abs(position - centres) / spacing, 0.0, 1.0))


def _melody(rng: np.random.Generator, song: _Song, centre: float) -> list[list[tuple[float, float, float]]]:
    """Phrases of legato notes (start s, end s, midi pitch) on the song's scale, separated by short rests."""
    eighth = song.beat / 2.0
    base = song.tonic + 12 * math.floor((centre - song.tonic) / 12.0)

    def midi(degree: int) -> float:
        return float(base + 12 * (degree // 7) + song.scale[degree % 7])

    low, high = max(VOICE_MIDI[0], centre - 9.0), min(VOICE_MIDI[1], centre + 9.0)
    degree = min(range(-14, 15), key=lambda d: abs(midi(d) - centre))
    time = eighth * int(rng.integers(0, 3))
    phrases = []
    while time < song.duration or not phrases:
        phrase = []
        for _ in range(int(rng.integers(3, 9))):
            step = int(rng.choice(_MELODY_STEPS))
            if not low <= midi(degree + step) <= high:
                step = -step if low <= midi(degree - step) <= high else 0
            degree += step
            position = (time % song.bar) / song.beat
            if min(position % 2.0, 2.0 - position % 2.0) < 0.25 and rng.random() < 0.6:
                root = song.chord_degree(time)
                tones = [degree + s for s in (0, -1, 1, -2, 2, -3, 3) if (degree + s - root) % 7 in (0, 2, 4)]
                tones = [d for d in tones if low <= midi(d) <= high] or [degree]
                degree = tones[0]
            length = eighth * int(rng.choice(_NOTE_EIGHTHS))
            phrase.append((time, time + length, midi(degree)))
            time += length
            if time >= song.duration:
                break
        phrases.append(phrase)
        time += eighth * int(rng.integers(1, 4))
    return phrases


def _voice(rng: np.random.Generator, song: _Song, nb_samples: int, sample_rate: int) -> np.ndarray:
    """Sung-like voice (nb_samples,) float32: harmonic source, formants, vibrato, portamento, breath."""
    hop = max(8, sample_rate // 700)
    frame_rate = sample_rate / hop
    nb_frames = -(-nb_samples // hop) + 1
    times = np.arange(nb_frames) / frame_rate

    centre = rng.uniform(53.0, 68.0)
    tilt = rng.uniform(0.9, 1.5)
    formant_scale = rng.uniform(0.88, 1.15)
    upper_formants = rng.uniform(0.7, 1.6)
    vibrato_rate = rng.uniform(5.0, 6.0)
    vibrato_depth = rng.uniform(0.3, 0.6)
    vibrato_delay = rng.uniform(0.12, 0.3)
    glide = rng.uniform(0.04, 0.1)
    aspiration = rng.uniform(0.015, 0.05)
    phrases = _melody(rng, song, centre)

    first = phrases[0][0][2]
    target = np.full(nb_frames, first)
    steps = np.zeros(nb_frames)
    envelope = np.zeros(nb_frames)
    gate = np.zeros(nb_frames)
    breath = np.zeros(nb_frames)
    formants = np.zeros((nb_frames, 3, 4))
    formants[:] = [_VOWEL_FREQS[0] * formant_scale, _VOWEL_BANDS[0], _VOWEL_GAINS[0]]
    dips = np.ones(nb_frames)

    def frame(time: float) -> int:
        return min(nb_frames, max(0, int(round(time * frame_rate))))

    previous_end = None
    for phrase in phrases:
        start, end = phrase[0][0], phrase[-1][1]
        first_frame, end_frame = frame(start), frame(end)
        attack, release = rng.uniform(0.03, 0.08), rng.uniform(0.06, 0.15)
        local = times[first_frame:end_frame]
        envelope[first_frame:end_frame] = (_raised_cosine((local - start) / attack)
                                           * _raised_cosine((end - local) / release))
        if previous_end is not None and start - previous_end > 0.15:
            inhale = frame(start - 0.6 * (start - previous_end))
            breath[inhale:first_frame] += rng.uniform(0.3, 0.6) * np.hanning(first_frame - inhale + 2)[1:-1]
        previous_end = end
        for index, (note_start, note_end, pitch) in enumerate(phrase):
            a, b = frame(note_start), frame(note_end)
            target[a:] = pitch
            steps[a:b] = rng.uniform(0.7, 1.0)
            delay = vibrato_delay * rng.uniform(0.8, 1.2)
            gate[a:b] = np.clip((times[a:b] - note_start - delay) / 0.25, 0.0, 1.0)
            first_vowel, second_vowel = rng.integers(5, size=2)
            weight = rng.random()
            for row, table in enumerate((_VOWEL_FREQS, _VOWEL_BANDS, _VOWEL_GAINS)):
                formants[a:, row] = (1.0 - weight) * table[first_vowel] + weight * table[second_vowel]
            formants[a:, 0] *= formant_scale * rng.uniform(0.97, 1.03)
            formants[a:, 2, 2:] *= upper_formants
            if index > 0 and rng.random() < 0.5:
                width = rng.uniform(0.03, 0.05)
                near = slice(frame(note_start - width / 2), frame(note_start + width / 2))
                distance = np.abs(times[near] - note_start) / width
                dips[near] *= 1.0 - rng.uniform(0.3, 0.7) * np.cos(np.pi * np.clip(distance, 0.0, 0.5)) ** 2

    pitch = _smooth(target, glide * frame_rate)
    pitch += 0.08 * _smooth_noise(rng, nb_frames, 0.03 * frame_rate)
    pitch += 0.1 * _smooth_noise(rng, nb_frames, 0.4 * frame_rate)
    rate = vibrato_rate * (1.0 + 0.04 * _smooth_noise(rng, nb_frames, 0.5 * frame_rate))
    vibrato_phase = 2.0 * np.pi * np.cumsum(rate) / frame_rate
    pitch += vibrato_depth * _smooth(gate, 0.08 * frame_rate) * np.sin(vibrato_phase)
    f0 = 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)

    amplitude = _smooth(steps, 0.015 * frame_rate) * envelope * dips
    amplitude *= 1.0 + 0.05 * _smooth_noise(rng, nb_frames, 0.02 * frame_rate)
    for row in range(3):
        for column in range(4):
            formants[:, row, column] = _smooth(formants[:, row, column], 0.05 * frame_rate)

    harmonics = np.arange(1, MAX_HARMONICS + 1, dtype=np.float32)[:, None]
    freqs = harmonics * f0.astype(np.float32)[None, :]
    formants = formants.astype(np.float32)
    centres, bands, gains = formants[None, :, 0, :], formants[None, :, 1, :], formants[None, :, 2, :]
    resonance = np.sum(gains / (1.0 + np.square((freqs[:, :, None] - centres) / bands)), axis=2) + 0.02
    limit = HARMONIC_LIMIT * sample_rate
    taper = np.clip((limit - freqs) / (0.05 * sample_rate), 0.0, 1.0)
    amplitudes = harmonics ** -tilt * resonance * taper * amplitude.astype(np.float32)[None, :]
    audible = np.flatnonzero(amplitudes.max(axis=1) > 0.0)

    cycles = np.cumsum(_upsample(f0, hop, nb_samples) / sample_rate)
    phase = (2.0 * np.pi * (cycles - np.floor(cycles))).astype(np.float32)
    harmonic = np.zeros(nb_samples, dtype=np.float32)
    partial = np.empty(nb_samples, dtype=np.float32)
    for index in audible:
        np.multiply(phase, np.float32(index + 1), out=partial)
        np.sin(partial, out=partial)
        partial *= _upsample(amplitudes[index], hop, nb_samples)
        harmonic += partial
    level = _rms(harmonic) / max(float(np.sqrt(np.mean(np.square(amplitude)))), 1e-6)
    breath_control = (level * (aspiration * amplitude + 0.05 * breath)).astype(np.float32)
    noise = _band_noise(rng, nb_samples, sample_rate, 1000.0, 7000.0)
    harmonic += _upsample(breath_control, hop, nb_samples) * noise
    return harmonic


def _tone(frequency: float, nb_samples: int, sample_rate: int, amplitudes: np.ndarray, decays: np.ndarray,
          attack: float, release: float) -> np.ndarray:
    """Steady note (nb_samples,) float32: harmonics k * frequency of amplitudes[k-1], decays[k-1] (1/s)."""
    out = np.zeros(max(nb_samples, 0), dtype=np.float32)
    if nb_samples < 1:
        return out
    times = np.arange(nb_samples) / sample_rate
    cycles = frequency * times
    phase = (2.0 * np.pi * (cycles - np.floor(cycles))).astype(np.float32)
    times = times.astype(np.float32)
    partial = np.empty(nb_samples, dtype=np.float32)
    decay = np.empty(nb_samples, dtype=np.float32)
    for index, (amplitude, rate) in enumerate(zip(amplitudes, decays)):
        if (index + 1) * frequency >= HARMONIC_LIMIT * sample_rate:
            break
        np.multiply(phase, np.float32(index + 1), out=partial)
        np.sin(partial, out=partial)
        np.multiply(times, np.float32(-rate), out=decay)
        np.maximum(decay, np.float32(-80.0), out=decay)
        np.exp(decay, out=decay)
        decay *= np.float32(amplitude)
        partial *= decay
        out += partial
    out *= _ramps(nb_samples, attack * sample_rate, release * sample_rate)
    return out


def _frequency(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _bass(rng: np.random.Generator, song: _Song, nb_samples: int, sample_rate: int) -> np.ndarray:
    """Bass line (nb_samples,) on the chord roots and fifths, saw-like plucks with decaying brightness."""
    eighth = song.beat / 2.0
    pattern = _BASS_PATTERNS[rng.integers(len(_BASS_PATTERNS))]
    nb_harmonics = int(rng.integers(3, 11))
    harmonics = np.arange(1, nb_harmonics + 1)
    amplitudes = 1.0 / harmonics
    decays = rng.uniform(1.0, 3.0) + rng.uniform(1.0, 4.0) * harmonics
    gate = rng.uniform(0.6, 0.95)
    out = np.zeros(nb_samples, dtype=np.float32)
    for bar in range(song.nb_bars()):
        degree = song.chords[bar % len(song.chords)]
        root = 28 + (song.pitch_class(degree) - 4) % 12
        fifth = root + (song.pitch_class(degree + 4) - song.pitch_class(degree)) % 12
        for index, onset in enumerate(pattern):
            following = pattern[index + 1] if index + 1 < len(pattern) else 8
            pitch = root if rng.random() < 0.7 else (fifth if rng.random() < 0.65 else root + 12)
            start = bar * song.bar + onset * eighth + rng.normal(0.0, 0.003)
            length = int((following - onset) * eighth * gate * sample_rate)
            note = _tone(_frequency(pitch), length, sample_rate, amplitudes, decays, 0.004, 0.02)
            _add(out, int(round(start * sample_rate)), rng.uniform(0.8, 1.0) * note)
    return out


def _chords(rng: np.random.Generator, song: _Song, nb_samples: int,
            sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Chord part as two (nb_samples,) layers to pan apart: sustained pads or strummed plucks."""
    eighth = song.beat / 2.0
    layers = (np.zeros(nb_samples, dtype=np.float32), np.zeros(nb_samples, dtype=np.float32))
    plucked = rng.random() < 0.5
    brightness = rng.uniform(0.3, 0.6)
    nb_harmonics = 5 if plucked else 4
    harmonics = np.arange(1, nb_harmonics + 1)
    amplitudes = brightness ** (harmonics - 1)
    if plucked:
        decays = rng.uniform(2.5, 5.0) + 1.5 * harmonics
        pattern = _PLUCK_PATTERNS[rng.integers(len(_PLUCK_PATTERNS))]
    else:
        decays = 0.2 * harmonics
        attack = rng.uniform(0.08, 0.25)
    for bar in range(song.nb_bars()):
        degree = song.chords[bar % len(song.chords)]
        offsets = (0, 2, 4, 6) if song.sevenths else (0, 2, 4)
        pitches = [52 + (song.pitch_class(degree + offset) - 4) % 12 for offset in offsets]
        bar_start = bar * song.bar
        if plucked:
            for index, onset in enumerate(pattern):
                following = pattern[index + 1] if index + 1 < len(pattern) else 8
                length = int((following - onset) * eighth * sample_rate)
                start = bar_start + onset * eighth + rng.normal(0.0, 0.003)
                velocity = rng.uniform(0.7, 1.0)
                for order, pitch in enumerate(pitches):
                    note = _tone(_frequency(pitch), length, sample_rate, amplitudes, decays, 0.003, 0.03)
                    strum = start + order * rng.uniform(0.008, 0.02)
                    _add(layers[order % 2], int(round(strum * sample_rate)), velocity * note)
        else:
            length = int((song.bar + 0.1) * sample_rate)
            for order, pitch in enumerate(pitches):
                for layer, cents in zip(layers, (-rng.uniform(2, 6), rng.uniform(2, 6))):
                    note = _tone(_frequency(pitch + cents / 100.0), length, sample_rate, amplitudes, decays,
                                 attack, 0.2)
                    _add(layer, int(round(bar_start * sample_rate)), note)
    return layers


def _kick(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """One kick drum hit (0.4 s of samples,): sine swept down in pitch, exponential decay, a short click."""
    times = np.arange(int(0.4 * sample_rate)) / sample_rate
    high, low = rng.uniform(110.0, 160.0), rng.uniform(45.0, 60.0)
    frequency = low + (high - low) * np.exp(-times / rng.uniform(0.02, 0.05))
    body = np.sin(2.0 * np.pi * np.cumsum(frequency) / sample_rate) * np.exp(-times / rng.uniform(0.12, 0.25))
    click = 0.3 * rng.standard_normal(times.size) * np.exp(-times / 0.002)
    return (body + click) * _ramps(times.size, 0.001 * sample_rate, 0.01 * sample_rate)


def _drums(rng: np.random.Generator, song: _Song, nb_samples: int,
           sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kick, snare and hi-hat parts (nb_samples,) each, on a 16-step grid per bar."""
    step = song.beat / 4.0
    kick_pattern = _KICK_PATTERNS[rng.integers(len(_KICK_PATTERNS))]
    hat_pattern = _HAT_PATTERNS[rng.integers(len(_HAT_PATTERNS))]
    ghost = int(rng.choice((7, 14, 15))) if rng.random() < 0.5 else None
    kick_hit = _kick(rng, sample_rate)

    snare_times = np.arange(int(0.25 * sample_rate)) / sample_rate
    snare_tone = rng.uniform(170.0, 230.0)
    tone = (np.sin(2.0 * np.pi * snare_tone * snare_times)
            + 0.5 * np.sin(2.0 * np.pi * 1.6 * snare_tone * snare_times))
    tone *= np.exp(-snare_times / rng.uniform(0.05, 0.09))
    snare_decay = (np.exp(-snare_times / rng.uniform(0.06, 0.12))
                   * _ramps(snare_times.size, 0.001 * sample_rate, 0.005 * sample_rate))
    hat_times = np.arange(int(0.25 * sample_rate)) / sample_rate
    bank = 2 ** int(math.ceil(math.log2(4 * snare_times.size)))
    snare_noise = _band_noise(rng, bank, sample_rate, 1000.0, 9000.0)
    hat_noise = _band_noise(rng, bank, sample_rate, min(7000.0, 0.3 * sample_rate))
    hat_closed = np.exp(-hat_times / rng.uniform(0.015, 0.04))
    hat_open = np.exp(-hat_times / rng.uniform(0.08, 0.14))
    hat_edges = _ramps(hat_times.size, 0.0005 * sample_rate, 0.005 * sample_rate)

    kick, snare, hat = (np.zeros(nb_samples, dtype=np.float32) for _ in range(3))
    for bar in range(song.nb_bars()):
        for index in range(16):
            time = bar * song.bar + index * step + rng.normal(0.0, 0.003)
            start = max(0, int(round(time * sample_rate)))
            if index in kick_pattern:
                _add(kick, start, rng.uniform(0.85, 1.0) * kick_hit)
            if index in (4, 12) or index == ghost:
                velocity = rng.uniform(0.85, 1.0) if index in (4, 12) else rng.uniform(0.2, 0.35)
                offset = int(rng.integers(bank - snare_times.size))
                hit = 0.6 * tone + snare_noise[offset:offset + snare_times.size] * snare_decay
                _add(snare, start, velocity * hit)
            if index in hat_pattern:
                decay = hat_open if index % 8 == 6 and rng.random() < 0.2 else hat_closed
                offset = int(rng.integers(bank - hat_times.size))
                noise = hat_noise[offset:offset + hat_times.size] * decay * hat_edges
                velocity = rng.uniform(0.7, 1.0) if index % 4 == 0 else rng.uniform(0.4, 0.7)
                _add(hat, start, velocity * noise)
    return kick, snare, hat


def _accompaniment(rng: np.random.Generator, song: _Song, nb_samples: int, sample_rate: int,
                   nb_channels: int) -> np.ndarray:
    """Panned sum of bass, chords and drums, (nb_samples, nb_channels) float32."""
    kick, snare, hat = _drums(rng, song, nb_samples, sample_rate)
    chord_left, chord_right = _chords(rng, song, nb_samples, sample_rate)
    bass = _bass(rng, song, nb_samples, sample_rate)
    chord_pan, chord_spread = rng.uniform(-0.3, 0.3), rng.uniform(0.3, 0.6)
    hat_pan = rng.choice((-1.0, 1.0)) * rng.uniform(0.25, 0.6)
    chord_gain = rng.uniform(-7.0, -1.0)
    parts = ((kick, 0.0, rng.uniform(-2.0, 2.0)),
             (snare, rng.uniform(-0.12, 0.12), rng.uniform(-5.0, -1.0)),
             (hat, hat_pan, rng.uniform(-13.0, -7.0)),
             (bass, rng.uniform(-0.1, 0.1), rng.uniform(-3.0, 1.0)),
             (chord_left, chord_pan - chord_spread, chord_gain),
             (chord_right, chord_pan + chord_spread, chord_gain))
    levelled = []
    for signal, position, gain_db in parts:
        rms = _rms(signal)
        if rms > 0.0:
            levelled.append((signal, position, 10.0 ** (gain_db / 20.0) / rms))
    return _mix(levelled, nb_samples, nb_channels)


def _mix(parts: list[tuple[np.ndarray, float, float]], nb_samples: int, nb_channels: int) -> np.ndarray:
    """Sum of (signal (nb_samples,), pan position, linear gain) parts, (nb_samples, nb_channels) float32."""
    out = np.zeros((nb_channels, nb_samples), dtype=np.float32)
    scaled = np.empty(nb_samples, dtype=np.float32)
    for signal, position, gain in parts:
        for channel, pan_gain in enumerate(_pan_gains(float(np.clip(position, -1.0, 1.0)), nb_channels)):
            if pan_gain > 0.0:
                np.multiply(signal, np.float32(gain * pan_gain), out=scaled)
                out[channel] += scaled
    return np.ascontiguousarray(out.T)
