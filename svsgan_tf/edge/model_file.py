"""The svsgan_tf `.tflite` file: its metadata (the model's config and block layout), its op list, and
the LiteRT interpreter that runs it. NumPy and ai-edge-litert only (tf.lite as the fallback).

A converted model (python -m svsgan_tf.tflite) is one flatbuffer holding the mask network and, under the
metadata name METADATA_NAME, a JSON object:

    format          FORMAT
    config          the model's Config (STFT, sample rate, separation settings), as config.json holds it
    window_frames   W, the frames the network takes per call (None: any number, a frame-wise model)
    whole_song      true: one call sees all frames of the recording (a U-Net without segments; no streaming)
    step_frames     H, the new frames each call adds (None with window_frames None)
    first_frame     f0 <= 0, the first frame of call 0; call k sees frames [f0 + kH, f0 + kH + W)
                    (frames before 0 and after the end are silent)
    valid_offset    v: call k's masks of frames [f0 + kH + v, f0 + kH + v + H) are the model's
    states          shapes of the state tensors carried from call to call (an LSTM's h and c), [] if none
    outputs         the names of the network's outputs output_0, output_1, ... (mask, state_<i>)
    ops             the TFLite operators the network uses (builtin ones only)
    receptive_frames, frame_multiple   the generator's reach and grid (for chunked separation)
    quantize        none, float16, dynamic or int8
    source, git_commit, notice   where the weights came from, the commit, licence notices to keep

The network's signature "serving_default" takes `magnitude` (2, W, nb_bins) float32, the mixture STFT
magnitude of a stereo pair, and `state_<i>`; it returns `mask` (2, W, nb_bins), G's vocals mask before
the Separator's smoothing and power, and the new `state_<i>`.
"""
from __future__ import annotations

import json
import logging
import os

from svsgan_tf.errors import ConfigError

logger = logging.getLogger(__name__)

METADATA_NAME = "svsgan_tf"
FORMAT = "svsgan_tf-edge/1"
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
TFLITE_SUFFIX = ".tflite"
SIGNATURE = "serving_default"
MAGNITUDE_INPUT = "magnitude"
MASK_OUTPUT = "mask"
METADATA_KEYS = ("config", "window_frames", "step_frames", "first_frame", "valid_offset", "whole_song", "states",
                 "outputs", "receptive_frames", "frame_multiple")


def state_name(index: int) -> str:
    """The signature name of the index-th state tensor."""
    return f"state_{index}"


def is_tflite_path(path: str | None) -> bool:
    """True for a path that names a .tflite file (whether or not it exists)."""
    return bool(path) and str(path).lower().endswith(TFLITE_SUFFIX)


def _schema():
    """The flatbuffer schema module of the TFLite format (LiteRT's, else TensorFlow's)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def read_model_bytes(path: str) -> bytes:
    """The bytes of a .tflite file; ConfigError naming it when it is missing or not a TFLite model."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such .tflite file")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror or err})") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ConfigError(f"{path}: not a TFLite model (no TFL3 identifier)")
    return data


def _model(data: bytes, path: str):
    try:
        return _schema().Model.GetRootAs(data, 0)
    except Exception as err:                        # a damaged flatbuffer raises anything
        raise ConfigError(f"{path}: damaged TFLite model ({type(err).__name__})") from None


def read_metadata(path: str) -> dict:
    """The svsgan_tf metadata of a converted model (see the module docstring); ConfigError naming the
    file when it is not one."""
    data = read_model_bytes(path)
    model = _model(data, path)
    metadata = None
    try:
        for index in range(model.MetadataLength()):
            entry = model.Metadata(index)
            if entry.Name() and entry.Name().decode() == METADATA_NAME:
                raw = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
                metadata = json.loads(raw.decode("utf-8"))
                break
    except Exception as err:                        # a truncated flatbuffer raises struct.error and more
        raise ConfigError(f"{path}: damaged TFLite model or metadata ({type(err).__name__})") from None
    if metadata is None:
        raise ConfigError(f"{path}: a TFLite model but not one of svsgan_tf's (no '{METADATA_NAME}' "
                          "metadata; convert with python -m svsgan_tf.tflite)")
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else type(metadata).__name__
        raise ConfigError(f"{path}: metadata format {found!r}, this version reads {FORMAT!r}")
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise ConfigError(f"{path}: damaged svsgan_tf metadata (no {', '.join(missing)})")
    return metadata


def op_names(data: bytes, path: str = "<model>") -> list[str]:
    """The sorted operator names a TFLite model uses: builtin ones by name (CONV_2D), custom ones as
    CUSTOM:<name> (a Flex op of the Select TF ops delegate reads CUSTOM:Flex<Op>)."""
    schema = _schema()
    codes = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    model = _model(data, path)
    names = set()
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.add(f"CUSTOM:{(code.CustomCode() or b'?').decode()}")
        else:
            names.add(codes.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(names)


def non_builtin_ops(names: list[str]) -> list[str]:
    """The custom and Flex (Select TF) ops among `names` (see op_names)."""
    return [name for name in names if name.startswith("CUSTOM:")]


def interpreter_class():
    """(Interpreter class, origin): ai_edge_litert's, or tf.lite's where LiteRT is not installed (said
    once in the log)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        import tensorflow as tf
    except ImportError:
        raise ConfigError("no TFLite interpreter: pip install ai-edge-litert (or svsgan_tf[edge])") from None
    logger.warning("ai-edge-litert is not installed here; running the model with tf.lite.Interpreter")
    return tf.lite.Interpreter, "tf.lite"


def load_interpreter(path: str, threads: int | None = None):
    """A LiteRT interpreter of the .tflite file at `path`, tensors allocated; `threads` CPU threads
    (None: the interpreter's default)."""
    interpreter, _ = interpreter_class()
    try:
        result = interpreter(model_path=path, num_threads=threads)
        result.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise ConfigError(f"{path}: the TFLite interpreter cannot load it ({str(err).splitlines()[0]})") from None
    return result
