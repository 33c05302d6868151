"""`python -m serving.client --server HOST:PORT --model_name NAME INPUT... --out DIR`: separation over gRPC.

`SeparationClient` calls a TF Serving PredictionService (tensorflow_model_server or serving.server)
holding an svsgan_tf export (svsgan_tf/export/savedmodel.py): GetModelMetadata checks the signatures, the
`model_info` signature gives the sample rate and STFT settings, and `serving_default` separates.

Long audio is cut into requests below --max_request_mb and joined back with `svsgan_tf.separation.chunking`, on the
model's own chunk context (the export's `model_info` gives it, see Separator.chunk_context): the
joined result equals one-shot separation to float rounding for models with a bounded context; an LSTM
restarts each request a warm-up before the join.
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field

import numpy as np

from svsgan_tf import cli
from svsgan_tf.separation.chunking import DEFAULT_CROSSFADE_SECONDS, ChunkLayout, minimum_chunk
from svsgan_tf.config import TARGETS
from svsgan_tf.errors import AudioError, ServingError
from svsgan_tf.export.savedmodel import INFO_SIGNATURE, WAVEFORM_SIGNATURE
from svsgan_tf.separation.stream import WholeSeparation

logger = logging.getLogger(__name__)

DEFAULT_SERVER = "localhost:8500"
# below serving.server's 64 MB (TF Serving's own model server takes 2 GB); a stereo request of the
# default model needs 16 MB to hold its chunk context (a U-Net segment of 512 frames on each side)
DEFAULT_MAX_REQUEST_MB = 32.0
DEFAULT_CROSSFADE_MS = 1000 * DEFAULT_CROSSFADE_SECONDS
DEFAULT_TIMEOUT_S = 60.0
REQUEST_OVERHEAD_BYTES = 4096          # model spec, names and tensor header around the samples


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
    margin_samples: int | None = None      # the model's chunk context (Separator.chunk_context)
    align_samples: int | None = None


def _details(err) -> str:
    text = (err.details() or "").strip()
    return text.splitlines()[0] if text else err.code().name


class SeparationClient(WholeSeparation):
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
                config_json=values["config_json"].item().decode("utf-8"), signatures=signatures,
                margin_samples=int(values["margin_samples"]) if "margin_samples" in values else None,
                align_samples=int(values["align_samples"]) if "align_samples" in values else None)
        return self._info

    @property
    def sample_rate(self) -> int:
        """The served model's sample rate."""
        return self.info().sample_rate

    @property
    def min_samples(self) -> int:
        """Shortest waveform the served model accepts, at its rate."""
        return self.info().min_samples

    def chunk_context(self) -> tuple[int, int]:
        """(margin, align) at the model's rate, as the export's `model_info` states them (see
        Separator.chunk_context); ServingError for an export made before they were published."""
        info = self.info()
        if info.margin_samples is None or info.align_samples is None:
            raise ServingError(f"{self.server}: model {self.model_name!r}: its model_info gives no chunk context "
                               "(margin_samples); export it again with `python -m svsgan_tf.export`")
        return info.margin_samples, info.align_samples

    def chunk_layout(self, nb_channels: int) -> ChunkLayout:
        """How audio of `nb_channels` channels is cut into requests, at the model's rate: the longest
        request below --max_request_mb, with the model's context and a crossfade of --crossfade_ms."""
        info = self.info()
        margin, align = self.chunk_context()
        crossfade = max(align, int(round(self.crossfade_ms / 1000 * info.sample_rate / align)) * align)
        chunk = (self.max_request_bytes - REQUEST_OVERHEAD_BYTES) // (4 * nb_channels) // align * align
        if chunk < minimum_chunk(margin, crossfade, align):
            needed = (minimum_chunk(margin, crossfade, align) * 4 * nb_channels + REQUEST_OVERHEAD_BYTES) / 2 ** 20
            raise ServingError(f"--max_request_mb {self.max_request_bytes / 2 ** 20:g}: too small for "
                               f"{nb_channels}-channel audio with this model; use at least {needed:.3f}")
        return ChunkLayout(chunk=chunk, margin=margin, crossfade=crossfade, align=align)

    def separate_chunk(self, waveform: np.ndarray, source: str = "<array>") -> dict[str, np.ndarray]:
        """One Predict request: (nb_channels, nb_samples) float32 at the model's rate -> the stems."""
        waveform = np.ascontiguousarray(waveform, np.float32)
        result = self.predict(WAVEFORM_SIGNATURE, {"waveform": waveform}, source)
        for name in TARGETS:
            stem = result.get(name)
            if stem is None or stem.shape != waveform.shape:
                raise ServingError(f"{self.server}: model {self.model_name!r}: unexpected answer "
                                   f"(output {name!r} is {None if stem is None else stem.shape}, "
                                   f"expected {waveform.shape})")
        return result

    def separate_waveform(self, waveform: np.ndarray, source: str = "<array>") -> dict[str, np.ndarray]:
        """Separate audio at the model's rate, in as many requests as --max_request_mb needs.

        Args:
            waveform: (nb_channels, nb_samples) float32 at the model's sample rate.
        Returns:
            {"vocals", "accompaniment"}: (nb_channels, nb_samples) float32.
        """
        stems = self.separate(np.asarray(waveform, np.float32).T, self.sample_rate, source)
        return {name: np.ascontiguousarray(stem.T) for name, stem in stems.items()}


def build_parser() -> argparse.ArgumentParser:
    from svsgan_tf.separation.files import NAMING_RULE, add_existing_flags

    parser = argparse.ArgumentParser(epilog=NAMING_RULE,
                                     
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
    add_existing_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from svsgan_tf.separation.files import check_output_folder, plan_jobs, report, separate_files

    jobs = plan_jobs(args.inputs)
    check_output_folder(args.out)
    cli.start_tensorflow(quiet=True)
    with SeparationClient(args.server, args.model_name, args.model_version, args.timeout,
                          args.max_request_mb, args.crossfade_ms) as client:
        info = client.info()
        if not args.quiet:
            print(f"{args.server}: model {info.name}, {info.sample_rate} Hz", flush=True)
        errors = separate_files(client, jobs, args.out, args.quiet, fatal=(ServingError,),
                                overwrite=args.overwrite, skip_existing=args.skip_existing)
    return report(jobs, errors, args.out)


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
