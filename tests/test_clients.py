"""serving.client: gRPC and REST clients against serving.local_server (toy model), retries against a scripted fake."""

from __future__ import annotations

import socket
import threading
import time
from concurrent import futures
from typing import Iterator

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving import client as client_module
from serving import protocol
from serving.client import CandidateScores, Recommendation, RecommendationClient, RestRecommendationClient, ServingError
from serving.local_server import LocalServer
from test_local_server import DEFAULT_K, MODEL, python_outputs, write_toy_model

# Unequal lengths: the client pads them; unknown ids and non-ASCII text included.
HISTORIES = [["item-1", "item-2", "nope"], ["ünï-çødé"], [], ["item-9", "item-3", "item-4", "item-5"]]
CANDIDATES = [["item-3"], ["item-1", "nope", "ünï-çødé"], ["item-2", "item-0"], []]


def recommendations(version_dir, signature: str, histories: list[list[str]], **inputs) -> list[Recommendation]:
    """The answer the client should give, from the SavedModel called in Python."""
    outputs = python_outputs(version_dir, signature, history=protocol.pad_rows(histories), **inputs)
    return [Recommendation.from_outputs(outputs, row, len(history)) for row, history in enumerate(histories)]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def version_one(tmp_path_factory):
    return write_toy_model(tmp_path_factory.mktemp("models") / MODEL, 1)


@pytest.fixture(scope="module")
def server(version_one):
    with LocalServer(version_one.parent, MODEL, host="127.0.0.1", rest_port=0) as running:
        yield running


@pytest.fixture(scope="module")
def grpc_client(server) -> Iterator[RecommendationClient]:
    with RecommendationClient(f"127.0.0.1:{server.bound.grpc}", MODEL) as opened:
        yield opened


@pytest.fixture(scope="module")
def rest_client(server) -> RestRecommendationClient:
    return RestRecommendationClient(f"http://127.0.0.1:{server.bound.rest}", MODEL)


def test_pad_rows_left_aligns_and_pads_at_the_end():
    padded = protocol.pad_rows([["a", "b"], [], ["ç"]])
    assert padded.tolist() == [[b"a", b"b"], [b"", b""], ["ç".encode(), b""]]
    assert protocol.pad_rows([]).shape == (0, 0)


def test_recommend_without_k_calls_serving_default(grpc_client, version_one):
    answers = grpc_client.recommend(HISTORIES)
    assert answers == recommendations(version_one, "serving_default", HISTORIES)
    assert [len(answer.item_ids) for answer in answers] == [DEFAULT_K] * len(HISTORIES)
    assert [len(answer.kept) for answer in answers] == [len(answer.keep_probability) for answer in answers] == [3, 1, 0, 4]
    assert [(answer.unknown_items, answer.fallback) for answer in answers[:3]] == [(1, False), (0, False), (0, True)]


def test_recommend_with_k_calls_recommend_k(grpc_client, version_one):
    answers = grpc_client.recommend(HISTORIES, k=6)
    assert answers == recommendations(version_one, "recommend_k", HISTORIES, k=np.int32(6))
    assert {len(answer.item_ids) for answer in answers} == {6}


def test_padding_does_not_change_a_history_s_answer(grpc_client):
    alone = grpc_client.recommend([HISTORIES[1]], k=4)
    assert grpc_client.recommend(HISTORIES, k=4)[1] == alone[0]


def test_score_trims_each_row_to_its_own_candidates(grpc_client, version_one):
    answers = grpc_client.score(HISTORIES, CANDIDATES)
    outputs = python_outputs(version_one, "score_candidates", history=protocol.pad_rows(HISTORIES), candidates=protocol.pad_rows(CANDIDATES))
    assert answers == [CandidateScores.from_outputs(outputs, row, len(items)) for row, items in enumerate(CANDIDATES)]
    assert [answer.known for answer in answers] == [[True], [True, False, True], [True, True], []]
    with pytest.raises(ValueError, match="2 histories but 1 candidate lists"):
        grpc_client.score(HISTORIES[:2], CANDIDATES[:1])


