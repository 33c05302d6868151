"""`python -m serving.server --port N --model_name NAME --model_base_path BASE`: TF Serving's gRPC API.

`tensorflow_model_server` has no PyPI or Debian package, so this is a stand-in written with grpcio that
speaks the same protocol for what svsgan_tf uses: PredictionService.Predict and GetModelMetadata, and
ModelService.GetModelStatus (Classify, Regress, MultiInference answer UNIMPLEMENTED). Like the real
server it serves the newest numeric version folder under each model base path. It loads each model once
and keeps its signatures (no reload, no retracing per request), checks every request against the
signature before allocating anything for it, and answers with these gRPC status codes:

    unknown model, version or version label                NOT_FOUND
    unknown signature                                      NOT_FOUND (the real server: FAILED_PRECONDITION)
    missing or extra input, wrong dtype, rank or shape,
    a tensor whose values do not fill its declared shape
    (more or fewer than it declares; no data at all),
    unknown output_filter name,
    bad values the graph rejects (too-short audio, NaN)    INVALID_ARGUMENT
    message over --max_message_mb, waveform over
    --max_channels or --max_samples                        RESOURCE_EXHAUSTED
    any other failure while running                        INTERNAL

With --enable_batching, concurrent serving_default requests of one waveform shape are separated
together, in one call of the export's separate_batch signature (serving/batching.py): a batch holds at
most --max_batch_size requests, waits at most --batch_timeout_micros for more, and keeps filling while
the run slots are busy; if the batch fails (a bad request in it), each of its requests is run alone.

Memory stays bounded: at most --max_concurrent_runs signatures run at once (a batch is one run that
holds up to --max_batch_size requests; requests waiting for a batch hold their parsed waveform); a
waveform longer than
--chunk_seconds is separated in chunks joined with svsgan_tf.separation.chunking (on the chunk context that the
export's model_info states; exports without it are separated in one piece), and freed heap memory is
handed back to the system after every TRIM_EVERY_BYTES of requests and responses (glibc malloc_trim).

It listens on 127.0.0.1 unless --host says otherwise (the real server listens on every interface).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import logging
import math
import os
import re
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from serving.batching import DEFAULT_BATCH_TIMEOUT_MICROS, DEFAULT_MAX_BATCH_SIZE, BatchQueue
from svsgan_tf import cli
from svsgan_tf.separation.chunking import DEFAULT_CHUNK_SECONDS, ChunkLayout, separate_in_chunks, separation_layout
from svsgan_tf.errors import ConfigError, first_line
from svsgan_tf.export.savedmodel import BATCH_SIGNATURE, INFO_SIGNATURE, WAVEFORM_SIGNATURE

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8500
DEFAULT_MAX_MESSAGE_MB = 64.0
DEFAULT_SIGNATURE = WAVEFORM_SIGNATURE
WAVEFORM_INPUT = "waveform"                   # the (nb_channels, nb_samples) input of WAVEFORM_SIGNATURE
BATCH_INPUT = "waveforms"                     # the (nb_songs, nb_channels, nb_samples) input of BATCH_SIGNATURE
DEFAULT_MAX_SAMPLES = 30 * 60 * 44100         # per channel: 30 minutes at 44.1 kHz
DEFAULT_MAX_CHANNELS = 8
DEFAULT_MAX_CONCURRENT_RUNS = 2
TRIM_EVERY_BYTES = 32 * 2 ** 20               # requests + responses handled between two malloc_trim calls
SERVE_TAG = "serve"
# the repeated field holding a TensorProto's values when it has no tensor_content (see tf.make_ndarray)
VALUE_FIELDS = {"float32": "float_val", "float64": "double_val", "int32": "int_val", "int16": "int_val",
                "int8": "int_val", "uint8": "int_val", "uint16": "int_val", "int64": "int64_val",
                "uint32": "uint32_val", "uint64": "uint64_val", "bool": "bool_val", "string": "string_val",
                "float16": "half_val", "bfloat16": "half_val", "complex64": "scomplex_val",
                "complex128": "dcomplex_val"}


class RequestError(Exception):
    """A request the server refuses: a grpc.StatusCode and a one-line message for the client."""

    def __init__(self, code, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What one request may declare, checked before anything is allocated for it.

    max_message_bytes: the largest request gRPC accepts (--max_message_mb); max_samples and
    max_channels: the largest (nb_channels, nb_samples) WAVEFORM_INPUT of WAVEFORM_SIGNATURE.
    """

    max_message_bytes: int = int(DEFAULT_MAX_MESSAGE_MB * 2 ** 20)
    max_samples: int = DEFAULT_MAX_SAMPLES
    max_channels: int = DEFAULT_MAX_CHANNELS


