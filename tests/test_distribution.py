"""tf.distribute: one device vs mirrored replicas, two synchronous workers, a parameter-server cluster.

Each run is a separate process (``tests/distributed_job.py``: the CLI's
training path): logical devices and cluster membership are fixed per process.
Every process is bounded by a timeout and killed by the test that started it.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from logs import write_interaction_log
from input_pipeline import pipeline
from tf_autosam import distribution, models
from tf_autosam.config import TrainerConfig

JOB = pathlib.Path(__file__).with_name("distributed_job.py")
ROOT = JOB.parent.parent
TIMEOUT_S = 300
FLAGS = ["--epochs=3", "--max_len=8", "--hidden_size=16", "--num_heads=2", "--ffn_size=16", "--num_blocks=1",
         "--batch_size=16", "--patience=5", "--dropout=0", "--verbose=0", "--no-export"]


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory):
    """50 users with 6-13 interactions over 30 items (uneven lengths: replicas see different numbers of targets)."""
    return write_interaction_log(tmp_path_factory.mktemp("data") / "log.csv", users=50, items=30, seed=3, max_length=14)


def job_command(tmp_path: pathlib.Path, csv: pathlib.Path, name: str, *flags: str) -> list[str]:
    return [sys.executable, str(JOB), str(tmp_path / f"{name}.npz"), "--dataset=csv", f"--data_path={csv}",
            f"--data_dir={tmp_path / 'cache'}", f"--run_dir={tmp_path / name}", *FLAGS, *flags]


def environment(tf_config: dict | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def run_jobs(commands: list[list[str]], envs: list[dict], wait_for: int | None = None) -> None:
    """Starts every command, waits for the first ``wait_for`` (all by default), kills them all."""
    processes = [subprocess.Popen(c, env=e, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for c, e in zip(commands, envs)]
    try:
        for process in processes[: wait_for or len(processes)]:
            output, _ = process.communicate(timeout=TIMEOUT_S)
            assert process.returncode == 0, output[-3000:]
    finally:
        for process in processes:
            process.kill()
            process.wait()


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def weights(path: pathlib.Path) -> list[np.ndarray]:
    saved = np.load(path)
    return [saved[f"arr_{i}"] for i in range(len([k for k in saved.files if k.startswith("arr_")]))]


# AutoSAM in its warm-up keeps every behaviour but runs its whole step (compaction, rewards, both optimisers).
# The weight average is updated inside each replica's step and swapped between epochs outside them.
@pytest.mark.parametrize("model_flags", [["--model=sasrec"], ["--model=autosam", "--sampler_warmup_epochs=3"],
                                         ["--model=sasrec", "--weight_average_decay=0.9"]],
                         ids=["sasrec", "autosam", "sasrec_weight_average"])
def test_mirrored_replicas_follow_the_one_device_trajectory(tmp_path, tiny_csv, model_flags):
    """Same global batch on 1 device and on 2 mirrored CPU replicas: same epoch losses and weights.

    Tolerance 1e-5 (measured: 1.4e-7 relative on the losses, 1.2e-7 on the weights): the
    replicas' gradient sum adds in a different order than one device's.
    """
    run_jobs([job_command(tmp_path, tiny_csv, "one", "--cpu_devices=2", *model_flags),
              job_command(tmp_path, tiny_csv, "two", "--cpu_devices=2", "--strategy=mirrored", *model_flags)],
             [environment(), environment()])
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    for single, mirrored in zip(weights(tmp_path / "one.npz"), weights(tmp_path / "two.npz")):
        np.testing.assert_allclose(mirrored, single, rtol=1e-5, atol=1e-5)
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["test"] == pytest.approx(
        json.loads((tmp_path / "one" / "metrics.json").read_text())["test"], abs=1e-6)


def test_two_synchronous_workers_agree_on_the_final_weights(tmp_path, tiny_csv):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    commands = [job_command(tmp_path, tiny_csv, f"worker{i}", "--strategy=multi_worker", "--model=autosam",
                            "--sampler_warmup_epochs=1") for i in range(2)]
    run_jobs(commands, [environment({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(2)])
    first, second = weights(tmp_path / "worker0.npz"), weights(tmp_path / "worker1.npz")
    assert len(first) == len(second) > 0
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert np.all(np.isfinite(np.load(tmp_path / "worker0.npz")["losses"]))


def steps_in_resume_file(backup_dir: pathlib.Path) -> list[int]:
    try:
        return [int(step) for step in json.loads((backup_dir / "resume.json").read_text())]
    except (OSError, ValueError):
        return []


def test_a_killed_synchronous_cluster_resumes_every_worker_from_the_chiefs_backup(tmp_path, tiny_csv):
    """Both workers killed after a mid-run backup and restarted with the same commands end as an
    uninterrupted cluster does: the non-chief worker restores from the chief's backup too."""
    flags = ["--strategy=multi_worker", "--model=sasrec", "--epochs=4", "--backup_every_steps=2"]

    def cluster(name: str) -> tuple[list[list[str]], list[dict]]:
        ports = free_ports(2)
        workers = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        commands = [[*job_command(tmp_path, tiny_csv, f"{name}{i}", *flags), f"--run_dir={tmp_path / name}"]
                    for i in range(2)]
        return commands, [environment({"cluster": workers, "task": {"type": "worker", "index": i}}) for i in range(2)]

    run_jobs(*cluster("whole"))
    commands, envs = cluster("killed")
    backup = tmp_path / "killed" / "backup"
    processes = [subprocess.Popen(c, env=e, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for c, e in zip(commands, envs)]
    try:
        deadline = time.monotonic() + TIMEOUT_S
        # Two entries past the first step: the older one's checkpoint is whole (each entry precedes its own).
        while len([step for step in steps_in_resume_file(backup) if step > 2]) < 2:
            assert time.monotonic() < deadline and all(p.poll() is None for p in processes), "the run ended first"
            time.sleep(0.05)
    finally:
        for process in processes:
            process.kill()
            process.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    run_jobs(commands, envs)  # the same commands, on fresh ports' worth of the same cluster
    whole, resumed = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("whole", "killed"))
    assert resumed["best_epoch"] == whole["best_epoch"]
    assert resumed["test"] == pytest.approx(whole["test"], abs=1e-6)
    for name in ("killed0", "killed1"):
        for resumed_weights, whole_weights in zip(weights(tmp_path / f"{name}.npz"), weights(tmp_path / "whole0.npz")):
            np.testing.assert_allclose(resumed_weights, whole_weights, rtol=1e-5, atol=1e-6)
    assert not backup.exists()


