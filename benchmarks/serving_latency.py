"""Serving latency: p50 / p99 and throughput, in process and over gRPC, batch 1 and 32.

    python benchmarks/serving_latency.py [--preset=default] [--num_items=1682,1000000] [--requests=300] [--jit_compile]
        [--intra_op_threads=1] [--chunk_items=N] [--breakdown]

For each catalogue size, an AutoSAM model of ``--preset`` (default: the
preset ``python -m tf_autosam.main`` trains and exports; d 128, 2 blocks,
max_len 100) is exported exactly as a run exports it, untrained, then
queried with full-length histories of random catalogue items: in process
through the SavedModel's signature, and over gRPC through ``serving.client``
against ``serving.local_server`` on 127.0.0.1. Latency is per request (a
request holds ``batch`` histories); throughput is histories per second of one
client issuing requests back to back. The weights matter in one way only:
the compacted pass is as wide as the longest kept history of the request,
so each line prints the mean share of history items the untrained sampler kept
(the `default` preset trained on ML-100K keeps 89% of the test inputs).

``--breakdown`` splits a gRPC request's latency instead: the signature alone,
the server's request handling without transport (``PredictionServicer``), a
gRPC server answering a recorded response (the transport's floor), a request
built once sent to the server, and the client API's whole request; timed in alternating blocks in one process, because separate
runs on this kind of machine differ by more than the parts do.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import tempfile
import time
from concurrent import futures
from typing import Callable, Mapping

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

import tf_autosam  # noqa: E402,F401  (selects tf-keras before TensorFlow loads)
import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from input_pipeline.prepare import PreparationReport, PreparedData  # noqa: E402
from serving.client import RecommendationClient  # noqa: E402
from serving.export import export_model  # noqa: E402
from serving.local_server import LocalServer, PredictionServicer  # noqa: E402
from serving import protocol  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402
from tf_autosam.config import PRESETS, preset  # noqa: E402
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


def timed_alternating(calls: Mapping[str, Callable[[], object]], blocks: int = 12, per_block: int = 25, dropped: int = 3) -> dict[str, float]:
    """p50 ms of each call, timed in turns of per_block calls (the first ``dropped`` of each turn not counted)."""
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        for _ in range(dropped):
            call()
    for _ in range(blocks):
        for name, call in calls.items():
            for index in range(per_block):
                begin = time.perf_counter()
                call()
                if index >= dropped:
                    latencies[name].append(time.perf_counter() - begin)
    return {name: 1000 * statistics.median(values) for name, values in latencies.items()}


class RecordedAnswer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers every Predict with one recorded response: gRPC's own cost for a request of this size."""

    def __init__(self, response: predict_pb2.PredictResponse):
        self.response = response

    def Predict(self, request: predict_pb2.PredictRequest, context: object) -> predict_pb2.PredictResponse:
        return self.response


