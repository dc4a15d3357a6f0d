"""A local stand-in for TF Serving: its gRPC (and REST) API over one model folder.

    python -m serving.local_server --model_base_path=DIR --port=8500 [--model_name=autosam]
        [--rest_port=8501] [--poll_seconds=2] [--max_batch=256]

Production runs the official ``tensorflow_model_server``, which cannot be
installed everywhere; this server answers the same requests with the same
status codes and messages (TF Serving's own wording where it has one), so the
clients in ``serving/client.py`` work unchanged against both.

Versions: ``<model_base_path>/<integer>/`` SavedModels. The newest is loaded
at start (none yet: requests get UNAVAILABLE until one appears); a poller
loads a newer one fully, then swaps it in, keeping the version it replaces
loaded too (at most the newest 2), so requests naming either keep working.
Folders with other names (an exporter's temporary folders) are ignored. A
version that fails to load is logged and skipped until its folder changes
(replaced, or a copy still in progress completed), then tried again.

Any SavedModel with signatures works: inputs are checked against a
signature's input specs (names, dtype, rank, shape, batch size, UTF-8 text)
before it runs, and an error the model raises keeps its status code. Each
version runs in its own graph session, fed and fetched by the SignatureDef's
tensor names, as TF Serving runs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import re
import signal
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from http import server as http_server
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence, TypeVar

import tf_autosam  # noqa: F401  (selects tf-keras before TensorFlow loads)
import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
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

log = logging.getLogger(__name__)

SERVE_TAG = "serve"
INIT_OP_SIGNATURE = "__saved_model_init_op"  # the loader runs it (tables' initialisers); never a request's
SIGNATURE_DEF_FIELD = "signature_def"
DEFAULT_MAX_BATCH = 256
DEFAULT_POLL_SECONDS = 2.0
GRPC_THREADS = 16
UNLIMITED_MESSAGES = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]

# TF Serving's HTTP status for each gRPC status code (its http_server.cc); codes not listed: 500.
HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
# TensorFlow's error codes are gRPC's, number for number.
GRPC_STATUS_OF_TF_CODE = {code.value[0]: code for code in grpc.StatusCode}

Answer = TypeVar("Answer")
Decoder = Callable[[tf.TensorSpec, Any], np.ndarray]


class ServingFailure(Exception):
    """A refused request: the status code and message a client sees (HTTP status derived for REST)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> ServingFailure:
    """The request's own fault, TF Serving's most common answer."""
    return ServingFailure(grpc.StatusCode.INVALID_ARGUMENT, message)


# --- versions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelVersion:
    """One loaded version: a session over its graph and the SignatureDefs it runs and reports.

    A graph session, as TF Serving runs a version: its variables and lookup
    tables live in the session and are freed with it when the version is
    dropped. (A SavedModel loaded into the eager runtime never frees its lookup
    tables, tensorflow#61866: every reload of a 300,000-item vocabulary kept
    17 MB.) The session closes itself once no request holds the version.
    """

    version: int
    signature_defs: get_model_metadata_pb2.SignatureDefMap
    signatures: Mapping[str, Signature]  # those a request may name: not the loader's own init op


def folder_state(path: pathlib.Path) -> tuple[tuple[str, int, int], ...]:
    """Every file below ``path`` with its size and modification time: changes when the folder is replaced or completed."""
    stats = ((file.relative_to(path), file.stat()) for file in sorted(path.rglob("*")) if file.is_file())
    return tuple((str(name), stat.st_size, stat.st_mtime_ns) for name, stat in stats)


def load_version(path: pathlib.Path, version: int, intra_op_threads: int = 0) -> ModelVersion:
    """A version fully loaded, ready to swap in: nothing is served from it before this returns.

    The SignatureDefs are the serving meta graph's as stored: what TF Serving's
    metadata returns, tensor names included.
    """
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=intra_op_threads)
    session = tf.compat.v1.Session(graph=tf.Graph(), config=config)
    try:
        meta_graph = tf.compat.v1.saved_model.load(session, [SERVE_TAG], str(path))
    except BaseException:
        session.close()
        raise
    definitions = meta_graph.signature_def
    signatures = {
        name: session_signature(version, name, definition, session)
        for name, definition in sorted(definitions.items()) if name != INIT_OP_SIGNATURE
    }
    return ModelVersion(version, get_model_metadata_pb2.SignatureDefMap(signature_def=definitions), signatures)


