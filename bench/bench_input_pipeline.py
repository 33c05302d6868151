"""Benchmark: training excerpts per second of the Python reader and the tensorflow-io reader on one folder.

Writes bench/bench_input_pipeline.json beside this script. The folder is MIR-1K train (171 FLAC clips,
16 kHz stereo) from ../shared/data, read at 16 kHz with augmentation (random remix, gains, channel
swaps) and interleaved tracks, as the shipped recipes train. Rows: the Python reader streaming from the
files (what it does for a data set too big for memory), the Python reader on songs decoded into memory
first (what it does for small sets; the decoding time is reported apart), and the tfio reader with 1, 2
and 4 parallel lanes. Each row counts excerpts (step 1 alone) and whole training batches
(excerpts, STFT, shuffling and batching) per second, after a warm-up, best of `--repeats`; the load
average is recorded with every row.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MIR1K = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data", "mir1k")


def rate(dataset, count: int, per_element: int, warmup: int) -> float:
    """Elements of `dataset` per second (times `per_element`), after `warmup` elements."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(count):
        next(iterator)
    return per_element * count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--excerpts", type=int, default=600, help="excerpts timed per row")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(HERE, "bench_input_pipeline.json"))
    args = parser.parse_args()
    if not os.path.isdir(MIR1K):
        sys.exit(f"{MIR1K}: absent; this benchmark reads MIR-1K train from ../shared/data")
    import tensorflow as tf

    from svsgan_tf.config import Config
    from svsgan_tf.data import pipeline
    from svsgan_tf.data.datasets import load_dataset, materialize

    config = Config.load(os.path.join(os.path.dirname(HERE), "svsgan_tf", "configs", "paper_encoder.json"))
    config = config.replace(**{"stft.sample_rate": 16000, "data.source": f"mir1k:{MIR1K}",
                               "data.augment": True, "data.interleave_tracks": True}).validate()
    files = load_dataset(config.data.source, "train", 16000).tracks
    started = time.perf_counter()
    in_memory, _ = materialize(files, quiet=True)
    decode_seconds = time.perf_counter() - started
    nb_samples = pipeline.excerpt_samples(config.stft, config.data.excerpt_frames)
    # excerpts in one batch: a channel-by-channel model makes two examples of a stereo excerpt
    per_batch = max(1, config.train.batch_size // pipeline.examples_per_excerpt(files[0], config))
    rows = []
    for name, tracks, reader, parallel in (("python, streaming from the files", files, "python", 0),
                                           ("python, songs decoded into memory first", in_memory, "python", 0),
                                           ("tfio, 1 parallel read", files, "tfio", 1),
                                           ("tfio, 2 parallel reads", files, "tfio", 2),
                                           ("tfio, 4 parallel reads", files, "tfio", 4)):
        data = config.replace(**{"data.reader": reader, "data.parallel_reads": parallel}).validate()
        excerpts = pipeline.excerpt_reader(data.data)(tracks, nb_samples, 64, 0, random=True, augment=data.data,
                                                      interleave=True).prefetch(tf.data.AUTOTUNE)
        batches = pipeline.training_dataset(tracks, data, nb_epochs=100)
        best_excerpts = max(rate(excerpts, args.excerpts, 1, 32) for _ in range(args.repeats))
        best_batches = max(rate(batches, args.excerpts // per_batch, per_batch, 4) for _ in range(args.repeats))
        rows.append({"reader": name, "excerpts_per_s": round(best_excerpts, 1),
                     "training_excerpts_per_s": round(best_batches, 1), "load_average": os.getloadavg()})
        print(rows[-1], flush=True)
    result = {
        "benchmark": __doc__.splitlines()[0],
        "data": f"MIR-1K train, {len(files)} clips, 16 kHz stereo FLAC, read at 16 kHz",
        "excerpt": {"samples": nb_samples, "seconds": nb_samples / 16000, "augment": True, "interleave": True},
        "python_decode_into_memory_seconds": round(decode_seconds, 2),
        "rows": rows,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__},
        "method": f"best of {args.repeats}; {args.excerpts} excerpts per row after a warm-up; training_excerpts_per_s "
                  f"counts stereo excerpts in batches of {config.train.batch_size} channel examples",
    }
    with open(args.out + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
    os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