@dataclass
class Signature:
    """One callable signature of a loaded SavedModel.

    `function` is the loaded concrete function (called with keyword tensors, returns a dict);
    `inputs` and `outputs` map each alias to its tf.TensorSpec.
    """

    name: str
    function: Any
    inputs: dict
    outputs: dict


@dataclass
class Servable:
    """A loaded model version: its signatures and the SignatureDefs that GetModelMetadata returns."""

    name: str
    version: int
    path: str
    signatures: dict
    signature_defs: dict
    saved_model: Any            # the loaded object; holds the variables the functions read
    chunk_layout: ChunkLayout | None = None     # how WAVEFORM_SIGNATURE cuts long audio; None: never


def newest_version(base_path: str) -> tuple[int, str]:
    """(version, folder) of the newest numeric version under `base_path`; ConfigError if none."""
    from svsgan_tf.export.savedmodel import existing_versions

    if not os.path.isdir(base_path):
        raise ConfigError(f"{base_path}: model base path not found")
    versions = existing_versions(base_path)
    if not versions:
        raise ConfigError(f"{base_path}: no version folder (expected {base_path}/<number>/saved_model.pb)")
    return versions[-1], os.path.join(base_path, str(versions[-1]))


def load_servable(name: str, base_path: str, chunk_seconds: float = DEFAULT_CHUNK_SECONDS) -> Servable:
    """Load the newest version under `base_path` once, with its signatures and SignatureDefs, and the
    layout that cuts waveforms longer than `chunk_seconds` (see `waveform_chunk_layout`)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    version, path = newest_version(base_path)
    pb_path = os.path.join(path, "saved_model.pb")
    if not os.path.isfile(pb_path):
        raise ConfigError(f"{path}: not a SavedModel (no saved_model.pb)")
    try:
        loaded = tf.saved_model.load(path, tags=[SERVE_TAG])
        proto = saved_model_pb2.SavedModel()
        with open(pb_path, "rb") as handle:
            proto.ParseFromString(handle.read())
    except (OSError, ValueError, RuntimeError, tf.errors.OpError) as err:
        raise ConfigError(f"{path}: cannot load the SavedModel ({first_line(err)})") from None
    meta_graph = next((m for m in proto.meta_graphs if SERVE_TAG in m.meta_info_def.tags), proto.meta_graphs[0])
    signatures = {}
    for key, function in loaded.signatures.items():
        _, inputs = function.structured_input_signature
        signatures[key] = Signature(key, function, dict(inputs), dict(function.structured_outputs))
    signature_defs = {key: meta_graph.signature_def[key] for key in signatures if key in meta_graph.signature_def}
    layout = waveform_chunk_layout(signatures, chunk_seconds)
    logger.info("loaded model %s version %d from %s: signatures %s; %s", name, version, path,
                ", ".join(sorted(signatures)),
                f"waveforms longer than {layout.chunk} samples are separated in chunks" if layout
                else "waveforms are separated in one piece (model_info states no chunk context)")
    return Servable(name, version, path, signatures, signature_defs, loaded, layout)


def waveform_chunk_layout(signatures: dict, chunk_seconds: float) -> ChunkLayout | None:
    """How WAVEFORM_SIGNATURE cuts audio, at the model's rate: chunking.separation_layout on the
    `margin_samples` / `align_samples` that INFO_SIGNATURE states, as the Separator cuts it; None when
    the model has no such signatures or outputs (older exports)."""
    import tensorflow as tf

    if WAVEFORM_SIGNATURE not in signatures or INFO_SIGNATURE not in signatures:
        return None
    info = signatures[INFO_SIGNATURE]
    if not {"margin_samples", "align_samples", "sample_rate"} <= set(info.outputs):
        return None
    values = info.function(nb_samples=tf.constant(0, tf.int64))
    margin, align, rate = (int(values[key]) for key in ("margin_samples", "align_samples", "sample_rate"))
    return separation_layout(margin, align, rate, chunk_seconds).check()


def models_from_config_file(path: str) -> list[tuple[str, str]]:
    """(name, base_path) of each model in a TF Serving model_config_list text file."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read model config file ({err.strerror})") from None
    except text_format.ParseError as err:
        raise ConfigError(f"{path}: not a model_config_list text file ({err})") from None
    entries = [(c.name, c.base_path) for c in config.model_config_list.config]
    if not entries:
        raise ConfigError(f"{path}: no model in model_config_list")
    return entries


