"""tf.distribute strategies by name, chief and worker roles and data sharding (backups: svsgan_tf/training/backup.py)."""
from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

from svsgan_tf.errors import ConfigError

logger = logging.getLogger(__name__)

STRATEGIES = ("auto", "one", "mirrored", "multiworker")
TASK_TYPES = ("chief", "worker")


def make_strategy(strategy: str | tf.distribute.Strategy | None = None) -> tf.distribute.Strategy:
    """The strategy for a name, or `strategy` itself when it is one already.

    - None: the strategy of the enclosing `strategy.scope()`, else the default (one device).
    - `one`: the default strategy: one device, TensorFlow's own placement (GPU:0 when there is one).
    - `mirrored`: MirroredStrategy over every visible GPU, or over every logical CPU when there is no
      GPU (several logical CPUs exist only when `tf.config.set_logical_device_configuration` made them).
    - `multiworker`: MultiWorkerMirroredStrategy over the cluster that `TF_CONFIG` describes.
    - `auto`: `mirrored` when more than one GPU is visible, `one` otherwise.

    Call it before TensorFlow runs any op: MultiWorkerMirroredStrategy and logical device settings
    must be in place before the runtime starts. Raises ConfigError (one line) for an unknown name or a
    missing or malformed TF_CONFIG.
    """
    if strategy is None:
        return tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy: {strategy!r} unknown strategy, expected one of {', '.join(STRATEGIES)}")
    gpus = tf.config.list_physical_devices("GPU")
    if strategy == "auto":
        strategy = "mirrored" if len(gpus) > 1 else "one"
        if os.environ.get("TF_CONFIG"):
            logger.warning("TF_CONFIG is set but --strategy auto trains on this machine alone; "
                           "use --strategy multiworker to join the cluster")
    if strategy == "one":
        result = tf.distribute.get_strategy()
    elif strategy == "mirrored":
        devices = None if gpus else [d.name for d in tf.config.list_logical_devices("CPU")]
        result = tf.distribute.MirroredStrategy(devices)
    else:
        check_tf_config()
        result = tf.distribute.MultiWorkerMirroredStrategy()
    logger.info("strategy: %s with %d replica(s)%s", type(result).__name__, result.num_replicas_in_sync,
                f", worker {task_id(result)}" + (" (chief)" if is_chief(result) else "")
                if is_multi_worker(result) else "")
    return result


def check_tf_config() -> dict:
    """The parsed TF_CONFIG of a multi-worker run; ConfigError naming the problem otherwise.

    Expected: {"cluster": {"worker": ["host:port", ...], ["chief": ["host:port"]]},
               "task": {"type": "worker", "index": i}}.
    """
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        raise ConfigError("TF_CONFIG: not set; --strategy multiworker needs the cluster and this "
                          "worker's task in it (see docs/distributed.md)")
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"TF_CONFIG: not valid JSON ({err})") from None
    if not isinstance(tf_config, dict):
        raise ConfigError("TF_CONFIG: must be a JSON object with 'cluster' and 'task'")
    cluster, task = tf_config.get("cluster"), tf_config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ConfigError("TF_CONFIG: 'cluster' must map task types to lists of host:port addresses")
    for task_type, addresses in cluster.items():
        if task_type not in TASK_TYPES + ("evaluator",):
            raise ConfigError(f"TF_CONFIG: cluster task type {task_type!r} unsupported, expected "
                              "chief, worker or evaluator")
        if not isinstance(addresses, list) or not addresses or \
                not all(isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses):
            raise ConfigError(f"TF_CONFIG: cluster.{task_type} must be a non-empty list of host:port "
                              f"addresses, got {addresses!r}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError("TF_CONFIG: 'task' must be {\"type\": \"worker\", \"index\": i}")
    task_type, index = task["type"], task["index"]
    if task_type not in TASK_TYPES or task_type not in cluster:
        raise ConfigError(f"TF_CONFIG: task type {task_type!r} is not one of the cluster's "
                          f"{', '.join(t for t in cluster if t in TASK_TYPES)}")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task_type]):
        raise ConfigError(f"TF_CONFIG: task index {index!r} out of range for the "
                          f"{len(cluster[task_type])} {task_type} address(es)")
    return tf_config


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans several processes (a MultiWorkerMirroredStrategy with > 1 task)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return False
    cluster = resolver.cluster_spec().as_dict()
    return sum(len(cluster.get(t, [])) for t in TASK_TYPES) > 1


def task_id(strategy: tf.distribute.Strategy) -> int:
    """This process' index among its task type (0 outside multi-worker training)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(resolver.task_id or 0) if is_multi_worker(strategy) else 0


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints, logs and model directories.

    The chief is task `chief` when the cluster has one, else worker 0; every single-process strategy is
    its own chief.
    """
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and \
        "chief" not in resolver.cluster_spec().as_dict()


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Shard `dataset` by elements (AutoShardPolicy.DATA) across workers.

    Every worker runs the whole (seeded, hence identical) pipeline; tf.distribute splits each global
    batch into per-replica batches and gives each worker its own replicas' parts. So a step sees
    exactly the global batch that single-device training sees, in the same order. FILE sharding is
    impossible for a `Dataset.from_generator` source, and OFF would make every worker train on the
    same examples. Single-machine strategies ignore the setting.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def training_input(strategy: tf.distribute.Strategy, reader: str, make_dataset):
    """The training input `model.fit` takes under `strategy`.

    `make_dataset(shard, replicas)` builds one input pipeline (pipeline.training_dataset's `shard` and
    `replicas`). Under multi-worker training with the tfio reader, each worker builds its own, which
    decodes only its share of the excerpts (`distribute_datasets_from_function`), so no worker decodes
    the others' audio. Otherwise every worker runs the whole pipeline, sharded by data (shard_by_data):
    the Python reader is one generator, which cannot be split by file.
    """
    if not (is_multi_worker(strategy) and reader == "tfio"):
        return shard_by_data(make_dataset((1, 0), 1))

    def worker_input(context: tf.distribute.InputContext) -> tf.data.Dataset:
        replicas = context.num_replicas_in_sync // context.num_input_pipelines      # this worker's replicas
        return make_dataset((context.num_input_pipelines, context.input_pipeline_id), replicas)
    return strategy.distribute_datasets_from_function(worker_input)


def check_global_batch(batch_size: int, strategy: tf.distribute.Strategy) -> None:
    """ConfigError unless the global batch splits evenly over the replicas.

    Equal per-replica batches make `tf.nn.compute_average_loss` (which divides by per-replica batch x
    replicas) exactly the mean over the global batch.
    """
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(f"config: train.batch_size={batch_size} must be a multiple of the "
                          f"{replicas} replicas of the {type(strategy).__name__} (it is the global batch)")
