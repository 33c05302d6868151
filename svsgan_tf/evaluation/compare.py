"""Paired comparison of models scored on the same tracks: per-track differences and a Wilcoxon test."""
from __future__ import annotations

import os

from svsgan_tf.errors import DataError
from svsgan_tf.io_utils import read_json


def load_summary(path: str) -> dict:
    """An evaluate summary.json (or the folder holding it) -> its dict; DataError naming the file."""
    file = os.path.join(path, "summary.json") if os.path.isdir(path) else path
    summary = read_json(file, DataError)
    if not isinstance(summary, dict) or not isinstance(summary.get("tracks"), dict):
        raise DataError(f"{file}: not an evaluation summary (no \"tracks\" object)")
    return summary


def compare(summaries: dict[str, dict], target: str = "vocals", metric: str = "SDR") -> dict:
    """Scores of the tracks every summary holds, and each model's paired difference to the first.

    Args:
        summaries: {label: evaluate summary dict}, the first one the baseline.
    Returns:
        {"tracks": [names], "models": {label: {"median", "mean", "scores": [per track]}},
         "paired": {label: paired_comparison(label, baseline)} for every label after the first}.
    """
    import numpy as np

    from svsgan_tf.evaluation.bss import paired_comparison

    labels = list(summaries)
    names = sorted(set.intersection(*(set(s["tracks"]) for s in summaries.values())))
    if not names:
        raise DataError(f"{', '.join(labels)}: no track was scored in all of them")

    def score(summary, name):
        value = summary["tracks"][name].get(target, {}).get(metric)
        return float("nan") if value is None else float(value)

    models, paired = {}, {}
    for label, summary in summaries.items():
        scores = np.array([score(summary, n) for n in names])
        if np.all(np.isnan(scores)):
            raise DataError(f"{label}: no {target} {metric} score on any of the {len(names)} common tracks")
        models[label] = {"median": float(np.nanmedian(scores)), "mean": float(np.nanmean(scores)),
                         "scores": scores.tolist()}
    baseline = np.array(models[labels[0]]["scores"])
    for label in labels[1:]:
        paired[label] = paired_comparison(np.array(models[label]["scores"]), baseline)
    return {"tracks": names, "target": target, "metric": metric, "models": models, "paired": paired}


def markdown(result: dict) -> str:
    """The comparison as a Markdown table, one row per model."""
    labels = list(result["models"])
    lines = [f"{result['target']} {result['metric']} on {len(result['tracks'])} tracks; paired against "
             f"{labels[0]}", "",
             "| model | median (dB) | mean (dB) | mean Δ (dB) | median Δ (dB) | tracks better | Wilcoxon p |",
             "|---|---|---|---|---|---|---|"]
    for label, model in result["models"].items():
        test = result["paired"].get(label)
        cells = ["", "", "", ""] if test is None else [
            f"{test['mean_delta']:+.3f}", f"{test['median_delta']:+.3f}",
            f"{test['better']}/{test['tracks']}", f"{test['p_value']:.3g}"]
        lines.append(f"| {label} | {model['median']:.2f} | {model['mean']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
