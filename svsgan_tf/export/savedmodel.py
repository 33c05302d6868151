"""A SavedModel for TF Serving in BASE/<version>/ (the command: `python -m svsgan_tf.export`).

The export wraps `Separator` (the one separation path), so the whole separation runs in the graph:
waveform -> STFT -> generator mask -> inverse STFT -> vocals and accompaniment waveforms.

Layout (TF Serving's versioned layout; the server serves the newest numeric folder)::

    BASE/<version>/saved_model.pb         the graph and its four signatures (below)
    BASE/<version>/variables/             the generator's weights
    BASE/<version>/assets/config.json     the model's Config, as a SavedModel asset
    BASE/<version>/config.json            the same file, beside the SavedModel

Signatures (method tensorflow/serving/predict):

``serving_default``
    inputs:  ``waveform``  float32 (nb_channels, nb_samples), audio at the model's sample rate,
             nb_samples >= n_fft, finite values; channels as `Separator.mask` describes (a
             joint-stereo model separates two channels together).
    outputs: ``vocals``, ``accompaniment``  float32 (nb_channels, nb_samples); with the mixture phase
             they add up to the input.
``separate_batch``
    inputs:  ``waveforms``  float32 (nb_songs, nb_channels, nb_samples): songs of one length and
             channel count, each checked and separated as ``serving_default`` separates it, with one
             generator call for all (`Separator.separate_batch`). Its first axis is the batch, so it is
             the signature to send batched requests to (TF Serving's batching joins requests along
             the first axis; ``serving_default``'s first axis is the channels).
    outputs: ``vocals``, ``accompaniment``  float32 (nb_songs, nb_channels, nb_samples).
``separate_magnitude``
    inputs:  ``magnitude``  float32 (nb_channels, nb_frames, nb_bins), mixture STFT magnitude frames
             (nb_bins = n_fft / 2 + 1), nb_frames >= 1, finite and >= 0.
    outputs: ``vocals_mask`` in [0, 1], ``vocals_magnitude`` = mask * magnitude,
             ``accompaniment_magnitude`` = (1 - mask) * magnitude, all float32 like the input.
``model_info``
    inputs:  ``nb_samples``  int64 scalar, a waveform length.
    outputs: ``config_json`` string scalar (the model's Config); int64 scalars ``sample_rate``,
             ``n_fft``, ``hop_length`` (the Separator's: separation.hop_length when set), ``nb_bins``,
             ``min_samples`` (shortest accepted waveform), ``margin_samples`` and ``align_samples``
             (`Separator.chunk_context`: how far the stems at a sample reach into the audio around it,
             and the multiple chunk starts keep, so that chunks joined with svsgan_tf.separation.chunking equal
             one-shot separation) and
             ``nb_frames`` (frames of the STFT of a waveform of `nb_samples` samples).

Bad inputs (too short, no channels, NaN/Inf, negative magnitudes) fail inside the graph with
InvalidArgumentError, so TF Serving and `serving.server` both answer INVALID_ARGUMENT.
"""
from __future__ import annotations

import logging
import os
import tempfile

from svsgan_tf.errors import ConfigError

logger = logging.getLogger(__name__)

# what an export computes in: never "auto", since the export runs on another machine
EXPORT_PRECISIONS = ("float32", "bfloat16")

WAVEFORM_SIGNATURE = "serving_default"
BATCH_SIGNATURE = "separate_batch"
MAGNITUDE_SIGNATURE = "separate_magnitude"
INFO_SIGNATURE = "model_info"
SIGNATURES = (WAVEFORM_SIGNATURE, BATCH_SIGNATURE, MAGNITUDE_SIGNATURE, INFO_SIGNATURE)
CONFIG_FILE = "config.json"


def existing_versions(base: str) -> list[int]:
    """The numeric version folders under `base`, sorted; [] when `base` does not exist."""
    if not os.path.isdir(base):
        return []
    return sorted(int(name) for name in os.listdir(base)
                  if name.isdigit() and os.path.isdir(os.path.join(base, name)))


def next_version(base: str) -> int:
    """One more than the newest version under `base`, or 1 for an empty or new base folder."""
    versions = existing_versions(base)
    return versions[-1] + 1 if versions else 1


