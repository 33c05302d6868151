"""`python -m svsgan_tf.tflite [--model DIR] --out FILE.tflite`: a model as a .tflite file of builtin ops only.

The file holds G's mask network and the model's config; run it with `python -m svsgan_tf.edge`
(NumPy + ai-edge-litert, no TensorFlow). What is converted and how: svsgan_tf/export/tflite.py.
"""
from __future__ import annotations

import argparse
import os

from svsgan_tf import cli
from svsgan_tf.edge.model_file import QUANTIZATIONS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m svsgan_tf.tflite",
                                     description="Convert a model to a .tflite file (builtin ops only) for "
                                                 "LiteRT on edge devices.")
    cli.add_model_argument(parser)
    parser.add_argument("--out", required=True, metavar="FILE.tflite", help="the file to write")
    parser.add_argument("--quantize", default="none", choices=QUANTIZATIONS,
                        help="none: float32; float16: float16 weights; dynamic: int8 weights, float "
                             "activations; int8: int8 weights and activations, calibrated on real audio "
                             "(default %(default)s)")
    parser.add_argument("--calibration", nargs="+", default=None, metavar="AUDIO",
                        help="audio files whose frames calibrate int8 (default: the stempeg example song)")
    parser.add_argument("--overwrite", action="store_true", help="replace FILE.tflite if it exists")
    parser.add_argument("--quiet", action="store_true", help="warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from svsgan_tf.export.tflite import check_output
    from svsgan_tf.shipped_models import resolve_model

    check_output(args.out, args.overwrite)              # fail fast, before TensorFlow starts
    model = resolve_model(args.model)
    if args.calibration and args.quantize != "int8":
        raise cli.SVSGANError("--calibration calibrates --quantize int8 only")
    for path in args.calibration or []:
        if not os.path.isfile(path):
            raise cli.SVSGANError(f"--calibration {path}: no such file")
    cli.start_tensorflow(args.quiet)
    from svsgan_tf.export.tflite import convert_model

    ops = convert_model(model, args.out, args.quantize, args.calibration, args.overwrite)["ops"]
    size = os.path.getsize(args.out) / 1e6
    print(f"converted {model} to {os.path.abspath(args.out)} ({args.quantize}, {size:.1f} MB; builtin ops: "
          f"{', '.join(ops)})")
    return 0


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
