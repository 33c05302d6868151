"""`python -m svsgan_tf.experiment`: the paper's comparison of Encoder, Encoder-GAN, RNN and RNN-GAN.

Each generator is pretrained with the KL divergence, then fine-tuned twice from that same start for the
same number of steps with the same learning rate: once as the conditional GAN (adversarial + KL) and
once as its KL-only twin (adversarial weight 0), so that any difference comes from the discriminator.
Held-out songs are separated with each model and scored with museval (BSS Eval v4, vocals SDR, median
over 1 s frames), beside the unprocessed mixture, as in the paper's Table 1.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass

from svsgan_tf import cli

logger = logging.getLogger(__name__)

MODELS = (("Encoder", "encoder", False), ("Encoder-GAN", "encoder", True),
          ("RNN", "rnn", False), ("RNN-GAN", "rnn", True))


@dataclass
class ExperimentSettings:
    """Sizes of the synthetic experiment; the defaults run in a few minutes on 2 CPU cores."""

    pretrain_epochs: int = 12
    finetune_epochs: int = 4
    train_tracks: int = 16
    validation_tracks: int = 2
    test_songs: int = 5
    track_seconds: float = 6.0
    adversarial_weight: float = 10.0
    seed: int = 0


def base_config(settings: ExperimentSettings):
    from svsgan_tf.config import Config

    return Config().replace(**{
        "data.nb_tracks": settings.train_tracks + settings.validation_tracks,
        "data.validation_tracks": settings.validation_tracks,
        "data.track_seconds": settings.track_seconds,
        "train.seed": settings.seed,
    })


def train_models(config, tracks, validation, settings: ExperimentSettings, out_dir: str,
                 verbose) -> dict[str, str]:
    """Train the four models; return {label: model directory}."""
    from svsgan_tf.training import train

    model_dirs = {}
    for generator in ("encoder", "rnn"):
        gen_config = config.replace(**{"model.generator": generator})
        logger.info("%s: KL pretraining, %d epochs", generator, settings.pretrain_epochs)
        start = train(gen_config.replace(**{"train.pretrain_epochs": settings.pretrain_epochs,
                                            "train.gan_epochs": 0}),
                      os.path.join(out_dir, generator, "pretrain"), tracks, validation, verbose=verbose)
        for label, name, gan in MODELS:
            if name != generator:
                continue
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


def evaluate_models(model_dirs: dict[str, str], songs, quiet: bool = False) -> dict[str, dict]:
    """Scores of the unprocessed mixture and of every model on each song.

    Returns:
        {row: {song: {"vocals": {"SDR", ...}, "accompaniment": {...}}}}
    """
    from tqdm import tqdm

    from svsgan_tf.evaluation import bss_eval
    from svsgan_tf.separator import Separator

    rows: dict[str, dict] = {"Mixture": {}}
    separators = {label: Separator.from_directory(path) for label, path in model_dirs.items()}
    jobs = [(row, song) for song in songs for row in ["Mixture", *separators]]
    for row, song in tqdm(jobs, desc="museval", unit="track", disable=quiet):
        references = {"vocals": song.vocals, "accompaniment": song.accompaniment}
        if row == "Mixture":
            estimates = {"vocals": song.mixture, "accompaniment": song.mixture}
        else:
            estimates = separators[row].separate(song.mixture, song.sample_rate, source=song.name)
        rows.setdefault(row, {})[song.name] = bss_eval(references, estimates, song.sample_rate)
    return rows


def sdr_table(scores: dict[str, dict], songs, target: str = "vocals") -> str:
    """Table 1 layout: one row per model, SDR (dB) per song, then median and mean over songs."""
    import numpy as np

    from svsgan_tf.evaluation import format_table

    columns = [f"Song{i + 1}" for i in range(len(songs))]
    table = {}
    for row, per_song in scores.items():
        values = [per_song[song.name][target]["SDR"] for song in songs]
        table[row] = {**dict(zip(columns, values)), "Median": float(np.nanmedian(values)),
                      "Mean": float(np.nanmean(values))}
    return format_table(table, columns, f"{target} SDR (dB)", {"Median": "", "Mean": ""})


def build_parser() -> argparse.ArgumentParser:
    defaults = ExperimentSettings()
    parser = argparse.ArgumentParser(prog="python -m svsgan_tf.experiment",
                                     description="Train and compare Encoder, Encoder-GAN, RNN and RNN-GAN "
                                                 "on the embedded synthetic set and print an SDR table.")
    parser.add_argument("--out", default="runs/experiment", help="run folder (default %(default)s)")
    parser.add_argument("--pretrain-epochs", type=int, default=defaults.pretrain_epochs)
    parser.add_argument("--finetune-epochs", type=int, default=defaults.finetune_epochs)
    parser.add_argument("--train-tracks", type=int, default=defaults.train_tracks)
    parser.add_argument("--test-songs", type=int, default=defaults.test_songs)
    parser.add_argument("--adversarial-weight", type=float, default=defaults.adversarial_weight)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = ExperimentSettings(pretrain_epochs=args.pretrain_epochs, finetune_epochs=args.finetune_epochs,
                                  train_tracks=args.train_tracks, test_songs=args.test_songs,
                                  adversarial_weight=args.adversarial_weight, seed=args.seed)
    config = base_config(settings).validate()
    cli.start_tensorflow(args.quiet)
    from svsgan_tf.data import synthetic_tracks
    from svsgan_tf.io_utils import atomic_write_text

    started = time.time()
    tracks = synthetic_tracks(config.data, config.stft, seed=settings.seed)
    validation, training = tracks[:settings.validation_tracks], tracks[settings.validation_tracks:]
    songs = synthetic_tracks(config.data, config.stft, seed=settings.seed + 1_000_003,
                             nb_tracks=settings.test_songs, prefix="song")
    model_dirs = train_models(config, training, validation, settings, args.out, 0 if args.quiet else 2)
    scores = evaluate_models(model_dirs, songs, args.quiet)
    table = sdr_table(scores, songs)
    minutes = (time.time() - started) / 60
    atomic_write_text(os.path.join(args.out, "scores.json"),
                      json.dumps({"settings": settings.__dict__, "models": model_dirs, "scores": scores},
                                 indent=2))
    atomic_write_text(os.path.join(args.out, "table.md"), table + "\n")
    print(f"\nVocals SDR on {len(songs)} held-out synthetic songs (museval v4, median over 1 s frames)\n")
    print(table)
    print(f"\ntrained and evaluated in {minutes:.1f} min; scores in {os.path.join(args.out, 'scores.json')}")
    return 0


if __name__ == "__main__":
    cli.run(main)
