"""Packs the items a sampler kept to the right of the window, as the backbone expects.

Shapes: ``items`` [batch, L] int32 left-padded (0 = padding); ``keep`` [batch, L]
bool (False at padding); ``next_items`` [batch] the true item after the window.
Outputs are [batch, L]. Kept items keep their order and their ORIGINAL
positions (slot index in the full window); each kept item's target is the next
KEPT item, and the last kept item's target is ``next_items``. Dropped items are
neither inputs nor targets. Example, L = 5:

    items     [1, 2, 3, 4, 5]   keep [1, 0, 1, 1, 0]   next 6
    compacted [0, 0, 1, 3, 4]   positions [0, 0, 0, 2, 3]   targets [0, 0, 3, 4, 6]

Everything is a static-shape gather (a stable argsort of the keep mask), so a
step that compacts can be compiled with XLA.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from input_pipeline.schema import PADDING_ID


class Compacted(NamedTuple):
    items: tf.Tensor
    positions: tf.Tensor
    targets: tf.Tensor


def compact(items: tf.Tensor, keep: tf.Tensor, next_items: tf.Tensor) -> Compacted:
    keep = tf.logical_and(keep, tf.not_equal(items, PADDING_ID))
    length = tf.shape(items)[1]
    # Dropped slots sort first, kept slots after them, each group in original order.
    order = tf.argsort(tf.cast(keep, tf.int32), axis=1, stable=True)
    kept_sorted = tf.gather(keep, order, batch_dims=1)
    zeros = tf.zeros_like(items)
    compacted = tf.where(kept_sorted, tf.gather(items, order, batch_dims=1), zeros)
    slots = tf.broadcast_to(tf.range(length, dtype=items.dtype), tf.shape(items))
    positions = tf.where(kept_sorted, tf.gather(slots, order, batch_dims=1), zeros)
    following = tf.concat([compacted[:, 1:], tf.cast(next_items, items.dtype)[:, tf.newaxis]], axis=1)
    targets = tf.where(kept_sorted, following, zeros)
    return Compacted(compacted, positions, targets)
