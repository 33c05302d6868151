"""`python -m svsgan_tf.edge --model FILE.tflite INPUT... --out DIR`: separate files with a converted model.

Writes DIR/<name>/{vocals,accompaniment}.wav like `python -m svsgan_tf.separate`, with NumPy and
ai-edge-litert only (no TensorFlow). `--stream` reads each file block by block, the way a live input
arrives, through StreamingSeparator (the files must be at the model's sample rate); the stems are the
same, aligned with the input (for an LSTM on files longer than a chunk, the stream carries its state
throughout where the chunked path restarts it with a warm-up).
"""
from __future__ import annotations

import argparse
import logging

from svsgan_tf import cli
from svsgan_tf.separation.files import (NAMING_RULE, add_existing_flags, check_output_folder, plan_jobs, report,
                                        separate_files)

logger = logging.getLogger(__name__)

STREAM_BLOCK_SAMPLES = 1024          # samples per block read with --stream (23 ms at 44.1 kHz)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m svsgan_tf.edge",
                                     description="Separate audio files with a .tflite model (python -m "
                                                 "svsgan_tf.tflite) on LiteRT, without TensorFlow.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders")
    parser.add_argument("--model", required=True, metavar="FILE.tflite", help="the converted model")
    parser.add_argument("--out", required=True, help=f"output folder ({NAMING_RULE})")
    parser.add_argument("--stream", action="store_true",
                        help=f"read each file in blocks of {STREAM_BLOCK_SAMPLES} samples through the "
                             "streaming separator, as a live input")
    parser.add_argument("--threads", type=int, default=None, help="interpreter CPU threads (default: LiteRT's)")
    add_existing_flags(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from svsgan_tf.edge.runner import EdgeSeparator
    from svsgan_tf.runtime import setup_logging

    setup_logging(args.quiet)
    if args.threads is not None and args.threads < 1:
        raise cli.SVSGANError(f"--threads {args.threads}: must be >= 1")
    check_output_folder(args.out)
    jobs = plan_jobs(args.inputs)
    separator = EdgeSeparator(args.model, args.threads)
    if args.stream and separator.block_layout(1).whole:
        raise cli.SVSGANError(f"--stream: {args.model} (a U-Net without segments) sees a whole recording at "
                              "once and cannot stream; leave out --stream")
    engine = StreamFiles(separator) if args.stream else separator
    errors = separate_files(engine, jobs, args.out, args.quiet, overwrite=args.overwrite,
                            skip_existing=args.skip_existing)
    return report(jobs, errors, args.out)


class StreamFiles:
    """What `separate_files` takes, separating each file through a StreamingSeparator block by block."""

    def __init__(self, separator):
        self.separator = separator

    def stream(self, read, nb_samples: int, nb_channels: int, sample_rate: int, source: str):
        """Yield the stems of the file as blocks (see separation.stream.separate_stream), aligned with
        the input: the stream's first latency_samples output samples are dropped."""
        from svsgan_tf.edge.runner import StreamingSeparator
        from svsgan_tf.errors import AudioError

        if sample_rate != self.separator.sample_rate:
            raise AudioError(source, f"{sample_rate} Hz; --stream takes audio at the model's rate, "
                                     f"{self.separator.sample_rate} Hz (leave out --stream to resample)")
        stream = StreamingSeparator(self.separator, nb_channels, source=source)
        skip = stream.latency_samples
        for start in range(0, nb_samples, STREAM_BLOCK_SAMPLES):
            stop = min(start + STREAM_BLOCK_SAMPLES, nb_samples)
            block = read(start, stop)
            if block.shape[0] != stop - start:
                raise AudioError(source, f"the decoder gave {block.shape[0]} samples at sample {start}, "
                                         f"expected {stop - start}")
            yield from _after(stream.process(block), skip, start)
        yield from _after(stream.flush(), skip, nb_samples)


def _after(stems: dict, skip: int, position: int):
    """The stems' samples from output sample `skip` on, for a block that starts at output `position`."""
    drop = max(0, min(skip - position, next(iter(stems.values())).shape[0]))
    if drop < next(iter(stems.values())).shape[0]:
        yield {name: stem[drop:] for name, stem in stems.items()}


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
