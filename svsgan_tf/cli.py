"""Shared command-line plumbing: one-line errors instead of tracebacks, logging, lazy TensorFlow."""
from __future__ import annotations

import sys
from typing import Callable

from svsgan_tf.errors import SVSGANError

EXIT_BAD_INPUT = 2


def run(main: Callable[[], int | None]) -> None:
    """Run a CLI body; SVSGANError becomes `error: <input>: <problem>` on stderr and exit code 2 (the
    error's `exit_code` where it has one: 1 for an output that cannot be written)."""
    try:
        code = main()
    except SVSGANError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(getattr(err, "exit_code", EXIT_BAD_INPUT))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def add_model_argument(parser, flag: str = "--model") -> None:
    """The model option every command shares: a model folder or a shipped model's name."""
    from svsgan_tf.shipped_models import DEFAULT_MODEL, pretrained_names

    names = ", ".join(pretrained_names()) or "none installed"
    parser.add_argument(flag, default=None, metavar="MODEL",
                        help=f"a model folder, or the name of a shipped model ({names}); default {DEFAULT_MODEL}")


def add_precision_argument(parser) -> None:
    """The --precision option of the commands that separate (Separator.from_directory)."""
    from svsgan_tf.config import PRECISIONS

    parser.add_argument("--precision", default=None, choices=PRECISIONS,
                        help="the U-Net's arithmetic: float32, bfloat16, or auto (bfloat16 on a CPU with native "
                             "bfloat16 instructions); default: the model's separation.precision")


def start_tensorflow(quiet: bool) -> None:
    """Set logging and TensorFlow's verbosity, then import TensorFlow (slow; call after parsing)."""
    from svsgan_tf.runtime import quiet_tensorflow, setup_logging

    quiet_tensorflow()
    setup_logging(quiet)
    import tensorflow  # noqa: F401


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    """`section.key=value` strings -> {"section.key": value}, values parsed as JSON when they parse."""
    import json

    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SVSGANError(f"--set {pair}: expected section.key=value")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides
