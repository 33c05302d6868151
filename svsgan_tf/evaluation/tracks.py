"""Scoring tracks: a model beside the mixture and the oracle (ideal ratio mask), summaries, tables and figures."""
from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np

from svsgan_tf.config import TARGETS, STFTConfig
from svsgan_tf.evaluation.bss import format_score
from svsgan_tf.io_utils import output_error
from svsgan_tf.errors import OutputError

logger = logging.getLogger(__name__)


SHOWN = ("SDR", "SIR", "SAR")


@dataclass
class EvaluationResult:
    """Per-track scores of each row ("model", "mixture", "oracle") and what was left out."""

    scores: dict[str, dict[str, dict]] = field(default_factory=dict)   # row -> track -> target -> metric
    skipped: list[str] = field(default_factory=list)
    nan_tracks: dict[str, list[str]] = field(default_factory=dict)      # "row/target" -> tracks


class EstimateFolder:
    """Stems another tool (Spleeter, Open-Unmix, Demucs) or an earlier run wrote, scored as a "model" row:
    `folder/<track name>/<target>.wav` for every target, Spleeter's `-o folder` layout and `separate`'s.

    `separate(mixture, rate, source)` returns them as evaluate_tracks expects a separator's stems; a
    missing file, or one of another sample rate, channel count or length than the mixture, is an
    AudioError naming the file.
    """

    def __init__(self, folder: str):
        self.folder = folder

    def separate(self, mixture: np.ndarray, sample_rate: int, source: str) -> dict[str, np.ndarray]:
        from svsgan_tf.audio.io import load_audio
        from svsgan_tf.errors import AudioError

        stems = {}
        for target in TARGETS:
            path = os.path.join(self.folder, source, f"{target}.wav")
            if not os.path.exists(path):
                raise AudioError(path, "no such file (estimates are read from <folder>/<track>/<target>.wav)")
            audio, rate = load_audio(path)
            if rate != sample_rate or audio.shape[1] != mixture.shape[1]:
                raise AudioError(path, f"{rate} Hz, {audio.shape[1]} channels; the mixture has "
                                       f"{sample_rate} Hz, {mixture.shape[1]} channels")
            if audio.shape[0] != mixture.shape[0]:
                raise AudioError(path, f"{audio.shape[0]} samples, the mixture {mixture.shape[0]}")
            stems[target] = audio
        return stems


def oracle_estimates(references: dict[str, np.ndarray], n_fft: int, hop_length: int) -> dict[str, np.ndarray]:
    """Ideal ratio mask |S| / sum |S| applied to the mixture STFT (magnitude ratio, mixture phase).

    Args:
        references: {target: (nb_samples, nb_channels)} true stems; the mixture is their sum.
    """
    import tensorflow as tf

    from svsgan_tf.audio.spectral import istft, stft

    specs = {t: stft(tf.constant(a.T, tf.float32), n_fft, hop_length) for t, a in references.items()}
    mixture = sum(specs.values())                                        # (nb_channels, nb_frames, nb_bins)
    total = sum(tf.abs(s) for s in specs.values())
    nb_samples = next(iter(references.values())).shape[0]
    out = {}
    for target, spec in specs.items():
        mask = tf.math.divide_no_nan(tf.abs(spec), total)
        out[target] = istft(tf.cast(mask, tf.complex64) * mixture, nb_samples, n_fft, hop_length).numpy().T
    return out


def evaluate_tracks(tracks, separator=None, out_dir: str | None = None, quiet: bool = False,
                    rows: tuple[str, ...] = ("model", "mixture", "oracle"),
                    stft: STFTConfig | None = None) -> EvaluationResult:
    """Score `rows` on every track; a track that fails to load is skipped and listed, never fatal.

    `separator` (a Separator, or an EstimateFolder) is required for the "model" row. With `out_dir`,
    the model's frame scores are written per track in museval's JSON format to out_dir/museval/;
    OutputError if that fails.
    """
    from tqdm import tqdm

    from svsgan_tf.errors import SVSGANError
    from svsgan_tf.evaluation.bss import bss_eval_frames, median_over_frames, museval_json
    from svsgan_tf.io_utils import atomic_write_text

    result = EvaluationResult(scores={row: {} for row in rows})
    stft = stft or (separator.config.separation_stft if separator is not None else STFTConfig())
    n_fft, hop = stft.n_fft, stft.hop_length
    for track in tqdm(tracks, desc="evaluating", unit="track", disable=quiet):
        try:
            stems = track.load()
            references = {t: stems[t] for t in TARGETS}
            for row in rows:
                if row == "model":
                    estimates = separator.separate(stems["mixture"], track.sample_rate, source=track.name)
                elif row == "mixture":
                    estimates = {t: stems["mixture"] for t in TARGETS}
                else:
                    estimates = oracle_estimates(references, n_fft, hop)
                frames = bss_eval_frames(references, estimates, track.sample_rate)
                result.scores[row][track.name] = median_over_frames(frames)
                if row == "model" and out_dir:
                    path = os.path.join(out_dir, "museval", f"{track.name}.json")
                    with writing(path):
                        atomic_write_text(path, museval_json(track.name, frames))
        except OutputError:
            raise                       # an output that cannot be written fails every later track too
        except SVSGANError as err:
            result.skipped.append(str(err))
            logger.warning("skipping %s", err)
            for row in rows:
                result.scores[row].pop(track.name, None)
    for row, per_track in result.scores.items():
        for target in TARGETS:
            nan = [name for name, s in per_track.items() if math.isnan(s[target]["SDR"])]
            if nan:
                result.nan_tracks[f"{row}/{target}"] = nan
    return result


