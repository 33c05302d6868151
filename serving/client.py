"""`python -m serving.client --server HOST:PORT --model_name NAME INPUT... --out DIR`: separation over gRPC.

`SeparationClient` calls a TF Serving PredictionService (tensorflow_model_server or serving.server)
holding an svsgan_tf export (svsgan_tf/export.py): GetModelMetadata checks the signatures, the
`model_info` signature gives the sample rate and STFT settings, and `serving_default` separates.

Long audio is cut into requests below --max_request_mb and joined back:

* every chunk starts on a multiple of the STFT hop, so its frames are the frames of the whole file;
* a chunk's output differs from one-shot separation only within `margin = n_fft` samples of its ends
  (where its STFT frames reach past the chunk), plus `(context_frames + mask_smoothing // 2) * hop_length`
  for an encoder with a context window (model.context_frames) or a mask smoothed over frames
  (separation.mask_smoothing), so consecutive chunks overlap by
  `2 * margin + crossfade` samples and are crossfaded in the middle of that overlap, where both equal
  the one-shot result;
* the crossfade is linear (gains adding up to 1), right for the two near-identical signals it joins;
  an equal-power fade would raise them by up to 3 dB.

With the per-frame `encoder` generator the joined result therefore equals one-shot separation to float
rounding everywhere. With the `rnn` generator each chunk starts its LSTM afresh, so the stems differ
slightly for the first frames after each seam; a longer --crossfade_ms hides that better.
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field

import numpy as np

from svsgan_tf import cli
from svsgan_tf.errors import AudioError, SVSGANError

logger = logging.getLogger(__name__)

WAVEFORM_SIGNATURE = "serving_default"
INFO_SIGNATURE = "model_info"
TARGETS = ("vocals", "accompaniment")
DEFAULT_SERVER = "localhost:8500"
DEFAULT_MAX_REQUEST_MB = 4.0           # gRPC's default message limit
DEFAULT_CROSSFADE_MS = 100.0
DEFAULT_TIMEOUT_S = 60.0
REQUEST_OVERHEAD_BYTES = 4096          # model spec, names and tensor header around the samples


class ServingError(SVSGANError):
    """The server cannot be used: down, too slow, unknown model or signature, request refused."""


@dataclass(frozen=True)
class ModelInfo:
    """What the client needs to know about a served model (from its `model_info` signature)."""

    name: str
    version: int
    sample_rate: int
    n_fft: int
    hop_length: int
    min_samples: int
    config_json: str = field(repr=False)
    signatures: tuple[str, ...]


def plan_chunks(nb_samples: int, chunk_samples: int, overlap: int) -> list[tuple[int, int]]:
    """(start, stop) sample ranges covering [0, nb_samples) in chunks of at most `chunk_samples`.

    Consecutive chunks overlap by `overlap` samples; starts are multiples of chunk_samples - overlap
    (keep both multiples of the hop). The last chunk ends at nb_samples and is longer than `overlap`.
    """
    if nb_samples <= chunk_samples:
        return [(0, nb_samples)]
    step = chunk_samples - overlap
    if step <= 0:
        raise ValueError(f"chunk_samples ({chunk_samples}) must exceed overlap ({overlap})")
    starts = [0]
    while starts[-1] + chunk_samples < nb_samples:
        starts.append(starts[-1] + step)
    return [(start, min(start + chunk_samples, nb_samples)) for start in starts]


def chunk_weights(length: int, first: bool, last: bool, margin: int, crossfade: int) -> np.ndarray:
    """Gain of one chunk's output, (length,) float32: 0 within `margin` of an inner seam, a linear ramp
    over the next `crossfade` samples, 1 elsewhere. The gains of two overlapping chunks add up to 1."""
    weights = np.ones(length, np.float32)
    ramp = (np.arange(crossfade, dtype=np.float32) + 0.5) / crossfade
    if not first:
        weights[:margin] = 0.0
        weights[margin:margin + crossfade] = ramp
    if not last:
        weights[length - margin - crossfade:length - margin] = 1.0 - ramp
        weights[length - margin:] = 0.0
    return weights


def join_chunks(pieces: list[np.ndarray], plan: list[tuple[int, int]], margin: int, crossfade: int) -> np.ndarray:
    """Crossfade chunk outputs (nb_channels, stop - start) back into (nb_channels, nb_samples)."""
    nb_samples = plan[-1][1]
    joined = np.zeros((pieces[0].shape[0], nb_samples), np.float32)
    for index, ((start, stop), piece) in enumerate(zip(plan, pieces)):
        weights = chunk_weights(stop - start, index == 0, index == len(plan) - 1, margin, crossfade)
        joined[:, start:stop] += piece * weights
    return joined


def _details(err) -> str:
    text = (err.details() or "").strip()
    return text.splitlines()[0] if text else err.code().name


class SeparationClient:
    """Separate audio with a model served over TF Serving's gRPC PredictionService.

    Args:
        server: HOST:PORT of the server.
        model_name: the served model's name (model_spec.name).
        version: a specific version, or None for the newest the server has.
        timeout: deadline of each request, in seconds.
        max_request_mb: largest request to send, in MiB; longer audio is split into several requests.
        crossfade_ms: length of the crossfade between chunks.
    """

    def __init__(self, server: str, model_name: str, version: int | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, max_request_mb: float = DEFAULT_MAX_REQUEST_MB,
                 crossfade_ms: float = DEFAULT_CROSSFADE_MS):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        if timeout <= 0:
            raise ServingError(f"--timeout {timeout:g}: must be > 0")
        if max_request_mb <= 0:
            raise ServingError(f"--max_request_mb {max_request_mb:g}: must be > 0")
        if crossfade_ms <= 0:
            raise ServingError(f"--crossfade_ms {crossfade_ms:g}: must be > 0")
        self.server = server
        self.model_name = model_name
        self.version = version
        self.timeout = float(timeout)
        self.max_request_bytes = int(max_request_mb * 2 ** 20)
        self.crossfade_ms = float(crossfade_ms)
        self.requests_sent = 0
        self._info: ModelInfo | None = None
        # responses carry two stems per input sample: accept any size back
        self.channel = grpc.insecure_channel(server, options=[("grpc.max_receive_message_length", -1),
                                                              ("grpc.max_send_message_length", -1)])
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "SeparationClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _model_spec(self, spec, signature: str | None = None) -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version
        if signature is not None:
            spec.signature_name = signature

    def _call(self, method, request, source: str):
        """One RPC with the deadline; gRPC errors become ServingError (or AudioError for bad audio)."""
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as err:
            code, details = err.code(), _details(err)
        where = f"{self.server}: model {self.model_name!r}"
        if code == grpc.StatusCode.UNAVAILABLE:
            raise ServingError(f"{self.server}: server unavailable, is it running? ({details})")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise ServingError(f"{self.server}: no answer within the {self.timeout:g} s deadline (--timeout)")
        if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
            raise ServingError(f"{where}: not found: {details}")
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            raise AudioError(source, f"refused by the server: {details}")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise ServingError(f"{where}: request too large for the server, lower --max_request_mb ({details})")
        raise ServingError(f"{where}: {code.name}: {details}")

    def metadata(self) -> tuple[int, tuple[str, ...]]:
        """(version, signature names) of the served model, from GetModelMetadata."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._model_spec(request.model_spec)
        request.metadata_field.append("signature_def")
        response = self._call(self.stub.GetModelMetadata, request, self.server)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return int(response.model_spec.version.value), tuple(sorted(signature_map.signature_def))

    def predict(self, signature: str, inputs: dict[str, np.ndarray], source: str = "<array>") -> dict[str, np.ndarray]:
        """One Predict request: {alias: array} in, {alias: array} out."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, signature)
        for alias, value in inputs.items():
            request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
        self.requests_sent += 1
        response = self._call(self.stub.Predict, request, source)
        return {alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()}

    def info(self) -> ModelInfo:
        """The served model's settings (cached); ServingError if it is no svsgan_tf export."""
        if self._info is None:
            version, signatures = self.metadata()
            missing = [name for name in (WAVEFORM_SIGNATURE, INFO_SIGNATURE) if name not in signatures]
            if missing:
                raise ServingError(f"{self.server}: model {self.model_name!r} has no signature "
                                   f"{', '.join(missing)} (signatures: {', '.join(signatures)}); "
                                   "export it with `python -m svsgan_tf.export`")
            values = self.predict(INFO_SIGNATURE, {"nb_samples": np.int64(0)}, self.server)
            self._info = ModelInfo(
                name=self.model_name, version=version,
                sample_rate=int(values["sample_rate"]), n_fft=int(values["n_fft"]),
                hop_length=int(values["hop_length"]), min_samples=int(values["min_samples"]),
                config_json=values["config_json"].item().decode("utf-8"), signatures=signatures)
        return self._info

    def chunk_layout(self, nb_channels: int) -> tuple[int, int, int]:
        """(chunk_samples, margin, crossfade) at the model's rate for audio of `nb_channels` channels.

        chunk_samples is the longest request below --max_request_mb, at least 2 * (margin + crossfade) so
        that a chunk's two crossfades do not meet; all three are multiples of the hop.
        """
        info = self.info()
        hop = info.hop_length
        config = json.loads(info.config_json)
        # frames whose mask depends on other frames: a context window, a smoothed mask
        reach = (config.get("model", {}).get("context_frames", 0)
                 + config.get("separation", {}).get("mask_smoothing", 1) // 2)
        margin = info.n_fft + reach * hop                          # where a chunk's frames see past its ends
        crossfade = max(hop, int(round(self.crossfade_ms / 1000 * info.sample_rate / hop)) * hop)
        chunk = (self.max_request_bytes - REQUEST_OVERHEAD_BYTES) // (4 * nb_channels) // hop * hop
        if chunk < 2 * (margin + crossfade):
            needed = (2 * (margin + crossfade) * 4 * nb_channels + REQUEST_OVERHEAD_BYTES) / 2 ** 20
            raise ServingError(f"--max_request_mb {self.max_request_bytes / 2 ** 20:g}: too small for "
                               f"{nb_channels}-channel audio with this model; use at least {needed:.3f}")
        return chunk, margin, crossfade

    def separate_waveform(self, waveform: np.ndarray, source: str = "<array>") -> dict[str, np.ndarray]:
        """Separate audio at the model's rate, in as many requests as --max_request_mb needs.

        Args:
            waveform: (nb_channels, nb_samples) float32 at the model's sample rate.
        Returns:
            {"vocals", "accompaniment"}: (nb_channels, nb_samples) float32.
        """
        waveform = np.ascontiguousarray(waveform, np.float32)
        nb_channels, nb_samples = waveform.shape
        chunk, margin, crossfade = self.chunk_layout(nb_channels)
        plan = plan_chunks(nb_samples, chunk, 2 * margin + crossfade)
        pieces = {name: [] for name in TARGETS}
        for start, stop in plan:
            part = f"{source} [samples {start}:{stop}]" if len(plan) > 1 else source
            result = self.predict(WAVEFORM_SIGNATURE, {"waveform": waveform[:, start:stop]}, part)
            for name in TARGETS:
                stem = result.get(name)
                if stem is None or stem.shape != (nb_channels, stop - start):
                    raise ServingError(f"{self.server}: model {self.model_name!r}: unexpected answer "
                                       f"(output {name!r} is {None if stem is None else stem.shape}, "
                                       f"expected {(nb_channels, stop - start)})")
                pieces[name].append(stem)
        if len(plan) == 1:
            return {name: pieces[name][0] for name in TARGETS}
        logger.debug("%s: %d requests", source, len(plan))
        return {name: join_chunks(pieces[name], plan, margin, crossfade) for name in TARGETS}

    def separate(self, waveform: np.ndarray, sample_rate: int | None = None,
                 source: str = "<array>") -> dict[str, np.ndarray]:
        """Like `Separator.separate`: any length, channel count and sample rate.

        Args:
            waveform: (nb_samples, nb_channels) or (nb_samples,) float audio.
            sample_rate: its rate; resampled to the model's and back when different.
        Returns:
            {"vocals", "accompaniment"}: arrays shaped like `waveform`, at its sample rate.
        """
        from svsgan_tf.separator import separate_array

        info = self.info()
        return separate_array(lambda audio: self.separate_waveform(audio, source), waveform, sample_rate,
                              info.sample_rate, info.min_samples, source)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.client",
        description="Separate audio files with a model served by TF Serving (gRPC).")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders (searched recursively)")
    parser.add_argument("--out", required=True, help="output folder: OUT/<name>/{vocals,accompaniment}.wav")
    parser.add_argument("--server", default=DEFAULT_SERVER, help=f"HOST:PORT of the gRPC server (default {DEFAULT_SERVER})")
    parser.add_argument("--model_name", required=True, help="the served model's name")
    parser.add_argument("--model_version", type=int, default=None, help="a specific version (default: the newest)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"deadline of each request in seconds (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--max_request_mb", type=float, default=DEFAULT_MAX_REQUEST_MB,
                        help=f"largest request in MiB; longer audio is split (default {DEFAULT_MAX_REQUEST_MB:g})")
    parser.add_argument("--crossfade_ms", type=float, default=DEFAULT_CROSSFADE_MS,
                        help=f"crossfade between requests of a long file (default {DEFAULT_CROSSFADE_MS:g})")
    parser.add_argument("--quiet", action="store_true", help="errors only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from svsgan_tf.separate import input_files, report, separate_files

    files = input_files(args.inputs)
    cli.start_tensorflow(quiet=True)
    with SeparationClient(args.server, args.model_name, args.model_version, args.timeout,
                          args.max_request_mb, args.crossfade_ms) as client:
        info = client.info()
        if not args.quiet:
            print(f"{args.server}: model {info.name}, {info.sample_rate} Hz", flush=True)
        errors = separate_files(client, files, args.out, args.quiet, fatal=(ServingError,))
    return report(files, errors, args.out)


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