def _shape_text(dims) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def _dtype_name(enum: int) -> str:
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    try:
        return tf.dtypes.as_dtype(enum).name
    except TypeError:
        return types_pb2.DataType.Name(enum) if enum in types_pb2.DataType.values() else str(enum)


def graph_error_message(err) -> str:
    """The useful line of a TensorFlow error: the assertion's own text when an Assert op failed."""
    text = getattr(err, "message", str(err))
    found = re.search(r"assertion failed: \[(.*?)\]", text)
    if found:
        return found.group(1)
    noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(noise)]
    return (lines[0] if lines else type(err).__name__).split(" [[")[0].split("\t [[")[0]


def parse_inputs(signature: Signature, request, limits: Limits = Limits()) -> dict:
    """Check a PredictRequest's inputs against `signature`; return {alias: np.ndarray}.

    Raises RequestError, before any memory is allocated for a tensor: INVALID_ARGUMENT for a missing
    or extra input, a wrong dtype, rank or static dimension, or values that do not fill the declared
    shape exactly (see `check_payload`); RESOURCE_EXHAUSTED for a waveform over `limits`.
    """
    import grpc

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    sent, expected = set(request.inputs), set(signature.inputs)
    if sent != expected:
        raise RequestError(invalid, (
            f"input size does not match signature {signature.name!r}: sent {{{', '.join(sorted(sent))}}}, "
            f"expected {{{', '.join(sorted(expected))}}}; missing: {{{', '.join(sorted(expected - sent))}}}, "
            f"extra: {{{', '.join(sorted(sent - expected))}}}"))
    arrays = {}
    for alias in sorted(request.inputs):
        proto, spec = request.inputs[alias], signature.inputs[alias]
        where = f"input {alias!r} of signature {signature.name!r}"
        if proto.dtype != spec.dtype.as_datatype_enum:
            raise RequestError(invalid, f"{where}: expected dtype {spec.dtype.name}, got {_dtype_name(proto.dtype)}")
        wanted = spec.shape.as_list()
        if proto.tensor_shape.unknown_rank:
            raise RequestError(invalid, f"{where}: expected shape {_shape_text(wanted)}, got a tensor of unknown rank")
        dims = [d.size for d in proto.tensor_shape.dim]
        if (len(dims) != len(wanted) or any(d < 0 for d in dims)
                or any(w is not None and w != d for w, d in zip(wanted, dims))):
            raise RequestError(invalid, f"{where}: expected shape {_shape_text(wanted)}, got {_shape_text(dims)}")
        content = proto.tensor_content           # a copy at each access: read once
        check_payload(proto, content, dims, where)
        if signature.name == WAVEFORM_SIGNATURE and alias == WAVEFORM_INPUT and len(dims) == 2:
            check_waveform_limits(dims, limits, where)
        try:
            arrays[alias] = _to_array(proto, content, spec.dtype, dims)
        except (ValueError, TypeError) as err:
            raise RequestError(invalid, f"{where}: tensor parsing error ({first_line(err)})") from None
    return arrays


