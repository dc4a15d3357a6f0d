"""Compaction against a plain NumPy re-implementation and the spec's worked example."""

import numpy as np
import pytest
import tensorflow as tf

from tf_autosam.compaction import compact


def numpy_compact(items, keep, next_items):
    batch, length = items.shape
    out_items, out_positions, out_targets = (np.zeros_like(items) for _ in range(3))
    for b in range(batch):
        kept = [t for t in range(length) if keep[b, t] and items[b, t] != 0]
        start = length - len(kept)
        for j, t in enumerate(kept):
            out_items[b, start + j] = items[b, t]
            out_positions[b, start + j] = t
            out_targets[b, start + j] = items[b, kept[j + 1]] if j + 1 < len(kept) else next_items[b]
    return out_items, out_positions, out_targets


def check(items, keep, next_items):
    got = compact(tf.constant(items), tf.constant(keep), tf.constant(next_items))
    for actual, expected in zip(got, numpy_compact(items, keep, next_items)):
        np.testing.assert_array_equal(actual.numpy(), expected)


def test_spec_example():
    got = compact(tf.constant([[1, 2, 3, 4, 5]]), tf.constant([[True, False, True, True, False]]), tf.constant([6]))
    assert got.items.numpy().tolist() == [[0, 0, 1, 3, 4]]
    assert got.positions.numpy().tolist() == [[0, 0, 0, 2, 3]]
    assert got.targets.numpy().tolist() == [[0, 0, 3, 4, 6]]


@pytest.mark.parametrize("keep_rate,padding", [(0.5, 0.0), (0.5, 0.7), (1.0, 0.3), (0.0, 0.2), (0.9, 0.9)])
def test_random_batches_match_numpy(keep_rate, padding):
    rng = np.random.default_rng(int(keep_rate * 10 + padding * 100))
    batch, length = 16, 12
    items = rng.integers(1, 50, size=(batch, length)).astype(np.int32)
    lengths = np.maximum(1, (length * (1 - rng.uniform(0, padding, size=batch))).astype(int))
    for b in range(batch):
        items[b, : length - lengths[b]] = 0
    keep = rng.uniform(size=(batch, length)) < keep_rate
    if keep_rate == 0.0:
        keep[:, -1] = True  # all dropped but the most recent item
    check(items, keep, rng.integers(1, 50, size=batch).astype(np.int32))


def test_all_kept_is_identity_with_slot_positions():
    items = np.array([[0, 0, 7, 8, 9]], np.int32)
    got = compact(tf.constant(items), tf.constant(items > 0), tf.constant([5]))
    assert got.items.numpy().tolist() == items.tolist()
    assert got.positions.numpy().tolist() == [[0, 0, 2, 3, 4]]
    assert got.targets.numpy().tolist() == [[0, 0, 8, 9, 5]]


def test_padding_is_never_kept():
    got = compact(tf.constant([[0, 0, 3]]), tf.constant([[True, True, True]]), tf.constant([4]))
    assert got.items.numpy().tolist() == [[0, 0, 3]]
    assert got.targets.numpy().tolist() == [[0, 0, 4]]
