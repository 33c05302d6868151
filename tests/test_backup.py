"""Training backups: the previous one kept until the next is complete, damage detected by checksum and
passed over in one line, a damaged state.json survived."""
import json
import logging
import os

import numpy as np
import pytest

from svsgan_tf.training.backup import STATE_FILE, ResumableBackup, last_good_backup, weights_name, write_backup
from svsgan_tf.errors import ConfigError
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def model():
    from svsgan_tf.training.fit import build_svsgan

    return build_svsgan(tiny_config())


def flip_a_byte(path):
    """Damage a file without changing its size, in the middle, where the weights' values lie."""
    with open(path, "r+b") as handle:
        handle.seek(os.path.getsize(path) // 2)
        value = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([value[0] ^ 0xFF]))


def test_two_backups_are_kept_and_a_damaged_one_is_passed_over(model, tmp_path, caplog):
    backup_dir = str(tmp_path / "backup")
    first = write_backup(backup_dir, model, 1, None)
    second = write_backup(backup_dir, model, 2, first)
    third = write_backup(backup_dir, model, 3, second)
    assert sorted(os.listdir(backup_dir)) == [weights_name(2), weights_name(3), STATE_FILE]
    assert last_good_backup(backup_dir) == third

    flip_a_byte(third.weights)
    with caplog.at_level(logging.WARNING, logger="svsgan_tf.training.backup"):
        found = last_good_backup(backup_dir)
    assert found.epoch == 2
    assert any(third.weights in r.getMessage() and "checksum mismatch" in r.getMessage() for r in caplog.records)

    os.unlink(second.weights)
    assert last_good_backup(backup_dir) is None                       # nothing good is left: start over


def test_a_damaged_state_file_falls_back_to_the_backups_by_name(model, tmp_path, caplog):
    backup_dir = str(tmp_path / "backup")
    write_backup(backup_dir, model, 1, write_backup(backup_dir, model, 0, None))
    with open(os.path.join(backup_dir, STATE_FILE), "w") as handle:
        handle.write('{"epoch": 1, "weig')                              # cut mid-write
    with caplog.at_level(logging.WARNING, logger="svsgan_tf.training.backup"):
        found = last_good_backup(backup_dir)
    assert found.epoch == 1 and found.sha256 is None
    assert any("damaged" in r.getMessage() for r in caplog.records)


def test_restoring_a_damaged_backup_without_checksum_is_one_line(model, tmp_path):
    backup_dir = str(tmp_path / "backup")
    backup = write_backup(backup_dir, model, 1, None)
    with open(backup.weights, "r+b") as handle:
        handle.truncate(96)                                               # what a kill mid-write used to leave
    os.unlink(os.path.join(backup_dir, STATE_FILE))
    found = last_good_backup(backup_dir)
    assert found.weights == backup.weights
    callback = ResumableBackup(backup_dir, found)
    callback.set_model(model)
    with pytest.raises(ConfigError, match="cannot restore this backup") as err:
        callback.on_train_begin()
    assert "\n" not in str(err.value)


def test_a_restored_backup_holds_the_weights_and_both_optimizers(tmp_path):
    from svsgan_tf.training.fit import build_svsgan

    config = tiny_config()
    source, target = build_svsgan(config), build_svsgan(config)
    for variable in source.generator.weights + source.discriminator.weights:
        variable.assign(np.random.default_rng(0).normal(size=variable.shape).astype(np.float32))
    source.g_optimizer.iterations.assign(7)
    source.d_optimizer.iterations.assign(3)
    backup = write_backup(str(tmp_path), source, 4, None)
    assert json.loads(open(tmp_path / STATE_FILE).read())["epoch"] == 4
    callback = ResumableBackup(str(tmp_path), backup)
    callback.set_model(target)
    callback.on_train_begin()
    for a, b in zip(source.generator.weights + source.discriminator.weights,
                    target.generator.weights + target.discriminator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(target.g_optimizer.iterations.numpy()) == 7 and int(target.d_optimizer.iterations.numpy()) == 3
