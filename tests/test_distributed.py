"""Distributed and fault-tolerant training: strategy names, mirrored equivalence, two workers, SIGKILL.

The TensorFlow runs happen in subprocesses started here (logical devices and multi-worker clusters must
be set up before TensorFlow starts, which the rest of the suite has done in this process already). Run
as `python -m tests.test_distributed MODE ...`, this file is also the body of those subprocesses.
"""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from svsgan_tf.training.backup import STATE_FILE, backup_epoch
from tests.conftest import ROOT, TINY, tiny_config

# SGD, not Adam: Adam divides by the gradients' scale, so it would hide a loss that is N times too large
# under N replicas. With these rates every phase moves the weights by > 1e-3, far above the tolerance.
EQUIVALENCE = {"train.optimizer": "sgd", "train.g_learning_rate": 0.05, "train.gan_g_learning_rate": 0.05,
               "train.d_learning_rate": 0.05, "train.steps_per_epoch": 3}
TOLERANCE = 1e-5
KILL_RUN = {**TINY, "data.excerpts_per_track": 32, "train.pretrain_epochs": 1, "train.gan_epochs": 3}
TIMEOUT = 300


def child_env(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT, **extra}


@pytest.fixture
def processes(tmp_path):
    """start(args, log_name, **env) -> Popen with output in tmp_path/log_name; every process started
    this way and still running at the end is killed (by its own pid) and reaped."""
    started = []

    def start(args, log_name, **env):
        log = open(tmp_path / log_name, "w")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=child_env(**env))
        log.close()
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)


def wait_ok(proc, log, timeout=TIMEOUT):
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{proc.args[3:]} did not finish in {timeout} s:\n{tail(log)}")
    assert proc.returncode == 0, tail(log)


def tail(path, lines=30):
    return "\n".join(open(path).read().splitlines()[-lines:])


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def assert_same_weights(a, b):
    """Every dataset of two Keras weight files is bit-identical."""
    import h5py

    def arrays(path):
        found = {}
        with h5py.File(path, "r") as handle:
            handle.visititems(lambda name, item: found.__setitem__(name, item[()])
                              if isinstance(item, h5py.Dataset) else None)
        return found
    first, second = arrays(a), arrays(b)
    assert first.keys() == second.keys() and len(first) > 4
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def read_history(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def train_cli(out, settings):
    flags = [item for key, value in settings.items() for item in ("--set", f"{key}={json.dumps(value)}")]
    return [sys.executable, "-m", "svsgan_tf.train", "--out", str(out), "--quiet", "--no-tensorboard", *flags]


# ---------------------------------------------------------------------------------------- in-process


def test_strategy_names_and_one_line_errors(monkeypatch):
    import tensorflow as tf

    from svsgan_tf.training.distribute import check_global_batch, is_chief, make_strategy, task_id
    from svsgan_tf.errors import ConfigError

    one = make_strategy("one")
    assert one is tf.distribute.get_strategy() and is_chief(one) and task_id(one) == 0
    assert make_strategy(one) is one and make_strategy(None) is tf.distribute.get_strategy()
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert make_strategy("auto").num_replicas_in_sync == max(1, len(tf.config.list_physical_devices("GPU")))
    problems = {
        None: "not set",
        "{oops": "not valid JSON",
        json.dumps({"task": {"type": "worker", "index": 0}}): "'cluster'",
        json.dumps({"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}):
            "host:port",
        json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}}): "'task'",
        json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}):
            "out of range",
        json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "chief", "index": 0}}):
            "task type 'chief'",
    }
    for tf_config, fragment in problems.items():
        if tf_config is None:
            monkeypatch.delenv("TF_CONFIG", raising=False)
        else:
            monkeypatch.setenv("TF_CONFIG", tf_config)
        with pytest.raises(ConfigError, match=fragment) as err:
            make_strategy("multiworker")
        assert str(err.value).startswith("TF_CONFIG: ") and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="'nope' unknown strategy, expected one of auto, one, mirrored"):
        make_strategy("nope")

    class TwoReplicas:
        num_replicas_in_sync = 2
    with pytest.raises(ConfigError, match="batch_size=5 must be a multiple of the 2 replicas"):
        check_global_batch(5, TwoReplicas())


