"""Process-wide settings in one place: seeds, logging and TensorFlow's log level."""
from __future__ import annotations

import logging
import os


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter; call before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow (and Keras' generators) from one number."""
    import keras

    keras.utils.set_random_seed(seed)


def setup_logging(quiet: bool = False) -> None:
    """Log INFO (or WARNING with quiet) to stderr, one line per record."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S")
    try:
        import absl.logging                    # TensorFlow's logger; absent where only the edge runner is
    except ImportError:
        return
    absl.logging.set_verbosity(absl.logging.ERROR)