def test_parameter_server_cluster_trains_with_the_item_table_sharded(tmp_path, tiny_csv):
    ports = free_ports(5)
    cluster = {"chief": [f"127.0.0.1:{ports[0]}"], "worker": [f"127.0.0.1:{p}" for p in ports[1:3]],
               "ps": [f"127.0.0.1:{p}" for p in ports[3:]]}
    tasks = [("chief", 0), ("worker", 0), ("worker", 1), ("ps", 0), ("ps", 1)]
    commands = [job_command(tmp_path, tiny_csv, f"{kind}{index}", "--strategy=parameter_server", "--model=autosam",
                            "--sampler_warmup_epochs=1", "--epochs=2") for kind, index in tasks]
    envs = [environment({"cluster": cluster, "task": {"type": kind, "index": index}}) for kind, index in tasks]
    run_jobs(commands, envs, wait_for=1)
    chief = np.load(tmp_path / "chief0.npz")
    assert sorted(chief["shards"]) == ["/job:ps/replica:0/task:0/device:CPU:0", "/job:ps/replica:0/task:1/device:CPU:0"]
    assert np.all(np.isfinite(chief["losses"])) and len(chief["losses"]) == 2
    assert json.loads((tmp_path / "chief0" / "metrics.json").read_text())["test"]["NDCG@10"] > 0


def test_only_the_chief_writes_outputs(monkeypatch):
    def as_task(cluster, kind, index):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}}))

    workers = {"worker": ["a:1", "b:2"]}
    as_task(workers, "worker", 0)
    assert distribution.writes_outputs("multi_worker")
    as_task(workers, "worker", 1)
    assert not distribution.writes_outputs("multi_worker")
    as_task(dict(workers, chief=["c:3"]), "worker", 0)
    assert not distribution.writes_outputs("multi_worker")
    as_task(dict(workers, chief=["c:3"]), "chief", 0)
    assert distribution.writes_outputs("parameter_server")
    monkeypatch.delenv("TF_CONFIG")
    assert distribution.writes_outputs("mirrored")


def test_item_table_partitioner_shards_only_the_item_table():
    partition = distribution.item_table_partitioner(num_items=99, num_shards=2)
    assert partition(tf.TensorShape([100, 16]), tf.float32) == [2, 1]
    assert partition(tf.TensorShape([16, 16]), tf.float32) == [1, 1]
    assert partition(tf.TensorShape([100]), tf.float32) == [2]