def check_payload(proto, content: bytes, dims: list[int], where: str) -> None:
    """INVALID_ARGUMENT unless the TensorProto `proto` (its `tensor_content` given as `content`) carries
    exactly the prod(dims) values its shape declares, in tensor_content or in its dtype's repeated field
    (float_val, ...), not both; a scalar may carry none (TensorFlow reads it as 0). tf.make_ndarray
    would fill any shortfall with zeros or with copies of the last value, a 40-byte request becoming
    gigabytes: refused instead, before anything is allocated."""
    import grpc
    import tensorflow as tf

    def refuse(carried: str):
        return RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                            f"{where}: declared shape {_shape_text(dims)}, {declared} {dtype} values, "
                            f"but the tensor carries {carried}")

    declared = math.prod(dims)
    dtype = _dtype_name(proto.dtype)
    field = VALUE_FIELDS.get(dtype)
    if field is None:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{where}: dtype {dtype} is not supported")
    present = {f.name: len(values) for f, values in proto.ListFields() if f.name.endswith("_val")}
    if set(present) - {field}:
        raise refuse(f"values in {', '.join(sorted(present))} (a {dtype} tensor has them in tensor_content "
                     f"or {field})")
    if content and present:
        raise refuse(f"values in both tensor_content and {field}")
    if content:
        if field == "string_val":
            raise refuse("tensor_content (a string tensor has its values in string_val)")
        item_bytes = tf.dtypes.as_dtype(proto.dtype).size
        if len(content) != declared * item_bytes:
            raise refuse(f"{len(content)} bytes of tensor_content, {declared * item_bytes} expected")
        return
    per_value = 2 if field in ("scomplex_val", "dcomplex_val") else 1      # real and imaginary parts
    carried = present.get(field, 0)
    if carried != declared * per_value and not (not dims and carried == 0):
        raise refuse(f"{carried} in {field} and no tensor_content" if carried
                     else f"no values (empty tensor_content and {field})")


def check_waveform_limits(dims: list[int], limits: Limits, where: str) -> None:
    """RESOURCE_EXHAUSTED for a (nb_channels, nb_samples) waveform over `limits`."""
    import grpc

    nb_channels, nb_samples = dims
    if nb_channels > limits.max_channels:
        raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"{where}: {nb_channels} channels, more than this server's limit of "
                           f"{limits.max_channels} (--max_channels)")
    if nb_samples > limits.max_samples:
        raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"{where}: {nb_samples} samples per channel, more than this server's limit of "
                           f"{limits.max_samples} (--max_samples)")


def _to_array(proto, content: bytes, dtype, dims: list[int]):
    """The array of a TensorProto that passed `check_payload`; a read-only view of its `tensor_content`,
    `content`, when it has one (no copy)."""
    import numpy as np
    import tensorflow as tf

    if not content or dtype == tf.string:
        return tf.make_ndarray(proto)
    return np.frombuffer(content, dtype.as_numpy_dtype).reshape(dims)


def _fill_tensor(target, value) -> None:
    """Write a NumPy array into the TensorProto `target` (tensor_content for numbers, like
    tf.make_tensor_proto, without building and copying a second proto)."""
    import numpy as np
    import tensorflow as tf

    value = np.asarray(value)
    if value.dtype.kind in "OSU":
        target.CopyFrom(tf.make_tensor_proto(value))
        return
    target.dtype = tf.as_dtype(value.dtype).as_datatype_enum
    for size in value.shape:
        target.tensor_shape.dim.add(size=size)
    target.tensor_content = np.ascontiguousarray(value).tobytes()


def output_names(signature: Signature, output_filter) -> list[str]:
    """The outputs a request asks for (all of them for an empty output_filter); INVALID_ARGUMENT for an
    unknown or repeated name."""
    import grpc

    names = list(output_filter) or sorted(signature.outputs)
    for name in names:
        if name not in signature.outputs:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"output tensor alias not found in signature {signature.name!r}: {name}; "
                               f"outputs are {{{', '.join(sorted(signature.outputs))}}}")
    if len(set(names)) != len(names):
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias in output_filter")
    return names


def call_signature(signature: Signature, arrays: dict, names: list[str]) -> dict:
    """One call of `signature` on checked inputs: {alias: np.ndarray} -> {name: np.ndarray} for `names`;
    TensorFlow's errors become RequestError."""
    import grpc
    import numpy as np
    import tensorflow as tf

    try:
        outputs = signature.function(**{alias: tf.constant(value) for alias, value in arrays.items()})
        # np.asarray: a read-only view of each tensor's buffer (Tensor.numpy() would copy it)
        return {name: np.asarray(outputs[name]) for name in names}
    except tf.errors.InvalidArgumentError as err:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, graph_error_message(err)) from None
    except tf.errors.ResourceExhaustedError as err:
        raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, graph_error_message(err)) from None
    except tf.errors.OpError as err:
        logger.error("signature %s failed: %s", signature.name, err)
        raise RequestError(grpc.StatusCode.INTERNAL, graph_error_message(err)) from None


