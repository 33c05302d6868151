"""Benchmark: what one call on several songs saves per song, and two ways to upsample in the fast U-Net.

    python bench/bench_batching.py [--model fast] [--seconds 10] [--batch-sizes 1,2,4,8] [--threads 2]
                                   [--precision float32]

Writes bench/bench_batching.json beside this script.
- `Separator.separate_batch` on 1, 2, 4 and 8 random 10 s stereo songs at once (what server-side
  batching runs), and the mask stage alone (`Separator.mask`: the generator and the channel layout)
  on their spectrograms: best of 3 rounds of 3 warm calls, in milliseconds per song, at
  `--precision` (default float32, what exports serve).
- Each transposed convolution of the model's U-Net (5 x 5, stride 2) at the shapes of a 30 s stereo
  song, against its exact polyphase rewrite: four stride-1 convolutions (2 x 2, 2 x 3, 3 x 2 and 3 x 3
  taps, the same arithmetic) on the low-resolution input, interleaved with depth_to_space, and against
  the same transposed convolution in bfloat16 (what separation.precision bfloat16 runs). The maximum
  difference shows that the rewrite is exact.
Each figure carries the load average (1, 5, 15 min) before and after it: the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

# the taps of a 5-tap, stride-2, 'SAME' transposed convolution that reach an even output 2m (from
# inputs m-1, m) and an odd one 2m+1 (from m-1, m, m+1)
EVEN_TAPS, ODD_TAPS = [3, 1], [4, 2, 0]


def best_ms(call, rounds: int = 3, calls: int = 3) -> float:
    """The best over `rounds` of the mean wall time of `calls` calls, in ms (after one warm-up call)."""
    call()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls)
    return 1e3 * best


def timed(call) -> dict:
    """{"ms", "load_average_before", "load_average_after"} of `best_ms(call)`."""
    before = os.getloadavg()
    ms = best_ms(call)
    return {"ms": round(ms, 2), "load_average_before": before, "load_average_after": os.getloadavg()}


def batch_times(model: str, seconds: float, batch_sizes: list[int], precision: str) -> list[dict]:
    """Per-song milliseconds of separate_batch and of the mask stage alone, per batch size."""
    import numpy as np
    import tensorflow as tf

    from svsgan_tf.audio.spectral import stft
    from svsgan_tf.separation.separator import Separator

    separator = Separator.from_directory(model, precision=precision)
    config = separator.config
    nb_samples = int(seconds * config.stft.sample_rate)
    mask = tf.function(lambda magnitude: separator.mask(magnitude, 2))
    rows = []
    for nb_songs in batch_sizes:
        songs = tf.constant(np.random.default_rng(0).normal(scale=0.1, size=(nb_songs, 2, nb_samples)), tf.float32)
        magnitude = tf.abs(stft(tf.reshape(songs, [-1, nb_samples]), config.stft.n_fft,
                                config.separation_stft.hop_length))        # (nb_songs * 2, nb_frames, nb_bins)
        whole = timed(lambda: separator.separate_batch(songs)["vocals"].numpy())
        network = timed(lambda: mask(magnitude).numpy())
        rows.append({"songs_per_call": nb_songs, "precision": separator.precision,
                     "separate_batch_ms_per_song": round(whole["ms"] / nb_songs, 1),
                     "mask_ms_per_song": round(network["ms"] / nb_songs, 1),
                     "load_average": [whole["load_average_before"], network["load_average_after"]]})
        print(rows[-1], flush=True)
    return rows


def polyphase_kernels(kernel):
    """(5, 5, out, in) transposed-convolution kernel -> {phase: (kh, kw, in, out) forward kernel} for
    the output phases ee, eo, oe, oo (even/odd frame, even/odd bin)."""
    import tensorflow as tf

    forward = tf.transpose(kernel, [0, 1, 3, 2])                     # (5, 5, in, out)
    return {rows + cols: tf.gather(tf.gather(forward, row_taps, axis=0), col_taps, axis=1)
            for rows, row_taps in (("e", EVEN_TAPS), ("o", ODD_TAPS))
            for cols, col_taps in (("e", EVEN_TAPS), ("o", ODD_TAPS))}


def polyphase_upsample(x, kernels):
    """(batch, H, W, in) -> (batch, 2H, 2W, out), equal to the stride-2 'SAME' transposed convolution."""
    import tensorflow as tf

    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])             # (batch, H + 2, W + 2, in)
    windows = {"ee": padded[:, :-1, :-1], "eo": padded[:, :-1, :], "oe": padded[:, :, :-1], "oo": padded}
    phases = [tf.nn.conv2d(windows[p], kernels[p], 1, "VALID") for p in ("ee", "eo", "oe", "oo")]
    return tf.nn.depth_to_space(tf.concat(phases, -1), 2)           # each phase (batch, H, W, out)


def upsampling_times(model: str, nb_frames: int) -> list[dict]:
    """Each transposed convolution of the model's vocals U-Net at the shapes of `nb_frames` frames of
    a stereo song: tf.nn.conv2d_transpose against `polyphase_upsample` (ms, and their largest difference)."""
    import numpy as np
    import tensorflow as tf

    from svsgan_tf.models.model_io import load_generator

    _, generator = load_generator(model)
    tower = generator.towers[0]
    height = -(-nb_frames // generator.multiple) * generator.multiple // 2 ** len(tower.filters)
    width = -(-generator.nb_input_bins // generator.multiple) * generator.multiple // 2 ** len(tower.filters)
    rng = np.random.default_rng(0)
    rows, channels = [], tower.filters[-1]
    for i, layer in enumerate(tower.up):
        kernel = layer.kernel                                        # (5, 5, out, in)
        out_channels = int(kernel.shape[2])
        x = tf.constant(rng.standard_normal((1, height, width, int(kernel.shape[3]))), tf.float32)
        shape = [1, 2 * height, 2 * width, out_channels]
        transposed = tf.function(lambda x, k=kernel, s=shape: tf.nn.conv2d_transpose(x, k, s, 2, "SAME"))
        kernels = polyphase_kernels(kernel)
        polyphase = tf.function(lambda x, k=kernels: polyphase_upsample(x, k))
        error = float(np.abs(transposed(x).numpy() - polyphase(x).numpy()).max())
        x16, kernel16 = tf.cast(x, tf.bfloat16), tf.cast(kernel, tf.bfloat16)
        rounded = tf.function(lambda x, k=kernel16, s=shape: tf.nn.conv2d_transpose(x, k, s, 2, "SAME"))
        rows.append({"layer": f"up_{i}", "input": [height, width, int(kernel.shape[3])], "output_channels": out_channels,
                     "conv2d_transpose": timed(lambda: transposed(x).numpy()),
                     "polyphase": timed(lambda: polyphase(x).numpy()), "max_difference": error,
                     "conv2d_transpose_bfloat16": timed(lambda: rounded(x16).numpy())})
        print(rows[-1], flush=True)
        height, width, channels = 2 * height, 2 * width, out_channels
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_batching.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fast", help="model directory or shipped name (default fast)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each song (default 10)")
    parser.add_argument("--batch-sizes", default="1,2,4,8", help="songs per call (default 1,2,4,8)")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow threads (default 2)")
    parser.add_argument("--precision", default="float32", help="separation.precision (default float32)")
    parser.add_argument("--out", default=os.path.join(HERE, "bench_batching.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from svsgan_tf.models.model_io import resolve_model

    model = resolve_model(args.model)
    report = {
        "model": args.model, "threads": args.threads, "song_seconds": args.seconds,
        "batching": batch_times(model, args.seconds, [int(b) for b in args.batch_sizes.split(",")], args.precision),
        "upsampling_30s_stereo": upsampling_times(model, nb_frames=1292),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "tensorflow": tf.__version__},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