def check_target(base: str, version: int | None) -> tuple[int, str]:
    """(version, BASE/<version>) for a new export; ConfigError if it cannot be written there."""
    if os.path.exists(base) and not os.path.isdir(base):
        raise ConfigError(f"{base}: exists and is not a folder")
    if version is None:
        version = next_version(base)
    if version < 0:
        raise ConfigError(f"--version {version}: must be >= 0")
    target = os.path.join(base, str(version))
    if os.path.exists(target):
        raise ConfigError(f"{target}: version {version} already exists; an export is never overwritten "
                          "(pass another --version, or leave it out for the next free one)")
    return version, target


def build_serving_module(separator):
    """A tf.Module holding `separator` and the four serving functions (see the module docstring).

    Returns (module, signatures): `signatures` maps each signature name to its concrete function, for
    tf.saved_model.save (`save_serving_module` adds the config asset and saves).
    """
    import tensorflow as tf

    from svsgan_tf.audio.framing import nb_frames_for

    config = separator.config
    n_fft, hop, rate = config.stft.n_fft, config.separation_stft.hop_length, config.stft.sample_rate
    nb_bins = config.stft.nb_bins
    min_samples = separator.min_samples
    margin_samples, align_samples = separator.chunk_context

    def require(condition, message):
        return tf.debugging.Assert(condition, [message])

    def checked(tensor, checks):
        with tf.control_dependencies(checks):
            return tf.identity(tensor)

    def nb_nonfinite(tensor):
        return tf.reduce_sum(tf.cast(~tf.math.is_finite(tensor), tf.int64))

    def checked_waveforms(waveforms, layout: str):
        """(nb_songs, nb_channels, nb_samples) -> the same tensor, once the checks below pass; `layout`
        names the input's shape as its signature declares it, for the messages."""
        nb_songs, nb_channels, nb_samples = tf.shape(waveforms)[0], tf.shape(waveforms)[1], tf.shape(waveforms)[2]
        bad = nb_nonfinite(waveforms)
        return checked(waveforms, [
            require(nb_songs > 0, f"waveforms has no songs: expected {layout}"),
            require(nb_channels > 0, f"waveform has no channels: expected {layout}"),
            require(nb_samples >= min_samples, tf.strings.format(
                "audio is too short: {} samples, at least {} (one STFT frame at {} Hz) are needed",
                (nb_samples, min_samples, rate))),
            require(bad == 0, tf.strings.format("audio contains {} non-finite samples (NaN or Inf)", bad)),
        ])

    def separate(waveform):
        """(nb_channels, nb_samples) float32 -> {"vocals", "accompaniment"} (nb_channels, nb_samples)."""
        stems = separator.separate_waveform(checked_waveforms(waveform[None], "(nb_channels, nb_samples)")[0])
        return {"vocals": stems["vocals"], "accompaniment": stems["accompaniment"]}

    def separate_batch(waveforms):
        """(nb_songs, nb_channels, nb_samples) float32 -> {"vocals", "accompaniment"} of that shape."""
        stems = separator.separate_batch(checked_waveforms(waveforms, "(nb_songs, nb_channels, nb_samples)"))
        return {"vocals": stems["vocals"], "accompaniment": stems["accompaniment"]}

    def separate_magnitude(magnitude):
        """(nb_channels, nb_frames, nb_bins) magnitude -> mask and the two magnitudes, same shape."""
        nb_channels, nb_frames = tf.shape(magnitude)[0], tf.shape(magnitude)[1]
        bad = nb_nonfinite(magnitude)
        magnitude = checked(magnitude, [
            require(nb_channels > 0, "magnitude has no channels: expected (nb_channels, nb_frames, nb_bins)"),
            require(nb_frames > 0, "magnitude has no frames: expected (nb_channels, nb_frames, nb_bins)"),
            require(bad == 0, tf.strings.format("magnitude contains {} non-finite values (NaN or Inf)", bad)),
            require(tf.reduce_all(magnitude >= 0.0), "magnitude contains negative values"),
        ])
        stems = separator.separate_magnitude(magnitude)
        return {"vocals_mask": stems["mask"], "vocals_magnitude": stems["vocals"],
                "accompaniment_magnitude": stems["accompaniment"]}

    config_json = config.to_json()

    def model_info(nb_samples):
        """int64 nb_samples -> the model's config and STFT settings, and nb_frames for nb_samples."""
        nb_samples = checked(nb_samples, [require(nb_samples >= 0, "nb_samples must be >= 0")])
        nb_frames = nb_frames_for(nb_samples, n_fft, hop)          # the padded framing of spectral.stft
        settings = {"sample_rate": rate, "n_fft": n_fft, "hop_length": hop, "nb_bins": nb_bins,
                    "min_samples": min_samples, "margin_samples": margin_samples, "align_samples": align_samples}
        return {"config_json": tf.constant(config_json), "nb_frames": nb_frames,
                **{name: tf.constant(value, tf.int64) for name, value in settings.items()}}

    module = tf.Module(name="svsgan_serving")
    module.separator = separator          # tracks the generator's variables
    module.separate = tf.function(separate, input_signature=[
        tf.TensorSpec([None, None], tf.float32, name="waveform")])
    module.separate_batch = tf.function(separate_batch, input_signature=[
        tf.TensorSpec([None, None, None], tf.float32, name="waveforms")])
    module.separate_magnitude = tf.function(separate_magnitude, input_signature=[
        tf.TensorSpec([None, None, nb_bins], tf.float32, name="magnitude")])
    module.model_info = tf.function(model_info, input_signature=[
        tf.TensorSpec([], tf.int64, name="nb_samples")])
    signatures = {WAVEFORM_SIGNATURE: module.separate.get_concrete_function(),
                  BATCH_SIGNATURE: module.separate_batch.get_concrete_function(),
                  MAGNITUDE_SIGNATURE: module.separate_magnitude.get_concrete_function(),
                  INFO_SIGNATURE: module.model_info.get_concrete_function()}
    return module, signatures


