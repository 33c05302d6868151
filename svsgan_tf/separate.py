"""`python -m svsgan_tf.separate INPUT... --out DIR`: write DIR/<name>/{vocals,accompaniment}.wav, a chunk at a time."""
from __future__ import annotations

import argparse
import logging

from svsgan_tf import cli
from svsgan_tf.shipped_models import resolve_model
from svsgan_tf.separation.chunking import DEFAULT_CHUNK_SECONDS
from svsgan_tf.separation.files import (NAMING_RULE, add_existing_flags, check_output_folder, plan_jobs, report,
                                        separate_files)

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m svsgan_tf.separate",
                                     description="Separate vocals and accompaniment of audio files.",
                                     epilog=NAMING_RULE)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders (searched recursively)")
    parser.add_argument("--out", required=True, help="output folder")
    cli.add_model_argument(parser)
    cli.add_precision_argument(parser)
    parser.add_argument("--griffin-lim", type=int, default=0, metavar="N",
                        help="refine the phase with N Griffin-Lim iterations (default 0: mixture phase)")
    parser.add_argument("--wiener", type=int, default=0, metavar="N",
                        help="multichannel Wiener post-filter with N EM iterations (default 0: off)")
    add_existing_flags(parser)
    parser.add_argument("--chunk-seconds", type=float, default=DEFAULT_CHUNK_SECONDS, metavar="S",
                        help="separate long files in chunks of about S seconds (bounds memory; default "
                             "%(default)g)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.griffin_lim < 0 or args.wiener < 0:
        raise cli.SVSGANError("--griffin-lim and --wiener: must be >= 0")
    if args.griffin_lim and args.wiener:
        raise cli.SVSGANError("--griffin-lim and --wiener: choose one phase/post-processing method")
    if args.chunk_seconds <= 0:
        raise cli.SVSGANError(f"--chunk-seconds {args.chunk_seconds:g}: must be > 0")
    model = resolve_model(args.model)                 # an unknown name fails before anything is written
    jobs = plan_jobs(args.inputs)
    check_output_folder(args.out)
    cli.start_tensorflow(args.quiet)
    from svsgan_tf.runtime import separation_threads
    from svsgan_tf.separation.separator import Separator

    separation_threads(model)

    separator = Separator.from_directory(model, args.griffin_lim, args.wiener,
                                         chunk_seconds=args.chunk_seconds, precision=args.precision)
    errors = separate_files(separator, jobs, args.out, args.quiet, overwrite=args.overwrite,
                            skip_existing=args.skip_existing)
    return report(jobs, errors, args.out)


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