def run_signature(signature: Signature, arrays: dict, output_filter, layout: ChunkLayout | None = None,
                  is_active=None) -> dict:
    """Run `signature` on checked inputs; return {alias: np.ndarray} for the requested outputs.

    A WAVEFORM_SIGNATURE waveform longer than `layout.chunk` is separated chunk by chunk (see
    `run_in_chunks`); `is_active()` false between two chunks (the client is gone) stops with CANCELLED.
    """
    names = output_names(signature, output_filter)
    waveform = arrays.get(WAVEFORM_INPUT)
    if (layout is None or signature.name != WAVEFORM_SIGNATURE or len(arrays) != 1 or waveform is None
            or waveform.shape[1] <= layout.chunk):
        return call_signature(signature, arrays, names)
    return run_in_chunks(signature, waveform, names, layout, is_active)


def run_in_chunks(signature: Signature, waveform, names: list[str], layout: ChunkLayout, is_active=None) -> dict:
    """Separate a long waveform in the chunks of `layout.plan`, joined by chunking.separate_in_chunks.

    Args:
        waveform: (nb_channels, nb_samples) float32.
        names: outputs to return, each (nb_channels, nb_samples) float32 (the stems).
    Returns:
        {name: (nb_channels, nb_samples) float32}; equal to one call on the whole waveform to float
        rounding when `layout` holds the model's chunk context. Memory beyond the input and the
        outputs is that of one chunk.
    """
    import grpc
    import numpy as np

    nb_channels, nb_samples = waveform.shape

    def separate(start: int, stop: int) -> dict:
        if is_active is not None:
            check_active(is_active)
        outputs = call_signature(signature, {WAVEFORM_INPUT: waveform[:, start:stop]}, names)
        for name in names:
            if outputs[name].shape != (nb_channels, stop - start):
                raise RequestError(grpc.StatusCode.INTERNAL,
                                   f"output {name!r} of signature {signature.name!r} is "
                                   f"{_shape_text(outputs[name].shape)} for a chunk of "
                                   f"{_shape_text((nb_channels, stop - start))}: it cannot be separated in chunks")
        return {name: outputs[name].T for name in names}               # (stop - start, nb_channels)

    stems = {name: np.empty((nb_channels, nb_samples), np.float32) for name in names}
    done = 0
    for blocks in separate_in_chunks(layout, nb_samples, separate, names):
        for name, block in blocks.items():
            stems[name][:, done:done + block.shape[0]] = block.T
        done += block.shape[0]
    logger.info("%s: %d channels x %d samples separated in %d chunks of at most %d samples",
                signature.name, nb_channels, nb_samples, len(layout.plan(nb_samples)), layout.chunk)
    return stems


def check_active(is_active) -> None:
    """CANCELLED unless `is_active()` (the RPC's client is still waiting for the answer)."""
    import grpc

    if not is_active():
        raise RequestError(grpc.StatusCode.CANCELLED, "the client cancelled or its deadline passed")


def batchable(servable: Servable, signature: Signature, request) -> bool:
    """Whether a PredictRequest can join a batch, told from what it declares (before parsing it): a
    WAVEFORM_SIGNATURE request of one (nb_channels, nb_samples) waveform that is separated in one piece,
    to an export that has BATCH_SIGNATURE (exports made before it have not). Parsing then checks that
    the values fill that shape."""
    if (signature.name != WAVEFORM_SIGNATURE or BATCH_SIGNATURE not in servable.signatures
            or set(request.inputs) != {WAVEFORM_INPUT}):
        return False
    shape = request.inputs[WAVEFORM_INPUT].tensor_shape
    dims = [d.size for d in shape.dim]
    return (not shape.unknown_rank and len(dims) == 2
            and (servable.chunk_layout is None or dims[1] <= servable.chunk_layout.chunk))


def run_batched(queue: BatchQueue, servable: Servable, waveform) -> dict:
    """Separate a (nb_channels, nb_samples) waveform in a batch of the concurrent requests of its shape;
    returns every output of WAVEFORM_SIGNATURE, {name: (nb_channels, nb_samples)}."""
    import numpy as np

    batch_signature, signature = servable.signatures[BATCH_SIGNATURE], servable.signatures[WAVEFORM_SIGNATURE]
    names = sorted(signature.outputs)

    def run_batch(waveforms: list) -> list:
        stacked = np.stack(waveforms)                           # (nb_songs, nb_channels, nb_samples)
        outputs = call_signature(batch_signature, {BATCH_INPUT: stacked}, names)
        return [{name: outputs[name][i] for name in names} for i in range(len(waveforms))]

    def run_one(item) -> dict:
        return call_signature(signature, {WAVEFORM_INPUT: item}, names)

    key = (servable.name, servable.version, waveform.shape)
    return queue.submit(key, waveform, run_batch, run_one)


