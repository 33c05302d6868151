"""Benchmark: separation time of shipped (or given) models on the three 30 s songs, side by side.

    python bench/bench_models.py [MODEL ...]        # default: every shipped model

Writes bench/bench_models.json beside this script: per model, each song's wall time and real-time
factor (one warm-up call per model first, so tracing is not timed) and the load average before and
after, since the machine may be shared. Each model is timed in its own process, so that one model's
memory does not count against the next.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def time_one(model: str) -> dict:
    """Separation of the 30 s songs by `model` (bench_training_separation.separation), with load averages."""
    from bench_training_separation import separation

    before = os.getloadavg()
    result = separation(model, wiener=0)
    return {**result, "load_average_before": before, "load_average_after": os.getloadavg()}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(time_one(sys.argv[2])))
        return
    from svsgan_tf.models.model_io import DEFAULT_MODEL, pretrained_names

    models = sys.argv[1:] or pretrained_names()
    report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "default_model": DEFAULT_MODEL, "models": {}}
    for model in models:
        out = subprocess.run([sys.executable, __file__, "--one", model], capture_output=True, text=True,
                             check=True).stdout
        report["models"][model] = json.loads(out.strip().splitlines()[-1])
        songs = report["models"][model].get("songs", [])
        print(model, [row["wall_seconds"] for row in songs], flush=True)
    from svsgan_tf.io_utils import atomic_write_text

    path = os.path.join(HERE, "bench_models.json")
    atomic_write_text(path, json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
