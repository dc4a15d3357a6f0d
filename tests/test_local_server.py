"""serving.local_server over real gRPC and HTTP on 127.0.0.1, serving a toy SavedModel with the export's signatures."""

from __future__ import annotations

import gc
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Optional

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import local_server
from serving.local_server import LocalServer

MODEL = "toy"
CATALOGUE = [f"item-{i}" for i in range(10)] + ["ünï-çødé"]
DEFAULT_K = 3
HISTORY_SPEC = tf.TensorSpec([None, None], tf.string, name="history")
# Unequal histories, padded at the end; unknown ids, non-ASCII text and an all-padding row.
HISTORIES = [["item-1", "item-2", "nope"], ["ünï-çødé", "", ""], ["", "", ""], ["item-9", "item-3", "item-4"]]
REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
WAIT_S = 30.0


class ToyRecommender(tf.Module):
    """Deterministic stand-in for the export: hashed ids, a sine score, top-k over a constant catalogue.

    ``salt`` (a variable, so the SavedModel has variables) makes versions answer differently.
    """

    def __init__(self, salt: float):
        super().__init__()
        self.catalogue = tf.constant(CATALOGUE)
        self.salt = tf.Variable(salt)

    @tf.function(input_signature=[HISTORY_SPEC])
    def recommend(self, history: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._recommend(history, tf.constant(DEFAULT_K))

    @tf.function(input_signature=[HISTORY_SPEC, tf.TensorSpec([], tf.int32, name="k")])
    def recommend_k(self, history: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._recommend(history, k)

    @tf.function(input_signature=[HISTORY_SPEC, tf.TensorSpec([None, None], tf.string, name="candidates")])
    def score_candidates(self, history: tf.Tensor, candidates: tf.Tensor) -> dict[str, tf.Tensor]:
        known_history, user = self._user(history)
        known = self._known(candidates)
        scores = tf.where(known, self._affinity(user[:, tf.newaxis], candidates), 0.0)
        return {"scores": scores, "known": known, "fallback": tf.logical_not(tf.reduce_any(known_history, axis=1))}

    def _recommend(self, history: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        tf.debugging.assert_positive(k, message="k must be at least 1")
        known, user = self._user(history)
        scores, top = tf.math.top_k(self._affinity(user[:, tf.newaxis], self.catalogue[tf.newaxis, :]), k=k)
        keep = tf.where(known, tf.sigmoid(self._hash(history) / 100.0 - 5.0), 0.0)
        unknown = tf.logical_and(tf.logical_not(known), tf.not_equal(history, ""))
        return {
            "item_ids": tf.gather(self.catalogue, top),
            "scores": scores,
            "keep_probability": keep,
            "kept": keep > 0.5,
            "unknown_items": tf.reduce_sum(tf.cast(unknown, tf.int32), axis=1),
            "fallback": tf.logical_not(tf.reduce_any(known, axis=1)),
        }

    def _known(self, items: tf.Tensor) -> tf.Tensor:
        return tf.reduce_any(tf.equal(items[..., tf.newaxis], self.catalogue), axis=-1)

    def _hash(self, items: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.strings.to_hash_bucket_fast(items, 1000), tf.float32)

    def _user(self, history: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        known = self._known(history)
        return known, tf.reduce_sum(tf.where(known, self._hash(history), 0.0), axis=1)

    def _affinity(self, user: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        return tf.sin(user * 0.01 + self._hash(items) * self.salt)


def write_toy_model(base: pathlib.Path, version: int, salt: float = 1.0, folder: Optional[str] = None) -> pathlib.Path:
    """Version ``version`` of the toy model (in ``folder``, default the version number), saved in a hidden
    sibling folder and renamed in (as exports do)."""
    module = ToyRecommender(salt)
    signatures = {
        "serving_default": module.recommend.get_concrete_function(),
        "recommend_k": module.recommend_k.get_concrete_function(),
        "score_candidates": module.score_candidates.get_concrete_function(),
    }
    base.mkdir(parents=True, exist_ok=True)
    scratch, target = base / f".tmp-{version}", base / (folder or str(version))
    tf.saved_model.save(module, str(scratch), signatures=signatures)
    os.rename(scratch, target)
    return target


def python_outputs(version_dir: pathlib.Path, signature: str, **inputs: Any) -> dict[str, np.ndarray]:
    """What calling the SavedModel's signature in Python gives: the reference for every served answer."""
    function = tf.saved_model.load(str(version_dir)).signatures[signature]
    return {name: value.numpy() for name, value in function(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def padded(histories: list[list[str]]) -> np.ndarray:
    return np.array([[item.encode() for item in row] for row in histories], dtype=object)


def predict_request(
    signature: str = "serving_default", model: str = MODEL, version: Optional[int] = None, label: str = "",
    output_filter: tuple[str, ...] = (), **inputs: Any,
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.model_spec.version_label = label
    if version is not None:
        request.model_spec.version.value = version
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def outputs_of(response: predict_pb2.PredictResponse) -> dict[str, np.ndarray]:
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def assert_same_outputs(served: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(served) == sorted(expected)
    for name, value in expected.items():
        assert served[name].dtype == value.dtype, name
        np.testing.assert_array_equal(served[name], value, err_msg=name)


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def served_version(stub: prediction_service_pb2_grpc.PredictionServiceStub) -> Optional[int]:
    """The version answering a request that names none; None while the server has none."""
    try:
        return stub.Predict(predict_request(history=padded(HISTORIES)), timeout=5).model_spec.version.value
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error
        return None


def http(url: str, body: Optional[bytes] = None) -> tuple[int, Any]:
    """(HTTP status, decoded JSON reply) of a GET (no body) or POST."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture(scope="module")
def version_one(tmp_path_factory) -> pathlib.Path:
    return write_toy_model(tmp_path_factory.mktemp("models") / MODEL, 1)


@pytest.fixture(scope="module")
def server(version_one):
    with LocalServer(version_one.parent, MODEL, host="127.0.0.1", rest_port=0, max_batch=8, poll_seconds=0.2) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.bound.grpc}") as opened:
        yield opened


@pytest.fixture(scope="module")
def stub(channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def model_stub(channel) -> model_service_pb2_grpc.ModelServiceStub:
    return model_service_pb2_grpc.ModelServiceStub(channel)


@pytest.mark.parametrize("signature, inputs", [
    ("serving_default", {"history": padded(HISTORIES)}),
    ("recommend_k", {"history": padded(HISTORIES), "k": np.int32(5)}),
    ("score_candidates", {"history": padded(HISTORIES), "candidates": padded([["item-3", "nope"]] * len(HISTORIES))}),
])
def test_predict_answers_exactly_what_the_signature_gives_in_python(stub, version_one, signature, inputs):
    response = stub.Predict(predict_request(signature, **inputs), timeout=10)
    assert_same_outputs(outputs_of(response), python_outputs(version_one, signature, **inputs))
    assert (response.model_spec.name, response.model_spec.version.value) == (MODEL, 1)
    assert response.model_spec.signature_name == signature


def test_empty_signature_name_means_serving_default_and_output_filter_is_honoured(stub, version_one):
    response = stub.Predict(predict_request("", output_filter=("scores", "item_ids"), history=padded(HISTORIES)), timeout=10)
    expected = python_outputs(version_one, "serving_default", history=padded(HISTORIES))
    assert_same_outputs(outputs_of(response), {name: expected[name] for name in ("scores", "item_ids")})
    assert response.model_spec.signature_name == "serving_default"


GOOD = padded(HISTORIES[:1])
BAD_REQUESTS = {
    "wrong input name": (dict(histories=GOOD), grpc.StatusCode.INVALID_ARGUMENT, ["unexpected ['histories']", "missing ['history']"]),
    "missing input": (dict(signature="recommend_k", history=GOOD), grpc.StatusCode.INVALID_ARGUMENT, ["missing ['k']", "'recommend_k'"]),
    "extra input": (dict(history=GOOD, k=np.int32(2)), grpc.StatusCode.INVALID_ARGUMENT, ["unexpected ['k']", "expected inputs ['history']"]),
    "wrong dtype": (dict(history=np.array([[1, 2]], np.int32)), grpc.StatusCode.INVALID_ARGUMENT, ["'history' expects tf.string, got DT_INT32"]),
    "wrong rank": (dict(history=GOOD[0]), grpc.StatusCode.INVALID_ARGUMENT, ["'history' expects rank 2", "got rank 1"]),
    "batched k": (dict(signature="recommend_k", history=GOOD, k=np.array([2], np.int32)), grpc.StatusCode.INVALID_ARGUMENT, ["'k' expects rank 0"]),
    "oversize batch": (dict(history=padded(HISTORIES[:1] * 9)), grpc.StatusCode.INVALID_ARGUMENT, ["batch size 9", "maximum of 8"]),
    "non-UTF-8 bytes": (dict(history=np.array([[b"item-1", b"\xff\xfe"]], dtype=object)), grpc.StatusCode.INVALID_ARGUMENT, ["not valid UTF-8 at [0, 1]"]),
    "unknown model": (dict(model="nope", history=GOOD), grpc.StatusCode.NOT_FOUND, ["Servable not found for request: Latest(nope)"]),
    "unknown version": (dict(version=7, history=GOOD), grpc.StatusCode.NOT_FOUND, ["Specific(toy, 7)", "loaded versions: [1]"]),
    "version label": (dict(label="stable", history=GOOD), grpc.StatusCode.INVALID_ARGUMENT, ["Unrecognized servable version label: stable"]),
    "unknown signature": (dict(signature="nope", history=GOOD), grpc.StatusCode.FAILED_PRECONDITION, ['Serving signature key "nope" not found']),
    "unknown output": (dict(output_filter=("nope",), history=GOOD), grpc.StatusCode.INVALID_ARGUMENT, ["alias not found in signature: nope"]),
    "model raises": (dict(signature="recommend_k", history=GOOD, k=np.int32(0)), grpc.StatusCode.INVALID_ARGUMENT, ["k must be at least 1"]),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_a_bad_request_gets_its_status_and_the_server_keeps_serving(stub, version_one, case):
    request, code, fragments = BAD_REQUESTS[case]
    error = rpc_error(lambda: stub.Predict(predict_request(**request), timeout=10))
    assert error.code() == code, error.details()
    for fragment in fragments:
        assert fragment in error.details()
    response = stub.Predict(predict_request(history=GOOD), timeout=10)
    assert_same_outputs(outputs_of(response), python_outputs(version_one, "serving_default", history=GOOD))


def test_model_status(model_stub):
    def status(model: str = MODEL, version: Optional[int] = None) -> get_model_status_pb2.GetModelStatusResponse:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        return model_stub.GetModelStatus(request, timeout=10)

    for response in (status(), status(version=1)):
        [entry] = response.model_version_status
        assert (entry.version, entry.state, entry.status.error_code) == (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)
    missing = rpc_error(lambda: status(version=5))
    assert (missing.code(), missing.details()) == (grpc.StatusCode.NOT_FOUND, "Could not find version 5 of model toy")
    unknown = rpc_error(lambda: status("nope"))
    assert (unknown.code(), unknown.details()) == (grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nope")


def test_model_metadata_holds_the_saved_signature_defs(stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    response = stub.GetModelMetadata(request, timeout=10)
    assert (response.model_spec.name, response.model_spec.version.value) == (MODEL, 1)
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_defs)
    defs = signature_defs.signature_def
    assert {"serving_default", "recommend_k", "score_candidates"} <= set(defs)
    assert defs["recommend_k"].method_name == "tensorflow/serving/predict"
    k, history = defs["recommend_k"].inputs["k"], defs["recommend_k"].inputs["history"]
    assert (k.dtype, list(k.tensor_shape.dim)) == (types_pb2.DT_INT32, [])
    assert (history.dtype, [dim.size for dim in history.tensor_shape.dim]) == (types_pb2.DT_STRING, [-1, -1])
    assert {name: info.dtype for name, info in defs["serving_default"].outputs.items()} == {
        "item_ids": types_pb2.DT_STRING, "scores": types_pb2.DT_FLOAT, "keep_probability": types_pb2.DT_FLOAT,
        "kept": types_pb2.DT_BOOL, "unknown_items": types_pb2.DT_INT32, "fallback": types_pb2.DT_BOOL,
    }
    assert set(defs["score_candidates"].outputs) == {"scores", "known", "fallback"}


@pytest.mark.parametrize("fields, fragment", [([], "at least one metadata_field"), (["signature_def", "graph"], "graph is not supported")])
def test_model_metadata_rejects_bad_fields(stub, fields, fragment):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
    request.model_spec.name = MODEL
    error = rpc_error(lambda: stub.GetModelMetadata(request, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and fragment in error.details()


def test_other_rpcs_are_unimplemented(stub, model_stub):
    for call in (lambda: stub.Classify(classification_pb2.ClassificationRequest(), timeout=10),
                 lambda: model_stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), timeout=10)):
        assert rpc_error(call).code() == grpc.StatusCode.UNIMPLEMENTED


def test_concurrent_requests_all_get_their_own_answers(server, version_one):
    """8 client threads x 250 requests, each thread its own histories: no error, no answer crossed over."""
    threads, requests_each = 8, 250
    rows = [[CATALOGUE[(thread + step) % 10] for step in range(thread % 3 + 1)] for thread in range(threads)]
    expected = [python_outputs(version_one, "serving_default", history=padded([row]))["item_ids"] for row in rows]
    failures: list[str] = []

    def client(thread: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{server.bound.grpc}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_request(output_filter=("item_ids",), history=padded([rows[thread]]))
            for _ in range(requests_each):
                try:
                    items = tf.make_ndarray(stub.Predict(request, timeout=30).outputs["item_ids"])
                    if not np.array_equal(items, expected[thread]):
                        failures.append(f"thread {thread}: {items} != {expected[thread]}")
                except grpc.RpcError as error:
                    failures.append(f"thread {thread}: {error.code()} {error.details()}")

    workers = [threading.Thread(target=client, args=(thread,)) for thread in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []


def test_versions_appear_without_restart_and_the_previous_one_stays_requestable(tmp_path, caplog):
    caplog.set_level("INFO", logger=local_server.__name__)
    base = tmp_path / MODEL
    (base / "notes").mkdir(parents=True)  # not a version: ignored
    with LocalServer(base, MODEL, host="127.0.0.1", poll_seconds=0.1) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.bound.grpc}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            waiting = rpc_error(lambda: stub.Predict(predict_request(history=GOOD), timeout=10))
            assert waiting.code() == grpc.StatusCode.UNAVAILABLE and "no version loaded yet" in waiting.details()

            versions = {version: write_toy_model(base, version, salt=float(version)) for version in (1, 2)}
            wait_for(lambda: served_version(stub) == 2, "version 2")  # 1 and 2 may both appear in one poll
            expected = {version: python_outputs(path, "serving_default", history=padded(HISTORIES)) for version, path in versions.items()}
            assert not np.array_equal(expected[1]["scores"], expected[2]["scores"])
            for version in (None, 2):
                assert_same_outputs(outputs_of(stub.Predict(predict_request(version=version, history=padded(HISTORIES)), timeout=10)), expected[2])

            write_toy_model(base, 3, salt=3.0)
            (base / "9").mkdir()  # an integer folder without a SavedModel (yet): ignored
            wait_for(lambda: served_version(stub) == 3, "version 3")
            previous = stub.Predict(predict_request(version=2, history=padded(HISTORIES)), timeout=10)
            assert_same_outputs(outputs_of(previous), expected[2])
            assert previous.model_spec.version.value == 2
            gone = rpc_error(lambda: stub.Predict(predict_request(version=1, history=GOOD), timeout=10))
            assert gone.code() == grpc.StatusCode.NOT_FOUND and "loaded versions: [2, 3]" in gone.details()

            broken = base / ".tmp-8"
            broken.mkdir()
            (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
            os.rename(broken, base / "8")
            wait_for(lambda: "cannot load toy version 8" in caplog.text, "the failed load of version 8")
            assert served_version(stub) == 3
            assert stub.Predict(predict_request(version=2, history=GOOD), timeout=10).model_spec.version.value == 2

            shutil.rmtree(base / "8")  # the broken export replaced by a good one under the same number
            write_toy_model(base, 8, salt=8.0)
            wait_for(lambda: served_version(stub) == 8, "version 8, exported again")
            write_toy_model(base, 11, salt=11.0, folder="0011")  # zero-padded, as TF Serving accepts
            wait_for(lambda: served_version(stub) == 11, "version 11 from folder 0011")


def test_version_one_is_served_before_version_two_appears(tmp_path):
    """The previous version stays loaded while a new one loads: both answer by number once it is in."""
    base = tmp_path / MODEL
    first = write_toy_model(base, 1, salt=1.0)
    with LocalServer(base, MODEL, host="127.0.0.1", poll_seconds=0.1) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.bound.grpc}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            assert served_version(stub) == 1
            write_toy_model(base, 2, salt=2.0)
            wait_for(lambda: served_version(stub) == 2, "version 2")
            old = stub.Predict(predict_request(version=1, history=padded(HISTORIES)), timeout=10)
            assert_same_outputs(outputs_of(old), python_outputs(first, "serving_default", history=padded(HISTORIES)))
            status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec={"name": MODEL}), timeout=10)
            assert [entry.version for entry in status.model_version_status] == [1, 2]


def rest_url(server: LocalServer, path: str) -> str:
    return f"http://127.0.0.1:{server.bound.rest}{path}"


def test_rest_columnar_format(server, version_one):
    inputs = {"history": HISTORIES, "k": 4}
    status, reply = http(rest_url(server, "/v1/models/toy:predict"), json.dumps({"signature_name": "recommend_k", "inputs": inputs}).encode())
    assert status == 200
    expected = python_outputs(version_one, "recommend_k", history=padded(HISTORIES), k=np.int32(4))
    assert reply["outputs"]["item_ids"] == [[item.decode() for item in row] for row in expected["item_ids"].tolist()]
    for name in ("scores", "keep_probability", "kept", "unknown_items", "fallback"):
        np.testing.assert_array_equal(np.array(reply["outputs"][name], dtype=expected[name].dtype), expected[name], err_msg=name)


@pytest.mark.parametrize("instances", [[{"history": row} for row in HISTORIES], HISTORIES], ids=["named", "bare"])
def test_rest_row_format(server, version_one, instances):
    status, reply = http(rest_url(server, "/v1/models/toy/versions/1:predict"), json.dumps({"instances": instances}).encode())
    assert status == 200
    expected = python_outputs(version_one, "serving_default", history=padded(HISTORIES))
    assert len(reply["predictions"]) == len(HISTORIES)
    for row, prediction in enumerate(reply["predictions"]):
        assert prediction["item_ids"] == [item.decode() for item in expected["item_ids"][row]]
        assert prediction["scores"] == expected["scores"][row].tolist()
        assert (prediction["unknown_items"], prediction["fallback"]) == (expected["unknown_items"][row], expected["fallback"][row])


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/v1/models/nope:predict", {"inputs": {"history": HISTORIES}}, 404, "Servable not found for request: Latest(nope)"),
    ("/v1/models/toy/versions/3:predict", {"inputs": {"history": HISTORIES}}, 404, "Specific(toy, 3)"),
    ("/v1/models/toy:predict", {"inputs": {"history": [["a"], ["b", "c"]]}}, 400, "'history' cannot be read"),
    ("/v1/models/toy:predict", {"inputs": {"history": [[1, 2]]}}, 400, "'history' cannot be read"),
    ("/v1/models/toy:predict", {"signature_name": "recommend_k", "inputs": {"history": HISTORIES, "k": "3"}}, 400, "expects tf.int32 values, got strings"),
    ("/v1/models/toy:predict", {"signature_name": "recommend_k", "instances": [{"history": HISTORIES[0], "k": 3}]}, 400, "'k' expects rank 0"),
    ("/v1/models/toy:predict", {"signature_name": "recommend_k", "inputs": HISTORIES}, 400, "name them"),
    ("/v1/models/toy:predict", {"signature_name": "nope", "inputs": {"history": HISTORIES}}, 400, 'signature key "nope" not found'),
    ("/v1/models/toy:predict", {"history": HISTORIES}, 400, 'exactly one of "instances"'),
    ("/v1/models/toy:predict", None, 400, "JSON Parse error"),
    ("/v1/models/toy:explain", {"inputs": {"history": HISTORIES}}, 400, "Malformed request: POST /v1/models/toy:explain"),
])
def test_rest_errors(server, path, body, status, fragment):
    data = b"{not json" if body is None else json.dumps(body).encode()
    answer = http(rest_url(server, path), data)
    assert answer[0] == status and fragment in answer[1]["error"], answer
    assert http(rest_url(server, "/v1/models/toy:predict"), json.dumps({"instances": HISTORIES}).encode())[0] == 200


def test_rest_model_status(server):
    available = {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert http(rest_url(server, "/v1/models/toy")) == (200, available)
    assert http(rest_url(server, "/v1/models/toy/versions/1")) == (200, available)
    assert http(rest_url(server, "/v1/models/nope")) == (404, {"error": "Could not find any versions of model nope"})


def test_command_line_serves_until_sigterm(version_one):
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.local_server", f"--model_base_path={version_one.parent}", f"--model_name={MODEL}",
         "--port=0", "--host=127.0.0.1", "--poll_seconds=60"],
        cwd=REPOSITORY, stderr=subprocess.PIPE, text=True,
    )
    try:
        port = None
        for line in process.stderr:
            match = re.search(r"gRPC port (\d+)", line)
            if match:
                port = int(match[1])
                break
        assert port is not None, "the server never reported its port"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(predict_request(history=GOOD), timeout=10)
        assert response.model_spec.version.value == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()
        process.stderr.close()


def test_stop_signals_records_a_signal_sent_before_the_wait():
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop_signals = local_server.StopSignals()
        os.kill(os.getpid(), signal.SIGTERM)  # before wait(), as when a client stops the server at once
        assert stop_signals.wait() == signal.SIGTERM
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@pytest.mark.parametrize("flags", [["--max_batch=0"], ["--poll_seconds=0"], ["--intra_op_threads=-1"], []])
def test_command_line_rejects_bad_flags(tmp_path, flags):
    base = [] if flags == [] else [f"--model_base_path={tmp_path}"]
    with pytest.raises(SystemExit) as exited:
        local_server.parse_args(base + flags)
    assert exited.value.code == 2


class BigVocabulary(tf.Module):
    """A model whose state is mostly a lookup table, as a large catalogue's raw-id vocabulary is."""

    def __init__(self, vocabulary: pathlib.Path):
        super().__init__()
        initializer = tf.lookup.TextFileInitializer(
            str(vocabulary), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
        self.table = tf.lookup.StaticHashTable(initializer, -1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def lookup(self, history):
        return {"item_ids": self.table.lookup(history)}


def resident_bytes() -> int:
    """This process's resident memory (Linux)."""
    return int(pathlib.Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_reloading_a_version_does_not_keep_the_memory_of_the_one_before(tmp_path):
    """The eager loader never frees a SavedModel's lookup tables (tensorflow#61866): about 17 MB more per reload here."""
    vocabulary = tmp_path / "items.vocab"
    vocabulary.write_text("".join(f"item-{index}\n" for index in range(400_000)))
    module = BigVocabulary(vocabulary)
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.lookup})
    resident = []
    for _ in range(8):
        version = local_server.load_version(tmp_path / "1", 1)
        answer = version.signatures["serving_default"].compute({"history": np.array([b"item-7", b"x"], object)}, ["item_ids"])
        assert list(answer["item_ids"]) == [7, -1]
        del version
        gc.collect()
        resident.append(resident_bytes())
    assert resident[-1] - resident[1] < 60 * 2**20, [f"{value / 2**20:.0f} MB" for value in resident]


def test_an_error_the_model_raises_keeps_its_status_code():
    def out_of_memory(arrays, outputs):
        """A signature that runs out of memory, as a huge k x batch can."""
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    signature = local_server.Signature(1, "serving_default", {"history": HISTORY_SPEC}, ["item_ids"], out_of_memory)
    with pytest.raises(local_server.ServingFailure) as failure:
        local_server.call(signature, {"history": GOOD}, ["item_ids"])
    assert failure.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "OOM" in failure.value.message
    assert local_server.HTTP_STATUS[failure.value.code] == 429  # retryable, not the caller's fault (400)