@contextlib.contextmanager
def writing(path: str):
    """Turn an OSError met while writing the output `path` into OutputError, one line naming it."""
    try:
        yield
    except OSError as err:
        raise OutputError(output_error(path, err)) from None


def skipped_line(skipped: list[str], nb_tracks: int, nb_scored: int) -> str:
    """One line for the skipped tracks, their problems counted: `skipped 2 of 5 tracks (2 cannot
    decode audio); the results cover the other 3`. `skipped` holds `<input>: <problem> (<detail>)` lines."""
    problems = collections.Counter(line.split(": ", 1)[-1].split(" (", 1)[0] for line in skipped)
    counted = "; ".join(f"{count} {problem}" for problem, count in problems.most_common())
    return f"skipped {len(skipped)} of {nb_tracks} tracks ({counted}); the results cover the other {nb_scored}"


def summarize(result: EvaluationResult, row: str = "model") -> dict:
    """summary.json: {"tracks", "median", "reference": {"mixture", "oracle"}, "skipped", "nan_tracks"}."""
    from svsgan_tf.evaluation.bss import median_over_tracks

    def block(name):
        per_track = result.scores.get(name, {})
        keep = {t: {tg: {m: s[tg][m] for m in SHOWN} for tg in TARGETS} for t, s in per_track.items()}
        median = median_over_tracks(per_track) if per_track else {}
        return {"tracks": keep, "median": {tg: {m: median[tg][m] for m in SHOWN} for tg in median}}

    main = block(row)
    return {"tracks": main["tracks"], "median": main["median"],
            "reference": {name: block(name) for name in ("mixture", "oracle") if name in result.scores},
            "skipped": result.skipped, "nan_tracks": result.nan_tracks,
            "method": "museval BSS Eval v4, 1 s windows and hops, median over frames, then median over tracks "
                      "(NaN excluded)"}


def markdown(summary: dict, label: str = "model") -> str:
    """Medians of every row, then vocals SDR per track."""
    rows = {label: summary, **summary["reference"]}
    lines = ["| row | " + " | ".join(f"{t} {m}" for t in TARGETS for m in SHOWN) + " |",
             "|---|" + "---|" * (len(TARGETS) * len(SHOWN))]
    for name, block in rows.items():
        cells = [format_score(block["median"].get(t, {}).get(m)) for t in TARGETS for m in SHOWN]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| track | " + " | ".join(f"{name} vocals SDR" for name in rows) + " |",
              "|---|" + "---|" * len(rows)]
    for track in summary["tracks"]:
        cells = [format_score(block["tracks"].get(track, {}).get("vocals", {}).get("SDR")) for block in rows.values()]
        lines.append(f"| {track} | " + " | ".join(cells) + " |")
    if summary["nan_tracks"]:
        lines += ["", "NaN scores (silent reference in every frame), excluded from the medians: "
                  + "; ".join(f"{k}: {', '.join(v)}" for k, v in summary["nan_tracks"].items())]
    if summary["skipped"]:
        lines += ["", "Skipped tracks: " + "; ".join(summary["skipped"])]
    return "\n".join(lines) + "\n"


def plot_bars(summary: dict, path: str, label: str = "model") -> None:
    """Grouped bars of vocals SDR per track, one bar per row (the paper's Fig. 6)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {label: summary["tracks"], **{k: v["tracks"] for k, v in summary["reference"].items()}}
    names = list(summary["tracks"])
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names) * len(rows)), 4))
    for i, (row, per_track) in enumerate(rows.items()):
        values = [per_track.get(n, {}).get("vocals", {}).get("SDR", np.nan) for n in names]
        ax.bar(np.arange(len(names)) + i * width, values, width, label=row)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
    ax.set_xticklabels([n[:18] for n in names], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("vocals SDR (dB)")
    ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)


def plot_spectrograms(track, separator, path: str) -> None:
    """Log-magnitude spectrograms (first channel) of the mixture, the estimated and the true vocals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tensorflow as tf

    from svsgan_tf.audio.spectral import stft

    settings = separator.config.separation_stft
    stems = track.load()
    estimate = separator.separate(stems["mixture"], track.sample_rate, source=track.name)["vocals"]
    panels = {"mixture": stems["mixture"], "estimated vocals": estimate, "true vocals": stems["vocals"]}
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for ax, (title, audio) in zip(axes, panels.items()):
        magnitude = tf.abs(stft(tf.constant(audio[:, :1].T, tf.float32), settings.n_fft,
                                settings.hop_length)).numpy()[0]
        ax.imshow(20 * np.log10(magnitude.T + 1e-5), origin="lower", aspect="auto", vmin=-80, vmax=20,
                  extent=[0, audio.shape[0] / track.sample_rate, 0, track.sample_rate / 2000])
        ax.set_title(f"{track.name}: {title}")
        ax.set_ylabel("kHz")
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    _save_figure(fig, path)


def _save_figure(fig, path: str) -> None:
    import matplotlib.pyplot as plt

    from svsgan_tf.io_utils import atomic_path

    try:
        with writing(path), atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
