"""Load benchmark of serving.server on loopback: concurrent gRPC clients separating fixed clips; writes JSON.

    python bench/bench_serving.py [--model DIR] [--concurrency 8] [--duration 60] [--clip-seconds 10]

Exports the model (by default the shipped pretrained model; in a checkout without one, a default-size
`encoder` generator, Config() defaults, with random weights), starts `python -m serving.server` on
127.0.0.1, and runs --concurrency client threads, each with its own channel and SeparationClient,
sending one clip per request (10 s stereo at the model's rate: one request below the 4 MiB default)
until --duration seconds or --max-requests requests. It reports requests per second, latency
percentiles, errors and the server's resident memory at the start and end of the load in
bench/bench_serving.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from svsgan_tf import cli  # noqa: E402
from svsgan_tf.errors import SVSGANError  # noqa: E402

logger = logging.getLogger(__name__)

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_serving.json")
MODEL_NAME = "svsgan"
MAX_DURATION_S = 600.0


def rss_mb(pid: int) -> float:
    """Resident set size of process `pid` in MiB (Linux /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def random_model(folder: str) -> tuple[str, str]:
    """A default-size generator (Config() defaults) with random weights, saved as a model directory."""
    from svsgan_tf.config import Config, git_commit
    from svsgan_tf.model_io import save_model
    from svsgan_tf.models import build_generator
    from svsgan_tf.runtime import set_seed

    config = Config(git_commit=git_commit()).validate()
    set_seed(config.train.seed)
    generator = build_generator(config)
    path = save_model(os.path.join(folder, "model"), config, generator)
    return path, ("random weights (untrained), built by the benchmark from Config() defaults: "
                  f"{config.model.generator} generator, n_fft {config.stft.n_fft}, hop {config.stft.hop_length}, "
                  f"{config.stft.sample_rate} Hz; no pretrained model is shipped in this checkout")


def wait_until_serving(process: subprocess.Popen, address: str, timeout: float = 300.0) -> None:
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL_NAME
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SVSGANError(f"{address}: the server exited with code {process.returncode}")
            try:
                stub.GetModelStatus(request, timeout=2.0)
                return
            except grpc.RpcError:
                time.sleep(0.5)
    raise SVSGANError(f"{address}: the server did not answer within {timeout:g} s")


def hammer(clients: list, clip: np.ndarray, duration: float, max_requests: int, server_pid: int,
           timeout: float) -> tuple[list[float], list[str], list[tuple[float, float]], float]:
    """Every client sends `clip` in a loop on its own thread for `duration` s or `max_requests` requests.

    Returns (latencies in s, error messages, [(time s, server RSS MiB)] sampled each second, elapsed s).
    """
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(client) -> None:
        while not stop.is_set():
            with lock:
                if len(latencies) + len(errors) >= max_requests:
                    stop.set()
                    return
            began = time.perf_counter()
            try:
                stems = client.separate_waveform(clip, source="clip")
                ok = all(stems[name].shape == clip.shape for name in ("vocals", "accompaniment"))
                problem = None if ok else "wrong output shape"
            except SVSGANError as err:
                problem = str(err)
            elapsed = time.perf_counter() - began
            with lock:
                (latencies.append(elapsed) if problem is None else errors.append(problem))

    threads = [threading.Thread(target=worker, args=(client,), daemon=True) for client in clients]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    rss = [(0.0, rss_mb(server_pid))]
    while time.perf_counter() - began < duration and not stop.is_set():
        time.sleep(1.0)
        rss.append((round(time.perf_counter() - began, 1), rss_mb(server_pid)))
    stop.set()
    for thread in threads:
        thread.join(timeout + 5)
    return latencies, errors, rss, time.perf_counter() - began


def load(address: str, clip: np.ndarray, rate: int, concurrency: int, duration: float, warmup: float,
         max_requests: int, timeout: float, server_pid: int) -> dict:
    """Warm up for `warmup` s, then measure `concurrency` clients sending `clip`, (nb_channels, nb_samples)
    at `rate`, for `duration` s or `max_requests` requests; return counts, latencies and server RSS."""
    from serving.client import SeparationClient

    clients = [SeparationClient(address, MODEL_NAME, timeout=timeout) for _ in range(concurrency)]
    try:
        warm_latencies, warm_errors, _, _ = hammer(clients, clip, warmup, max_requests, server_pid, timeout)
        latencies, errors, rss, elapsed = hammer(clients, clip, duration, max_requests, server_pid, timeout)
    finally:
        for client in clients:
            client.close()
    rss_start, rss_end = rss[0][1], rss[-1][1]
    done = len(latencies)

    def ms(value: float) -> float:
        return round(value * 1000, 1)

    return {
        "warmup": {"seconds": warmup, "requests": len(warm_latencies), "errors": len(warm_errors)},
        "requests": done, "errors": len(errors), "error_examples": sorted(set(errors))[:5],
        "elapsed_s": round(elapsed, 2), "requests_per_s": round(done / elapsed, 3),
        "audio_seconds_per_s": round(done * clip.shape[1] / rate / elapsed, 2),
        "latency_ms": {"p50": ms(np.percentile(latencies, 50)) if done else None,
                       "p90": ms(np.percentile(latencies, 90)) if done else None,
                       "p99": ms(np.percentile(latencies, 99)) if done else None,
                       "mean": ms(np.mean(latencies)) if done else None,
                       "max": ms(max(latencies)) if done else None},
        "server_rss_mb": {"start": round(rss_start, 1), "end": round(rss_end, 1),
                          "max": round(max(value for _, value in rss), 1),
                          "growth_percent": round(100 * (rss_end - rss_start) / rss_start, 2),
                          "every_10_s": [[t, round(value, 1)] for t, value in rss[::10]]},
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python bench/bench_serving.py",
                                     description="Load benchmark of serving.server over loopback gRPC.")
    parser.add_argument("--model", default=None,
                        help="model directory (default: the shipped pretrained model)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--duration", type=float, default=60.0, help=f"seconds of load (default 60, at most {MAX_DURATION_S:g})")
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="seconds of the same load before measuring, not counted (default 10)")
    parser.add_argument("--max-concurrent-runs", type=int, default=None,
                        help="the server's --max_concurrent_runs (default: the server's default, the CPU count)")
    parser.add_argument("--max-requests", type=int, default=10000, help="stop after this many requests (default 10000)")
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="clip length (default 10)")
    parser.add_argument("--channels", type=int, default=2, help="clip channels (default 2)")
    parser.add_argument("--timeout", type=float, default=60.0, help="deadline of each request (default 60 s)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON report (default bench/bench_serving.json)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.duration <= MAX_DURATION_S:
        raise SVSGANError(f"--duration {args.duration:g}: must be in (0, {MAX_DURATION_S:g}]")
    if args.concurrency < 1 or args.max_requests < 1 or args.channels < 1 or args.clip_seconds <= 0:
        raise SVSGANError("--concurrency, --max-requests, --channels and --clip-seconds must be positive")
    cli.start_tensorflow(quiet=True)
    import grpc
    import tensorflow as tf

    from svsgan_tf.config import Config
    from svsgan_tf.export import export_model
    from svsgan_tf.model_io import PRETRAINED_DIR, load_config, load_generator
    from svsgan_tf.synthetic import make_track

    with tempfile.TemporaryDirectory(prefix="bench_serving_") as scratch:
        random_weights = False
        if args.model:
            model_dir, model_text = args.model, f"{os.path.abspath(args.model)} (given with --model)"
        elif os.path.isfile(os.path.join(PRETRAINED_DIR, "config.json")):
            model_dir, model_text = PRETRAINED_DIR, "the shipped pretrained model (svsgan_tf/pretrained)"
        else:
            model_dir, model_text = random_model(scratch)
            random_weights = True
        config: Config = load_config(model_dir)
        base = os.path.join(scratch, "models", MODEL_NAME)
        export_model(model_dir, base)
        rate = config.stft.sample_rate
        clip = np.ascontiguousarray(make_track(0, duration=args.clip_seconds, sample_rate=rate,
                                               nb_channels=args.channels).mixture.T)    # (nb_channels, nb_samples)
        address = f"127.0.0.1:{free_port()}"
        log_path = os.path.join(scratch, "server.log")
        with open(log_path, "w") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "serving.server", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                 "--model_name", MODEL_NAME, "--model_base_path", base,
                 "--grpc_max_threads", str(max(16, args.concurrency)), "--quiet"]
                + ([] if args.max_concurrent_runs is None else ["--max_concurrent_runs", str(args.max_concurrent_runs)]),
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            try:
                wait_until_serving(server, address)
                rss_loaded = rss_mb(server.pid)
                load_before = os.getloadavg()
                print(f"loaded; {args.concurrency} clients for {args.duration:g} s", flush=True)
                results = load(address, clip, rate, args.concurrency, args.duration, args.warmup, args.max_requests,
                               args.timeout, server.pid)
                load_after = os.getloadavg()
            finally:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
        parameters = int(load_generator(model_dir)[1].count_params())    # an ensemble's members summed
    rss = results.pop("server_rss_mb")
    rss["after_loading_model"] = round(rss_loaded, 1)
    rss["start_is"] = "after the warm-up, when the measured load begins"
    report = {
        "benchmark": "serving.server over loopback gRPC: concurrent SeparationClient threads, "
                     "serving_default signature, one request per clip",
        "model": {"source": model_text, "random_weights": random_weights,
                  "generator": config.model.generator, "sample_rate": rate, "n_fft": config.stft.n_fft,
                  "hop_length": config.stft.hop_length, "generator_parameters": parameters},
        "load": {"concurrency": args.concurrency, "duration_s": args.duration, "warmup_s": args.warmup,
                 "max_requests": args.max_requests, "server_max_concurrent_runs": args.max_concurrent_runs
                 if args.max_concurrent_runs is not None else os.cpu_count(),
                 "clip_seconds": args.clip_seconds, "clip_channels": args.channels,
                 "request_mb": round(clip.nbytes / 2 ** 20, 2), "timeout_s": args.timeout,
                 "address": "127.0.0.1 (loopback)"},
        "results": results,
        "server_rss_mb": rss,
        "goals": {"errors": "0", "rss_growth_percent": "< 10",
                  "met": results["errors"] == 0 and rss["growth_percent"] < 10},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "tensorflow": tf.__version__, "grpcio": grpc.__version__,
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in load_after],
                    "note": "clients and server share the same CPUs (and the machine is shared with other jobs)"},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    print(json.dumps({"results": results, "server_rss_mb": rss}, indent=2))
    print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    cli.run(main)
