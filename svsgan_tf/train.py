"""`python -m svsgan_tf.train`: train an SVSGAN generator (supervised pretraining, optionally the cGAN phase)."""
from __future__ import annotations

import argparse
import os

from svsgan_tf import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m svsgan_tf.train", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("--model", choices=None, default=None, metavar="{encoder,rnn,unet}",
                        help="generator: encoder (FC encoder-decoder), rnn (encoder-LSTM-decoder) or unet "
                             "(convolutional U-Net as Spleeter's, beyond the paper)")
    parser.add_argument("--gan", action="store_true", help="add the conditional GAN phase after pretraining")
    parser.add_argument("--data", default=None, help="data source (default: the embedded synthetic set)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="supervised pretraining epochs (train.loss, KL by default)")
    parser.add_argument("--gan-epochs", type=int, default=None, help="cGAN epochs with --gan (default 5)")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch size (examples)")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="batches per epoch")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument("--config", default=None, help="a config.json to start from")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any config value, e.g. --set model.lstm_units=128 (repeatable)")
    parser.add_argument("--init-model", default=None, help="model directory to start G (and D) from")
    parser.add_argument("--out", default="runs/svsgan", help="run directory: model/, backup/, logs/ (default %(default)s)")
    parser.add_argument("--strategy", default="auto", metavar="{auto,one,mirrored,multiworker}",
                        help="tf.distribute strategy: auto (mirrored with > 1 GPU, else one device), one, "
                             "mirrored (all GPUs of this machine), multiworker (the cluster in TF_CONFIG); "
                             "default %(default)s")
    parser.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    return parser


def config_from_args(args: argparse.Namespace):
    """The run's Config: --config (or the defaults), then the flags, then --set overrides."""
    from svsgan_tf.config import Config

    config = Config.load(args.config) if args.config else Config()
    overrides = {}
    if args.model is not None:
        overrides["model.generator"] = args.model
    if args.data is not None:
        overrides["data.source"] = args.data
    if args.epochs is not None:
        overrides["train.pretrain_epochs"] = args.epochs
    if args.gan:
        overrides["train.gan_epochs"] = args.gan_epochs if args.gan_epochs is not None else 5
    elif args.gan_epochs:
        overrides["train.gan_epochs"] = args.gan_epochs
    else:
        overrides["train.gan_epochs"] = 0 if not args.config else config.train.gan_epochs
    for flag, key in (("batch_size", "train.batch_size"), ("steps_per_epoch", "train.steps_per_epoch"),
                      ("seed", "train.seed")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    overrides.update(cli.parse_overrides(args.set))
    return config.replace(**overrides).validate()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    cli.start_tensorflow(args.quiet)
    from svsgan_tf.distribute import make_strategy
    from svsgan_tf.training import train

    strategy = make_strategy(args.strategy)        # before any op: a multi-worker cluster forms here
    result = train(config, args.out, init_model=args.init_model, strategy=strategy,
                   verbose=0 if args.quiet else "auto", tensorboard=not args.no_tensorboard)
    final = {k: round(float(v[-1]), 4) for k, v in result.history.items() if v}
    print(f"model written to {os.path.abspath(result.model_dir)}; last epoch: {final}")
    return 0


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
