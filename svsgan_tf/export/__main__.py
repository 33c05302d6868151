"""`python -m svsgan_tf.export [--model DIR] --out BASE`: a SavedModel for TF Serving in BASE/<version>/.

The layout and the signatures: svsgan_tf/export/savedmodel.py.
"""
from __future__ import annotations

import argparse
import os

from svsgan_tf import cli
from svsgan_tf.export.savedmodel import EXPORT_PRECISIONS, SIGNATURES, check_target, export_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m svsgan_tf.export",
        description="Export a trained model as a SavedModel in TF Serving's layout: BASE/<version>/.")
    cli.add_model_argument(parser)
    parser.add_argument("--out", required=True, metavar="BASE",
                        help="base folder, TF Serving's --model_base_path; the export goes to BASE/<version>/")
    parser.add_argument("--version", type=int, default=None, metavar="N",
                        help="version number (default: one more than the newest version in BASE, or 1); "
                             "an existing version is never overwritten")
    parser.add_argument("--precision", default="float32", choices=EXPORT_PRECISIONS,
                        help="what the export computes in: float32 (default, alike on every server) or bfloat16 "
                             "(U-Net models; for servers whose CPU has AMX or AVX512-BF16, slower elsewhere)")
    parser.add_argument("--quiet", action="store_true", help="warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_target(args.out, args.version)              # fail fast, before TensorFlow starts
    from svsgan_tf.shipped_models import resolve_model

    model_dir = resolve_model(args.model)
    cli.start_tensorflow(args.quiet)
    target = export_model(model_dir, args.out, args.version, args.precision)
    print(f"exported {model_dir} to {os.path.abspath(target)} "
          f"(signatures: {', '.join(SIGNATURES)})")
    return 0


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
