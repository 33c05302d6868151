"""Process-wide settings in one place: seeds, logging and TensorFlow's log level."""
from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter; call before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def separation_inter_op_threads(model: str) -> int | None:
    """TensorFlow inter-op threads for separating with `model` (a folder or shipped name): 1 for a
    one-tower U-Net, None (TensorFlow's default, one per core) for anything else.

    A one-tower U-Net's graph is one chain of ops, each using every intra-op thread: one op at a time
    was faster for `fast` on 2 cores in four of five paired runs (by -3% to +17%). A two-stem U-Net
    (the default model) has two towers that inter-op threads run side by side, and measured about 20%
    slower with one (`bench/bench_fast.json`, `separator` against `separator_inter_op_<n>`)."""
    from svsgan_tf.models.model_io import is_ensemble, load_config

    if is_ensemble(model):
        return None
    settings = load_config(model).model
    return 1 if settings.generator == "unet" and settings.unet_stems == 1 and not settings.swap_average else None


def separation_threads(model: str) -> None:
    """Set `separation_inter_op_threads(model)` unless TF_NUM_INTEROP_THREADS is set; call before
    TensorFlow runs anything."""
    threads = separation_inter_op_threads(model)
    if threads is None or "TF_NUM_INTEROP_THREADS" in os.environ:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_inter_op_parallelism_threads(threads)
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
