"""TFLite variants of the shipped model and of the smallest good model: size, speed with 1 and 2 threads,
streaming latency, peak memory of the edge runner, and the median vocals SDR on the 50 MUSDB18-7s test clips.

    python bench/bench_tflite.py [--out bench/bench_tflite.json] [--folder DIR] [--model NAME=MODEL] [--reuse-sdr]
                                 [--only-given] [--variants none,int8]

Each variant is converted with `python -m svsgan_tf.tflite` (kept in --folder and reused). Speed: seconds
of separation per second of audio (EdgeSeparator.separate on the first 30 s song of
../shared/data/musdb-30s, best of 3, after a warm-up), in a child process without TensorFlow, which
also reports its peak RSS. Streaming: StreamingSeparator.latency_samples, and the time per block of
1024 samples (23 ms of audio) over the same 30 s. --reuse-sdr keeps the SDR of a row already in --out. The load average is recorded with every figure: the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = os.path.join(ROOT, "..", "shared", "data")
MODELS = {"spleeter-svsgan": "spleeter-svsgan",                                   # the shipped default
          "paper-encoder-member": os.path.join(ROOT, "svsgan_tf", "pretrained", "paper-encoder", "members", "0")}
VARIANTS = ("none", "float16", "dynamic", "int8")

# the child: separation speed and peak memory of the edge runner alone (TensorFlow cannot be imported)
CHILD = r"""
import json, resource, sys, time
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras'):
            raise ImportError('blocked')
sys.meta_path.insert(0, Block())
import numpy as np, soundfile as sf
from svsgan_tf.audio.io import load_audio
from svsgan_tf.edge import EdgeSeparator, StreamingSeparator
path, song, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
audio, rate = load_audio(song)
edge = EdgeSeparator(path, threads)
audio = audio[:30 * rate]
edge.separate(audio[:5 * rate], rate)                                  # warm-up
times = []
for _ in range(3):
    start = time.perf_counter(); edge.separate(audio, rate); times.append(time.perf_counter() - start)
result = {"seconds": min(times), "audio_seconds": audio.shape[0] / rate}
try:
    stream = StreamingSeparator(edge, audio.shape[1])
    blocks = []
    for begin in range(0, audio.shape[0], 1024):
        start = time.perf_counter(); stream.process(audio[begin:begin + 1024]); blocks.append(time.perf_counter() - start)
    result.update(latency_ms=1000 * stream.latency_samples / rate, block_ms_mean=1000 * float(np.mean(blocks)),
                  block_ms_max=1000 * float(np.max(blocks)), block_audio_ms=1000 * 1024 / rate)
except Exception as err:
    result["stream"] = str(err)
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def load() -> float:
    return os.getloadavg()[0]


def convert(model: str, quantize: str, path: str) -> float:
    """Convert once (kept); seconds taken (0 if reused)."""
    if os.path.isfile(path):
        return 0.0
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "svsgan_tf.tflite", "--model", model, "--out", path,
                    "--quantize", quantize, "--quiet"], check=True, cwd=ROOT)
    return time.perf_counter() - start


def child(path: str, song: str, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, path, song, str(threads)], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_sdr(path: str) -> float:
    """Median vocals SDR of the model row on the 50 MUSDB18-7s test clips (museval v4, as evaluate)."""
    from svsgan_tf.data.datasets import load_dataset
    from svsgan_tf.evaluation.tracks import evaluate_tracks, summarize
    from svsgan_tf.edge import EdgeSeparator

    report = load_dataset(f"musdb:{os.path.join(SHARED, 'musdb18-7s')}", "test", sample_rate=None,
                          true_mixture=True)
    result = evaluate_tracks(report.tracks, EdgeSeparator(path), quiet=True, rows=("model",))
    return summarize(result)["median"]["vocals"]["SDR"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "bench_tflite.json"))
    parser.add_argument("--folder", default=os.path.join(ROOT, "runs", "tflite_bench"))
    parser.add_argument("--reuse-sdr", action="store_true",
                        help="keep the SDR of rows already in --out (measure only the new ones)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=MODEL",
                        help="bench this model too (a folder or a shipped name)")
    parser.add_argument("--only-given", action="store_true",
                        help="bench only the --model models (rows of the others in --out are kept)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated quantizations to bench (default {','.join(VARIANTS)})")
    args = parser.parse_args()
    given = dict(item.split("=", 1) for item in args.model)
    models = given if args.only_given else {**MODELS, **given}
    variants = [v for v in args.variants.split(",") if v]
    if not set(variants) <= set(VARIANTS):
        sys.exit(f"--variants: expected some of {', '.join(VARIANTS)}")
    previous, document = {}, {}
    if os.path.isfile(args.out):
        with open(args.out) as handle:
            document = json.load(handle)           # other keys (the Keras models' SDR) are kept
        previous = {(r["model"], r["quantize"]): r for r in document["rows"]}
    from svsgan_tf.io_utils import atomic_write_text

    os.makedirs(args.folder, exist_ok=True)
    songs = os.path.join(SHARED, "musdb-30s")
    song = os.path.join(songs, sorted(os.listdir(songs))[0], "mix.mp3")
    rows = []
    for name, model in models.items():
        for quantize in variants:
            path = os.path.join(args.folder, f"{name}_{quantize}.tflite")
            row = {"model": name, "quantize": quantize, "convert_seconds": round(convert(model, quantize, path), 1),
                   "size_mb": round(os.path.getsize(path) / 1e6, 2)}
            for threads in (1, 2):
                measured = child(path, song, threads)
                row[f"threads_{threads}"] = {**measured, "real_time_factor": measured["seconds"] / measured["audio_seconds"],
                                             "x_real_time": measured["audio_seconds"] / measured["seconds"],
                                             "load_average": load()}
            old = previous.get((name, quantize), {})
            if not (args.reuse_sdr and "median_vocals_sdr_musdb18_7s_test" in old):
                row["median_vocals_sdr_musdb18_7s_test"] = median_sdr(path)
                row["sdr_load_average"] = load()
            else:
                row.update({key: old[key] for key in ("median_vocals_sdr_musdb18_7s_test", "sdr_load_average")},
                           sdr_measured_by_an_earlier_run=True)
            rows.append(row)
            print(json.dumps(row), flush=True)
            # written after each row, atomically: a kill keeps what was measured; rows not measured
            # again are kept
            done = {(measured["model"], measured["quantize"]) for measured in rows}
            kept = [r for key, r in previous.items() if key not in done]
            atomic_write_text(args.out, json.dumps({**document, "song": os.path.relpath(song, ROOT),
                                                    "cpu_count": os.cpu_count(), "rows": kept + rows}, indent=2))


if __name__ == "__main__":
    main()
