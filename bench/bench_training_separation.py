"""Benchmark: training throughput (per-channel frames/s by generator and phase), separation of the 30 s songs.

Writes bench/bench_training_separation.json beside this script. Separation uses --model, else the
shipped pretrained model, else a default-size generator with random weights (said so in the JSON):
speed and memory do not depend on the weights.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SONGS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data", "musdb-30s")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def training_throughput(steps: int) -> list[dict]:
    """Frames per second of train_step for each generator and phase on cached synthetic batches."""
    import tensorflow as tf

    from svsgan_tf.data import pipeline as data_lib
    from svsgan_tf.config import Config
    from svsgan_tf.data.synthetic import make_tracks
    from svsgan_tf.training.fit import build_svsgan

    results = []
    for generator, bidirectional, nb_channels in (("encoder", False, 1), ("encoder", False, 2), ("rnn", False, 1),
                                                  ("rnn", True, 1), ("rnn", True, 2), ("unet", False, 2)):
        config = Config().replace(**{"model.generator": generator, "model.bidirectional": bidirectional,
                                     "model.nb_channels": nb_channels, "data.excerpt_frames": 64,
                                     "data.excerpts_per_track": 16})
        tracks = make_tracks(4, seed=0, duration=8.0)
        batches = list(data_lib.training_dataset(tracks, config).take(4))
        mixture = tf.stack([b[0] for b in batches])
        vocals = tf.stack([b[1] for b in batches])
        dataset = tf.data.Dataset.from_tensor_slices((mixture, vocals)).repeat()
        model = build_svsgan(config)
        for phase in ("pretrain", "gan"):
            model.set_phase(phase)
            iterator = iter(dataset)
            for _ in range(3):
                model.train_function(iterator)                      # trace and warm up
            start = time.perf_counter()
            for _ in range(steps):
                model.train_function(iterator)
            seconds = (time.perf_counter() - start) / steps
            # frames of one channel: a joint-stereo example holds two
            frames = config.train.batch_size * config.data.excerpt_frames * nb_channels
            name = generator + ("-bidirectional" if bidirectional else "") + ("-stereo" if nb_channels == 2 else "")
            batch = f"{config.train.batch_size} x {config.data.excerpt_frames} frames" + (
                " x 2 channels" if nb_channels == 2 else "")
            results.append({"generator": name, "phase": phase, "batch": batch,
                            "ms_per_step": round(seconds * 1000, 1), "frames_per_s": round(frames / seconds, 1),
                            "audio_seconds_per_s": round(frames * config.stft.hop_length / config.stft.sample_rate
                                                         / seconds, 1)})
            print(results[-1], flush=True)
    return results


def separation(model: str | None, wiener: int) -> dict:
    """Wall time, real-time factor and peak memory of separating each 30 s song."""
    import soundfile as sf

    from svsgan_tf.config import Config
    from svsgan_tf.models.model_io import DEFAULT_MODEL, pretrained_names, resolve_model
    from svsgan_tf.models import build_generator
    from svsgan_tf.separation.separator import Separator

    if model or DEFAULT_MODEL in pretrained_names():
        path = resolve_model(model)
        separator = Separator.from_directory(path, wiener_iterations=wiener)
        which = path
    else:
        config = Config().replace(**{"model.generator": "rnn", "model.bidirectional": True})
        separator = Separator(config, build_generator(config), wiener_iterations=wiener)
        which = "default-size rnn-bidirectional generator with random weights (no pretrained model shipped)"
    songs = sorted(os.listdir(SONGS)) if os.path.isdir(SONGS) else []
    if not songs:
        return {"skipped": f"{SONGS} is absent"}
    rows = []
    for song in songs:
        mixture, rate = sf.read(os.path.join(SONGS, song, "mix.mp3"), dtype="float32", always_2d=True)
        separator.separate(mixture[: rate * 2], rate)                  # trace once per shape class
        start = time.perf_counter()
        separator.separate(mixture, rate)
        seconds = time.perf_counter() - start
        duration = mixture.shape[0] / rate
        rows.append({"song": song, "audio_seconds": round(duration, 2), "wall_seconds": round(seconds, 3),
                     "real_time_factor": round(seconds / duration, 4)})
        print(rows[-1], flush=True)
    return {"model": which, "wiener_iterations": wiener, "songs": rows,
            "process_peak_rss_mb_so_far": round(peak_rss_mb(), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory for the separation part")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per case")
    args = parser.parse_args()
    import tensorflow as tf

    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "tensorflow": tf.__version__, "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]},
        # separation first, so that its peak RSS is not the training's
        "separation": separation(args.model, wiener=0),
        "separation_wiener": separation(args.model, wiener=1),
        "training": training_throughput(args.steps),
    }
    path = os.path.join(HERE, "bench_training_separation.json")
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
