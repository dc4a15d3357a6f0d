"""Serving latency: p50 / p99 and throughput, in process and over gRPC, batch 1 and 32.

    python benchmarks/serving_latency.py [--num_items=1682,1000000] [--requests=300] [--jit_compile] [--intra_op_threads=1]

For each catalogue size, an AutoSAM model of the reference architecture
(d 128, 2 blocks, max_len 100; latency does not depend on the weights, so it
is not trained) is exported exactly as a run exports it, then queried with
full-length histories of random catalogue items: in process through the
SavedModel's signature, and over gRPC through ``serving.client`` against
``serving.local_server`` on 127.0.0.1. Latency is per request (a request
holds ``batch`` histories); throughput is histories per second of one client
issuing requests back to back.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Callable

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

import tf_autosam  # noqa: E402,F401  (selects tf-keras before TensorFlow loads)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from input_pipeline.prepare import PreparationReport, PreparedData  # noqa: E402
from serving.client import RecommendationClient  # noqa: E402
from serving.export import export_model  # noqa: E402
from serving.local_server import LocalServer  # noqa: E402
from tf_autosam.config import preset  # noqa: E402
from tf_autosam.models import build_recommender  # noqa: E402

MODEL_NAME = "autosam"


def synthetic_catalogue(num_items: int, rng: np.random.Generator) -> PreparedData:
    """Raw ids ``item-1`` .. ``item-N``, every item in some training sequence (popularity skewed)."""
    per_user = 50
    users = max(1, -(-num_items // (per_user - 2)))
    training = rng.permutation(np.resize(np.arange(1, num_items + 1, dtype=np.int32), users * (per_user - 2)))
    held_out = rng.integers(1, num_items + 1, size=(users, 2), dtype=np.int32)
    items = np.concatenate([training.reshape(users, per_user - 2), held_out], axis=1).reshape(-1)
    report = PreparationReport(
        source="synthetic catalogue", rows=len(items), users=users, items=num_items, interactions=len(items),
        excluded_users=0, excluded_interactions=0, duplicates_removed=0, k_core_removed_users=0,
        k_core_removed_interactions=0, dedupe=False, k_core=0,
    )
    return PreparedData(
        items=items, timestamps=np.arange(len(items), dtype=np.int64),
        offsets=np.arange(0, len(items) + 1, per_user, dtype=np.int64),
        user_vocab=[f"user-{u}" for u in range(users)],
        item_vocab=[""] + [f"item-{i}" for i in range(1, num_items + 1)],
        report=report,
    )


def timed(call: Callable[[], object], requests: int, warmup: int = 5) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, requests/s) of ``call`` issued back to back."""
    for _ in range(warmup):
        call()
    latencies = []
    started = time.perf_counter()
    for _ in range(requests):
        begin = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return 1000 * statistics.median(latencies), 1000 * latencies[int(0.99 * (len(latencies) - 1))], requests / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_items", default="1682,1000000", help="Comma-separated catalogue sizes (1682 = ML-100K).")
    parser.add_argument("--batches", default="1,32", help="Comma-separated histories per request.")
    parser.add_argument("--requests", type=int, default=300, help="Timed requests per setting (p99 needs at least 100).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the weights and the histories.")
    parser.add_argument("--jit_compile", action="store_true", help="Export with the model compiled by XLA (serving.export --jit_compile).")
    parser.add_argument("--intra_op_threads", type=int, default=0, help="Threads per TensorFlow op, in process and in the server (serving.local_server --intra_op_threads); 0: every core.")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    config = preset("reference").replace(model="autosam", inference_mode="deterministic", seed=args.seed)
    rng = np.random.default_rng(args.seed)
    print(f"model: autosam, d {config.hidden_size}, {config.num_blocks} blocks, max_len {config.max_len}, deterministic sampler"
          f"{', compiled with XLA' if args.jit_compile else ''}, intra-op threads {args.intra_op_threads or 'all cores'}")
    print(f"{'items':>9} {'batch':>5} {'path':<10} {'p50 ms':>8} {'p99 ms':>8} {'histories/s':>12}")
    for num_items in (int(value) for value in args.num_items.split(",")):
        data = synthetic_catalogue(num_items, rng)
        tf.keras.utils.set_random_seed(args.seed)
        model = build_recommender(config, num_items)
        with tempfile.TemporaryDirectory() as base:
            export_model(model, data, config, pathlib.Path(base), MODEL_NAME, jit_compile=args.jit_compile)
            served = tf.saved_model.load(str(pathlib.Path(base) / MODEL_NAME / "1")).signatures["serving_default"]
            server = LocalServer(pathlib.Path(base) / MODEL_NAME, MODEL_NAME, port=0)
            port = server.start()[0]
            try:
                with RecommendationClient(f"127.0.0.1:{port}", MODEL_NAME, timeout_s=30.0) as client:
                    for batch in (int(value) for value in args.batches.split(",")):
                        histories = [[f"item-{i}" for i in rng.integers(1, num_items + 1, config.max_len)] for _ in range(batch)]
                        history = tf.constant(histories)
                        for path, call in (("in process", lambda: served(history=history)),
                                           ("gRPC", lambda: client.recommend(histories))):
                            p50, p99, rate = timed(call, args.requests)
                            print(f"{num_items:>9,} {batch:>5} {path:<10} {p50:8.2f} {p99:8.2f} {rate * batch:12,.0f}", flush=True)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
