"""`python -m svsgan_tf.compare`: paired comparison of models scored by `evaluate` on the same tracks."""
from __future__ import annotations

import argparse
import json
import os

from svsgan_tf import cli
from svsgan_tf.errors import DataError
from svsgan_tf.evaluation.compare import compare, load_summary, markdown


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m svsgan_tf.compare",
        description="Compare models scored by `python -m svsgan_tf.evaluate` on the same tracks: the median "
                    "and mean of a metric over the tracks all of them scored, and for each model after the "
                    "first the paired difference to the first (mean and median, tracks better, two-sided "
                    "Wilcoxon signed-rank p). The tool for choosing a model on held-out songs.")
    parser.add_argument("summaries", nargs="+", metavar="EVAL_DIR",
                        help="evaluate output folders (or their summary.json); the first is the baseline")
    parser.add_argument("--labels", default=None, help="comma-separated row names (default: folder names)")
    parser.add_argument("--target", default="vocals", choices=("vocals", "accompaniment"))
    parser.add_argument("--metric", default="SDR", choices=("SDR", "SIR", "SAR"))
    parser.add_argument("--out", default=None, help="also write the comparison as JSON to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    labels = args.labels.split(",") if args.labels else [
        os.path.basename(os.path.normpath(p if os.path.isdir(p) else os.path.dirname(p) or ".")) for p in args.summaries]
    if len(labels) != len(args.summaries) or len(set(labels)) != len(labels):
        raise DataError(f"--labels {args.labels or ','.join(labels)}: need one distinct label per summary "
                        f"({len(args.summaries)}); pass --labels")
    summaries = {label: load_summary(path) for label, path in zip(labels, args.summaries)}
    result = compare(summaries, args.target, args.metric)
    if args.out:
        from svsgan_tf.io_utils import atomic_write_text

        atomic_write_text(args.out, json.dumps(result, indent=2, allow_nan=True) + "\n")
    print(markdown(result))
    return 0


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
