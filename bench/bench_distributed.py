"""Training steps per second on one device vs MirroredStrategy on 2 logical CPU devices, both phases.

    python bench/bench_distributed.py [--steps 20] [--repeats 3] [--out bench/bench_distributed.json]

Each configuration runs in its own process (logical devices must be set before TensorFlow starts): it
builds the default-size SVSGAN (`Config()` defaults) inside the strategy scope and times `fit` on a
fixed in-memory batch of the default global batch, after a warm-up epoch that traces the step. With a
visible GPU, `one` runs on GPU:0 and is recorded as such; `mirrored` always uses two logical CPUs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PHASES = ("pretrain", "gan")


def measure(strategy_name: str, steps: int, repeats: int) -> dict:
    """Child body: {phase: [steps per second of each repeat]} plus the devices used."""
    import numpy as np
    import tensorflow as tf

    if strategy_name == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    from svsgan_tf.config import Config
    from svsgan_tf.training.distribute import make_strategy
    from svsgan_tf.training.fit import build_svsgan

    config = Config()
    if strategy_name == "mirrored":                     # two logical CPUs even where GPUs are visible
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = make_strategy("one")
    rng = np.random.default_rng(0)
    shape = (config.train.batch_size, config.data.excerpt_frames, config.nb_features)
    mixture = np.abs(rng.normal(size=shape)).astype(np.float32)          # (batch, nb_frames, nb_features)
    vocals = (mixture * rng.uniform(size=shape)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensors((mixture, vocals)).repeat()
    with strategy.scope():
        model = build_svsgan(config)

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    result = {"replicas": strategy.num_replicas_in_sync,
              "devices": list(strategy.extended.worker_devices)
              if strategy.num_replicas_in_sync > 1 else [tf.config.list_logical_devices()[-1].name]}
    for phase in PHASES:
        model.set_phase(phase)
        seconds = []
        model.fit(dataset, epochs=repeats + 1, steps_per_epoch=steps, verbose=0, callbacks=[EpochTimer()])
        result[phase] = [steps / s for s in seconds[1:]]                  # epoch 0 traces: not counted
    return result


def machine() -> dict:
    import keras
    import tensorflow as tf

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cpu_cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
            "load_average_1_5_15": list(os.getloadavg())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per phase (the median is kept)")
    parser.add_argument("--out", default=os.path.join(HERE, "bench_distributed.json"))
    parser.add_argument("--child", choices=("one", "mirrored"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.repeats)))
        return

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    before = machine()
    runs = {}
    for name in ("one", "mirrored"):
        out = subprocess.run([sys.executable, __file__, "--child", name, "--steps", str(args.steps),
                              "--repeats", str(args.repeats)], env=env, cwd=ROOT, capture_output=True,
                             text=True, check=True)
        runs[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(name, {p: [round(v, 2) for v in runs[name][p]] for p in PHASES}, file=sys.stderr)

    from svsgan_tf.config import Config

    config = Config()
    results = []
    for name, run in runs.items():
        for phase in PHASES:
            median = statistics.median(run[phase])
            results.append({"strategy": name, "replicas": run["replicas"], "devices": run["devices"],
                            "phase": phase, "steps_per_second": round(median, 3),
                            "ms_per_step": round(1000 / median, 1),
                            "examples_per_second": round(median * config.train.batch_size, 1),
                            "repeats_steps_per_second": [round(v, 3) for v in run[phase]]})
    speed = {(r["strategy"], r["phase"]): r["steps_per_second"] for r in results}
    gpus = before["gpus"]
    report = {
        "benchmark": "SVSGAN training steps per second: one device vs MirroredStrategy on 2 logical CPUs",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "python bench/bench_distributed.py " + " ".join(sys.argv[1:]),
        "model": {"size": "default (Config() defaults)", "generator": config.model.generator,
                  "nb_bins": config.stft.nb_bins, "encoder_units": list(config.model.encoder_units),
                  "decoder_units": list(config.model.decoder_units),
                  "discriminator_units": list(config.model.discriminator_units),
                  "optimizer": config.train.optimizer},
        "global_batch": {"examples": config.train.batch_size,
                         "frames_per_example": config.data.excerpt_frames},
        "timing": {"steps_per_epoch": args.steps, "timed_epochs": args.repeats,
                   "warmup": "one untimed epoch per phase (traces the step)", "statistic": "median"},
        "machine": {**before, "load_average_after": list(os.getloadavg())},
        "gpu": {"available": bool(gpus), "devices": gpus,
                "note": "one real GPU measured as the `one` rows" if gpus else
                "no GPU was available in this session: the GPU part of the benchmark was not run"},
        "results": results,
        "mirrored_over_one": {phase: round(speed["mirrored", phase] / speed["one", phase], 3)
                              for phase in PHASES},
        "note": "two logical CPU devices share the same cores: they test the MirroredStrategy code path, "
                "not a speed-up. The machine was shared with other jobs (see load averages), so absolute "
                "numbers are noisy.",
    }
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    print(json.dumps({"results": [(r["strategy"], r["phase"], r["steps_per_second"]) for r in results],
                      "mirrored_over_one": report["mirrored_over_one"]}))


if __name__ == "__main__":
    main()