def session_signature(version: int, name: str, definition: meta_graph_pb2.SignatureDef, session: tf.compat.v1.Session) -> Signature:
    """A SignatureDef run by feeding and fetching its tensors by name, as TF Serving does (only the outputs asked for)."""
    inputs = {
        alias: tf.TensorSpec(tf.TensorShape(info.tensor_shape), tf.as_dtype(info.dtype), alias)
        for alias, info in definition.inputs.items()
    }
    feeds = {alias: info.name for alias, info in definition.inputs.items()}
    fetches = {alias: info.name for alias, info in definition.outputs.items()}

    def compute(arrays: Mapping[str, np.ndarray], outputs: Sequence[str]) -> Mapping[str, np.ndarray]:
        return session.run({alias: fetches[alias] for alias in outputs}, {feeds[alias]: array for alias, array in arrays.items()})

    return Signature(version, name, inputs, sorted(fetches), compute)


def request_text(model_name: str, version: Optional[int]) -> str:
    """TF Serving's name for a request in its "Servable not found" messages."""
    return f"Latest({model_name})" if version is None else f"Specific({model_name}, {version})"


class VersionStore:
    """The loaded versions of one model.

    The version map is replaced whole, never changed in place, so a request
    reads it without a lock and keeps the version it picked even while a
    refresh swaps in a newer one.
    """

    def __init__(self, model_name: str, base_path: pathlib.Path, intra_op_threads: int = 0):
        self.model_name = model_name
        self.base_path = base_path
        self.intra_op_threads = intra_op_threads
        self._loaded: Mapping[int, ModelVersion] = {}
        self._failed: dict[int, tuple] = {}  # version -> its folder_state when loading it failed
        self._refreshing = threading.Lock()

    def refresh(self) -> None:
        """Loads the newest version on disk if it is new, then keeps it and the previous newest."""
        with self._refreshing:
            folders = protocol.version_folders(self.base_path)
            on_disk = [version for version, path in folders.items() if not self._failed_as_it_is(version, path)]
            kept = {version: model for version, model in self._loaded.items() if version in on_disk}
            if on_disk and on_disk[-1] not in kept:
                model = self._load(on_disk[-1], folders[on_disk[-1]])
                if model is not None:
                    kept[model.version] = model
            self._swap({version: kept[version] for version in sorted(kept)[-protocol.VERSIONS_SERVED:]})

    def _failed_as_it_is(self, version: int, path: pathlib.Path) -> bool:
        """Whether this version failed to load and its folder has not changed since (a replaced or completed copy is tried again)."""
        return version in self._failed and self._failed[version] == folder_state(path)

    def _load(self, version: int, path: pathlib.Path) -> Optional[ModelVersion]:
        """The version loaded, or None (logged, and not tried again until its folder changes) if it cannot be."""
        log.info("loading %s version %d from %s", self.model_name, version, path)
        state = folder_state(path)
        try:
            model = load_version(path, version, self.intra_op_threads)
        except Exception:  # a broken export must not stop the server: it keeps serving what it has
            log.exception("cannot load %s version %d; it is skipped until %s changes", self.model_name, version, path)
            self._failed[version] = state
            return None
        self._failed.pop(version, None)
        return model

    def _swap(self, loaded: Mapping[int, ModelVersion]) -> None:
        if list(loaded) != list(self._loaded):
            log.info("%s versions loaded: %s", self.model_name, sorted(loaded) or "none")
        self._loaded = loaded

    def resolve(self, model_name: str, version: Optional[int]) -> ModelVersion:
        """The version a request names (None: the newest), or the status TF Serving answers with."""
        loaded = self._loaded
        if model_name != self.model_name:
            raise ServingFailure(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request_text(model_name, version)}")
        if not loaded:
            raise ServingFailure(
                grpc.StatusCode.UNAVAILABLE,
                f"model {model_name} has no version loaded yet (waiting for {self.base_path}/<integer version>/)",
            )
        if version is None:
            return loaded[max(loaded)]
        if version not in loaded:
            raise ServingFailure(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: {request_text(model_name, version)}; loaded versions: {sorted(loaded)}",
            )
        return loaded[version]

    def available(self, model_name: str, version: Optional[int]) -> list[int]:
        """The loaded versions a status request asks about; NOT_FOUND (TF Serving's messages) if none."""
        loaded = self._loaded if model_name == self.model_name else {}
        if version is not None and version not in loaded:
            raise ServingFailure(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {model_name}")
        if not loaded:
            raise ServingFailure(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {model_name}")
        return [version] if version is not None else sorted(loaded)


# --- requests, whatever the transport ----------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    """The signature a request runs, in the version it was resolved to.

    ``compute(arrays, output_names)`` runs it and returns those outputs.
    """

    version: int
    name: str
    inputs: Mapping[str, tf.TensorSpec]
    output_names: list[str]
    compute: Callable[[Mapping[str, np.ndarray], Sequence[str]], Mapping[str, np.ndarray]]


class Endpoint:
    """Predict over a VersionStore, whatever the transport: the gRPC and REST front ends only translate."""

    def __init__(self, store: VersionStore, max_batch: int):
        self.store = store
        self.max_batch = max_batch

    def select(self, model_name: str, version: Optional[int], signature_name: str) -> Signature:
        """The signature a request names (empty: serving_default), TF Serving's FAILED_PRECONDITION if absent."""
        model = self.store.resolve(model_name, version)
        signature_name = signature_name or protocol.SERVING_DEFAULT
        if signature_name not in model.signatures:
            raise ServingFailure(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'Serving signature key "{signature_name}" not found. Signatures: {sorted(model.signatures)}',
            )
        return model.signatures[signature_name]

    def run(
        self, signature: Signature, raw_inputs: Mapping[str, Any], decode: Decoder, output_filter: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        """The signature's outputs (those in output_filter, if any) for inputs that pass every check first."""
        check_input_names(signature, raw_inputs)
        fetched = fetched_outputs(signature, output_filter)
        arrays = {name: decoded(name, signature.inputs[name], raw, decode) for name, raw in raw_inputs.items()}
        for name, array in arrays.items():
            check_tensor(name, signature.inputs[name], array, self.max_batch)
        return dict(call(signature, arrays, fetched))


def check_input_names(signature: Signature, raw_inputs: Mapping[str, Any]) -> None:
    """Missing and unexpected names reported together, with the expected ones, so one retry can fix both."""
    expected, sent = set(signature.inputs), set(raw_inputs)
    problems = [f"{kind} {sorted(names)}" for kind, names in (("missing", expected - sent), ("unexpected", sent - expected)) if names]
    if problems:
        raise invalid(f"inputs do not match signature '{signature.name}': {', '.join(problems)}; expected inputs {sorted(expected)}")


def fetched_outputs(signature: Signature, output_filter: Sequence[str]) -> list[str]:
    """The outputs to return: output_filter checked as TF Serving does, or all of them."""
    names = signature.output_names
    for alias in output_filter:
        if alias not in names:
            raise invalid(f"output tensor alias not found in signature: {alias} Outputs expected to be in the set {{{','.join(sorted(names))}}}.")
    if len(set(output_filter)) != len(output_filter):
        raise invalid(f"duplicate output tensor alias in output_filter: {list(output_filter)}")
    return list(output_filter) or names


def decoded(name: str, spec: tf.TensorSpec, raw: Any, decode: Decoder) -> np.ndarray:
    """An input as an array; a malformed one is the request's fault, named."""
    try:
        return decode(spec, raw)
    except (TypeError, ValueError) as error:
        raise invalid(f"input '{name}' cannot be read: {error}") from None


def check_tensor(name: str, spec: tf.TensorSpec, array: np.ndarray, max_batch: int) -> None:
    """Dtype, rank, shape, batch size and (strings) UTF-8: what the signature would reject, with a clearer message."""
    dtype = tf.as_dtype(array.dtype)
    if dtype != spec.dtype:
        raise invalid(f"signature input '{name}' expects tf.{spec.dtype.name}, got {types_pb2.DataType.Name(dtype.as_datatype_enum)}")
    if spec.shape.rank is not None and array.ndim != spec.shape.rank:
        raise invalid(
            f"input '{name}' expects rank {spec.shape.rank} (shape {spec.shape.as_list()}), "
            f"got rank {array.ndim} (shape {list(array.shape)})"
        )
    if not spec.shape.is_compatible_with(array.shape):
        raise invalid(f"input '{name}' expects shape {spec.shape.as_list()}, got {list(array.shape)}")
    if array.ndim and array.shape[0] > max_batch:
        raise invalid(f"input '{name}' has batch size {array.shape[0]}, more than this server's maximum of {max_batch}")
    if dtype == tf.string:
        check_utf8(name, array)


def check_utf8(name: str, array: np.ndarray) -> None:
    """String inputs are text (raw ids): bytes that are not UTF-8 are refused at their position."""
    for index, value in enumerate(array.flat):
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            position = [int(i) for i in np.unravel_index(index, array.shape)]
            raise invalid(f"input '{name}' holds bytes that are not valid UTF-8 at {position}: {value!r}") from None


def call(signature: Signature, arrays: Mapping[str, np.ndarray], outputs: Sequence[str]) -> Mapping[str, np.ndarray]:
    """Runs the signature; an error the model raises keeps its own status code (a failed check in the
    graph is INVALID_ARGUMENT, running out of memory RESOURCE_EXHAUSTED), as TF Serving passes it on."""
    try:
        return signature.compute(arrays, outputs)
    except tf.errors.OpError as error:
        raise ServingFailure(GRPC_STATUS_OF_TF_CODE.get(error.error_code, grpc.StatusCode.UNKNOWN), error.message) from None
    except (TypeError, ValueError) as error:
        raise invalid(str(error)) from None


def status_response(versions: Sequence[int]) -> get_model_status_pb2.GetModelStatusResponse:
    """Every loaded version is AVAILABLE: a version is only listed once fully loaded."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for version in versions:
        entry = response.model_version_status.add(version=version, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)
        entry.status.SetInParent()  # error_code OK, as TF Serving reports a healthy version
    return response


# --- gRPC ----------------------------------------------------------------------------------------


def requested_version(spec: model_pb2.ModelSpec) -> Optional[int]:
    """The version number a ModelSpec names (None: the newest); this server has no version labels."""
    if spec.version_label:
        raise invalid(f"Unrecognized servable version label: {spec.version_label}")
    return spec.version.value if spec.HasField("version") else None


def proto_array(spec: tf.TensorSpec, proto: Any) -> np.ndarray:
    """A TensorProto as sent: its own dtype, checked against the spec afterwards."""
    return protocol.ndarray(proto)


def answer(context: grpc.ServicerContext, compute: Callable[[], Answer]) -> Answer:
    """compute()'s answer, or the request's ServingFailure as its gRPC status."""
    try:
        return compute()
    except ServingFailure as failure:
        context.abort(failure.code, failure.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata; Classify, Regress and MultiInference stay UNIMPLEMENTED."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        return answer(context, lambda: self.predict(request))

    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        return answer(context, lambda: self.metadata(request))

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        spec = request.model_spec
        signature = self.endpoint.select(spec.name, requested_version(spec), spec.signature_name)
        outputs = self.endpoint.run(signature, request.inputs, proto_array, request.output_filter)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = signature.version
        response.model_spec.signature_name = signature.name
        for name, proto in protocol.tensor_protos(outputs).items():
            response.outputs[name].CopyFrom(proto)
        return response

    def metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.metadata_field:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise invalid(f"Metadata field {field} is not supported")
        spec = request.model_spec
        model = self.endpoint.store.resolve(spec.name, requested_version(spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = model.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(model.signature_defs)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus; HandleReloadConfigRequest stays UNIMPLEMENTED (the poller reloads)."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint

    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        spec = request.model_spec
        return answer(context, lambda: status_response(self.endpoint.store.available(spec.name, requested_version(spec))))


# --- REST (TF Serving's /v1 API) -------------------------------------------------------------------

MODEL_PATH = r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]+))?"
PREDICT_PATH = re.compile(MODEL_PATH + ":predict")
STATUS_PATH = re.compile(MODEL_PATH)
JSON_KINDS = {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers", "U": "strings", "O": "mixed values"}


def json_array(spec: tf.TensorSpec, value: Any) -> np.ndarray:
    """A JSON value as an array of the signature's dtype; JSON holds no dtypes, so only the kind is checked."""
    if spec.dtype == tf.string:
        return json_strings(value)
    array = np.array(value)
    accepted = "b" if spec.dtype.is_bool else "iu" if spec.dtype.is_integer else "iuf"
    if array.size and array.dtype.kind not in accepted:
        raise ValueError(f"expects tf.{spec.dtype.name} values, got {JSON_KINDS.get(array.dtype.kind, array.dtype)}")
    return array.astype(spec.dtype.as_numpy_dtype)


def json_strings(value: Any) -> np.ndarray:
    """JSON text as UTF-8 bytes, the form TensorProtos carry strings in."""
    array = np.array(value, dtype=object)
    if not all(isinstance(element, str) for element in array.flat):
        raise ValueError("expects a string or a rectangular nested list of strings")
    return np.array([element.encode("utf-8") for element in array.flat], dtype=object).reshape(array.shape)


def json_request(body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body)
    except ValueError as error:
        raise invalid(f"JSON Parse error: {error}") from None
    if not isinstance(request, dict):
        raise invalid("the request body must be a JSON object")
    return request


def named_inputs(value: Any, signature: Signature) -> Mapping[str, Any]:
    """Inputs keyed by name; an unnamed value is the single input of a one-input signature."""
    if isinstance(value, dict):
        return value
    if len(signature.inputs) != 1:
        raise invalid(f"signature '{signature.name}' has inputs {sorted(signature.inputs)}: name them")
    return {next(iter(signature.inputs)): value}


def instance_columns(instances: Any, signature: Signature) -> Mapping[str, Any]:
    """The row format ("instances") as named columns."""
    if not isinstance(instances, list) or not instances:
        raise invalid('"instances" must be a non-empty list')
    if not all(isinstance(row, dict) for row in instances):
        return named_inputs(instances, signature)
    names = set(instances[0])
    if any(set(row) != names for row in instances):
        raise invalid('every object in "instances" must name the same inputs')
    return {name: [row[name] for row in instances] for name in names}


def prediction_rows(outputs: Mapping[str, np.ndarray]) -> Any:
    """Outputs in the row format: one value (single output) or object per batch row."""
    sizes = {name: array.shape[0] if array.ndim else None for name, array in outputs.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise invalid(f'outputs have no common batch size ({sizes}); use the columnar "inputs" format')
    if len(outputs) == 1:
        return protocol.json_value(next(iter(outputs.values())))
    batch = next(iter(sizes.values()))
    return [{name: protocol.json_value(array[row]) for name, array in outputs.items()} for row in range(batch)]


def prediction_columns(outputs: Mapping[str, np.ndarray]) -> Any:
    """Outputs in the columnar format: by name, or the value alone for a single output (as TF Serving)."""
    if len(outputs) == 1:
        return protocol.json_value(next(iter(outputs.values())))
    return {name: protocol.json_value(array) for name, array in outputs.items()}


def rest_predict(endpoint: Endpoint, model_name: str, version: Optional[int], body: bytes) -> dict[str, Any]:
    """A :predict body in the row ("instances") or columnar ("inputs") format, answered in the same format."""
    request = json_request(body)
    signature_name = request.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid('"signature_name" must be a string')
    if ("instances" in request) == ("inputs" in request):
        raise invalid('the request needs exactly one of "instances" (row format) or "inputs" (columnar format)')
    signature = endpoint.select(model_name, version, signature_name)
    if "instances" in request:
        outputs = endpoint.run(signature, instance_columns(request["instances"], signature), json_array)
        return {"predictions": prediction_rows(outputs)}
    outputs = endpoint.run(signature, named_inputs(request["inputs"], signature), json_array)
    return {"outputs": prediction_columns(outputs)}


def rest_status(endpoint: Endpoint, model_name: str, version: Optional[int]) -> dict[str, Any]:
    response = status_response(endpoint.store.available(model_name, version))
    return json_format.MessageToDict(response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


class RestServer(http_server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], endpoint: Endpoint):
        super().__init__(address, RestHandler)
        self.endpoint = endpoint


class RestHandler(http_server.BaseHTTPRequestHandler):
    """POST /v1/models/NAME[/versions/N]:predict and GET /v1/models/NAME[/versions/N]; errors as {"error": ...}."""

    server: RestServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply(PREDICT_PATH, lambda name, version: rest_predict(self.server.endpoint, name, version, body))

    def do_GET(self) -> None:
        self.reply(STATUS_PATH, lambda name, version: rest_status(self.server.endpoint, name, version))

    def reply(self, path: re.Pattern[str], compute: Callable[[str, Optional[int]], dict[str, Any]]) -> None:
        match = path.fullmatch(self.path)
        try:
            if match is None:
                raise invalid(f"Malformed request: {self.command} {self.path}")
            version = match["version"]
            status, body = 200, compute(match["name"], None if version is None else int(version))
        except ServingFailure as failure:
            status, body = HTTP_STATUS.get(failure.code, 500), {"error": failure.message}
        except Exception as error:  # a server fault: answered (500) and logged, the server goes on
            log.exception("REST %s %s failed", self.command, self.path)
            status, body = 500, {"error": f"internal error: {error}"}
        self.send_json(status, body)

    def send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("REST %s", format % args)


# --- the server ------------------------------------------------------------------------------------


class BoundPorts(NamedTuple):
    grpc: int
    rest: Optional[int]


class LocalServer:
    """gRPC (and optionally REST) serving of one model folder, with a poller for new versions.

    ``port=0`` / ``rest_port=0`` bind free ports (``start`` returns them, and
    ``bound`` keeps them); ``rest_port=None`` serves no REST. ``intra_op_threads``:
    threads one op may use (0: every core).
    """

    def __init__(
        self,
        model_base_path: str | pathlib.Path,
        model_name: str = protocol.DEFAULT_MODEL_NAME,
        *,
        port: int = 0,
        rest_port: Optional[int] = None,
        host: str = "0.0.0.0",
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        max_batch: int = DEFAULT_MAX_BATCH,
        intra_op_threads: int = 0,
    ):
        self.endpoint = Endpoint(VersionStore(model_name, pathlib.Path(model_base_path), intra_op_threads), max_batch)
        self.port, self.rest_port, self.host = port, rest_port, host
        self.poll_seconds = poll_seconds
        self._stopping = threading.Event()
        self._grpc: Optional[grpc.Server] = None
        self._rest: Optional[RestServer] = None
        self._threads: list[threading.Thread] = []
        self.bound: Optional[BoundPorts] = None

    def start(self) -> BoundPorts:
        """Loads the newest version (if any), opens the ports and starts polling; returns the bound ports."""
        self.endpoint.store.refresh()
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=GRPC_THREADS), options=UNLIMITED_MESSAGES)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(self.endpoint), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.endpoint), self._grpc)
        grpc_port = self._grpc.add_insecure_port(f"{self.host}:{self.port}")
        self._grpc.start()
        if self.rest_port is not None:
            self._rest = RestServer((self.host, self.rest_port), self.endpoint)
            self._spawn("rest", self._rest.serve_forever)
        self._spawn("version-poller", self._poll)
        self.bound = BoundPorts(grpc_port, self._rest.server_address[1] if self._rest else None)
        return self.bound

    def stop(self, grace_s: float = 1.0) -> None:
        """Stops polling, lets requests in flight finish (up to grace_s) and closes the ports."""
        self._stopping.set()
        if self._grpc is not None:
            self._grpc.stop(grace_s).wait()
        if self._rest is not None:
            self._rest.shutdown()
            self._rest.server_close()
        for thread in self._threads:
            thread.join()

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll(self) -> None:
        while not self._stopping.wait(self.poll_seconds):
            try:
                self.endpoint.store.refresh()
            except OSError:  # the folder unreadable for a moment: keep serving, look again next time
                log.exception("cannot read %s", self.endpoint.store.base_path)


