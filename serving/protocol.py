"""What the serving server and its clients agree on: names, the padding convention, tensor conversions.

The recommender's signatures (see ``serving/export.py``) take per request row
a user's raw item ids, oldest first, padded at the end with ``PADDING``; the
clients build those rows with ``pad_rows`` and nowhere else. Tensors travel as
TensorProtos over gRPC and as JSON over REST (TF Serving's REST API), strings
as UTF-8 text in JSON.
"""

from __future__ import annotations

import base64
import pathlib
from typing import Any, Callable, Mapping, Sequence

import tf_autosam  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

DEFAULT_MODEL_NAME = "autosam"

SERVING_DEFAULT = "serving_default"
RECOMMEND_K = "recommend_k"
SCORE_CANDIDATES = "score_candidates"

HISTORY = "history"
K = "k"
CANDIDATES = "candidates"

PADDING = ""

SAVED_MODEL_FILE = "saved_model.pb"


def version_folders(model_path: pathlib.Path) -> dict[int, pathlib.Path]:
    """A model folder's versions, ascending: integer-named folders holding a SavedModel ("0012" is version 12,
    as TF Serving reads it); anything else (an exporter's temporary folders) is skipped."""
    if not model_path.is_dir():
        return {}
    folders = (path for path in model_path.iterdir() if path.name.isascii() and path.name.isdigit() and (path / SAVED_MODEL_FILE).is_file())
    return {int(path.name): path for path in sorted(folders, key=lambda path: (int(path.name), path.name))}


# Versions of a model a server keeps serving: the newest and the one it replaced, so requests
# naming the previous version keep working through a rollout (local server and models.config).
VERSIONS_SERVED = 2

# The dtypes the signatures exchange, written to and read from TensorProtos directly: the
# general tf.make_tensor_proto / tf.make_ndarray cost 25-40 us a tensor, a visible share of
# a millisecond-scale request with six outputs. Anything else takes the general path.
_WIRE_DTYPES = {
    np.dtype(np.float32): types_pb2.DT_FLOAT,
    np.dtype(np.int32): types_pb2.DT_INT32,
    np.dtype(np.int64): types_pb2.DT_INT64,
    np.dtype(np.bool_): types_pb2.DT_BOOL,
}
_NUMPY_OF_WIRE = {wire: dtype for dtype, wire in _WIRE_DTYPES.items()}


def pad_rows(rows: Sequence[Sequence[str]]) -> np.ndarray:
    """A [len(rows), longest] string array, each row left-aligned and padded at the end with PADDING.

    Left alignment keeps "oldest first": position i of a row is the row's i-th
    item whatever the other rows' lengths.
    """
    width = max((len(row) for row in rows), default=0)
    padded = np.full((len(rows), width), PADDING.encode(), dtype=object)
    for index, row in enumerate(rows):
        padded[index, : len(row)] = [item.encode("utf-8") for item in row]
    return padded


def tensor_protos(arrays: Mapping[str, np.ndarray]) -> dict[str, tensor_pb2.TensorProto]:
    """Named arrays as TensorProtos (the gRPC wire form); dtypes are kept as they are."""
    return {name: tensor_proto(np.asarray(array)) for name, array in arrays.items()}


def ndarrays(protos: Mapping[str, tensor_pb2.TensorProto]) -> dict[str, np.ndarray]:
    """Named TensorProtos as arrays (strings as bytes objects)."""
    return {name: ndarray(proto) for name, proto in protos.items()}


def tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """tf.make_tensor_proto(array), directly for bytes strings and _WIRE_DTYPES."""
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape])
    if array.dtype in _WIRE_DTYPES:
        content = np.ascontiguousarray(array).tobytes()
        return tensor_pb2.TensorProto(dtype=_WIRE_DTYPES[array.dtype], tensor_shape=shape, tensor_content=content)
    if array.dtype == object:
        values = array.ravel().tolist()
        if all(isinstance(value, bytes) for value in values):
            return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=values)
    return tf.make_tensor_proto(array)


def ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """tf.make_ndarray(proto), directly for packed _WIRE_DTYPES and complete string lists."""
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if proto.dtype in _NUMPY_OF_WIRE and proto.tensor_content:
        return np.frombuffer(proto.tensor_content, _NUMPY_OF_WIRE[proto.dtype]).reshape(shape).copy()
    if proto.dtype == types_pb2.DT_STRING and shape and len(proto.string_val) == np.prod(shape):
        strings = np.empty(len(proto.string_val), dtype=object)
        strings[:] = list(proto.string_val)
        return strings.reshape(shape)
    return tf.make_ndarray(proto)


def text(value: bytes | str) -> str:
    """A string tensor element as text: gRPC gives bytes, JSON gives str."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def json_value(array: np.ndarray) -> Any:
    """An array as nested JSON lists; bytes become text, or TF Serving's {"b64": ...} when not UTF-8."""
    array = np.asarray(array)
    if array.dtype != object:
        return array.tolist()
    return _map_nested(array.tolist(), _json_string)


def _json_string(value: bytes) -> str | dict[str, str]:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def _map_nested(value: Any, function: Callable[[Any], Any]) -> Any:
    if isinstance(value, list):
        return [_map_nested(element, function) for element in value]
    return function(value)
