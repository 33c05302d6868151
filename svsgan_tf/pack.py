"""`python -m svsgan_tf.pack MODEL_DIR --out DIR [--float16]`: a model directory made for shipping.

It holds the model's config.json and G's weights only (no discriminator); with --float16 every weight is
stored in half precision, half the size (loading casts them back to float32). It prints the size and
the largest change of the mask that half precision makes on a second of noise, so the loss is measured,
not assumed.
"""
from __future__ import annotations

import argparse
import os

from svsgan_tf import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m svsgan_tf.pack", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("model", help="model directory (config.json + generator weights)")
    parser.add_argument("--out", required=True, help="folder to write (replaced atomically)")
    parser.add_argument("--float16", action="store_true", help="store the weights in half precision")
    parser.add_argument("--quiet", action="store_true", help="warnings only")
    return parser


def mask_difference(source: str, target: str, seconds: float = 1.0, seed: int = 0) -> float:
    """Largest absolute difference between the two model directories' masks on `seconds` of stereo
    white noise at the model's sample rate."""
    import numpy as np
    import tensorflow as tf

    from svsgan_tf.separator import Separator
    from svsgan_tf.spectral import stft

    first, second = Separator.from_directory(source), Separator.from_directory(target)
    stft_config = first.config.stft
    noise = np.random.default_rng(seed).normal(scale=0.1, size=(2, int(seconds * stft_config.sample_rate)))
    magnitude = tf.abs(stft(tf.constant(noise, tf.float32), stft_config.n_fft, stft_config.hop_length))
    return float(np.max(np.abs(first.mask(magnitude).numpy() - second.mask(magnitude).numpy())))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.start_tensorflow(args.quiet)
    from svsgan_tf.model_io import GENERATOR_FILE, pack_model

    pack_model(args.model, args.out, args.float16)
    size = os.path.getsize(os.path.join(args.out, GENERATOR_FILE)) / 1e6
    print(f"packed {args.model} into {args.out}: {GENERATOR_FILE} {size:.1f} MB"
          f"{' (float16)' if args.float16 else ''}; largest mask change on noise "
          f"{mask_difference(args.model, args.out):.2e}")
    return 0


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