# --- command line ------------------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m serving.local_server", description=__doc__.split("\n")[0])
    parser.add_argument("--model_base_path", required=True, help="Folder of integer version folders <model_base_path>/<version>/.")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0: a free one, logged). [default: 8500]")
    parser.add_argument("--model_name", default=protocol.DEFAULT_MODEL_NAME, help=f"Name clients ask for. [default: {protocol.DEFAULT_MODEL_NAME}]")
    parser.add_argument("--rest_port", type=int, default=0, help="REST port (TF Serving's /v1 API); 0: no REST. [default: 0]")
    parser.add_argument("--host", default="0.0.0.0", help="Address to listen on. [default: 0.0.0.0]")
    parser.add_argument("--poll_seconds", type=float, default=DEFAULT_POLL_SECONDS, help=f"How often to look for a new version. [default: {DEFAULT_POLL_SECONDS:g}]")
    parser.add_argument("--max_batch", type=int, default=DEFAULT_MAX_BATCH, help=f"Largest batch a request may send. [default: {DEFAULT_MAX_BATCH}]")
    parser.add_argument(
        "--intra_op_threads", type=int, default=0,
        help="Threads one TensorFlow op may use (TF Serving: --tensorflow_intra_op_parallelism); 0: TensorFlow's "
             "default, every core. 1 halves batch-1 latency on a 2-core machine (BUILD_NOTES, 'Serving latency'). [default: 0]",
    )
    args = parser.parse_args(argv)
    if args.poll_seconds <= 0 or args.max_batch < 1 or args.intra_op_threads < 0:
        parser.error("--poll_seconds must be positive, --max_batch at least 1 and --intra_op_threads at least 0")
    return args


