"""One process of a distributed test: the CLI, then this process's final weights.

    python tests/distributed_job.py WEIGHTS.npz <python -m tf_autosam.main flags>

Runs ``python -m tf_autosam.main`` with these flags (``--cpu_devices``,
``--strategy``, ``TF_CONFIG``; ``worker``/``ps`` tasks of a parameter-server
cluster serve until killed; a non-chief worker of a synchronous cluster trains
in a scratch directory beside the chief's backup) and saves the trained
model's weights, where each item-table shard lives and, where this process
wrote the run directory, the epochs' losses to ``WEIGHTS.npz``, so that a test
can compare processes.
"""

import json
import pathlib
import sys

import tf_autosam  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np

from tf_autosam import main as cli
from tf_autosam import training


def run(weights_path: str, argv: list[str]) -> int:
    built, build_model = [], training.build_model

    def build_and_keep(*args, **kwargs):
        built.append(build_model(*args, **kwargs))
        return built[-1]

    training.build_model = build_and_keep
    code = cli.main(argv)
    if code != 0 or not built:  # a failure, or a server task of a parameter-server cluster
        return code
    model = built[0]
    table = model.backbone.item_embedding.embeddings
    shards = [variable.device for variable in getattr(table, "variables", [table])]
    epochs_file = pathlib.Path(cli.resolve_config(argv).run_dir) / "epochs.json"
    losses = [epoch["loss"] for epoch in json.loads(epochs_file.read_text())] if epochs_file.exists() else []
    np.savez(weights_path, *[v.numpy() for v in model.trainable_variables], losses=np.array(losses), shards=np.array(shards))
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2:]))