@functools.lru_cache(maxsize=None)
def _malloc_trim():
    """glibc's malloc_trim(size_t pad), or None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_memory() -> bool:
    """Hand the heap memory that is free back to the system (glibc `malloc_trim(0)`: TensorFlow's and
    protobuf's large buffers otherwise stay in the process once freed); False where unavailable."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def _find_servable(servables: dict, model_spec) -> Servable:
    import grpc

    servable = servables.get(model_spec.name)
    if servable is None:
        raise RequestError(grpc.StatusCode.NOT_FOUND,
                           f"Servable not found for request: Latest({model_spec.name}); "
                           f"this server serves {', '.join(sorted(servables))}")
    if model_spec.HasField("version") and model_spec.version.value != servable.version:
        raise RequestError(grpc.StatusCode.NOT_FOUND,
                           f"Servable not found for request: Specific({model_spec.name}, {model_spec.version.value}); "
                           f"loaded version: {servable.version}")
    if model_spec.version_label:
        raise RequestError(grpc.StatusCode.NOT_FOUND,
                           f"version label {model_spec.version_label!r} of model {model_spec.name} is not defined "
                           "(this server assigns no labels)")
    return servable


def _fill_model_spec(target, servable: Servable, signature_name: str | None = None) -> None:
    target.name = servable.name
    target.version.value = servable.version
    if signature_name is not None:
        target.signature_name = signature_name


def _respond(context, handler, what: str):
    """Run `handler()`; abort the RPC with the status of a RequestError (or INTERNAL), else return."""
    import grpc

    try:
        return handler()
    except RequestError as err:
        error = err
    except Exception as err:  # noqa: BLE001  (any bug becomes INTERNAL, the server keeps serving)
        logger.exception("%s failed", what)
        error = RequestError(grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {first_line(err)}")
    logger.info("%s: %s: %s", what, error.code.name, error.message)
    context.abort(error.code, error.message)


def make_servicers(servables: dict, limits: Limits = Limits(),
                   max_concurrent_runs: int | None = DEFAULT_MAX_CONCURRENT_RUNS, batching: BatchQueue | None = None):
    """(PredictionServiceServicer, ModelServiceServicer) over the loaded `servables`.

    Requests are checked against `limits` before anything is allocated for them. At most
    `max_concurrent_runs` signatures run at once (None: no limit); further requests wait their turn,
    holding only their message. More parallel runs than cores only share the same cores, while each run
    holds its inputs, spectrograms and outputs in memory: the limit bounds memory (on 2 cores, 8
    clients got no fewer requests per second with a limit of 2 than without one). After every
    TRIM_EVERY_BYTES of requests and responses, `release_memory` runs once the RPC is over.

    With `batching`, requests that can join a batch (`batchable`) are separated in batches of their
    shape (`run_batched`); a batch takes one of the `max_concurrent_runs` slots.
    """
    import grpc
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                         predict_pb2, prediction_service_pb2_grpc)

    runs = threading.BoundedSemaphore(max_concurrent_runs) if max_concurrent_runs else contextlib.nullcontext()
    if batching is not None:
        batching.slots = runs
    handled = {"bytes": 0}                  # since the last release_memory
    handled_lock = threading.Lock()

    def count_bytes(context, nb_bytes: int) -> None:
        with handled_lock:
            handled["bytes"] += nb_bytes
            due = handled["bytes"] >= TRIM_EVERY_BYTES
            if due:
                handled["bytes"] = 0
        if due:
            context.add_callback(release_memory)

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        """Predict and GetModelMetadata over the loaded servables."""

        def Predict(self, request, context):  # noqa: N802  (gRPC method name)
            def handle():
                servable = _find_servable(servables, request.model_spec)
                name = request.model_spec.signature_name or DEFAULT_SIGNATURE
                signature = servable.signatures.get(name)
                if signature is None:
                    raise RequestError(grpc.StatusCode.NOT_FOUND,
                                       f"Serving signature key \"{name}\" not found; model {servable.name} has "
                                       f"{', '.join(sorted(servable.signatures))}")
                try:
                    if batching is not None and batchable(servable, signature, request):
                        outputs = self.batched(servable, signature, request, context)
                    else:
                        with runs:
                            outputs = self.run(servable, signature, request, context)
                finally:
                    count_bytes(context, request.ByteSize())         # refused or failed requests too
                response = predict_pb2.PredictResponse()
                _fill_model_spec(response.model_spec, servable, name)
                for alias in list(outputs):
                    value = outputs.pop(alias)           # each array freed once copied into the response
                    _fill_tensor(response.outputs[alias], value)
                    del value
                count_bytes(context, response.ByteSize())
                return response

            return _respond(context, handle, f"Predict({request.model_spec.name})")

        @staticmethod
        def run(servable, signature, request, context) -> dict:
            """The requested outputs of one call of `signature` (chunked when long)."""
            check_active(context.is_active)
            arrays = parse_inputs(signature, request, limits)
            return run_signature(signature, arrays, request.output_filter, servable.chunk_layout, context.is_active)

        @staticmethod
        def batched(servable, signature, request, context) -> dict:
            """The requested outputs of a `batchable` request, separated in a batch of its shape; it is
            parsed outside the run slots, so that requests join a batch while the model is busy."""
            arrays = parse_inputs(signature, request, limits)
            names = output_names(signature, request.output_filter)
            check_active(context.is_active)
            outputs = run_batched(batching, servable, arrays.pop(WAVEFORM_INPUT))
            return {name: outputs[name] for name in names}

        def GetModelMetadata(self, request, context):  # noqa: N802
            def handle():
                servable = _find_servable(servables, request.model_spec)
                if not request.metadata_field:
                    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                       "GetModelMetadataRequest must specify at least one metadata_field")
                for field in request.metadata_field:
                    if field != "signature_def":
                        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                           f"Metadata field {field} is not supported (only signature_def)")
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                _fill_model_spec(response.model_spec, servable)
                signature_map = get_model_metadata_pb2.SignatureDefMap()
                for key, signature_def in servable.signature_defs.items():
                    signature_map.signature_def[key].CopyFrom(signature_def)
                response.metadata["signature_def"].Pack(signature_map)
                return response

            return _respond(context, handle, f"GetModelMetadata({request.model_spec.name})")

    class ModelService(model_service_pb2_grpc.ModelServiceServicer):
        """GetModelStatus: each loaded model has one version, AVAILABLE."""

        def GetModelStatus(self, request, context):  # noqa: N802
            def handle():
                servable = _find_servable(servables, request.model_spec)
                response = get_model_status_pb2.GetModelStatusResponse()
                status = response.model_version_status.add()
                status.version = servable.version
                status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
                return response

            return _respond(context, handle, f"GetModelStatus({request.model_spec.name})")

    return PredictionService(), ModelService()