def test_status_and_metadata(grpc_client):
    assert grpc_client.status() == {1: "AVAILABLE"}
    signatures = grpc_client.metadata()
    assert {"serving_default", "recommend_k", "score_candidates"} <= set(signatures)
    assert set(signatures["recommend_k"].inputs) == {"history", "k"}


def test_server_errors_become_serving_errors(server, grpc_client):
    target = f"127.0.0.1:{server.bound.grpc}"
    with pytest.raises(ServingError) as raised:
        grpc_client.recommend(HISTORIES, k=0)
    assert raised.value.code == "INVALID_ARGUMENT"
    assert str(raised.value).startswith(f"INVALID_ARGUMENT from {target}: ")
    assert "k must be at least 1" in str(raised.value)
    with RecommendationClient(target, "nope") as wrong_model, pytest.raises(ServingError, match="NOT_FOUND from .*Latest\\(nope\\)"):
        wrong_model.recommend(HISTORIES)
    with RecommendationClient(target, MODEL, version=9) as wrong_version:
        with pytest.raises(ServingError, match="NOT_FOUND from .*Specific\\(toy, 9\\)"):
            wrong_version.recommend(HISTORIES)
        with pytest.raises(ServingError, match="NOT_FOUND from .*Could not find version 9 of model toy"):
            wrong_version.status()


def test_a_pinned_version_is_the_one_asked_for(server, version_one):
    with RecommendationClient(f"127.0.0.1:{server.bound.grpc}", MODEL, version=1) as pinned:
        assert pinned.recommend(HISTORIES) == recommendations(version_one, "serving_default", HISTORIES)
        assert pinned.status() == {1: "AVAILABLE"}


