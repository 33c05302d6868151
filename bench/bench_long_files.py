"""Benchmark: peak RSS and wall time of `python -m svsgan_tf.separate` on 1, 10 and 60-minute stereo WAVs.

Writes bench/bench_long_files.json beside this script. Each file is 44.1 kHz 16-bit stereo, made of
synthetic songs written block by block (never held whole in memory), and is separated in its own
process with the shipped model (or --model), so that the peak RSS is that run's alone. The load
average is recorded before and after each run (the machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RATE = 44100

# runs the CLI in-process and prints its peak RSS (ru_maxrss, KiB on Linux) after it exits
CHILD = """import resource, runpy, sys
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_module(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    code = exit.code or 0
print("PEAK_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def write_long_wav(path: str, minutes: float) -> None:
    """A stereo WAV of `minutes` minutes: 30 s synthetic songs one after another."""
    import soundfile as sf

    sys.path.insert(0, ROOT)
    from svsgan_tf.data.synthetic import make_track

    total = int(minutes * 60 * RATE)
    with sf.SoundFile(path, "w", samplerate=RATE, channels=2, subtype="PCM_16") as handle:
        written, seed = 0, 0
        while written < total:
            block = make_track(seed, duration=30.0, sample_rate=RATE).mixture[:total - written] * 0.5
            handle.write(block)
            written += len(block)
            seed += 1


def separate(path: str, out: str, model: str | None, chunk_seconds: float | None) -> dict:
    """Run the CLI on one file; its wall time, peak RSS and the load average around it."""
    args = ["svsgan_tf.separate", path, "--out", out, "--quiet", "--overwrite"]
    args += ["--model", model] if model else []
    args += ["--chunk-seconds", str(chunk_seconds)] if chunk_seconds else []
    load_before = os.getloadavg()
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"separate failed on {path}:\n{result.stderr[-2000:]}")
    peak = [line for line in result.stderr.splitlines() if line.startswith("PEAK_KIB")][-1]
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(int(peak.split()[1]) / 1024, 1),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--chunk-seconds", type=float, default=None, help="default: the CLI's")
    parser.add_argument("--out", default=os.path.join(HERE, "bench_long_files.json"))
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="svsgan-bench-long-")
    results = []
    try:
        for minutes in args.minutes:
            path = os.path.join(scratch, f"long_{minutes:g}min.wav")
            write_long_wav(path, minutes)
            run = separate(path, os.path.join(scratch, "out"), args.model, args.chunk_seconds)
            run.update({"minutes": minutes, "audio_s": minutes * 60,
                        "realtime_factor": round(minutes * 60 / run["wall_s"], 1),
                        "input_mb": round(os.path.getsize(path) / 2 ** 20, 1)})
            print(json.dumps(run), flush=True)
            results.append(run)
            os.unlink(path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = {"benchmark": "separate on long 44.1 kHz stereo WAVs", "model": args.model or "shipped",
              "chunk_seconds": args.chunk_seconds or "CLI default", "cpu_count": os.cpu_count(),
              "platform": platform.platform(), "python": platform.python_version(), "runs": results}
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
