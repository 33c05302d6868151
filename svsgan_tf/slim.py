"""`python -m svsgan_tf.slim --model TEACHER --config STUDENT --out DIR`: a narrower U-Net started from a trained one.

Writes a model folder holding the strongest filters of the teacher's vocals U-Net at the student
recipe's widths (svsgan_tf/models/slim.py), to start a distilled student from:

    python -m svsgan_tf.slim --model spleeter-svsgan --config fast --out runs/fast/init
    python -m svsgan_tf.train --config fast --init-model runs/fast/init --data musdb:PATH --out runs/fast
"""
from __future__ import annotations

import argparse

from svsgan_tf import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m svsgan_tf.slim", description=__doc__.split(":", 1)[1].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_model_argument(parser)
    parser.add_argument("--config", required=True, metavar="NAME|FILE",
                        help="the student's recipe or config.json (a U-Net of the teacher's depth, narrower)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a value of the student's config (repeatable)")
    parser.add_argument("--out", required=True, help="model folder to write (replaced atomically)")
    parser.add_argument("--quiet", action="store_true", help="warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.start_tensorflow(args.quiet)
    from svsgan_tf.config import Config, config_path
    from svsgan_tf.models.model_io import load_generator, model_notices, save_model
    from svsgan_tf.models.slim import slim_unet
    from svsgan_tf.shipped_models import resolve_model

    student_config = Config.load(config_path(args.config)).replace(**cli.parse_overrides(args.set)).validate()
    teacher_path = resolve_model(args.model)
    teacher_config, teacher = load_generator(teacher_path)
    student = slim_unet(teacher, student_config, teacher_config)
    save_model(args.out, student_config, student, extra_files=model_notices(teacher_path))   # the teacher's licence
    print(f"wrote {args.out}: {student.count_params()} weights from {args.model or 'the default model'}'s "
          f"{teacher.count_params()}")
    return 0


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
