"""The paper's experiment: Encoder, Encoder-GAN, RNN and RNN-GAN trained alike and scored on the same songs.

`--generators` chooses which generators take part (the paper's two by default; `unet` adds the U-Net
and the U-Net-GAN, beyond the paper).

Each generator is pretrained with its supervised loss (train.loss: the KL divergence by default), then
fine-tuned twice from that same start for the same number of steps with the same learning rate: once
as the conditional GAN (adversarial + supervised loss) and once as its supervised-only twin (adversarial
weight 0; its folder is named `kl` whatever the loss), so that any difference comes from the
discriminator.
Held-out songs are separated with each model and scored with museval (BSS Eval v4, median over 1 s
frames) beside the unprocessed mixture and the ideal ratio mask, as in the paper's Table 1; with
several seeds, each GAN model is compared with its twin by a paired Wilcoxon signed-rank test over
tracks. `--data synthetic` (the default) needs no download; `--data musdb:PATH` runs the paper's
experiment on MUSDB18 / DSD100 songs.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field


logger = logging.getLogger(__name__)


# the label of each generator's supervised-only model; its GAN model is "<label>-GAN"
GENERATOR_LABELS = {"encoder": "Encoder", "rnn": "RNN", "unet": "U-Net"}


PAPER_GENERATORS = ("encoder", "rnn")


# Five DSD100 test songs of five genres (the paper names none of its five), used when present.
TABLE_SONGS = ("Al James - Schoolboy Facination", "Arise - Run Run Run", "Girls Under Glass - We Feel Alright",
               "Hollow Ground - Ill Fate", "Little Chicago's Finest - My Own")


@dataclass
class ExperimentSettings:
    """Sizes of the experiment; the defaults run on the synthetic set in a few minutes on 2 CPU cores."""

    data: str = "synthetic"
    pretrain_epochs: int = 12
    finetune_epochs: int = 4
    train_tracks: int = 16
    validation_tracks: int = 2
    test_songs: int = 5
    track_seconds: float = 6.0
    adversarial_weight: float = 0.5
    seeds: int = 1
    seed: int = 0
    wiener: int = 0
    generators: tuple[str, ...] = PAPER_GENERATORS
    overrides: dict = field(default_factory=dict)


def models(generators) -> list[tuple[str, str, bool]]:
    """(label, generator, with GAN) of every model of the experiment: each generator's supervised-only
    twin, then its GAN model."""
    return [(f"{GENERATOR_LABELS[g]}{'-GAN' if gan else ''}", g, gan) for g in generators for gan in (False, True)]


def base_config(settings: ExperimentSettings):
    from svsgan_tf.config import Config

    return Config().replace(**{
        "data.source": settings.data,
        "data.nb_tracks": settings.train_tracks + settings.validation_tracks,
        "data.validation_tracks": settings.validation_tracks,
        "data.track_seconds": settings.track_seconds,
        "train.seed": settings.seed,
        **settings.overrides,
    })


def load_songs(config, settings: ExperimentSettings, quiet: bool = False):
    """(training, validation, test) tracks: synthetic, or the data set's train and test subsets
    (`quiet`: no decoding progress bars)."""
    from svsgan_tf.data.pipeline import readable, synthetic_tracks
    from svsgan_tf.training.fit import load_tracks

    if settings.data == "synthetic":
        tracks = synthetic_tracks(config.data, config.stft, seed=settings.seed)
        songs = synthetic_tracks(config.data, config.stft, seed=settings.seed + 1_000_003,
                                 nb_tracks=settings.test_songs, prefix="song")
        return (tracks[settings.validation_tracks:], tracks[:settings.validation_tracks],
                [readable(t) for t in songs])
    from svsgan_tf.data.datasets import load_dataset, materialize

    training, validation = load_tracks(config, quiet=quiet)
    report = load_dataset(settings.data, "test", sample_rate=None, true_mixture=True)
    test, skipped = materialize(report.tracks, quiet=quiet)
    for line in report.skipped + skipped:
        logger.warning("test track skipped: %s", line)
    return training, validation, test


def train_models(config, tracks, validation, settings: ExperimentSettings, out_dir: str,
                 verbose) -> dict[str, str]:
    """Train two models per generator of `settings.generators`; return {label: model directory}."""
    from svsgan_tf.training.fit import train

    model_dirs = {}
    for generator in settings.generators:
        gen_config = config.replace(**{"model.generator": generator})
        logger.info("%s: %s pretraining, %d epochs", generator, config.train.loss, settings.pretrain_epochs)
        start = train(gen_config.replace(**{"train.pretrain_epochs": settings.pretrain_epochs,
                                            "train.gan_epochs": 0}),
                      os.path.join(out_dir, generator, "pretrain"), tracks, validation, verbose=verbose)
        for label, name, gan in models([generator]):
            weight = settings.adversarial_weight if gan else 0.0
            logger.info("%s: fine-tuning %d epochs, adversarial weight %g", label, settings.finetune_epochs,
                        weight)
            finetune = gen_config.replace(**{"train.pretrain_epochs": 0,
                                             "train.gan_epochs": settings.finetune_epochs,
                                             "train.adversarial_weight": weight})
            result = train(finetune, os.path.join(out_dir, generator, "gan" if gan else "kl"), tracks,
                           validation, init_model=start.model_dir, verbose=verbose)
            model_dirs[label] = result.model_dir
    return model_dirs


def evaluate_all(model_dirs: dict[int, dict[str, str]], songs, wiener: int, quiet: bool) -> dict[str, dict]:
    """{row: {track: scores}} for "Mixture", "Oracle" and every "<model>@seed<k>"."""
    from svsgan_tf.evaluation.tracks import evaluate_tracks
    from svsgan_tf.models.model_io import load_config
    from svsgan_tf.separation.separator import Separator

    # the oracle masks the mixture with the models' own STFT (they share it: one config, other seeds)
    first = next(iter(next(iter(model_dirs.values())).values()))
    references = evaluate_tracks(songs, rows=("mixture", "oracle"), quiet=quiet,
                                 stft=load_config(first).separation_stft)
    rows = {"Mixture": references.scores["mixture"], "Oracle": references.scores["oracle"]}
    for seed, per_model in model_dirs.items():
        for label, path in per_model.items():
            separator = Separator.from_directory(path, wiener_iterations=wiener, precision="float32")
            # the model row alone: the mixture and oracle rows are the same for every model
            rows[f"{label}@seed{seed}"] = evaluate_tracks(songs, separator, quiet=quiet,
                                                          rows=("model",)).scores["model"]
    return rows


def _sdr(scores: dict, track: str, target: str = "vocals") -> float:
    return scores.get(track, {}).get(target, {}).get("SDR", float("nan"))


def summary_tables(rows: dict[str, dict], songs, seeds: list[int], loss: str = "kl",
                   generators=PAPER_GENERATORS) -> tuple[str, dict]:
    """Table 1 (vocals SDR per song, median and mean over all tracks) and the statistics behind it.

    Per model: each seed's median/mean over tracks, then mean and standard deviation over seeds; the
    per-song cells are means over seeds. GAN vs its twin trained on the supervised `loss` alone: paired
    Wilcoxon signed-rank test on the per-track SDR averaged over seeds.
    """
    import numpy as np

    from svsgan_tf.evaluation.bss import paired_comparison

    names = [t.name for t in songs]
    shown = [n for n in TABLE_SONGS if n in names] or names[:5]
    stats: dict = {"models": {}, "significance": {}, "table_songs": shown}

    def per_track(label):
        runs = [rows[label]] if label in rows else [rows[f"{label}@seed{s}"] for s in seeds]
        return np.array([[_sdr(run, n) for n in names] for run in runs])       # (nb_runs, nb_tracks)

    labels = ["Mixture", "Oracle"] + [m[0] for m in models(generators)]
    lines = ["| vocals SDR (dB) | " + " | ".join(f"Song{i + 1}" for i in range(len(shown)))
             + f" | Median ({len(names)}) | Mean ({len(names)}) |",
             "|---|" + "---|" * (len(shown) + 2)]
    for label in labels:
        values = per_track(label)
        medians, means = np.nanmedian(values, axis=1), np.nanmean(values, axis=1)
        cells = [np.nanmean(values[:, names.index(n)]) for n in shown]
        stats["models"][label] = {"median_per_seed": medians.tolist(), "mean_per_seed": means.tolist(),
                                  "median_mean": float(medians.mean()), "median_std": float(medians.std()),
                                  "songs": dict(zip(shown, map(float, cells)))}
        spread = f" ± {medians.std():.2f}" if len(medians) > 1 else ""
        mean_spread = f" ± {means.std():.2f}" if len(means) > 1 else ""
        lines.append(f"| {label} | " + " | ".join(f"{c:.2f}" for c in cells)
                     + f" | {medians.mean():.2f}{spread} | {means.mean():.2f}{mean_spread} |")
    lines.append("")
    lines.append(f"| GAN vs {loss.upper()}-only twin | mean Δ SDR (dB) | tracks better | Wilcoxon p |")
    lines.append("|---|---|---|---|")
    for twin, gan in zip(labels[2::2], labels[3::2]):
        test = paired_comparison(np.nanmean(per_track(gan), axis=0), np.nanmean(per_track(twin), axis=0))
        stats["significance"][gan] = {k: test[k] for k in ("mean_delta", "p_value", "better", "tracks")}
        lines.append(f"| {gan} vs {twin} | {test['mean_delta']:+.3f} | {test['better']}/{test['tracks']} "
                     f"| {test['p_value']:.3g} |")
    legend = ", ".join(f"Song{i + 1} = {n}" for i, n in enumerate(shown))
    return "\n".join(lines) + f"\n\n{legend}\n", stats


def parse_generators(text: str) -> tuple[str, ...]:
    """"encoder,rnn" -> ("encoder", "rnn"); ConfigError naming the flag on an unknown or repeated name."""
    from svsgan_tf.errors import ConfigError

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in GENERATOR_LABELS]
    if not names or unknown or len(set(names)) != len(names):
        raise ConfigError(f"--generators {text!r}: expected distinct names among "
                          f"{', '.join(GENERATOR_LABELS)}")
    return names


def run_experiment(config, settings: ExperimentSettings, out_dir: str, quiet: bool = False) -> None:
    """Train every model of `settings` for each seed, score them on the held-out songs, write
    OUT/scores.json and OUT/table.md and print the table (TensorFlow must be started)."""
    from svsgan_tf.io_utils import atomic_write_text

    started = time.time()
    training, validation, songs = load_songs(config, settings, quiet)
    seeds = [settings.seed + k for k in range(settings.seeds)]
    model_dirs = {}
    for seed in seeds:
        seed_config = config.replace(**{"train.seed": seed})
        model_dirs[seed] = train_models(seed_config, training, validation, settings,
                                        os.path.join(out_dir, f"seed{seed}"), 0 if quiet else 2)
    rows = evaluate_all(model_dirs, songs, settings.wiener, quiet)
    table, stats = summary_tables(rows, songs, seeds, config.train.loss, settings.generators)
    minutes = (time.time() - started) / 60
    atomic_write_text(os.path.join(out_dir, "scores.json"), json.dumps(
        {"settings": asdict(settings), "models": model_dirs, "scores": rows, "statistics": stats},
        indent=2, allow_nan=True))
    atomic_write_text(os.path.join(out_dir, "table.md"), table)
    what = "held-out synthetic songs" if settings.data == "synthetic" else f"test tracks of {settings.data}"
    print(f"\nVocals SDR on {len(songs)} {what} (museval v4, median over 1 s frames; "
          f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''})\n")
    print(table)
    print(f"trained and evaluated in {minutes:.1f} min; scores in {os.path.join(out_dir, 'scores.json')}")
