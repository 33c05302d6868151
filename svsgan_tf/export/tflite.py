"""Convert a model to a `.tflite` file of builtin ops only, for LiteRT on phones and small boards (the
command: `python -m svsgan_tf.tflite`; the file format: svsgan_tf/edge/model_file.py).

What is converted is G's mask network for a stereo pair of magnitude frames, as `Separator.generator_mask`
computes it (joint stereo, channel swap averaging, ensembles); the STFT, the inverse STFT, the mask
smoothing and power stay on the host in NumPy (svsgan_tf/edge/runner.py): TFLite has no builtin
inverse FFT, and a complex magnitude does not quantize to int8 (tensorflow#55349).

The route is one that works with TF 2.16 and Keras 3: `from_keras_model` fails on subclassed Keras 3
models (tensorflow#63987, #69237) and `from_saved_model` on their variables ("missing attribute 'value'",
tensorflow#65012), so a fixed-shape tf.function is frozen (`convert_variables_to_constants_v2`) and
converted with `TFLiteConverter.from_concrete_functions`, TFLITE_BUILTINS only.
Per generator, the frames of one call (see edge/model_file.py for the layout fields):

- encoder: frame-wise, any number of frames per call (the runner chooses: 64 for files, 1 live);
- rnn (unidirectional): one frame per call, the LSTM written as its cell equations with h and c as
  explicit inputs and outputs (a Keras 3 LSTM converts to a WHILE loop, tensorflow#62775, #73254);
- unet with segments (Spleeter's): one segment per call, the first starting one frame before frame 0;
- unet without segments: the whole recording (a chunk of it) in one call: it cannot stream;
- ensembles: their members' layout, when they agree (an LSTM beside a U-Net does not).
"""
from __future__ import annotations

import json
import logging
import os
import re

import numpy as np

from svsgan_tf.edge.model_file import (FORMAT, MAGNITUDE_INPUT, MASK_OUTPUT, METADATA_NAME, QUANTIZATIONS, SIGNATURE,
                                       non_builtin_ops, op_names, state_name)
from svsgan_tf.errors import ConfigError

logger = logging.getLogger(__name__)

CALIBRATION_WINDOWS = 64           # most network inputs an int8 calibration sees
CALIBRATION_FRAMES = 64            # frames per calibration window of a frame-wise model


def _kinds(generator) -> list:
    """[(kind, member)] of a generator or an ensemble's members: kind is framewise, recurrent,
    segments or context."""
    from svsgan_tf.models.generator import EnsembleGenerator, RNNGenerator, UNetGenerator

    members = generator.members if isinstance(generator, EnsembleGenerator) else [generator]
    kinds = []
    for member in members:
        if isinstance(member, RNNGenerator):
            if member.bidirectional:
                raise ConfigError("a bidirectional LSTM needs the whole song at once; the edge runner "
                                  "separates block by block (convert a unidirectional rnn)")
            kinds.append(("recurrent", member))
        elif isinstance(member, UNetGenerator):
            kinds.append(("segments" if member.segment_frames else "context", member))
        else:
            kinds.append(("framewise", member))
    return kinds


def edge_layout(generator, config) -> dict:
    """The block layout fields of the metadata (svsgan_tf/edge/model_file.py) for `generator`."""
    kinds = _kinds(generator)
    names = {kind for kind, _ in kinds}
    if "recurrent" in names and names & {"segments", "context"}:
        raise ConfigError("an ensemble of an LSTM and a U-Net cannot run block by block (the LSTM needs "
                          "consecutive single frames, the U-Net windows)")
    if "segments" in names and "context" in names:
        raise ConfigError("an ensemble of U-Nets with and without segments has no common block layout")
    states = []
    if "recurrent" in names:
        batch = 2 if config.model.nb_channels == 1 or config.model.swap_average else 1
        for kind, member in kinds:
            if kind == "recurrent":
                states += [[batch, member.lstm_units], [batch, member.lstm_units]]
        window = dict(window_frames=1, step_frames=1, first_frame=0, valid_offset=0)
    elif "segments" in names:
        segments = {member.segment_frames for kind, member in kinds if kind == "segments"}
        if len(segments) != 1:
            raise ConfigError(f"an ensemble of U-Nets with different segments {sorted(segments)}")
        segment = segments.pop()
        from svsgan_tf.models.generator import SEGMENT_LEAD_FRAMES

        window = dict(window_frames=segment, step_frames=segment, first_frame=-SEGMENT_LEAD_FRAMES,
                      valid_offset=0)
    elif "context" in names:
        # its convolutions pad the song's ends with zeros after compression, which no window of silent
        # frames reproduces: it sees the whole recording (a chunk of it) in one call, as the Separator does
        window = dict(window_frames=None, step_frames=None, first_frame=0, valid_offset=0, whole_song=True)
    else:
        window = dict(window_frames=None, step_frames=None, first_frame=0, valid_offset=0)
    return {"whole_song": False, **window, "states": states, "receptive_frames": generator.receptive_frames,
            "frame_multiple": generator.frame_multiple}


