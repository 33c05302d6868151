"""`python -m svsgan_tf.evaluate --data PATH --out DIR`: BSS Eval v4 of a model beside the mixture and oracle.

For every track: museval (1 s frames, median over frames) of vocals and accompaniment for the model,
for the unprocessed mixture and for the ideal ratio mask (oracle), all on the same tracks. Writes
DIR/summary.json, DIR/results.md, DIR/museval/<track>.json (museval's format), a bar chart of vocals
SDR per track and row (like the paper's Fig. 6) and spectrograms of one track. Exit code 1 when a
track was skipped (the results of the others are still written; --allow-skips accepts skips) or an
output cannot be written; 2 for a bad model or data set.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from svsgan_tf import cli
from svsgan_tf.evaluation.tracks import (EstimateFolder, evaluate_tracks, markdown, plot_bars, plot_spectrograms, skipped_line,
                                         summarize, writing)
from svsgan_tf.separation.files import check_output_folder
from svsgan_tf.edge.model_file import is_tflite_path
from svsgan_tf.shipped_models import resolve_model

logger = logging.getLogger(__name__)

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m svsgan_tf.evaluate", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("--data", required=True, help="data set [format:]PATH (musdb, dsd100, mir1k, folder)")
    parser.add_argument("--subset", default="test", help="subset to score (default %(default)s)")
    cli.add_model_argument(parser)          # or a .tflite file (python -m svsgan_tf.tflite)
    cli.add_precision_argument(parser)
    parser.add_argument("--estimates", default=None, metavar="DIR",
                        help="score the stems in DIR/<track>/{vocals,accompaniment}.wav (another tool's output, "
                             "e.g. Spleeter's -o DIR) instead of separating; the oracle uses --model's STFT")
    parser.add_argument("--out", required=True, help="output folder")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--tracks", type=int, default=None, help="score only the first N tracks")
    which.add_argument("--held-out", type=int, default=None, metavar="N",
                       help="score only the last N tracks: the validation songs that training with "
                            "data.validation_tracks=N holds out of this subset")
    parser.add_argument("--plot-track", default=None, help="track for the spectrogram figure (default: the first)")
    parser.add_argument("--wiener", type=int, default=0, metavar="N",
                        help="multichannel Wiener post-filter iterations (0: off)")
    parser.add_argument("--allow-skips", action="store_true",
                        help="exit 0 even when some tracks were skipped (default: exit 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.model = resolve_model(args.model)             # an unknown name fails before anything is written
    if is_tflite_path(args.model) and args.wiener:
        raise cli.SVSGANError(f"--wiener: a .tflite model ({args.model}) separates with the mixture phase only")
    if is_tflite_path(args.model) and args.precision:
        raise cli.SVSGANError(f"--precision: a .tflite model ({args.model}) keeps the arithmetic it was converted with")
    if args.estimates is not None:
        if args.wiener or args.precision:
            raise cli.SVSGANError("--estimates with --wiener or --precision: the estimates are scored as they are")
        if not os.path.isdir(args.estimates):
            raise cli.SVSGANError(f"{args.estimates}: no such folder of estimates")
    check_output_folder(args.out)
    cli.start_tensorflow(args.quiet)
    return _evaluate(args)


def _evaluate(args: argparse.Namespace) -> int:
    """The body of `main` once OUT is usable; OutputError when an output cannot be written."""
    from svsgan_tf.data.datasets import load_dataset
    from svsgan_tf.io_utils import atomic_write_text
    from svsgan_tf.edge.runner import EdgeSeparator
    from svsgan_tf.separation.separator import Separator

    # scoring another tool's stems needs only the model's STFT (for the oracle), not its weights
    if args.estimates:
        separator = None
    elif is_tflite_path(args.model):
        separator = EdgeSeparator(args.model)          # a converted model, scored the same way
    else:
        separator = Separator.from_directory(args.model, wiener_iterations=args.wiener, precision=args.precision)
    stft = (load_model_config(args.model) if args.estimates else separator.config).separation_stft
    report = load_dataset(args.data, args.subset, sample_rate=None, true_mixture=True)
    tracks = (report.tracks[-args.held_out:] if args.held_out
              else report.tracks[:args.tracks] if args.tracks else report.tracks)
    scored = EstimateFolder(args.estimates) if args.estimates else separator
    result = evaluate_tracks(tracks, scored, args.out, args.quiet, stft=stft)
    result.skipped = report.skipped + result.skipped
    summary = summarize(result)
    if separator is not None:              # the arithmetic the stems were made with
        summary["precision"] = separator.precision if isinstance(separator, Separator) else "tflite"
    for name, text in (("summary.json", json.dumps(summary, indent=2, allow_nan=True)),
                       ("results.md", markdown(summary))):
        with writing(os.path.join(args.out, name)):
            atomic_write_text(os.path.join(args.out, name), text)
    plot_bars(summary, os.path.join(args.out, "vocals_sdr.png"))
    names = [t.name for t in tracks if t.name in summary["tracks"]]
    if names and not args.estimates:
        chosen = args.plot_track or names[0]
        track = next((t for t in tracks if t.name == chosen), None)
        if track is None:
            raise cli.SVSGANError(f"--plot-track {chosen}: no such track in {args.data}")
        plot_spectrograms(track, separator, os.path.join(args.out, "spectrogram.png"))
    print(markdown(summary))
    for line in result.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    if not result.skipped:
        return 0
    line = skipped_line(result.skipped, len(tracks) + len(report.skipped), len(summary["tracks"]))
    if not summary["tracks"] or not args.allow_skips:        # no track scored fails even with --allow-skips
        print(f"error: {line}; exit code 1" + ("" if args.allow_skips else " (--allow-skips accepts skips)"),
              file=sys.stderr)
        return 1
    print(f"warning: {line}", file=sys.stderr)
    return 0


def load_model_config(model: str):
    """The Config of a model folder, shipped model name or .tflite file."""
    if is_tflite_path(model):
        from svsgan_tf.edge.runner import file_config

        return file_config(model)
    from svsgan_tf.models.model_io import load_config

    return load_config(model)


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
