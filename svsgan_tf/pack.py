"""`python -m svsgan_tf.pack MODEL_DIR [MODEL_DIR ...] --out DIR [--float16|--int8] [--set KEY=VALUE]`: a model folder for shipping.

From one model directory: its config.json and G's weights only (no discriminator). From several: an
ensemble folder that separates with the mean of their masks (model_io). --set changes how the folder
separates (the config's `separation` section and model.swap_average), never the weights. With
--float16 every weight is stored in half precision, half the size; with --int8 every weight matrix
is stored as int8 with a float32 step per unit, a quarter of the size (loading turns both back to
float32). It prints the size and the largest change of the mask that the precision makes on a second
of noise, so the loss is measured, not assumed.
"""
from __future__ import annotations

import argparse
import os

from svsgan_tf import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m svsgan_tf.pack", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("models", nargs="+", metavar="MODEL_DIR",
                        help="model directories (config.json + generator weights); several make an ensemble")
    parser.add_argument("--out", required=True, help="folder to write (replaced atomically)")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--float16", action="store_true", help="store the weights in half precision")
    precision.add_argument("--int8", action="store_true",
                           help="store each weight matrix as int8 with a float32 step per unit (a quarter "
                                "of the size), vectors in half precision")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a Separator setting of the packed folder (separation.hop_length, "
                             "separation.mask_smoothing, separation.mask_power, separation.precision, "
                             "model.swap_average; repeatable)")
    parser.add_argument("--quiet", action="store_true", help="warnings only")
    return parser


def mask_difference(reference, target: str, seconds: float = 1.0, seed: int = 0) -> float:
    """Largest absolute difference between the masks of `reference`, a (config, generator) pair such
    as pack_model returns, and of the packed folder `target`, on `seconds` of stereo white noise at
    the model's sample rate."""
    import numpy as np
    import tensorflow as tf

    from svsgan_tf.separation.separator import Separator
    from svsgan_tf.audio.spectral import stft

    first, second = Separator(*reference), Separator.from_directory(target, precision="float32")
    stft_config = first.config.stft
    noise = np.random.default_rng(seed).normal(scale=0.1, size=(2, int(seconds * stft_config.sample_rate)))
    magnitude = tf.abs(stft(tf.constant(noise, tf.float32), stft_config.n_fft, stft_config.hop_length))
    return float(np.max(np.abs(first.mask(magnitude).numpy() - second.mask(magnitude).numpy())))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.start_tensorflow(args.quiet)
    from svsgan_tf.models.model_io import GENERATOR_FILE, pack_model

    precision = "int8" if args.int8 else "float16" if args.float16 else "float32"
    reference = pack_model(args.models, args.out, precision, cli.parse_overrides(args.set))
    size = sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(args.out)
               for name in names if name == GENERATOR_FILE) / 1e6
    what = f"an ensemble of {len(args.models)}" if len(args.models) > 1 else args.models[0]
    print(f"packed {what} into {args.out}: weights {size:.1f} MB"
          f"{'' if precision == 'float32' else f' ({precision})'}; largest mask change on noise "
          f"{mask_difference(reference, args.out):.2e}")
    return 0


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
