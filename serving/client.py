"""Clients of the served recommender, over gRPC or REST, against TF Serving or serving/local_server.py alike.

    python -m serving.client --target=HOST:8500 --model=NAME --history=i1,i2,... [--k=10]
        [--signature=NAME] [--version=N] [--timeout=5] [--rest=http://HOST:8501]

``RecommendationClient`` speaks TF Serving's gRPC API (deadline on every
call; a call answered UNAVAILABLE, as while a server starts or has no version
loaded yet, is retried with exponential backoff; every other failure is a
``ServingError`` naming the status, the server and its message).
``RestRecommendationClient`` gives the same ``recommend`` / ``score`` over
TF Serving's REST API with the standard library alone. The command line
prints one history's recommendations and the sampler's view of the history;
it exits with 2 and a one-line message on bad flags or a serving error.
"""

from __future__ import annotations

import abc
import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NoReturn, Optional, Sequence

import tf_autosam  # noqa: F401  (selects tf-keras before TensorFlow loads)
import grpc
import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import protocol

SIGNATURE_DEF_FIELD = "signature_def"


class ServingError(Exception):
    """A request the server refused or could not answer: "CODE from TARGET: details"."""

    def __init__(self, code: str, target: str, details: str):
        super().__init__(f"{code} from {target}: {details}")
        self.code = code
        self.target = target
        self.details = details


@dataclass(frozen=True)
class Recommendation:
    """One history's answer; keep_probability and kept cover the history's own positions (no padding)."""

    item_ids: list[str]
    scores: list[float]
    keep_probability: list[float]
    kept: list[bool]
    unknown_items: int
    fallback: bool

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, np.ndarray], row: int, history_length: int) -> Recommendation:
        return cls(
            item_ids=[protocol.text(item) for item in outputs["item_ids"][row]],
            scores=[float(score) for score in outputs["scores"][row]],
            keep_probability=[float(p) for p in outputs["keep_probability"][row][:history_length]],
            kept=[bool(kept) for kept in outputs["kept"][row][:history_length]],
            unknown_items=int(outputs["unknown_items"][row]),
            fallback=bool(outputs["fallback"][row]),
        )


@dataclass(frozen=True)
class CandidateScores:
    """One history's scores of its own candidates, in their order (no padding)."""

    scores: list[float]
    known: list[bool]
    fallback: bool

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, np.ndarray], row: int, candidate_count: int) -> CandidateScores:
        return cls(
            scores=[float(score) for score in outputs["scores"][row][:candidate_count]],
            known=[bool(known) for known in outputs["known"][row][:candidate_count]],
            fallback=bool(outputs["fallback"][row]),
        )


class Client(abc.ABC):
    """recommend / score over any transport: subclasses only provide predict and close."""

    @abc.abstractmethod
    def predict(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A signature's outputs by name for named input arrays."""

    @abc.abstractmethod
    def close(self) -> None:
        """Releases the connection."""

    def recommend(
        self, histories: Sequence[Sequence[str]], k: Optional[int] = None, *, signature: Optional[str] = None
    ) -> list[Recommendation]:
        """Top items per history (raw ids, oldest first): serving_default's k, or recommend_k's when k is given."""
        inputs = {protocol.HISTORY: protocol.pad_rows(histories)}
        if k is not None:
            inputs[protocol.K] = np.array(k, dtype=np.int32)
        default = protocol.SERVING_DEFAULT if k is None else protocol.RECOMMEND_K
        outputs = self.predict(signature or default, inputs)
        return [Recommendation.from_outputs(outputs, row, len(history)) for row, history in enumerate(histories)]

    def score(self, histories: Sequence[Sequence[str]], candidates: Sequence[Sequence[str]]) -> list[CandidateScores]:
        """Each history's scores of its own candidate items."""
        if len(candidates) != len(histories):
            raise ValueError(f"{len(histories)} histories but {len(candidates)} candidate lists")
        inputs = {protocol.HISTORY: protocol.pad_rows(histories), protocol.CANDIDATES: protocol.pad_rows(candidates)}
        outputs = self.predict(protocol.SCORE_CANDIDATES, inputs)
        return [CandidateScores.from_outputs(outputs, row, len(items)) for row, items in enumerate(candidates)]

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RecommendationClient(Client):
    """TF Serving's gRPC API; ``retries`` more attempts after an UNAVAILABLE one, waiting backoff_s, 2 backoff_s, ..."""

    def __init__(
        self,
        target: str,
        model_name: str,
        *,
        version: Optional[int] = None,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.1,
    ):
        self.target = target
        self.model_name = model_name
        self.version = version
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        # gRPC waits 1 s (growing by 1.6x) before reconnecting to a refused address and meanwhile fails
        # calls at once, so retries against a server still starting would never reach it: the channel
        # reconnects at the retries' own pace instead.
        reconnect_ms = max(1, round(1000 * backoff_s))
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.initial_reconnect_backoff_ms", reconnect_ms),
            ("grpc.min_reconnect_backoff_ms", reconnect_ms),
            ("grpc.max_reconnect_backoff_ms", reconnect_ms),
            ("grpc.max_receive_message_length", -1),  # a large batch x k answer exceeds gRPC's default 4 MB
        ])
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def predict(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = predict_pb2.PredictRequest()
        self._fill_model_spec(request.model_spec, signature)
        for name, proto in protocol.tensor_protos(inputs).items():
            request.inputs[name].CopyFrom(proto)
        return protocol.ndarrays(self._call(self._predictions.Predict, request).outputs)

    def status(self) -> dict[int, str]:
        """State of each version the server holds (of the client's version only, if it names one)."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._fill_model_spec(request.model_spec)
        response = self._call(self._models.GetModelStatus, request)
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return {entry.version: state_name(entry.state) for entry in response.model_version_status}

    def metadata(self) -> dict[str, meta_graph_pb2.SignatureDef]:
        """The served version's SignatureDefs by signature name."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=[SIGNATURE_DEF_FIELD])
        self._fill_model_spec(request.model_spec)
        response = self._call(self._predictions.GetModelMetadata, request)
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_defs)
        return dict(signature_defs.signature_def)

    def close(self) -> None:
        self._channel.close()

    def _fill_model_spec(self, spec: model_pb2.ModelSpec, signature: str = "") -> None:
        spec.name = self.model_name
        spec.signature_name = signature
        if self.version is not None:
            spec.version.value = self.version

    def _call(self, rpc: Callable[..., Any], request: Any) -> Any:
        """rpc's response within the deadline; UNAVAILABLE retried, any other failure a ServingError."""
        attempt = 0
        while True:
            try:
                return rpc(request, timeout=self.timeout_s)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                    raise self._failure(error, attempt + 1) from None
            time.sleep(self.backoff_s * 2**attempt)
            attempt += 1

    def _failure(self, error: grpc.RpcError, attempts: int) -> ServingError:
        details = error.details() or ""
        if attempts > 1:
            details += f" (after {attempts} attempts)"
        return ServingError(error.code().name, self.target, details)