def _lstm_steps(lstm, inputs, h, c):
    """A Keras LSTM (activation tanh, recurrent activation sigmoid, gates i, f, c, o) over
    (batch, nb_frames, units_in) from state (h, c), unrolled with builtin ops: -> (sequence, h, c)."""
    import tensorflow as tf

    cell = lstm.cell
    nb_frames = inputs.shape[1]
    # (batch, nb_frames, units_in) -> (batch * nb_frames, units_in) -> (batch, nb_frames, 4 * units)
    projected = tf.reshape(tf.matmul(tf.reshape(inputs, [-1, inputs.shape[-1]]), cell.kernel) + cell.bias,
                           [-1, nb_frames, 4 * cell.units])
    outputs = []
    for t in range(nb_frames):
        gates = projected[:, t] + tf.matmul(h, cell.recurrent_kernel)       # (batch, 4 * units)
        i, f, g, o = tf.split(gates, 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        outputs.append(h)
    return tf.stack(outputs, axis=1), h, c


def _block_call(generator, frames, states_in: list, states_out: list):
    """G's mask of one block: (batch, W, nb_features) -> (batch, W, nb_features); an LSTM takes its
    (h, c) from `states_in` (in order) and appends the new ones to `states_out`."""
    import tensorflow as tf

    from svsgan_tf.models.generator import EnsembleGenerator, RNNGenerator, UNetGenerator

    if isinstance(generator, EnsembleGenerator):
        masks = [_block_call(member, frames, states_in, states_out) for member in generator.members]
        return tf.add_n(masks) / len(masks)
    if isinstance(generator, RNNGenerator):
        h, c = states_in.pop(0), states_in.pop(0)
        hidden = generator.encode(frames)                          # (batch, W, encoder_units[-1])
        sequence, h, c = _lstm_steps(generator.lstm, hidden, h, c)  # (batch, W, lstm_units)
        states_out += [h, c]
        return generator.decode(sequence)
    if isinstance(generator, UNetGenerator) and generator.segment_frames:
        return generator.segment_mask(frames)
    return generator(frames, training=False)


def build_edge_module(separator, layout: dict):
    """A tf.Module whose `network` is the converted function: magnitude (2, W, nb_bins) [+ states] ->
    {"mask": (2, W, nb_bins), "state_<i>": ...}, as `Separator.generator_mask` of a stereo pair."""
    import tensorflow as tf

    config = separator.config
    nb_bins = config.stft.nb_bins
    specs = [tf.TensorSpec([2, layout["window_frames"], nb_bins], tf.float32, name=MAGNITUDE_INPUT)]
    specs += [tf.TensorSpec(shape, tf.float32, name=state_name(i)) for i, shape in enumerate(layout["states"])]

    def network(magnitude, *states):
        states_in, states_out = list(states), []

        def call(frames, power=1.0):
            # the edge runner raises the mask to separation.mask_power itself: the network's power is 1
            assert power == 1.0, power
            return _block_call(separator.generator, frames, states_in, states_out)

        if separator.generator.nb_channels == 1:
            mask = call(magnitude)                    # the pair's channels as the batch
        else:
            mask = separator.joint_stereo_mask(magnitude, call)
        return {MASK_OUTPUT: mask, **{state_name(i): s for i, s in enumerate(states_out)}}

    module = tf.Module(name="svsgan_edge")
    module.separator = separator
    module.network = tf.function(network, input_signature=specs)
    return module


def calibration_audio(paths: list[str] | None) -> list[tuple[np.ndarray, int]]:
    """[(waveform (nb_samples, nb_channels), sample_rate)] of the calibration files, or of the stempeg
    example song's mixture when `paths` is empty; ConfigError naming a file that cannot be read."""
    from svsgan_tf.audio.io import load_audio
    from svsgan_tf.errors import SVSGANError

    if not paths:
        from svsgan_tf.demo import example_track

        with example_track() as track:
            return [(track.load()["mixture"], track.sample_rate)]
    audio = []
    for path in paths:
        try:
            audio.append(load_audio(path))
        except SVSGANError as err:
            raise ConfigError(f"--calibration: {err}") from None
    return audio


def calibration_windows(audio: list[tuple[np.ndarray, int]], config, layout: dict,
                        limit: int = CALIBRATION_WINDOWS) -> list[list[np.ndarray]]:
    """Network inputs from real audio for int8 calibration: [magnitude, *states] with (2, W, nb_bins)
    magnitude windows of each recording (stereo; mono doubled), W as in `layout` (CALIBRATION_FRAMES for
    a frame-wise model), and zero states; at most `limit`, chosen with a fixed seed."""
    from svsgan_tf.audio.io import resample
    from svsgan_tf.edge.runner import stft_magnitude

    n_fft, hop, rate = config.stft.n_fft, config.separation_stft.hop_length, config.stft.sample_rate
    frames_per_window = layout["window_frames"] or CALIBRATION_FRAMES
    windows = []
    for waveform, sample_rate in audio:
        waveform = resample(np.asarray(waveform, np.float32), sample_rate, rate)
        waveform = np.repeat(waveform, 2, axis=1) if waveform.shape[1] == 1 else waveform[:, :2]
        magnitude = stft_magnitude(waveform, n_fft, hop)                     # (2, nb_frames, nb_bins)
        for start in range(0, magnitude.shape[1], frames_per_window):
            window = magnitude[:, start:start + frames_per_window]
            windows.append(np.pad(window, [(0, 0), (0, frames_per_window - window.shape[1]), (0, 0)]))
    if len(windows) > limit:
        chosen = np.random.default_rng(0).choice(len(windows), limit, replace=False)
        windows = [windows[i] for i in sorted(chosen)]
    states = [np.zeros(shape, np.float32) for shape in layout["states"]]
    return [[window, *states] for window in windows]


def _converter_error(err: Exception) -> ConfigError:
    """A one-line ConfigError naming the ops the converter could not express with builtin ops."""
    text = str(err)
    ops = sorted(set(re.findall(r"'?(tf\.[A-Za-z0-9_]+)'?", text)))
    if ops:
        return ConfigError(f"the model needs ops that are not TFLite builtins: {', '.join(ops)} "
                           "(this converter never enables Select TF ops or custom ops)")
    first = next((line for line in text.splitlines() if "error" in line.lower()), text.splitlines()[0] if text else "")
    return ConfigError(f"the TFLite converter failed: {first.strip()[:300]}")


def convert(separator, quantize: str = "none", calibration: list[str] | None = None) -> tuple[bytes, dict]:
    """The .tflite bytes of `separator`'s mask network and its layout (see build_edge_module).

    Args:
        quantize: none (float32), float16 (weights), dynamic (int8 weights, float activations) or int8
            (weights and activations, calibrated on `calibration` audio files; input and output stay float32).
    Raises:
        ConfigError for an unknown quantization, an unreadable calibration file, or a model that needs
        an op that is not a TFLite builtin (named).
    """
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize {quantize}: unknown, expected one of {', '.join(QUANTIZATIONS)}")
    layout = edge_layout(separator.generator, separator.config)
    if quantize == "int8" and not separator.config.model.compress_input:
        logger.warning("int8 activations of raw magnitudes (model.compress_input false, Spleeter's U-Net) "
                       "lose much of the separation: measured -3.4 dB on the 50 MUSDB18-7s test clips for "
                       "spleeter-svsgan; --quantize dynamic (int8 weights) keeps it within 0.1 dB")
    module = build_edge_module(separator, layout)
    dataset = (calibration_windows(calibration_audio(calibration), separator.config, layout)
               if quantize == "int8" else None)
    names = [MAGNITUDE_INPUT] + [state_name(i) for i in range(len(layout["states"]))]
    data, layout["outputs"], layout["ops"] = convert_function(module.network.get_concrete_function(), module,
                                                              quantize, dataset, names)
    return data, layout


def convert_function(concrete, trackable, quantize: str = "none", dataset=None,
                     input_names: list[str] | None = None) -> tuple[bytes, list[str], list[str]]:
    """TFLite bytes of a concrete function returning a dict, with TFLITE_BUILTINS only; the names of its
    outputs in the order output_0, output_1, ... (the converter's names for them); the ops it uses.

    `dataset` (int8 only): a list of input lists, named by `input_names`. ConfigError naming the ops
    when the function needs ops that are not TFLite builtins.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # the weights frozen into the graph first: TF 2.16's converter cannot read Keras 3 variables from a
    # SavedModel ("missing attribute 'value'" on ReadVariableOp, tensorflow#63987, #65012)
    frozen = convert_variables_to_constants_v2(concrete)
    outputs = list(tf.nest.flatten({k: k for k in concrete.structured_outputs}))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], trackable)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = lambda: (dict(zip(input_names, sample)) for sample in dataset)
    try:
        data = converter.convert()
    except Exception as err:                      # ConverterError, or anything the MLIR passes raise
        raise _converter_error(err) from None
    ops = op_names(data)
    extra = non_builtin_ops(ops)
    if extra:
        raise ConfigError(f"the converted model uses ops that are not TFLite builtins: {', '.join(extra)}")
    return data, outputs, ops


def with_metadata(data: bytes, metadata: dict) -> bytes:
    """`data` (a .tflite flatbuffer) with `metadata` as JSON under METADATA_NAME."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()] + [entry]
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def convert_model(model: str, out: str, quantize: str = "none", calibration: list[str] | None = None,
                  overwrite: bool = False) -> dict:
    """Convert the model folder (or shipped model name) `model` to the .tflite file `out`, written
    atomically with its metadata; return the metadata.

    Raises:
        ConfigError: `out` exists (without `overwrite`) or does not end in .tflite, the model cannot be
            loaded or converted, a calibration file cannot be read.
    """
    from svsgan_tf.config import git_commit
    from svsgan_tf.io_utils import atomic_path
    from svsgan_tf.models.model_io import model_notices, NOTICE_FILE
    from svsgan_tf.separation.separator import Separator
    from svsgan_tf.shipped_models import resolve_model

    check_output(out, overwrite)
    model_dir = resolve_model(model)
    separator = Separator.from_directory(model_dir, precision="float32")
    data, layout = convert(separator, quantize, calibration)
    metadata = {"format": FORMAT, "config": separator.config.to_dict(), **layout, "quantize": quantize,
                "source": os.path.basename(os.path.normpath(model_dir)), "git_commit": git_commit(),
                "notice": model_notices(model_dir).get(NOTICE_FILE, "")}
    data = with_metadata(data, metadata)
    try:
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as handle:
                handle.write(data)
    except OSError as err:
        from svsgan_tf.errors import OutputError
        from svsgan_tf.io_utils import output_error

        raise OutputError(output_error(out, err)) from None
    return metadata


def check_output(out: str, overwrite: bool = False) -> None:
    """ConfigError unless `out` can become a new .tflite file (an existing one only with `overwrite`)."""
    if not out.lower().endswith(".tflite"):
        raise ConfigError(f"--out {out}: the file name must end in .tflite")
    if os.path.isdir(out):
        raise ConfigError(f"--out {out}: is a folder")
    if os.path.exists(out) and not overwrite:
        raise ConfigError(f"--out {out}: exists; pass --overwrite to replace it")
