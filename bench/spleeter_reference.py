"""Spleeter itself on a data set's mixtures: the reference row of the results table, and its timing.

    python bench/spleeter_reference.py --data musdb:../shared/data/musdb18-7s --subset test \
        --spleeter-python /path/to/spleeter-venv/bin/python --models MODELS --out runs/spleeter_test

1. writes each track's mixture exactly as `evaluate` reads it (MUSDB's mix stream) to
   OUT/mixtures/<track>.wav (float WAV, nothing lost);
2. runs `spleeter separate -p spleeter:2stems` (spleeter==2.4.2 in its own venv, MODEL_PATH=MODELS
   as bench/spleeter_checkpoint.py wrote it) on them into OUT/estimates/<track>/{vocals,accompaniment}.wav;
3. writes OUT/spleeter_reference.json: the wall time of step 2 and the load average.

Then `python -m svsgan_tf.evaluate --data ... --estimates OUT/estimates --out OUT/eval` scores them
with the same protocol as every svsgan_tf model.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--subset", default="test")
    parser.add_argument("--spleeter-python", required=True, help="python of the venv holding spleeter==2.4.2")
    parser.add_argument("--models", required=True, help="folder holding 2stems/ (Spleeter's MODEL_PATH)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import soundfile

    from svsgan_tf.audio.io import ffmpeg_executable
    from svsgan_tf.data.datasets import load_dataset

    report = load_dataset(args.data, args.subset, sample_rate=None, true_mixture=True)
    mixtures = os.path.join(args.out, "mixtures")
    os.makedirs(mixtures, exist_ok=True)
    files, seconds = [], 0.0
    for track in report.tracks:
        mixture = track.load()["mixture"]
        path = os.path.join(mixtures, f"{track.name}.wav")
        soundfile.write(path, mixture, track.sample_rate, subtype="FLOAT")
        files.append(path)
        seconds += mixture.shape[0] / track.sample_rate
    env = dict(os.environ, MODEL_PATH=os.path.abspath(args.models))
    ffmpeg = ffmpeg_executable()                          # Spleeter decodes through ffmpeg on PATH
    if ffmpeg:
        env["PATH"] = os.path.dirname(ffmpeg) + os.pathsep + env.get("PATH", "")
    estimates = os.path.join(args.out, "estimates")
    spleeter = [args.spleeter_python, "-m", "spleeter", "separate", "-p", "spleeter:2stems",
                "-o", estimates, "-f", "{filename}/{instrument}.{codec}", "-c", "wav"]
    load_before = os.getloadavg()
    start = time.perf_counter()
    subprocess.run(spleeter + files, env=env, check=True)
    wall = time.perf_counter() - start
    result = {"command": " ".join(spleeter[1:6]), "tracks": len(files), "audio_seconds": round(seconds, 2),
              "wall_s": round(wall, 2), "load_average_before": load_before,
              "load_average_after": os.getloadavg(), "spleeter_python": args.spleeter_python,
              "ffmpeg": shutil.which("ffmpeg", path=env["PATH"])}
    with open(os.path.join(args.out, "spleeter_reference.json"), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
