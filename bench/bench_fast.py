"""Benchmark: separation speed of the shipped default and the distilled `fast` model on the three 30 s songs.

    python bench/bench_fast.py [--models spleeter-svsgan,fast] [--repeats 5] [--threads 2] [--settings]
                               [--precisions float32,bfloat16]

Writes bench/bench_fast.json beside this script. For each model, in its own process with TensorFlow
limited to `--threads` intra-op threads and, as the command line separates, one inter-op thread for a
one-tower U-Net and `--threads` for other models (runtime.separation_inter_op_threads;
`separator_inter_op_<n>` repeats the Separator timing with the other of the two settings):
- `Separator.separate` on each song of ../shared/data/musdb-30s (decoded once, outside the timing):
  one untimed call first (tracing), then `--repeats` timed calls; the median, the spread and the
  real-time factor (audio seconds / wall seconds);
- the command line end to end (`python -m svsgan_tf.separate`, a fresh process: start-up, model load,
  decoding the MP3s, separation, writing the stems), on one song and on all three, so that the
  start-up and the cost of each further song can be told apart.
With --settings, also the graph compiled by XLA (`jit_compile=True`) and the Separator with oneDNN off
(`TF_ENABLE_ONEDNN_OPTS=0`), to choose the faster. With --precisions, also the Separator at each of
those `separation.precision` settings (the plain figures use the model's own setting, recorded as
`precision`). Each figure carries the load average (1, 5, 15 min) read before and after it: the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SONGS = os.path.join(ROOT, "..", "shared", "data", "musdb-30s")
sys.path.insert(0, ROOT)


def song_files() -> list[tuple[str, str]]:
    """(name, mix.mp3 path) of each 30 s song."""
    return [(name, os.path.join(SONGS, name, "mix.mp3")) for name in sorted(os.listdir(SONGS))]


def separator_times(model: str, repeats: int, threads: int, xla: bool = False, precision: str | None = None,
                    inter_op: int | None = None) -> dict:
    """`Separator.separate` on each song: median wall seconds over `repeats` warm calls, with `threads`
    intra-op threads and `inter_op` inter-op threads (None: as the command line separates,
    runtime.separation_inter_op_threads, TensorFlow's default being `threads`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from svsgan_tf.runtime import separation_inter_op_threads

    inter_op = (separation_inter_op_threads(model) or threads) if inter_op is None else inter_op
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    from svsgan_tf.audio.io import load_audio
    from svsgan_tf.separation.separator import Separator

    separator = Separator.from_directory(model, precision=precision)
    rows, first = [], None
    for name, path in song_files():
        mixture, rate = load_audio(path)
        if first is None:
            first, first_rate = mixture, rate
        separator.separate(mixture, rate)                       # traces the graph for this chunk shape
        load_before = os.getloadavg()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            separator.separate(mixture, rate)
            times.append(time.perf_counter() - start)
        seconds = mixture.shape[0] / rate
        median = statistics.median(times)
        rows.append({"song": name, "audio_seconds": round(seconds, 2), "median_wall_seconds": round(median, 4),
                     "min_wall_seconds": round(min(times), 4), "max_wall_seconds": round(max(times), 4),
                     "times_real_time": round(seconds / median, 1), "load_average_before": load_before,
                     "load_average_after": os.getloadavg()})
        print(model, rows[-1], file=sys.stderr, flush=True)
    result = {"songs": rows, "median_times_real_time": statistics.median(r["times_real_time"] for r in rows),
              "precision": separator.precision, "intra_op_threads": threads, "inter_op_threads": inter_op}
    # what `separate` adds to the graph call on the first song (layout, checks, NumPy copies): one chunk
    waveform = tf.constant(np.ascontiguousarray(first.T))
    graph, whole = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        separator.separate_waveform(waveform)["vocals"].numpy()
        graph.append(time.perf_counter() - start)
        start = time.perf_counter()
        separator.separate(first, first_rate)
        whole.append(time.perf_counter() - start)
    result["first_song_graph_call_seconds"] = round(statistics.median(graph), 4)
    result["first_song_separate_seconds"] = round(statistics.median(whole), 4)
    if xla:                        # the same graph compiled by XLA (jit_compile), on the first song's chunk
        waveform = tf.constant(np.ascontiguousarray(first.T))
        compiled = tf.function(separator.separate_waveform.python_function, jit_compile=True,
                               input_signature=[tf.TensorSpec([None, None], tf.float32)])
        for label, function in (("graph", separator.separate_waveform), ("xla", compiled)):
            function(waveform)["vocals"].numpy()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                function(waveform)["vocals"].numpy()
                times.append(time.perf_counter() - start)
            result[f"separate_waveform_{label}_seconds"] = round(statistics.median(times), 4)
    return result


def cli_times(model: str, threads: int) -> dict:
    """`python -m svsgan_tf.separate` end to end, on the first song and on all three."""
    songs = [path for _, path in song_files()]
    # inter-op threads as the command line sets them (runtime.separation_threads)
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_NUM_INTEROP_THREADS", None)
    result = {}
    for label, inputs in (("one_song", songs[:1]), ("three_songs", songs)):
        out = tempfile.mkdtemp(prefix="bench-fast-")
        try:
            load_before = os.getloadavg()
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "svsgan_tf.separate", *inputs, "--model", model, "--out", out,
                            "--quiet"], check=True, cwd=ROOT, env=env, capture_output=True)
            wall = time.perf_counter() - start
        finally:
            shutil.rmtree(out, ignore_errors=True)
        result[label] = {"songs": len(inputs), "wall_seconds": round(wall, 3), "load_average_before": load_before,
                         "load_average_after": os.getloadavg()}
    result["each_further_song_seconds"] = round(
        (result["three_songs"]["wall_seconds"] - result["one_song"]["wall_seconds"]) / 2, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="spleeter-svsgan,fast", help="comma-separated models (names or folders)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per song (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow threads (default 2)")
    parser.add_argument("--settings", action="store_true",
                        help="also time each model's graph under XLA (jit_compile) and with oneDNN off")
    parser.add_argument("--precisions", default="",
                        help="also time the Separator at these comma-separated separation.precision settings")
    parser.add_argument("--precision", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--xla", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inter-op", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(HERE, "bench_fast.json"))
    args = parser.parse_args()
    if args.one:                     # child process: one model's Separator timings, as JSON on stdout
        print(json.dumps(separator_times(args.one, args.repeats, args.threads, args.xla, args.precision, args.inter_op)))
        return
    if not os.path.isdir(SONGS):
        sys.exit(f"{SONGS} is absent: this benchmark needs the three 30 s songs")
    report = {"benchmark": __doc__.splitlines()[0], "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "command": " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
              "machine": {"cpu_cores": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "threads": args.threads, "repeats": args.repeats, "models": {}}
    def child(model, xla=False, precision=None, inter_op=None, **env):
        run = subprocess.run([sys.executable, __file__, "--one", model, "--repeats", str(args.repeats),
                              "--threads", str(args.threads)] + (["--xla"] if xla else [])
                             + (["--precision", precision] if precision else [])
                             + (["--inter-op", str(inter_op)] if inter_op is not None else []), check=True,
                             capture_output=True, text=True, env={**os.environ, **env})
        return json.loads(run.stdout.strip().splitlines()[-1])

    for model in args.models.split(","):
        report["models"][model] = {"separator": child(model, xla=args.settings),
                                   "command_line": cli_times(model, args.threads)}
        if args.settings:                # oneDNN is on by default in TensorFlow 2.16 on x86 Linux
            report["models"][model]["separator_onednn_off"] = child(model, TF_ENABLE_ONEDNN_OPTS="0")
        # the other inter-op setting: 1 where the command line uses TensorFlow's default, and back
        other = args.threads if report["models"][model]["separator"]["inter_op_threads"] == 1 else 1
        report["models"][model][f"separator_inter_op_{other}"] = child(model, inter_op=other)
        for precision in filter(None, args.precisions.split(",")):
            report["models"][model][f"separator_{precision}"] = child(model, precision=precision)
        print(model, json.dumps(report["models"][model]["separator"]["median_times_real_time"]),
              report["models"][model]["command_line"], flush=True)
    from svsgan_tf.io_utils import atomic_write_text

    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