def test_cluster_strategies_need_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for name in ("multi_worker", "parameter_server"):
        with pytest.raises(ValueError, match="TF_CONFIG"):
            distribution.make_strategy(name, num_items=10)


def test_replicas_draw_distinct_random_numbers_from_one_step_seed():
    script = (
        "import tf_autosam, tensorflow as tf\n"
        "from tf_autosam import distribution\n"
        "distribution.split_cpu(2)\n"
        "strategy = distribution.make_strategy('mirrored', 10)\n"
        "seed = tf.constant([1, 2], tf.int64)\n"
        "draw = tf.function(lambda: tf.random.stateless_uniform([8], distribution.replica_seed(seed)))\n"
        "first, second = [t.numpy() for t in strategy.experimental_local_results(strategy.run(draw))]\n"
        "alone = tf.random.stateless_uniform([8], distribution.replica_seed(seed)).numpy()\n"
        "from tf_autosam.layers.dropout import dropout\n"
        "masks = tf.function(lambda: dropout(tf.ones([4, 16]), 0.5, distribution.replica_seed(seed), site=0))\n"
        "mask_one, mask_two = [t.numpy() for t in strategy.experimental_local_results(strategy.run(masks))]\n"
        "print(strategy.num_replicas_in_sync, bool((first != second).all()), bool((alone == tf.random.stateless_uniform([8], seed).numpy()).all()),\n"
        "      bool((mask_one != mask_two).any()))\n"
    )
    output = subprocess.run([sys.executable, "-c", script], env=environment(), cwd=ROOT, capture_output=True,
                            text=True, timeout=TIMEOUT_S)
    # Replicas: 2; the sampler's draws differ; one device keeps its seed; dropout masks differ.
    assert output.stdout.split() == ["2", "True", "True", "True"], output.stderr[-2000:]


def test_parameter_server_workers_read_disjoint_shares_of_the_batch_order(monkeypatch):
    """tf-keras would give every parameter-server worker a copy of one dataset: with a seeded order,
    the same batches. Each worker reads every k-th batch instead, and together they read the epoch."""
    windows = (np.arange(20, dtype=np.int32).reshape(10, 2), np.zeros((10, 2), np.int32))
    make_dataset = lambda: pipeline.training_dataset(windows, batch_size=2, seed=1)  # noqa: E731
    epoch = [batch[0].numpy() for batch in make_dataset()]
    monkeypatch.setattr(distribution, "is_parameter_server", lambda: True)
    creator = distribution.training_input(make_dataset)
    shares = [[batch[0].numpy() for batch in creator(tf.distribute.InputContext(2, worker)).take(len(epoch))]
              for worker in range(2)]
    np.testing.assert_array_equal(np.stack(shares[0][:3]), np.stack(epoch[0::2]))
    np.testing.assert_array_equal(np.stack(shares[1][:2]), np.stack(epoch[1::2]))
    np.testing.assert_array_equal(shares[1][2], epoch[1])  # endless: the share repeats


def test_parameter_server_steps_seed_by_their_batch(monkeypatch):
    """Asynchronous workers can run the same optimiser step on different batches: under parameter-server
    training the step's seeds fold in the batch, so those steps draw different masks and actions."""
    config = TrainerConfig(max_len=4, hidden_size=8, num_heads=2, ffn_size=8, num_blocks=1)
    model = models.build_recommender(config, num_items=9)
    model.compile(optimizer=models.recommender_optimizer(config))
    batches = tf.constant([[0, 1, 2, 3]]), tf.constant([[0, 1, 2, 4]])

    def seeds(batch):
        with model.seeded_by(batch):
            return model.step_seed(models.ACTIONS).numpy(), model.replica_step_seed(models.RECOMMENDER_DROPOUT).numpy()

    counter_only = model.step_seed(models.ACTIONS).numpy()
    for batch in batches:
        assert (seeds(batch)[0] == counter_only).all()
    monkeypatch.setattr(models, "is_parameter_server", lambda: True)
    first, second, again = seeds(batches[0]), seeds(batches[1]), seeds(batches[0])
    for stream in range(2):
        assert (first[stream] != second[stream]).any()
        np.testing.assert_array_equal(first[stream], again[stream])
    assert (first[0] != counter_only).any()
    assert model._step_batch_key is None