def save_serving_module(separator, path: str) -> None:
    """Write the SavedModel of `separator` to the folder `path` (created; must not exist yet)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="svsgan_export_") as scratch:
        config_path = os.path.join(scratch, CONFIG_FILE)
        separator.config.save(config_path)
        module, signatures = build_serving_module(separator)
        module.config_file = tf.saved_model.Asset(config_path)    # copied to assets/config.json
        tf.saved_model.save(module, path, signatures=signatures)
    separator.config.save(os.path.join(path, CONFIG_FILE))


def export_model(model_dir: str, base: str, version: int | None = None, precision: str = "float32") -> str:
    """Export the model directory `model_dir` as BASE/<version>/ and return that folder.

    Args:
        model_dir: a model directory (config.json + generator weights, see model_io) or a shipped
            model's name; its NOTICE.txt, if any, goes into the export too.
        base: the base folder (TF Serving's --model_base_path); created if needed.
        version: the version number; default one more than the newest already in `base`.
        precision: one of EXPORT_PRECISIONS. "float32" (the default) runs alike on every server;
            "bfloat16" (U-Net models) runs the U-Net in bfloat16, for servers whose CPU has native
            bfloat16 instructions (AMX, AVX512-BF16), and is slower elsewhere. The inputs and outputs
            are float32 either way, and the export's config says which it computes in.
    Raises:
        ConfigError when the version exists (nothing is written), the model cannot be loaded or
        `precision` does not suit it.
    """
    from svsgan_tf.io_utils import atomic_directory
    from svsgan_tf.models.model_io import model_notices, write_text_files
    from svsgan_tf.separation.separator import Separator

    if precision not in EXPORT_PRECISIONS:
        raise ConfigError(f"{model_dir}: export precision {precision!r} must be one of {EXPORT_PRECISIONS}")
    version, target = check_target(base, version)
    separator = Separator.from_directory(model_dir, precision=precision)
    # the config the export carries says how it computes, whatever the model folder's setting
    separator.config = separator.config.replace(**{"separation.precision": precision})
    notices = model_notices(model_dir)              # imported weights keep their licence in the copy
    try:
        with atomic_directory(target, overwrite=False) as tmp:
            os.rmdir(tmp)                 # tf.saved_model.save creates the folder itself
            save_serving_module(separator, tmp)
            write_text_files(tmp, notices)
    except FileExistsError:
        raise ConfigError(f"{target}: version {version} already exists; an export is never overwritten") from None
    logger.info("exported %s as version %d: %s", model_dir, version, target)
    return target