def build_server(servables: dict, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 limits: Limits = Limits(), max_threads: int = 16,
                 max_concurrent_runs: int | None = DEFAULT_MAX_CONCURRENT_RUNS, batching: BatchQueue | None = None):
    """A grpc.Server for `servables`, not started yet; returns (server, bound port).

    Requests larger than `limits.max_message_bytes` are refused by gRPC with RESOURCE_EXHAUSTED;
    responses are not limited (the real server allows 2 GiB both ways). SO_REUSEPORT is off, so a port
    in use is an error instead of a second server silently sharing it. `batching`: see make_servicers.
    """
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="grpc"),
        options=[("grpc.max_receive_message_length", limits.max_message_bytes),
                 ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)])
    prediction, model = make_servicers(servables, limits, max_concurrent_runs, batching)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(model, server)
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise ConfigError(f"{address}: cannot listen (port in use, or an address of no local interface)")
    return server, bound


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.server",
        description="Serve SavedModels over TF Serving's gRPC API (Predict, GetModelMetadata, GetModelStatus).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"gRPC port (default {DEFAULT_PORT}; 0: any free port)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 for every interface)")
    parser.add_argument("--model_name", default="default", help="name clients use in model_spec.name (default: default)")
    parser.add_argument("--model_base_path", default=None,
                        help="folder of numbered versions, BASE/<version>/saved_model.pb; the newest is served")
    parser.add_argument("--model_config_file", default=None,
                        help="a TF Serving model_config_list text file (instead of --model_name/--model_base_path)")
    parser.add_argument("--max_message_mb", type=float, default=DEFAULT_MAX_MESSAGE_MB,
                        help=f"largest request accepted, in MiB (default {DEFAULT_MAX_MESSAGE_MB:g}); "
                             "larger ones get RESOURCE_EXHAUSTED")
    parser.add_argument("--grpc_max_threads", type=int, default=16,
                        help="threads answering requests (default 16)")
    parser.add_argument("--max_concurrent_runs", type=int, default=DEFAULT_MAX_CONCURRENT_RUNS,
                        help=f"signatures running at once; other requests wait (default {DEFAULT_MAX_CONCURRENT_RUNS}; "
                             "0: no limit)")
    parser.add_argument("--max_samples", type=int, default=DEFAULT_MAX_SAMPLES,
                        help=f"longest waveform accepted, in samples per channel (default {DEFAULT_MAX_SAMPLES}, "
                             "30 minutes at 44.1 kHz); longer ones get RESOURCE_EXHAUSTED")
    parser.add_argument("--max_channels", type=int, default=DEFAULT_MAX_CHANNELS,
                        help=f"most waveform channels accepted (default {DEFAULT_MAX_CHANNELS}); "
                             "more get RESOURCE_EXHAUSTED")
    parser.add_argument("--chunk_seconds", type=float, default=DEFAULT_CHUNK_SECONDS,
                        help=f"longer waveforms are separated in chunks of about this length, joined "
                             f"without seams (default {DEFAULT_CHUNK_SECONDS:g}); bounds memory per request")
    parser.add_argument("--enable_batching", action="store_true",
                        help="separate concurrent serving_default requests of one waveform shape together, "
                             "in one call of the separate_batch signature")
    parser.add_argument("--max_batch_size", type=int, default=DEFAULT_MAX_BATCH_SIZE,
                        help=f"with --enable_batching, the most requests in one batch (default {DEFAULT_MAX_BATCH_SIZE})")
    parser.add_argument("--batch_timeout_micros", type=int, default=DEFAULT_BATCH_TIMEOUT_MICROS,
                        help="with --enable_batching, how long a batch waits for more requests before it "
                             f"runs, in microseconds (default {DEFAULT_BATCH_TIMEOUT_MICROS})")
    parser.add_argument("--quiet", action="store_true", help="warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.model_base_path is None) == (args.model_config_file is None):
        raise ConfigError("give either --model_base_path (with --model_name) or --model_config_file")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: must be in 0..65535")
    if args.max_message_mb <= 0:
        raise ConfigError(f"--max_message_mb {args.max_message_mb:g}: must be > 0")
    if args.grpc_max_threads < 1:
        raise ConfigError(f"--grpc_max_threads {args.grpc_max_threads}: must be >= 1")
    if args.max_concurrent_runs < 0:
        raise ConfigError(f"--max_concurrent_runs {args.max_concurrent_runs}: must be >= 0")
    for flag, value in (("--max_samples", args.max_samples), ("--max_channels", args.max_channels),
                        ("--chunk_seconds", args.chunk_seconds), ("--max_batch_size", args.max_batch_size)):
        if value <= 0:
            raise ConfigError(f"{flag} {value:g}: must be > 0")
    if args.batch_timeout_micros < 0:
        raise ConfigError(f"--batch_timeout_micros {args.batch_timeout_micros}: must be >= 0")
    entries = ([(args.model_name, args.model_base_path)] if args.model_base_path is not None
               else models_from_config_file(args.model_config_file))
    for _, base_path in entries:
        newest_version(base_path)                    # fail fast, before TensorFlow starts
    cli.start_tensorflow(args.quiet)
    servables = {name: load_servable(name, base_path, args.chunk_seconds) for name, base_path in entries}
    limits = Limits(int(args.max_message_mb * 2 ** 20), args.max_samples, args.max_channels)
    batching = BatchQueue(args.max_batch_size, args.batch_timeout_micros / 1e6) if args.enable_batching else None
    server, port = build_server(servables, args.host, args.port, limits, args.grpc_max_threads,
                                args.max_concurrent_runs or None, batching)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    for servable in servables.values():
        print(f"serving model {servable.name} version {servable.version} from {servable.path} "
              f"on {args.host}:{port}", flush=True)
    while not stop.wait(0.5):
        pass
    logger.info("stopping")
    server.stop(grace=2).wait()
    return 0


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
