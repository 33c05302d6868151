"""Model directories: weights checksums written with the weights, damaged weights as one-line ConfigErrors."""
import hashlib
import json
import os

import numpy as np
import pytest
import soundfile as sf

from svsgan_tf.errors import ConfigError
from svsgan_tf.models.model_io import (CHECKSUM_FILE, GENERATOR_FILE, PRETRAINED_DIR, load_generator, pack_model,
                                save_model)
from tests.conftest import tiny_config
from tests.test_cli import assert_one_line_error, run


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def flip(path, offset):
    data = bytearray(open(path, "rb").read())
    data[offset] ^= 0xFF
    open(path, "wb").write(bytes(data))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A freshly built tiny generator saved as a model directory (with its discriminator)."""
    from svsgan_tf.models import build_discriminator, build_generator

    config = tiny_config()
    folder = str(tmp_path_factory.mktemp("model_io") / "model")
    save_model(folder, config, build_generator(config), build_discriminator(config))
    return folder


def test_save_and_pack_write_the_checksums_of_every_weights_file(saved, tmp_path):
    checksums = json.load(open(os.path.join(saved, CHECKSUM_FILE)))
    names = sorted(n for n in os.listdir(saved) if n.endswith(".weights.h5"))
    assert names == ["discriminator.weights.h5", GENERATOR_FILE]
    assert checksums == {name: sha256(os.path.join(saved, name)) for name in names}
    packed = str(tmp_path / "packed")
    pack_model([saved], packed, precision="int8")
    assert json.load(open(os.path.join(packed, CHECKSUM_FILE))) == {
        GENERATOR_FILE: sha256(os.path.join(packed, GENERATOR_FILE))}
    ensemble = str(tmp_path / "ensemble")
    pack_model([saved, packed], ensemble)
    for member in ("0", "1"):
        folder = os.path.join(ensemble, "members", member)
        assert json.load(open(os.path.join(folder, CHECKSUM_FILE))) == {
            GENERATOR_FILE: sha256(os.path.join(folder, GENERATOR_FILE))}
    load_generator(ensemble)


def test_weights_damaged_without_changing_size_fail_their_checksum(saved, tmp_path):
    import shutil

    damaged = str(tmp_path / "damaged")
    shutil.copytree(saved, damaged)
    weights = os.path.join(damaged, GENERATOR_FILE)
    size = os.path.getsize(weights)
    flip(weights, size // 2)
    assert os.path.getsize(weights) == size
    with pytest.raises(ConfigError, match=f"^{weights}: weights do not match their checksum \\(damaged\\?\\)"):
        load_generator(damaged)
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros((4000, 1)), 8000)
    result = run("svsgan_tf.separate", song, "--out", tmp_path / "out", "--model", damaged)
    assert result.returncode == 2
    assert_one_line_error(result, weights, "do not match their checksum")


def test_a_folder_without_checksums_still_loads_and_damage_is_a_config_error(saved, tmp_path):
    import shutil

    older = str(tmp_path / "older")
    shutil.copytree(saved, older)
    os.remove(os.path.join(older, CHECKSUM_FILE))
    load_generator(older)
    weights = os.path.join(older, GENERATOR_FILE)
    original = open(weights, "rb").read()
    refused = 0
    for offset in range(64):                   # the HDF5 superblock and root group: h5py raises
        flip(weights, offset)                  # OSError, RuntimeError, ValueError... depending on the byte
        try:
            load_generator(older)
        except ConfigError as err:
            assert str(err).startswith(f"{weights}: cannot load the weights") and "\n" not in str(err)
            refused += 1
        open(weights, "wb").write(original)
    assert refused > 32


def test_an_unreadable_checksum_file_is_a_config_error(saved, tmp_path):
    import shutil

    folder = str(tmp_path / "bad_manifest")
    shutil.copytree(saved, folder)
    manifest = os.path.join(folder, CHECKSUM_FILE)
    open(manifest, "w").write("{not json")
    with pytest.raises(ConfigError, match=f"^{manifest}: cannot read the weights' checksums"):
        load_generator(folder)


def test_the_shipped_model_carries_checksums_that_match_and_are_packaged():
    import ast
    import glob

    from tests.conftest import ROOT

    weights = sorted(glob.glob(os.path.join(PRETRAINED_DIR, "**", GENERATOR_FILE), recursive=True))
    if not weights:
        pytest.skip("no pretrained model is shipped in this checkout")
    manifests = sorted(glob.glob(os.path.join(PRETRAINED_DIR, "**", CHECKSUM_FILE), recursive=True))
    assert [os.path.dirname(m) for m in manifests] == [os.path.dirname(w) for w in weights]
    for manifest in manifests:
        folder = os.path.dirname(manifest)
        assert json.load(open(manifest)) == {GENERATOR_FILE: sha256(os.path.join(folder, GENERATOR_FILE))}
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    (package_data,) = [ast.literal_eval(k.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
                       for k in node.keywords if k.arg == "package_data"]
    package = os.path.join(ROOT, "svsgan_tf")
    shipped = {path for pattern in package_data["svsgan_tf"] for path in glob.glob(os.path.join(package, pattern))}
    assert set(manifests) | set(weights) <= shipped
