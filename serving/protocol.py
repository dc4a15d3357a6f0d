"""What the serving server and its clients agree on: names, the padding convention, tensor conversions.

The recommender's signatures (see ``serving/export.py``) take per request row
a user's raw item ids, oldest first, padded at the end with ``PADDING``; the
clients build those rows with ``pad_rows`` and nowhere else. Tensors travel as
TensorProtos over gRPC and as JSON over REST (TF Serving's REST API), strings
as UTF-8 text in JSON.
"""

from __future__ import annotations

import base64
from typing import Any, Callable, Mapping, Sequence

import tf_autosam  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

DEFAULT_MODEL_NAME = "autosam"

SERVING_DEFAULT = "serving_default"
RECOMMEND_K = "recommend_k"
SCORE_CANDIDATES = "score_candidates"

HISTORY = "history"
K = "k"
CANDIDATES = "candidates"

PADDING = ""


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
    return {name: tf.make_tensor_proto(array) for name, array in arrays.items()}


def ndarrays(protos: Mapping[str, tensor_pb2.TensorProto]) -> dict[str, np.ndarray]:
    """Named TensorProtos as arrays (strings as bytes objects)."""
    return {name: tf.make_ndarray(proto) for name, proto in protos.items()}


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