def test_cli_multiworker_without_tf_config_is_a_one_line_error(tmp_path):
    env = {k: v for k, v in child_env().items() if k != "TF_CONFIG"}
    result = subprocess.run(train_cli(tmp_path / "run", TINY) + ["--strategy", "multiworker"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == \
        ["error: TF_CONFIG: not set; --strategy multiworker needs the cluster and this worker's task in it "
         "(see docs/distributed.md)"]
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------- subprocesses


def test_mirrored_on_two_devices_matches_one_device_in_both_phases(tmp_path, processes):
    log = "equivalence.log"
    proc = processes([sys.executable, "-m", "tests.test_distributed", "equivalence", str(tmp_path)], log)
    wait_ok(proc, tmp_path / log)
    report = json.loads((tmp_path / "equivalence.json").read_text())

    assert report["replicas"] == {"one": 1, "mirrored": 2}
    assert [e["phase"] for e in report["epochs"]] == ["pretrain", "gan"]
    for epoch in report["epochs"]:
        assert epoch["steps"]["one"] == epoch["steps"]["mirrored"], epoch
        assert epoch["g_diff"] <= TOLERANCE and epoch["d_diff"] <= TOLERANCE, epoch
        assert epoch["opt_diff"] <= TOLERANCE, epoch
    pretrain, gan = report["epochs"]
    # each phase moved its networks far more than the tolerance (and phase 1 left D alone)
    assert pretrain["g_moved"] > 100 * TOLERANCE and pretrain["d_moved"] == 0, pretrain
    assert gan["g_moved"] > 100 * TOLERANCE and gan["d_moved"] > 100 * TOLERANCE, gan
    assert pretrain["steps"]["one"] == [3, 0] and gan["steps"]["one"] == [6, 3]
    # the logged losses are the true means over the global batch, not divided by the replica count
    one, mirrored = report["history"]["one"], report["history"]["mirrored"]
    assert set(one) == set(mirrored) >= {"kl", "val_kl", "d_loss", "g_loss", "g_adversarial"}
    for key in one:
        np.testing.assert_allclose(mirrored[key], one[key], rtol=TOLERANCE, err_msg=key)


def test_two_workers_train_together_and_end_with_identical_weights(tmp_path, processes):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    out, scratch = tmp_path / "run", tmp_path / "scratch"
    scratch.mkdir()
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        args = [sys.executable, "-m", "tests.test_distributed", "worker", str(out),
                str(tmp_path / f"w{index}.npz")]
        workers.append(processes(args, f"worker{index}.log", TF_CONFIG=tf_config, TMPDIR=str(scratch)))
    for index, proc in enumerate(workers):
        wait_ok(proc, tmp_path / f"worker{index}.log")

    chief, other = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert chief.files == other.files and len(chief.files) > 10
    for name in chief.files:
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
    # only the chief wrote: one history, one model, one backup; the other worker's scratch backups are gone
    names = {p.name for p in out.iterdir()}
    assert {"backup", "config.json", "history.csv", "model"} <= names, names
    assert not [name for name in names if "tmp" in name or "worker" in name], names
    assert sorted(p.name for p in (out / "backup").iterdir()) == ["epoch-00001.weights.h5",
                                                                  "epoch-00002.weights.h5", STATE_FILE]
    assert list(scratch.iterdir()) == []
    rows = read_history(out / "history.csv")
    steps = chief["g_step_counts"].tolist()
    assert [(r["epoch"], r["phase"], int(r["g_steps"]), int(r["d_steps"])) for r in rows] == \
        [("0", "pretrain", steps[0], 0), ("1", "gan", steps[1], steps[1] - steps[0])]


def test_two_workers_with_the_tfio_reader_each_decode_their_share_and_stay_in_step(tmp_path, processes):
    """data.reader=tfio under multi-worker training: each worker builds its own input pipeline, which
    decodes every 2nd excerpt (distribute.training_input), and the replicas still end identical."""
    from tests.test_tfio_reader import write_dsd100

    root = write_dsd100(tmp_path / "songs", np.random.default_rng(0), nb_songs=4)
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        args = [sys.executable, "-m", "tests.test_distributed", "worker", str(tmp_path / "run"),
                str(tmp_path / f"w{index}.npz"), f"dsd100:{root}"]
        workers.append(processes(args, f"worker{index}.log", TF_CONFIG=tf_config))
    for index, proc in enumerate(workers):
        wait_ok(proc, tmp_path / f"worker{index}.log")
    chief, other = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    for name in chief.files:
        if name != "shards":
            np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
    # the training input: each worker its own half; the input statistics read the schedule's start whole
    assert sorted(chief["shards"].tolist()) == [[1, 0], [2, 0]]
    assert sorted(other["shards"].tolist()) == [[1, 0], [2, 1]]
    assert (tmp_path / "run" / "model").is_dir()


def test_sigkill_in_phase_two_then_rerun_finishes_like_an_uninterrupted_run(tmp_path, processes):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = processes(train_cli(whole, KILL_RUN), "whole.log")
    victim = processes(train_cli(killed, KILL_RUN), "killed.log")

    # SIGKILL once the backup holds the first GAN epoch: the kill lands in phase 2, after D has stepped
    deadline = time.monotonic() + TIMEOUT
    while victim.poll() is None and time.monotonic() < deadline:
        if (backup_epoch(killed / "backup") or 0) >= 2:
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert victim.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed:\n" + \
        tail(tmp_path / "killed.log")
    logged = read_history(killed / "history.csv")
    backup = json.loads((killed / "backup" / STATE_FILE).read_text())
    total = KILL_RUN["train.pretrain_epochs"] + KILL_RUN["train.gan_epochs"]
    assert 2 <= backup["epoch"] < total and len(logged) in (backup["epoch"], backup["epoch"] + 1)

    wait_ok(processes(train_cli(killed, KILL_RUN), "resumed.log"), tmp_path / "resumed.log")
    wait_ok(reference, tmp_path / "whole.log")

    def progress(run):
        rows = read_history(run / "history.csv")
        return [(r["epoch"], r["phase"], r["g_steps"], r["d_steps"]) for r in rows]
    expected = progress(whole)
    assert [e[:2] for e in expected] == [("0", "pretrain"), ("1", "gan"), ("2", "gan"), ("3", "gan")]
    # same epochs, phases and G/D step counts: the resumed run continued both optimizers' iterations
    assert progress(killed) == expected
    for run in (whole, killed):
        assert json.loads((run / "backup" / STATE_FILE).read_text())["epoch"] == total
    # the resumed run saw the batches of the uninterrupted one: bit-identical weights, G's and D's
    for part in ("generator", "discriminator"):
        assert (whole / "model" / f"{part}.weights.h5").exists()
        assert_same_weights(whole / "model" / f"{part}.weights.h5", killed / "model" / f"{part}.weights.h5")

    # a finished run started again does nothing
    before = {p: p.stat().st_mtime_ns for p in whole.rglob("*") if p.is_file()}
    rerun = processes(train_cli(whole, KILL_RUN), "rerun.log")
    wait_ok(rerun, tmp_path / "rerun.log")
    assert {p: p.stat().st_mtime_ns for p in whole.rglob("*") if p.is_file()} == before
    assert "last epoch: {}" in open(tmp_path / "rerun.log").read()


def test_sigkill_during_the_backup_write_then_rerun_resumes_exactly_and_cleans_up(tmp_path, processes):
    """Wide layers make each backup ~100 MB, so that polling every millisecond catches a write in
    progress; the kill leaves its temporary file, which the rerun removes before resuming."""
    from svsgan_tf.io_utils import TEMPORARY_NAME

    settings = {**KILL_RUN, "model.encoder_units": [2048, 1024], "model.decoder_units": [2048]}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    victim = processes(train_cli(killed, settings), "killed.log")
    backup_dir, caught = killed / "backup", []
    deadline = time.monotonic() + TIMEOUT
    while victim.poll() is None and time.monotonic() < deadline and not caught:
        if backup_dir.is_dir():
            caught = [name for name in os.listdir(backup_dir) if TEMPORARY_NAME.match(name)]
            if caught:
                victim.send_signal(signal.SIGKILL)
        time.sleep(0.001)
    assert caught and victim.wait(timeout=60) == -signal.SIGKILL, "no backup write caught:\n" + \
        tail(tmp_path / "killed.log")
    left = [name for name in os.listdir(backup_dir) if TEMPORARY_NAME.match(name)]
    assert left, "the kill landed after the write had finished"
    done = backup_epoch(backup_dir) or 0
    assert done < settings["train.pretrain_epochs"] + settings["train.gan_epochs"]

    reference = processes(train_cli(whole, settings), "whole.log")
    wait_ok(processes(train_cli(killed, settings), "resumed.log"), tmp_path / "resumed.log")
    wait_ok(reference, tmp_path / "whole.log")
    assert not [name for name in os.listdir(backup_dir) if TEMPORARY_NAME.match(name)]
    assert "left by a killed run" in open(tmp_path / "resumed.log").read()
    for part in ("generator", "discriminator"):
        assert_same_weights(whole / "model" / f"{part}.weights.h5", killed / "model" / f"{part}.weights.h5")


# ---------------------------------------------------------------------------------------- subprocess bodies


def _snapshot(model):
    """G, D and both optimizers' variables, as float64 arrays."""
    return {part: [np.array(v.numpy(), np.float64) for v in variables] for part, variables in (
        ("g", model.generator.weights), ("d", model.discriminator.weights),
        ("opt", model.g_optimizer.variables + model.d_optimizer.variables))}


def _max_diff(a, b):
    return max((float(np.max(np.abs(x - y))) if x.size else 0.0 for x, y in zip(a, b)), default=0.0)


def _record_epochs(training, snapshots):
    """Make PhaseSchedule (present in every run) append a snapshot at train begin and every epoch end."""
    def on_train_begin(self, logs=None):
        snapshots.append(_snapshot(self.model))

    def on_epoch_end(self, epoch, logs=None):
        snapshots.append({**_snapshot(self.model), "phase": self.model.phase,
                          "steps": [int(self.model.g_optimizer.iterations.numpy()),
                                    int(self.model.d_optimizer.iterations.numpy())]})
    training.PhaseSchedule.on_train_begin = on_train_begin
    training.PhaseSchedule.on_epoch_end = on_epoch_end


def _equivalence_child(folder):
    """Train the tiny model for one KL and one GAN epoch on one device and with MirroredStrategy on two
    logical CPUs (same global batch, data and seed); write the differences to equivalence.json."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from svsgan_tf.training import fit as training
    from svsgan_tf.training.distribute import make_strategy

    runs, histories, replicas = {}, {}, {}
    for name in ("one", "mirrored"):
        runs[name] = []
        _record_epochs(training, runs[name])
        strategy = make_strategy(name)
        replicas[name] = strategy.num_replicas_in_sync
        result = training.train(tiny_config(**EQUIVALENCE), os.path.join(folder, name), strategy=strategy,
                                verbose=0, tensorboard=False)
        histories[name] = result.history
    one, mirrored = runs["one"], runs["mirrored"]
    epochs = [{"phase": one[i]["phase"], "steps": {"one": one[i]["steps"], "mirrored": mirrored[i]["steps"]},
               "g_diff": _max_diff(one[i]["g"], mirrored[i]["g"]),
               "d_diff": _max_diff(one[i]["d"], mirrored[i]["d"]),
               "opt_diff": _max_diff(one[i]["opt"], mirrored[i]["opt"]),
               "g_moved": _max_diff(one[i]["g"], one[i - 1]["g"]),
               "d_moved": _max_diff(one[i]["d"], one[i - 1]["d"])} for i in range(1, len(one))]
    report = {"replicas": replicas, "epochs": epochs, "history": histories}
    with open(os.path.join(folder, "equivalence.json"), "w") as handle:
        json.dump(report, handle, indent=1)


def _worker_child(out, weights_path, source=None):
    """One worker of the TF_CONFIG cluster: train the tiny model (on `source` with the tfio reader, when
    given), save its final variables to an .npz, with the shards its tfio reader was asked for."""
    from svsgan_tf.data import tfio_reader
    from svsgan_tf.training import fit as training

    snapshots, shards = [], []
    _record_epochs(training, snapshots)
    excerpts = tfio_reader.tfio_excerpts

    def logged_excerpts(*args, shard=(1, 0), **kwargs):
        if shard not in shards:
            shards.append(shard)
        return excerpts(*args, shard=shard, **kwargs)
    tfio_reader.tfio_excerpts = logged_excerpts
    settings = {"data.source": source, "data.reader": "tfio"} if source else {}
    training.train(tiny_config(**settings), out, strategy="multiworker", verbose=0, tensorboard=False)
    final = snapshots[-1]
    arrays = {f"{part}{i}": value for part in ("g", "d", "opt") for i, value in enumerate(final[part])}
    arrays["g_step_counts"] = np.array([s["steps"][0] for s in snapshots[1:]])
    arrays["shards"] = np.array(shards, dtype=np.int64).reshape(-1, 2)
    np.savez(weights_path, **arrays)


if __name__ == "__main__":
    mode, *arguments = sys.argv[1:]
    {"equivalence": _equivalence_child, "worker": _worker_child}[mode](*arguments)
