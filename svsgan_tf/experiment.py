"""`python -m svsgan_tf.experiment`: the paper's comparison of Encoder, Encoder-GAN, RNN and RNN-GAN.

`--generators` chooses which generators take part (the paper's two by default; `unet` adds the U-Net
and the U-Net-GAN, beyond the paper). The protocol (pretraining, the GAN and its supervised twin, the
scores and the paired test) is described in svsgan_tf/evaluation/paper.py.
"""
from __future__ import annotations

import argparse

from svsgan_tf import cli
from svsgan_tf.evaluation.paper import ExperimentSettings, base_config, parse_generators, run_experiment


def build_parser() -> argparse.ArgumentParser:
    defaults = ExperimentSettings()
    parser = argparse.ArgumentParser(prog="python -m svsgan_tf.experiment",
                                     description="Train and compare Encoder, Encoder-GAN, RNN and RNN-GAN and "
                                                 "print the paper's SDR table.")
    parser.add_argument("--data", default=defaults.data,
                        help="synthetic (default, no download) or a data set, e.g. musdb:../shared/data/musdb18-7s")
    parser.add_argument("--out", default="runs/experiment", help="run folder (default %(default)s)")
    parser.add_argument("--pretrain-epochs", type=int, default=defaults.pretrain_epochs)
    parser.add_argument("--finetune-epochs", type=int, default=defaults.finetune_epochs)
    parser.add_argument("--train-tracks", type=int, default=defaults.train_tracks, help="synthetic only")
    parser.add_argument("--validation-tracks", type=int, default=defaults.validation_tracks)
    parser.add_argument("--test-songs", type=int, default=defaults.test_songs, help="synthetic only")
    parser.add_argument("--adversarial-weight", type=float, default=defaults.adversarial_weight)
    parser.add_argument("--seeds", type=int, default=defaults.seeds, help="seeds per model (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="first seed")
    parser.add_argument("--wiener", type=int, default=0, metavar="N", help="Wiener post-filter iterations")
    parser.add_argument("--generators", default=",".join(defaults.generators), metavar="G[,G...]",
                        help="generators to compare, each with its GAN model: encoder, rnn, unet "
                             "(default %(default)s, the paper's)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any training config value (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = ExperimentSettings(data=args.data, pretrain_epochs=args.pretrain_epochs,
                                  finetune_epochs=args.finetune_epochs, train_tracks=args.train_tracks,
                                  validation_tracks=args.validation_tracks, test_songs=args.test_songs,
                                  adversarial_weight=args.adversarial_weight, seeds=args.seeds, seed=args.seed,
                                  wiener=args.wiener, generators=parse_generators(args.generators),
                                  overrides=cli.parse_overrides(args.set))
    config = base_config(settings).validate()
    cli.start_tensorflow(args.quiet)
    run_experiment(config, settings, args.out, args.quiet)
    return 0


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