class RestRecommendationClient(Client):
    """TF Serving's REST API (columnar "inputs" format), with urllib; no retries."""

    def __init__(self, base_url: str, model_name: str, *, version: Optional[int] = None, timeout_s: float = 5.0):
        self.model_url = f"{base_url.rstrip('/')}/v1/models/{model_name}" + (f"/versions/{version}" if version is not None else "")
        self.timeout_s = timeout_s

    def predict(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name (a signature of several outputs: TF Serving answers a single one unnamed)."""
        body = {"signature_name": signature, "inputs": {name: protocol.json_value(array) for name, array in inputs.items()}}
        reply = self._exchange(f"{self.model_url}:predict", body)
        return {name: np.asarray(value) for name, value in reply["outputs"].items()}

    def status(self) -> dict[int, str]:
        reply = self._exchange(self.model_url)
        return {int(entry["version"]): entry["state"] for entry in reply["model_version_status"]}

    def close(self) -> None:
        """Nothing to release: each request opens its own connection."""

    def _exchange(self, url: str, body: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """The JSON reply to a GET (no body) or POST; failures as ServingError."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            raise ServingError(f"HTTP {error.code}", url, error_text(error.read())) from None
        except OSError as error:  # refused, unreachable, timed out
            raise ServingError("UNAVAILABLE", url, str(getattr(error, "reason", error))) from None


def error_text(body: bytes) -> str:
    """TF Serving's {"error": ...} message, or the body as it is."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", errors="replace")


# --- command line ------------------------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """Bad flags: one line on stderr and exit code 2 (argparse also prints the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m serving.client", description=__doc__.split("\n")[0])
    parser.add_argument("--target", help="gRPC address HOST:PORT of TF Serving or serving.local_server.")
    parser.add_argument("--rest", help="REST base URL (http://HOST:8501), instead of --target.")
    parser.add_argument("--model", default=protocol.DEFAULT_MODEL_NAME, help=f"Served model name. [default: {protocol.DEFAULT_MODEL_NAME}]")
    parser.add_argument("--history", required=True, help="The user's raw item ids, oldest first, comma-separated.")
    parser.add_argument("--k", type=int, help="Number of recommendations (recommend_k); none: serving_default's own k.")
    parser.add_argument("--signature", help="Signature to call instead (same inputs and outputs as serving_default / recommend_k).")
    parser.add_argument("--version", type=int, help="Model version to ask for; none: the newest loaded.")
    parser.add_argument("--timeout", type=float, default=5.0, help="Seconds per request. [default: 5]")
    args = parser.parse_args(argv)
    if (args.target is None) == (args.rest is None):
        parser.error("give exactly one of --target=HOST:PORT (gRPC) and --rest=URL")
    if "" in args.history.split(","):
        parser.error(f"--history has an empty item: {args.history!r}")
    return args


def make_client(args: argparse.Namespace) -> Client:
    if args.rest is not None:
        return RestRecommendationClient(args.rest, args.model, version=args.version, timeout_s=args.timeout)
    return RecommendationClient(args.target, args.model, version=args.version, timeout_s=args.timeout)


def format_recommendation(history: Sequence[str], recommendation: Recommendation) -> str:
    """A table of the recommendations, then of the history as the sampler saw it."""
    lines = [f"{'rank':>4}  {'item id':<24} {'score':>12}"]
    for rank, (item, score) in enumerate(zip(recommendation.item_ids, recommendation.scores), start=1):
        lines.append(f"{rank:>4}  {item:<24} {score:>12.6g}")
    lines += ["", f"{'pos':>4}  {'history item':<24} {'keep prob':>12}  kept"]
    for position, (item, probability, kept) in enumerate(
        zip(history, recommendation.keep_probability, recommendation.kept), start=1
    ):
        lines.append(f"{position:>4}  {item:<24} {probability:>12.4f}  {'yes' if kept else 'no'}")
    lines.append(f"unknown items: {recommendation.unknown_items}, popularity fallback: {'yes' if recommendation.fallback else 'no'}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    history = args.history.split(",")
    try:
        with make_client(args) as client:
            [recommendation] = client.recommend([history], args.k, signature=args.signature)
    except ServingError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(format_recommendation(history, recommendation))
    return 0


if __name__ == "__main__":
    sys.exit(main())
