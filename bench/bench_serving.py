"""Load benchmark of serving.server on loopback: concurrent gRPC clients separating fixed clips; writes JSON.

    python bench/bench_serving.py [--model DIR] [--concurrency 8] [--duration 60] [--clip-seconds 10]
    python bench/bench_serving.py --model fast --concurrency 4 --enable-batching [--max-batch-size 8]
    python bench/bench_serving.py --soak [--max-requests 10000] [--duration 600] [--bad-every 10]

Exports the model (by default the shipped pretrained model; in a checkout without one, a default-size
`encoder` generator, Config() defaults, with random weights), starts `python -m serving.server` on
127.0.0.1, and runs --concurrency client threads, each with its own channel and SeparationClient,
sending one clip per request (10 s stereo at the model's rate: one request below the 4 MiB default)
until --duration seconds or --max-requests requests. It reports requests per second, latency
percentiles, errors and the server's resident memory at the start and end of the load in
bench/bench_serving.json.

With --soak, a few client threads (4) send --max-requests requests (or stop after --duration s) of
short clips (2 s), every --bad-every-th one a request the server must refuse: a waveform declaring
(2, 8 000 000) samples with no data (INVALID_ARGUMENT) or one with one channel more than the server's
--max_channels (RESOURCE_EXHAUSTED). Refusals with the expected code are counted by code, apart from
errors (anything else); the report, bench/bench_serving_soak.json, has the server's RSS at the start
and end, the wall time and the load average.
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
DEFAULT_SOAK_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_serving_soak.json")
MODEL_NAME = "svsgan"
MAX_DURATION_S = 600.0
# (load, soak) defaults of the options that differ between the two modes
DEFAULT_CONCURRENCY = (8, 4)
DEFAULT_DURATION_S = (60.0, MAX_DURATION_S)
DEFAULT_CLIP_SECONDS = (10.0, 2.0)
DEFAULT_OUTS = (DEFAULT_OUT, DEFAULT_SOAK_OUT)
OVERSIZED_DECLARATION = (2, 8_000_000)        # the declared shape of the soak's no-data requests


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
    from svsgan_tf.models.model_io import save_model
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


def soak_requests(clip: np.ndarray, max_channels: int) -> dict:
    """The soak's PredictRequests: {"good": clip, (nb_channels, nb_samples) float32, "INVALID_ARGUMENT":
    OVERSIZED_DECLARATION with no data, "RESOURCE_EXHAUSTED": max_channels + 1 channels of 4096 samples},
    each bad one keyed by the status code the server must answer."""
    import tensorflow as tf
    from tensorflow.core.framework.tensor_pb2 import TensorProto
    from tensorflow_serving.apis import predict_pb2

    from serving.server import WAVEFORM_INPUT, WAVEFORM_SIGNATURE

    def request(proto):
        message = predict_pb2.PredictRequest()
        message.model_spec.name = MODEL_NAME
        message.model_spec.signature_name = WAVEFORM_SIGNATURE
        message.inputs[WAVEFORM_INPUT].CopyFrom(proto)
        return message

    oversized = TensorProto(dtype=tf.float32.as_datatype_enum)
    for size in OVERSIZED_DECLARATION:
        oversized.tensor_shape.dim.add(size=size)
    many_channels = np.zeros((max_channels + 1, 4096), np.float32)
    return {"good": request(tf.make_tensor_proto(clip)), "INVALID_ARGUMENT": request(oversized),
            "RESOURCE_EXHAUSTED": request(tf.make_tensor_proto(many_channels))}


def soak(address: str, clip: np.ndarray, concurrency: int, duration: float, warmup: float, max_requests: int,
         bad_every: int, max_channels: int, timeout: float, server_pid: int) -> dict:
    """Warm up for `warmup` s with good requests, then send `max_requests` requests (at most `duration` s)
    from `concurrency` threads, every `bad_every`-th one bad (alternately each kind of `soak_requests`).

    Returns counts (answered, refused by code, errors), latencies of the answered ones and the server's
    RSS each second.
    """
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    requests = soak_requests(clip, max_channels)
    kinds = [kind for kind in requests if kind != "good"]
    expected_bytes = clip.nbytes
    lock = threading.Lock()
    stop = threading.Event()
    counts = {"sent": 0, "answered": 0, "refused": {kind: 0 for kind in kinds}, "errors": 0}
    latencies: list[float] = []
    error_examples: set[str] = set()

    def next_kind(measuring: bool) -> str | None:
        with lock:
            if not measuring:
                return "good"
            if counts["sent"] >= max_requests:
                stop.set()
                return None
            counts["sent"] += 1
            index = counts["sent"]
        return kinds[(index // bad_every) % len(kinds)] if bad_every and index % bad_every == 0 else "good"

    def worker(stub, until: float, measuring: bool) -> None:
        while not stop.is_set() and time.perf_counter() < until:
            kind = next_kind(measuring)
            if kind is None:
                return
            began = time.perf_counter()
            problem, code = None, None
            try:
                response = stub.Predict(requests[kind], timeout=timeout)
                if kind != "good":
                    problem = f"{kind} request answered instead of refused"
                elif any(len(response.outputs[name].tensor_content) != expected_bytes
                         for name in ("vocals", "accompaniment")):
                    problem = "wrong output size"
            except grpc.RpcError as err:
                code = err.code().name
                if code != kind:
                    problem = f"{kind} request: {code}: {(err.details() or '').splitlines()[:1]}"
            elapsed = time.perf_counter() - began
            if not measuring:
                continue
            with lock:
                if problem is not None:
                    counts["errors"] += 1
                    error_examples.add(problem)
                elif kind == "good":
                    counts["answered"] += 1
                    latencies.append(elapsed)
                else:
                    counts["refused"][code] += 1

    channels = [grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", -1)])
                for _ in range(concurrency)]
    stubs = [prediction_service_pb2_grpc.PredictionServiceStub(channel) for channel in channels]
    try:
        threads = [threading.Thread(target=worker, args=(stub, time.perf_counter() + warmup, False), daemon=True)
                   for stub in stubs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        began = time.perf_counter()
        until = began + duration
        threads = [threading.Thread(target=worker, args=(stub, until, True), daemon=True) for stub in stubs]
        for thread in threads:
            thread.start()
        rss = [(0.0, rss_mb(server_pid))]
        while any(thread.is_alive() for thread in threads):
            time.sleep(1.0)
            rss.append((round(time.perf_counter() - began, 1), rss_mb(server_pid)))
        elapsed = time.perf_counter() - began
        for thread in threads:
            thread.join()
        time.sleep(5.0)
        rss_idle = rss_mb(server_pid)
    finally:
        for channel in channels:
            channel.close()
    done = counts["answered"] + sum(counts["refused"].values()) + counts["errors"]
    rss_start, rss_end = rss[0][1], rss[-1][1]
    return {
        "requests": done, "answered": counts["answered"], "errors": counts["errors"],
        "error_examples": sorted(error_examples)[:5], "refusals_by_code": counts["refused"],
        "stopped_by": "max_requests" if done >= max_requests else "duration",
        "wall_s": round(elapsed, 2), "requests_per_s": round(done / elapsed, 2),
        "latency_ms_answered": {"p50": round(1000 * float(np.percentile(latencies, 50)), 1) if latencies else None,
                                "p99": round(1000 * float(np.percentile(latencies, 99)), 1) if latencies else None,
                                "max": round(1000 * max(latencies), 1) if latencies else None},
        "server_rss_mb": {"start": round(rss_start, 1), "end": round(rss_end, 1),
                          "max": round(max(value for _, value in rss), 1),
                          "idle_5_s_after_end": round(rss_idle, 1),
                          "growth_percent": round(100 * (rss_end - rss_start) / rss_start, 2),
                          "every_30_s": [[t, round(value, 1)] for t, value in rss[::30]]},
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python bench/bench_serving.py",
                                     description="Load benchmark of serving.server over loopback gRPC.")
    parser.add_argument("--model", default=None,
                        help="model directory (default: the shipped pretrained model)")
    parser.add_argument("--soak", action="store_true",
                        help="soak test: --max-requests short requests with bad ones mixed in (see above)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help=f"client threads (default {DEFAULT_CONCURRENCY[0]}, {DEFAULT_CONCURRENCY[1]} with --soak)")
    parser.add_argument("--duration", type=float, default=None,
                        help=f"seconds of load (default {DEFAULT_DURATION_S[0]:g}, {DEFAULT_DURATION_S[1]:g} with "
                             f"--soak; at most {MAX_DURATION_S:g})")
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="seconds of the same load before measuring, not counted (default 10)")
    parser.add_argument("--max-concurrent-runs", type=int, default=None,
                        help="the server's --max_concurrent_runs (default: the server's default)")
    parser.add_argument("--enable-batching", action="store_true",
                        help="start the server with --enable_batching (concurrent requests of one shape together)")
    parser.add_argument("--max-batch-size", type=int, default=None, help="the server's --max_batch_size")
    parser.add_argument("--batch-timeout-micros", type=int, default=None, help="the server's --batch_timeout_micros")
    parser.add_argument("--export-precision", default="float32", choices=("float32", "bfloat16"),
                        help="what the export computes in (python -m svsgan_tf.export --precision; default float32)")
    parser.add_argument("--max-requests", type=int, default=10000, help="stop after this many requests (default 10000)")
    parser.add_argument("--clip-seconds", type=float, default=None,
                        help=f"clip length (default {DEFAULT_CLIP_SECONDS[0]:g}, "
                             f"{DEFAULT_CLIP_SECONDS[1]:g} with --soak)")
    parser.add_argument("--bad-every", type=int, default=10,
                        help="with --soak, every Nth request is one the server must refuse (default 10; 0: none)")
    parser.add_argument("--channels", type=int, default=2, help="clip channels (default 2)")
    parser.add_argument("--timeout", type=float, default=60.0, help="deadline of each request (default 60 s)")
    parser.add_argument("--out", default=None,
                        help="JSON report (default bench/bench_serving.json; "
                             "bench/bench_serving_soak.json with --soak)")
    return parser


def main(argv: list[str] | None = None) -> int:
    began = time.perf_counter()
    args = build_parser().parse_args(argv)
    mode = int(args.soak)
    for name, defaults in (("concurrency", DEFAULT_CONCURRENCY), ("duration", DEFAULT_DURATION_S),
                           ("clip_seconds", DEFAULT_CLIP_SECONDS), ("out", DEFAULT_OUTS)):
        if getattr(args, name) is None:
            setattr(args, name, defaults[mode])
    if not 0 < args.duration <= MAX_DURATION_S:
        raise SVSGANError(f"--duration {args.duration:g}: must be in (0, {MAX_DURATION_S:g}]")
    if args.concurrency < 1 or args.max_requests < 1 or args.channels < 1 or args.clip_seconds <= 0:
        raise SVSGANError("--concurrency, --max-requests, --channels and --clip-seconds must be positive")
    if args.bad_every < 0:
        raise SVSGANError(f"--bad-every {args.bad_every}: must be >= 0")
    batching_flags = ["--enable_batching"] if args.enable_batching else []
    for flag, value in (("--max_batch_size", args.max_batch_size), ("--batch_timeout_micros", args.batch_timeout_micros)):
        if value is not None:
            batching_flags += [flag, str(value)]
    cli.start_tensorflow(quiet=True)
    import grpc
    import tensorflow as tf

    from serving.server import DEFAULT_MAX_CHANNELS, DEFAULT_MAX_CONCURRENT_RUNS
    from svsgan_tf.config import Config
    from svsgan_tf.export.savedmodel import export_model
    from svsgan_tf.models.model_io import DEFAULT_MODEL, load_config, load_generator, pretrained_names, resolve_model
    from svsgan_tf.data.synthetic import make_track

    with tempfile.TemporaryDirectory(prefix="bench_serving_") as scratch:
        random_weights = False
        if args.model:
            model_dir, model_text = resolve_model(args.model), f"{args.model} (given with --model)"
        elif DEFAULT_MODEL in pretrained_names():
            model_dir, model_text = resolve_model(None), f"the shipped default model ({DEFAULT_MODEL})"
        else:
            model_dir, model_text = random_model(scratch)
            random_weights = True
        config: Config = load_config(model_dir)
        base = os.path.join(scratch, "models", MODEL_NAME)
        export_model(model_dir, base, precision=args.export_precision)
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
                + ([] if args.max_concurrent_runs is None else ["--max_concurrent_runs", str(args.max_concurrent_runs)])
                + batching_flags,
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            try:
                wait_until_serving(server, address)
                rss_loaded = rss_mb(server.pid)
                load_before = os.getloadavg()
                print(f"loaded; {args.concurrency} clients for {args.duration:g} s"
                      + (f" or {args.max_requests} requests" if args.soak else ""), flush=True)
                if args.soak:
                    results = soak(address, clip, args.concurrency, args.duration, args.warmup, args.max_requests,
                                   args.bad_every, DEFAULT_MAX_CHANNELS, args.timeout, server.pid)
                else:
                    results = load(address, clip, rate, args.concurrency, args.duration, args.warmup,
                                   args.max_requests, args.timeout, server.pid)
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
        "benchmark": ("serving.server soak over loopback gRPC: client threads sending prebuilt serving_default "
                      f"requests, every {args.bad_every}th one bad: alternately a {OVERSIZED_DECLARATION} "
                      f"declaration with no data and {DEFAULT_MAX_CHANNELS + 1} channels (over --max_channels)")
        if args.soak else ("serving.server over loopback gRPC: concurrent SeparationClient threads, "
                           "serving_default signature, one request per clip"),
        "model": {"source": model_text, "random_weights": random_weights, "export_precision": args.export_precision,
                  "generator": config.model.generator, "sample_rate": rate, "n_fft": config.stft.n_fft,
                  "hop_length": config.stft.hop_length, "generator_parameters": parameters},
        "load": {"mode": "soak" if args.soak else "load", "bad_every": args.bad_every if args.soak else None,
                 "concurrency": args.concurrency, "duration_s": args.duration, "warmup_s": args.warmup,
                 "max_requests": args.max_requests, "server_max_concurrent_runs": args.max_concurrent_runs
                 if args.max_concurrent_runs is not None else DEFAULT_MAX_CONCURRENT_RUNS,
                 "server_batching_flags": batching_flags,
                 "clip_seconds": args.clip_seconds, "clip_channels": args.channels,
                 "request_mb": round(clip.nbytes / 2 ** 20, 2), "timeout_s": args.timeout,
                 "address": "127.0.0.1 (loopback)"},
        "results": results,
        "server_rss_mb": rss,
        "goals": {"errors": "0", "rss_growth_percent": "< 10",
                  "met": results["errors"] == 0 and rss["growth_percent"] < 10},
        "wall_s_total": round(time.perf_counter() - began, 1),
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
