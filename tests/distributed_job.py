"""One process of a distributed test: the CLI's training path, then this process's final weights.

    python tests/distributed_job.py WEIGHTS.npz <python -m tf_autosam.main flags>

Trains as ``python -m tf_autosam.main`` does (``--cpu_devices``, ``--strategy``,
``TF_CONFIG``; ``worker``/``ps`` tasks of a parameter-server cluster serve until
killed), with the run directory the flags give, and saves the trained model's
weights, the epochs' logs and where each item-table shard lives to
``WEIGHTS.npz``, so that a test can compare processes.
"""

import json
import sys

import tf_autosam  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np

from input_pipeline.datasets import load_dataset
from tf_autosam import distribution, training
from tf_autosam import main as cli
from tf_autosam.run_directory import RunDirectory


def run(weights_path: str, argv: list[str]) -> None:
    config = cli.resolve_config(argv)
    distribution.split_cpu(config.cpu_devices)
    if distribution.serve_if_cluster_server(config.strategy):
        return
    built, build_model = [], training.build_model

    def build_and_keep(*args, **kwargs):
        built.append(build_model(*args, **kwargs))
        return built[-1]

    training.build_model = build_and_keep
    data = load_dataset("csv", data_path=config.data_path, data_dir=config.data_dir)
    run_directory = RunDirectory(config.run_dir)
    training.run_training(config, data, run_directory, log=lambda line: None)
    model = built[0]
    table = model.backbone.item_embedding.embeddings
    shards = [variable.device for variable in getattr(table, "variables", [table])]
    epochs = json.loads((run_directory.path / "epochs.json").read_text())
    np.savez(weights_path, *[v.numpy() for v in model.trainable_variables],
             losses=np.array([epoch["loss"] for epoch in epochs]), shards=np.array(shards))


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2:])
