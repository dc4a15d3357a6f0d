"""Where training runs (``--strategy``) and the cross-replica arithmetic every train step obeys.

Strategies (README.md, "Distributed training", says when to pick which):

- ``default``: one device.
- ``mirrored``: synchronous data parallelism over this host's GPUs (or CPUs).
- ``multi_worker``: synchronous data parallelism across hosts; every process
  runs the same command, ``TF_CONFIG`` tells each which worker it is.
- ``parameter_server``: asynchronous workers, variables on parameter servers,
  the item embedding table (and its optimiser slots) sharded across them row
  wise; the ``chief`` task trains, ``worker`` and ``ps`` tasks serve.

Loss convention. Keras runs a train step once per replica on the replica's
slice of the global batch and SUMS the replicas' gradients. So each replica's
loss is its share of the global-batch loss: means over positions divide the
replica's sum by the positions of the whole global batch (:func:`global_mean`),
per-sequence means divide by the number of replicas (:func:`replica_share`).
Reported values are summed over replicas (:func:`replica_sum`), so every
replica logs the global quantity. Outside a multi-replica step these are the
plain mean and the identity.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Optional, Union

import tensorflow as tf

from tf_autosam.config import STRATEGIES

CHIEF_TASK_TYPES = ("chief", None)


def _synced_replicas() -> Optional[tf.distribute.ReplicaContext]:
    """The replica context of a step with several synchronous replicas, else None."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def replica_sum(value: tf.Tensor) -> tf.Tensor:
    context = _synced_replicas()
    return value if context is None else context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def global_mean(total: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """This replica's ``total`` over the global ``count``: summed over replicas, the global-batch mean."""
    count = tf.cast(count, total.dtype)
    return tf.math.divide_no_nan(total, replica_sum(tf.stop_gradient(count)))


def replica_share(value: tf.Tensor) -> tf.Tensor:
    """A per-replica mean over equally sized slices, scaled so that replicas' sum is the global mean."""
    context = _synced_replicas()
    return value if context is None else value / float(context.num_replicas_in_sync)


def replica_seed(seed: tf.Tensor) -> tf.Tensor:
    """``seed`` made distinct per synchronous replica (replicas would otherwise draw identical numbers)."""
    context = _synced_replicas()
    if context is None:
        return seed
    return tf.random.experimental.stateless_fold_in(seed, context.replica_id_in_sync_group)


def training_input(
    make_dataset: Callable[[], tf.data.Dataset],
) -> Union[tf.data.Dataset, tf.keras.utils.experimental.DatasetCreator]:
    """The training batches of ``make_dataset`` as the current strategy reads them.

    Synchronous workers each read their share of every batch of the same
    seeded order (data sharding: the input is in memory, not in files).
    Parameter-server workers each read every k-th batch of that order (k
    workers), endlessly: given a plain dataset, tf-keras hands every worker a
    copy of it, and with a seeded order they would all train on the same batches.
    """
    if is_parameter_server():
        def worker_share(context: tf.distribute.InputContext) -> tf.data.Dataset:
            return make_dataset().shard(context.num_input_pipelines, context.input_pipeline_id).repeat()

        return tf.keras.utils.experimental.DatasetCreator(worker_share)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return make_dataset().with_options(options)


def is_parameter_server() -> bool:
    return isinstance(tf.distribute.get_strategy(), tf.distribute.ParameterServerStrategy)


def batch_key(batch: tf.Tensor) -> tf.Tensor:
    """An int64 fingerprint of ``batch``'s contents: what tells apart the steps that asynchronous
    parameter-server workers run at the same optimiser step (each on its own batch)."""
    return tf.bitcast(tf.fingerprint(tf.reshape(batch, [1, -1]))[0], tf.int64)


def split_cpu(num_devices: int) -> None:
    """Splits the host CPU into ``num_devices`` logical devices; only possible before TensorFlow's runtime starts."""
    if num_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)


def _tf_config() -> dict:
    return json.loads(os.environ.get("TF_CONFIG", "{}"))


def cluster_task() -> tuple[Optional[str], int]:
    """(task type, index) of this process from ``TF_CONFIG``; (None, 0) outside a cluster."""
    task = _tf_config().get("task", {})
    return task.get("type"), int(task.get("index", 0))


def writes_outputs(strategy_name: str) -> bool:
    """Whether this process writes the run directory: the chief, or worker 0 of a chief-less cluster."""
    task_type, index = cluster_task()
    if strategy_name == "multi_worker" and task_type == "worker":
        return "chief" not in _tf_config().get("cluster", {}) and index == 0
    return task_type in CHIEF_TASK_TYPES


def _require_cluster(strategy_name: str) -> tf.distribute.cluster_resolver.TFConfigClusterResolver:
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if not resolver.cluster_spec().as_dict():
        raise ValueError(f"--strategy={strategy_name} needs TF_CONFIG describing the cluster (see README.md, 'Distributed training')")
    return resolver


def item_table_partitioner(num_items: int, num_shards: int) -> Callable:
    """Shards only variables with the item table's N + 1 rows (table and optimiser slots), row wise."""

    def partition(shape: tf.TensorShape, dtype: tf.DType, axis: int = 0) -> list[int]:
        partitions = [1] * len(shape)
        if len(shape) and shape[0] == num_items + 1:
            partitions[axis] = min(num_shards, num_items + 1)
        return partitions

    return partition


def make_strategy(strategy_name: str, num_items: int) -> tf.distribute.Strategy:
    """The strategy of ``--strategy``; multi-host kinds read the cluster from ``TF_CONFIG``."""
    if strategy_name == "default":
        return tf.distribute.get_strategy()
    if strategy_name == "mirrored":
        # Without GPUs, every logical CPU device (one unless the process split the CPU into several).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if strategy_name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=_require_cluster(strategy_name))
    if strategy_name == "parameter_server":
        resolver = _require_cluster(strategy_name)
        num_ps = len(resolver.cluster_spec().as_dict().get("ps", []))
        if num_ps == 0:
            raise ValueError("--strategy=parameter_server needs at least one 'ps' task in TF_CONFIG")
        return tf.distribute.ParameterServerStrategy(resolver, variable_partitioner=item_table_partitioner(num_items, num_ps))
    raise ValueError(f"unknown strategy {strategy_name!r}; choose from {STRATEGIES}")


def serve_if_cluster_server(strategy_name: str) -> bool:
    """Under ``parameter_server``, run a ``worker`` or ``ps`` task's server until killed; True if this was one."""
    task_type, index = cluster_task()
    if strategy_name != "parameter_server" or task_type not in ("worker", "ps"):
        return False
    resolver = _require_cluster(strategy_name)
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=task_type, task_index=index, protocol="grpc", start=True)
    server.join()
    return True
