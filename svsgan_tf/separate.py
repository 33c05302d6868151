"""`python -m svsgan_tf.separate INPUT... --out DIR`: write DIR/<name>/{vocals,accompaniment}.wav."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from svsgan_tf import cli

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m svsgan_tf.separate",
                                     description="Separate vocals and accompaniment of audio files.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders (searched recursively)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--model", default=None, help="model directory (default: the shipped pretrained model)")
    parser.add_argument("--griffin-lim", type=int, default=0, metavar="N",
                        help="refine the phase with N Griffin-Lim iterations (default 0: mixture phase)")
    parser.add_argument("--wiener", type=int, default=0, metavar="N",
                        help="multichannel Wiener post-filter with N EM iterations (default 0: off)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    return parser


def output_names(files: list[str]) -> list[str]:
    """One output folder name per input: the file name without extension, made unique."""
    names, seen = [], {}
    for path in files:
        stem = os.path.splitext(os.path.basename(path))[0]
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def separate_files(separator, files: list[str], out_dir: str, quiet: bool = False,
                   fatal: tuple[type, ...] = ()) -> list[str]:
    """Separate each file into out_dir/<name>/{vocals,accompaniment}.wav; return the error lines.

    `separator` is anything with `separate(waveform, sample_rate, source=...)` (a Separator, a TF
    Serving client). A bad file is reported on one line and skipped; errors of the `fatal` types (a
    server that cannot be reached) stop the run.
    """
    from tqdm import tqdm

    from svsgan_tf.audio import load_audio, write_audio
    from svsgan_tf.errors import SVSGANError

    errors = []
    for path, name in tqdm(list(zip(files, output_names(files))), desc="separating", unit="file",
                           disable=quiet):
        try:
            waveform, rate = load_audio(path)
            stems = separator.separate(waveform, rate, source=path)
            for target, audio in stems.items():
                write_audio(os.path.join(out_dir, name, f"{target}.wav"), audio, rate, protect=tuple(files))
        except SVSGANError as err:
            if isinstance(err, fatal):
                raise
            errors.append(f"error: {err}")
            tqdm.write(errors[-1], file=sys.stderr)
    return errors


def input_files(inputs: list[str]) -> list[str]:
    """The audio files named by INPUT arguments (folders searched); a one-line error if there are none."""
    from svsgan_tf.audio import find_audio_files

    files = find_audio_files(inputs)
    if not files:
        raise cli.SVSGANError(f"{' '.join(inputs)}: no audio files found")
    return files


def report(files: list[str], errors: list[str], out_dir: str) -> int:
    """Print how many files were separated; exit code 1 if any failed."""
    print(f"separated {len(files) - len(errors)} of {len(files)} files into {os.path.abspath(out_dir)}")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.griffin_lim < 0 or args.wiener < 0:
        raise cli.SVSGANError("--griffin-lim and --wiener: must be >= 0")
    if args.griffin_lim and args.wiener:
        raise cli.SVSGANError("--griffin-lim and --wiener: choose one phase/post-processing method")
    files = input_files(args.inputs)
    cli.start_tensorflow(args.quiet)
    from svsgan_tf.model_io import default_model_path
    from svsgan_tf.separator import Separator

    separator = Separator.from_directory(args.model or default_model_path(), args.griffin_lim, args.wiener)
    return report(files, separate_files(separator, files, args.out, args.quiet), args.out)


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
