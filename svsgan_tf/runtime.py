"""Process-wide settings in one place: seeds, logging and TensorFlow's log level."""
from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter; call before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# separation is a chain of ops that each use every intra-op thread: one op at a time measured about 10%
# faster than two at once on 2 cores (bench/bench_fast.json, "separator_inter_op_2")
SEPARATION_INTER_OP_THREADS = 1


def separation_threads() -> None:
    """Let TensorFlow run SEPARATION_INTER_OP_THREADS op(s) at a time, each on all its intra-op
    threads, unless TF_NUM_INTEROP_THREADS is set; call before TensorFlow runs anything."""
    if "TF_NUM_INTEROP_THREADS" in os.environ:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_inter_op_parallelism_threads(SEPARATION_INTER_OP_THREADS)
    except RuntimeError:                      # TensorFlow already ran something: its setting stays
        logger.debug("TensorFlow already started; inter-op threads left as they are")


def native_bfloat16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (Linux cpuinfo flags amx_bf16 or avx512_bf16),
    with which oneDNN runs bfloat16 convolutions several times faster than float32 ones."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


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
