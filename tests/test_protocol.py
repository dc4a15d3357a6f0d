"""TensorProto conversions of the serving protocol agree with TensorFlow's own, both ways."""

import numpy as np
import pytest
import tensorflow as tf

from serving import protocol

RNG = np.random.default_rng(0)
ARRAYS = {
    "float32": RNG.standard_normal((3, 7)).astype(np.float32),
    "int32": RNG.integers(-5, 5, (2, 4)).astype(np.int32),
    "int64 scalar": np.array(7, dtype=np.int64),
    "bool": RNG.random((1, 9)) > 0.5,
    "bytes": np.array([[b"item-1", b"", "\u00e9t\u00e9".encode()]], dtype=object),
    "empty float32": np.zeros((0, 3), np.float32),
    "float64 (general path)": RNG.standard_normal((2, 2)),
    "str (general path)": np.array([["a", "b"]]),
}


def as_tensorflow_reads(array: np.ndarray) -> np.ndarray:
    """TensorFlow gives text back as UTF-8 bytes."""
    return np.vectorize(str.encode, otypes=[object])(array) if array.dtype.kind == "U" else array


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_written_as_tensorflow_reads_it(name):
    array = ARRAYS[name]
    read = tf.make_ndarray(protocol.tensor_proto(array))
    assert read.shape == array.shape
    np.testing.assert_array_equal(read, as_tensorflow_reads(array))


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_reads_what_tensorflow_writes(name):
    proto = tf.make_tensor_proto(ARRAYS[name])
    read, expected = protocol.ndarray(proto), tf.make_ndarray(proto)
    assert read.dtype == expected.dtype and read.shape == expected.shape
    np.testing.assert_array_equal(read, expected)
    assert read.flags.writeable


def test_a_packed_tensor_of_the_wrong_size_is_refused():
    proto = protocol.tensor_proto(np.zeros((2, 3), np.float32))
    proto.tensor_shape.dim[1].size = 4
    with pytest.raises(ValueError):
        protocol.ndarray(proto)
