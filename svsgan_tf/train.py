"""`python -m svsgan_tf.train`: train an SVSGAN generator (supervised pretraining, optionally the cGAN phase)."""
from __future__ import annotations

import argparse
import os
import sys

from svsgan_tf import cli


def build_parser() -> argparse.ArgumentParser:
    from svsgan_tf.config import recipe_names

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
    parser.add_argument("--config", default=None, metavar="NAME|FILE",
                        help=f"start from a named recipe ({', '.join(recipe_names())}: svsgan_tf/configs) or a "
                             "config.json, e.g. a run folder's")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any config value, e.g. --set model.lstm_units=128 (repeatable)")
    parser.add_argument("--init-model", default=None, metavar="MODEL",
                        help="model folder or shipped model name (e.g. an imported Spleeter) to start G (and D) from")
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
    from svsgan_tf.config import Config, config_path

    config = Config.load(config_path(args.config)) if args.config else Config()
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
    config = config.replace(**overrides).validate()
    return with_available_data(config, args)


def with_available_data(config, args: argparse.Namespace):
    """A named recipe whose data set is not on this machine trains on the embedded synthetic set
    instead, with a note; a data set named by --data, --set or a config file is used as it is."""
    from svsgan_tf.config import is_recipe_name

    source = config.data.source
    named = args.data is not None or any(item.startswith("data.source=") for item in args.set)
    if not args.config or not is_recipe_name(args.config) or named or source == "synthetic":
        return config
    path = source.partition(":")[2] if ":" in source else source
    if os.path.exists(path):
        return config
    from svsgan_tf.config import DataConfig

    overrides = {"data.source": "synthetic"}
    if config.data.validation_tracks >= config.data.nb_tracks:      # the synthetic set has nb_tracks songs
        overrides["data.validation_tracks"] = DataConfig.validation_tracks
    print(f"note: recipe {args.config!r} trains on {source}, which is not on this machine; training on the "
          "embedded synthetic set instead (--data to choose another)", file=sys.stderr)
    return config.replace(**overrides).validate()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    cli.start_tensorflow(args.quiet)
    from svsgan_tf.training.distribute import make_strategy
    from svsgan_tf.training.fit import train

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