class ScriptedPredictions(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers Predict with the scripted failures first (a code, or a delay in seconds), then with ``response``."""

    def __init__(self, script: list, response: predict_pb2.PredictResponse):
        self.script = list(script)
        self.response = response
        self.calls = 0

    def Predict(self, request, context):
        self.calls += 1
        step = self.script.pop(0) if self.script else None
        if isinstance(step, grpc.StatusCode):
            context.abort(step, f"scripted {step.name}")
        if isinstance(step, float):
            time.sleep(step)
        return self.response


@pytest.fixture(scope="module")
def canned(version_one) -> tuple[predict_pb2.PredictResponse, list[Recommendation]]:
    """A real serving_default response for HISTORIES, and the answer it stands for."""
    outputs = python_outputs(version_one, "serving_default", history=protocol.pad_rows(HISTORIES))
    response = predict_pb2.PredictResponse()
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return response, recommendations(version_one, "serving_default", HISTORIES)


@pytest.fixture
def scripted(canned):
    """(start(script) -> (servicer, target)); every server started is stopped after the test."""
    servers = []

    def start(script: list) -> tuple[ScriptedPredictions, str]:
        servicer = ScriptedPredictions(script, canned[0])
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return servicer, f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(None)


def test_unavailable_is_retried_with_backoff(scripted, canned):
    servicer, target = scripted([grpc.StatusCode.UNAVAILABLE] * 2)
    started = time.monotonic()
    with RecommendationClient(target, MODEL, retries=3, backoff_s=0.1) as flaky:
        assert flaky.recommend(HISTORIES) == canned[1]
    assert servicer.calls == 3
    assert time.monotonic() - started >= 0.1 + 0.2


def test_retries_give_up_with_the_last_status(scripted):
    servicer, target = scripted([grpc.StatusCode.UNAVAILABLE] * 5)
    with RecommendationClient(target, MODEL, retries=2, backoff_s=0.01) as flaky, pytest.raises(ServingError) as raised:
        flaky.recommend(HISTORIES)
    assert servicer.calls == 3
    assert raised.value.code == "UNAVAILABLE"
    assert str(raised.value) == f"UNAVAILABLE from {target}: scripted UNAVAILABLE (after 3 attempts)"


@pytest.mark.parametrize("step, code", [(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"), (1.0, "DEADLINE_EXCEEDED")])
def test_other_failures_are_not_retried(scripted, step, code):
    servicer, target = scripted([step])
    with RecommendationClient(target, MODEL, timeout_s=0.3, backoff_s=0.01) as flaky, pytest.raises(ServingError) as raised:
        flaky.recommend(HISTORIES)
    assert (servicer.calls, raised.value.code) == (1, code)


def test_an_absent_server_is_unavailable_after_the_retries():
    target = f"127.0.0.1:{closed_port()}"
    with RecommendationClient(target, MODEL, retries=1, backoff_s=0.01) as absent, pytest.raises(ServingError) as raised:
        absent.recommend(HISTORIES)
    assert raised.value.code == "UNAVAILABLE" and "(after 2 attempts)" in str(raised.value)


def test_retries_reach_a_server_that_opens_its_port_after_the_first_attempt(version_one, grpc_client):
    port = closed_port()
    late = LocalServer(version_one.parent, MODEL, port=port, host="127.0.0.1")
    late.endpoint.store.refresh()  # the model loaded beforehand: start() then only opens the port
    opening = threading.Timer(0.3, late.start)
    with RecommendationClient(f"127.0.0.1:{port}", MODEL) as patient:  # default retries: 0.1 + 0.2 + 0.4 s
        opening.start()
        try:
            assert patient.recommend(HISTORIES) == grpc_client.recommend(HISTORIES)
        finally:
            opening.join()
            late.stop()


def test_rest_client_answers_as_the_grpc_client(rest_client, grpc_client):
    assert rest_client.recommend(HISTORIES) == grpc_client.recommend(HISTORIES)
    assert rest_client.recommend(HISTORIES, k=5) == grpc_client.recommend(HISTORIES, k=5)
    assert rest_client.score(HISTORIES, CANDIDATES) == grpc_client.score(HISTORIES, CANDIDATES)
    assert rest_client.status() == grpc_client.status()


def test_rest_client_errors(server, rest_client):
    with pytest.raises(ServingError) as raised:
        rest_client.recommend(HISTORIES, k=0)
    assert raised.value.code == "HTTP 400" and "k must be at least 1" in raised.value.details
    base = f"http://127.0.0.1:{server.bound.rest}"
    with pytest.raises(ServingError, match="HTTP 404 from .*Servable not found for request: Latest\\(nope\\)"):
        RestRecommendationClient(base, "nope").recommend(HISTORIES)
    with pytest.raises(ServingError, match="UNAVAILABLE"):
        RestRecommendationClient(f"http://127.0.0.1:{closed_port()}", MODEL, timeout_s=2).recommend(HISTORIES)


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_command_line_prints_the_table(server, version_one, capsys, transport):
    address = f"--target=127.0.0.1:{server.bound.grpc}" if transport == "grpc" else f"--rest=http://127.0.0.1:{server.bound.rest}"
    assert client_module.main([address, f"--model={MODEL}", "--history=item-1,item-2,nope", "--k=2"]) == 0
    [expected] = recommendations(version_one, "recommend_k", [["item-1", "item-2", "nope"]], k=np.int32(2))
    printed = capsys.readouterr().out
    assert printed == client_module.format_recommendation(["item-1", "item-2", "nope"], expected) + "\n"
    lines = printed.splitlines()
    assert lines[1].split()[:2] == ["1", expected.item_ids[0]] and lines[2].split()[:2] == ["2", expected.item_ids[1]]
    assert [line.split()[1] for line in lines[5:8]] == ["item-1", "item-2", "nope"]
    assert lines[-1] == "unknown items: 1, popularity fallback: no"


def test_command_line_serving_error_exits_2_with_one_line(server, capsys):
    assert client_module.main([f"--target=127.0.0.1:{server.bound.grpc}", f"--model={MODEL}", "--history=item-1", "--k=0"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: INVALID_ARGUMENT from ") and "k must be at least 1" in error
    assert error.count("\n") == 1


@pytest.mark.parametrize("flags", [
    ["--history=item-1"],  # neither --target nor --rest
    ["--target=127.0.0.1:1", "--rest=http://127.0.0.1:1", "--history=item-1"],
    ["--target=127.0.0.1:1"],  # no --history
    ["--target=127.0.0.1:1", "--history=item-1,,item-2"],
    ["--target=127.0.0.1:1", "--history=item-1", "--k=two"],
])
def test_command_line_bad_flags_exit_2_with_one_line(capsys, flags):
    with pytest.raises(SystemExit) as exited:
        client_module.main(flags)
    assert exited.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