class StopSignals:
    """Records SIGINT / SIGTERM from the moment it is created; ``wait`` returns once one has arrived.

    Python runs a signal handler in the main thread between bytecodes, even
    while that thread holds a lock, so the handler takes none: it only sets a
    field. (A ``threading.Event.set`` there deadlocked when the signal came while
    the main thread was entering ``Event.wait``, which holds the event's lock.)
    Created before the server starts, so a signal sent as soon as the port is
    logged stops the server instead of killing it.
    """

    POLL_SECONDS = 0.1

    def __init__(self) -> None:
        self.received: Optional[int] = None
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._record)

    def _record(self, number: int, _frame: object) -> None:
        self.received = number

    def wait(self) -> int:
        while self.received is None:
            time.sleep(self.POLL_SECONDS)
        return self.received


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop_signals = StopSignals()
    server = LocalServer(
        args.model_base_path, model_name=args.model_name, port=args.port, rest_port=args.rest_port or None,
        host=args.host, poll_seconds=args.poll_seconds, max_batch=args.max_batch, intra_op_threads=args.intra_op_threads,
    )
    ports = server.start()
    log.info("serving model %s from %s: gRPC port %d, REST port %s", args.model_name, args.model_base_path, ports.grpc, ports.rest or "off")
    received = stop_signals.wait()
    log.info("stopping (%s)", signal.Signals(received).name)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