def print_breakdown(server: LocalServer, served: Callable[..., object], client: RecommendationClient, histories: list[list[str]], label: str) -> None:
    """Where a gRPC request's time goes: model, server code, transport, and what none of them explains."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.inputs[protocol.HISTORY].CopyFrom(protocol.tensor_proto(protocol.pad_rows(histories)))
    servicer = PredictionServicer(server.endpoint)
    echo = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(RecordedAnswer(servicer.predict(request)), echo)
    echo_port = echo.add_insecure_port("127.0.0.1:0")
    echo.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{echo_port}") as echo_channel, \
                grpc.insecure_channel(f"127.0.0.1:{server.bound.grpc}") as server_channel:
            echo_call = prediction_service_pb2_grpc.PredictionServiceStub(echo_channel).Predict
            server_call = prediction_service_pb2_grpc.PredictionServiceStub(server_channel).Predict
            history = tf.constant(histories)
            p50 = timed_alternating({
                "signature": lambda: served(history=history),
                "server code, no transport": lambda: servicer.predict(request),
                "gRPC, recorded answer": lambda: echo_call(request, timeout=30.0),
                "gRPC, request built once": lambda: server_call(request, timeout=30.0),
                "gRPC, client API": lambda: client.recommend(histories),
            })
    finally:
        echo.stop(None)
    for name, value in p50.items():
        print(f"{label} {name:<30} {value:8.2f}")
    parts = {
        "server code": p50["server code, no transport"] - p50["signature"],
        "client code": p50["gRPC, client API"] - p50["gRPC, request built once"],
        "unexplained": p50["gRPC, request built once"] - p50["server code, no transport"] - p50["gRPC, recorded answer"],
    }
    for name, value in parts.items():
        print(f"{label} {'= ' + name:<30} {value:8.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS), help="Preset of the exported model (default: what the main job exports).")
    parser.add_argument("--num_items", default="1682,1000000", help="Comma-separated catalogue sizes (1682 = ML-100K).")
    parser.add_argument("--batches", default="1,32", help="Comma-separated histories per request.")
    parser.add_argument("--requests", type=int, default=300, help="Timed requests per setting (p99 needs at least 100).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the weights and the histories.")
    parser.add_argument("--jit_compile", action="store_true", help="Export with the model compiled by XLA (serving.export --jit_compile).")
    parser.add_argument("--breakdown", action="store_true", help="Split the gRPC latency into model, server code and transport (p50 ms) instead of the table.")
    parser.add_argument("--chunk_items", type=int, default=None, help="Export with this serving_chunk_items: catalogues larger than it are scored in chunks (default: the preset's, 1,048,576).")
    parser.add_argument("--intra_op_threads", type=int, default=0, help="Threads per TensorFlow op, in process and in the server (serving.local_server --intra_op_threads); 0: every core.")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    config = preset(args.preset).replace(model="autosam", inference_mode="deterministic", seed=args.seed)
    if args.chunk_items is not None:
        config = config.replace(serving_chunk_items=args.chunk_items)
    rng = np.random.default_rng(args.seed)
    print(f"model: autosam, preset {args.preset}, d {config.hidden_size}, {config.num_blocks} blocks, max_len {config.max_len}, "
          f"deterministic sampler{', surprise feature (one more backbone pass)' if config.sampler_surprise else ''}"
          f"{', compiled with XLA' if args.jit_compile else ''}, intra-op threads {args.intra_op_threads or 'all cores'}, "
          f"top-k in chunks of {config.serving_chunk_items:,} items above that catalogue size")
    if args.breakdown:
        print(f"{'items':>9} {'batch':>5} {'part of a request':<30} {'p50 ms':>8}")
    else:
        print(f"{'items':>9} {'batch':>5} {'path':<10} {'p50 ms':>8} {'p99 ms':>8} {'histories/s':>12} {'kept %':>7}")
    for num_items in (int(value) for value in args.num_items.split(",")):
        data = synthetic_catalogue(num_items, rng)
        tf.keras.utils.set_random_seed(args.seed)
        model = build_recommender(config, num_items)
        with tempfile.TemporaryDirectory() as base:
            export_model(model, data, config, pathlib.Path(base), MODEL_NAME, jit_compile=args.jit_compile)
            served = tf.saved_model.load(str(pathlib.Path(base) / MODEL_NAME / "1")).signatures["serving_default"]
            server = LocalServer(pathlib.Path(base) / MODEL_NAME, MODEL_NAME, port=0, intra_op_threads=args.intra_op_threads)
            port = server.start()[0]
            try:
                with RecommendationClient(f"127.0.0.1:{port}", MODEL_NAME, timeout_s=30.0) as client:
                    for batch in (int(value) for value in args.batches.split(",")):
                        histories = [[f"item-{i}" for i in rng.integers(1, num_items + 1, config.max_len)] for _ in range(batch)]
                        if args.breakdown:
                            print_breakdown(server, served, client, histories, f"{num_items:>9,} {batch:>5}")
                            continue
                        history = tf.constant(histories)
                        kept = 100 * float(tf.reduce_mean(tf.cast(served(history=history)["kept"], tf.float32)))
                        for path, call in (("in process", lambda: served(history=history)),
                                           ("gRPC", lambda: client.recommend(histories))):
                            p50, p99, rate = timed(call, args.requests)
                            print(f"{num_items:>9,} {batch:>5} {path:<10} {p50:8.2f} {p99:8.2f} {rate * batch:12,.0f} {kept:7.0f}", flush=True)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
