"""Next-item cross-entropy, over the whole catalogue or over shared sampled negatives.

Shapes: ``hidden`` [batch, L, d]; ``targets`` [batch, L] int32 item ids with 0
where a position has no target (padding); ``item_table`` [N + 1, d] (row 0 =
padding). Losses are means over the positions that have a target; only those
positions are scored, so padding costs no [*, N + 1] logits. Inside a
multi-replica step a loss is the replica's share of the global-batch mean
(``tf_autosam.distribution``).

``label_smoothing`` s trains towards (1 - s) on the target plus s spread
evenly over every class of the softmax (the N items, or the positive and the
shared negatives that are not accidental hits): the loss is
(1 - s) * -log p(target) + s * mean over classes of -log p(class).

``history`` [batch, L] (optional) is the window the hidden states were computed
from: with it, each position's softmax leaves out the items the window holds at
or before that position, except its target (:func:`seen_items`). The evaluation
masks a user's history, so a score trained for a seen item is never used; the
loss stops asking the model to rank seen items below the unseen ones they
resemble. Smoothing then spreads over the classes left.

``compute_dtype`` is the dtype of the products that score items (bfloat16 under
``--precision=mixed_bfloat16``, as a mixed-precision Dense layer computes its
logits); softmaxes, log-probabilities and losses are float32 whatever it is.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from input_pipeline.schema import PADDING_ID
from tf_autosam.distribution import global_mean

_EXCLUDED_LOGIT = -1e9


def seen_items(history: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """[batch, L, L]: at [b, t], the item ids of ``history[b]`` at positions <= t other than ``targets[b, t]``
    (padding elsewhere): what position t's softmax leaves out."""
    length = tf.shape(history)[1]
    at_or_before = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)
    window = tf.broadcast_to(history[:, tf.newaxis, :], [tf.shape(history)[0], length, length])
    seen = at_or_before & tf.not_equal(window, PADDING_ID) & tf.not_equal(window, targets[..., tf.newaxis])
    return tf.where(seen, window, PADDING_ID)


def _targeted(
    hidden: tf.Tensor, targets: tf.Tensor, history: Optional[tf.Tensor] = None
) -> tuple[tf.Tensor, tf.Tensor, Optional[tf.Tensor]]:
    """[n, d] hidden states, [n] targets and (given a history) [n, L] seen items of the n positions that
    have a target."""
    has_target = tf.not_equal(targets, PADDING_ID)
    seen = None if history is None else tf.boolean_mask(seen_items(history, targets), has_target)
    return tf.boolean_mask(hidden, has_target), tf.boolean_mask(targets, has_target), seen


def _class_mask(class_ids: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """[n, C] bool, True at the classes that ``class_ids`` [n, L] names (-1 = none).

    Scattered into a tensor shaped like ``logits`` (padding ids into an extra
    column, cut off after), so XLA sees no shape computed from values.
    """
    rows = tf.broadcast_to(tf.range(tf.shape(class_ids)[0])[:, tf.newaxis], tf.shape(class_ids))
    columns = tf.where(class_ids >= 0, class_ids, tf.shape(logits)[1])
    hits = tf.pad(tf.zeros_like(logits, dtype=tf.int32), [[0, 0], [0, 1]])
    hits = tf.tensor_scatter_nd_max(hits, tf.stack([rows, columns], axis=-1), tf.ones_like(class_ids))
    return hits[:, :-1] > 0


def _seen_negatives(seen: tf.Tensor, negatives: tf.Tensor) -> tf.Tensor:
    """[n, K] bool: negative k is among row n's seen items; a sorted search, so memory stays [n, K]."""
    ordered = tf.sort(seen, axis=-1)
    candidates = tf.zeros_like(seen[:, :1]) + negatives[tf.newaxis, :]  # [n, K], no shape from values (XLA)
    slot = tf.minimum(tf.searchsorted(ordered, candidates), tf.shape(seen)[1] - 1)
    return tf.equal(tf.gather(ordered, slot, batch_dims=1), candidates)


def _mean(per_position: tf.Tensor) -> tf.Tensor:
    return global_mean(tf.reduce_sum(per_position), tf.size(per_position))


# The smallest normal float32: a target probability that underflows below it is
# read as this, capping one position's reported loss at about 87.3 nats.
_SMALLEST_PROBABILITY = 1.1754944e-38


def _smoothed(target_loss: tf.Tensor, every_class_loss: tf.Tensor, label_smoothing: float) -> tf.Tensor:
    """(1 - s) * -log p(target) + s * mean over classes of -log p(class): the module's one smoothing rule."""
    return (1.0 - label_smoothing) * target_loss + label_smoothing * every_class_loss


def _softmax_cross_entropy(
    hidden: tf.Tensor, items: tf.Tensor, classes: tf.Tensor, label_smoothing: float = 0.0,
    excluded_classes: Optional[tf.Tensor] = None,
) -> tf.Tensor:
    """[n] float32 cross-entropy of softmax(hidden @ items^T) against ``classes``, smoothed by ``label_smoothing``,
    over the classes that ``excluded_classes`` [n, L] (optional; class ids, -1 = none) leaves.

    ``hidden`` [n, d], ``items`` [C, d], ``classes`` [n] in 0..C-1; the three
    products run in the dtype of ``hidden`` and ``items``. One fused
    softmax serves both the value and a hand-written gradient (softmax minus
    the smoothed one-hot), about half the CPU time of
    ``sparse_softmax_cross_entropy_with_logits`` plus its autodiff. Gradients
    are exact for the scores the products give; only a target's loss above
    -log(FLT_MIN) is capped.
    """

    @tf.custom_gradient
    def cross_entropy(hidden: tf.Tensor, items: tf.Tensor):
        logits = tf.cast(tf.matmul(hidden, items, transpose_b=True), tf.float32)
        excluded = None if excluded_classes is None else _class_mask(excluded_classes, logits)
        if excluded is not None:
            logits = tf.where(excluded, _EXCLUDED_LOGIT, logits)
        # Each class's share of the smoothing: 1 / C, or [n, C] 1 / (classes left) on each class left.
        spread = 1.0 / tf.cast(tf.shape(logits)[-1], tf.float32)
        if label_smoothing and excluded is not None:
            left = tf.cast(tf.logical_not(excluded), tf.float32)
            spread = left / tf.reduce_sum(left, axis=-1, keepdims=True)
        probabilities = tf.nn.softmax(logits)
        picked = tf.gather(probabilities, classes, batch_dims=1)
        loss = -tf.math.log(tf.maximum(picked, _SMALLEST_PROBABILITY))
        if label_smoothing:
            # -mean_c log p(c) = logsumexp(logits) - mean(logits), and logsumexp = max(logits)
            # - log(max p): the largest probability is >= 1/C, so it never underflows, and the
            # softmax above already holds it (no second exp pass over [n, C]).
            log_normaliser = tf.reduce_max(logits, axis=-1) - tf.math.log(tf.reduce_max(probabilities, axis=-1))
            mean_logit = tf.reduce_mean(logits, axis=-1) if excluded is None else tf.reduce_sum(logits * spread, axis=-1)
            every_class = log_normaliser - mean_logit
            loss = _smoothed(loss, every_class, label_smoothing)

        def gradient(upstream: tf.Tensor):
            positions = tf.stack([tf.range(tf.shape(classes)[0]), classes], axis=1)
            target_weight = tf.fill(tf.shape(upstream), 1.0 - label_smoothing)
            logit_gradient = tf.tensor_scatter_nd_sub(probabilities, positions, target_weight)
            if label_smoothing:
                logit_gradient -= label_smoothing * spread
            logit_gradient = tf.cast(logit_gradient * upstream[:, tf.newaxis], hidden.dtype)
            # [d, C] then transposed: faster in bfloat16 than the [C, d] product with a transposed operand.
            items_gradient = tf.transpose(tf.matmul(hidden, logit_gradient, transpose_a=True))
            return tf.matmul(logit_gradient, items), items_gradient

        return loss, gradient

    return cross_entropy(hidden, items)


def _catalogue_cross_entropy(
    hidden: tf.Tensor, targets: tf.Tensor, item_table: tf.Tensor, compute_dtype: tf.DType, label_smoothing: float = 0.0,
    seen: Optional[tf.Tensor] = None,
) -> tf.Tensor:
    """[n] full-softmax cross-entropy over items 1..N of ``hidden`` [n, d], ``targets`` [n] in 1..N, without
    the ``seen`` [n, L] items (optional).

    Row 0 of the table (padding) is left out of the product, so padding is never
    a class and its row gets no gradient.
    """
    rows = item_table[PADDING_ID + 1 :]
    excluded_classes = None if seen is None else seen - (PADDING_ID + 1)  # padding becomes -1: none
    return _softmax_cross_entropy(
        tf.cast(hidden, compute_dtype), tf.cast(rows, compute_dtype), targets - (PADDING_ID + 1), label_smoothing,
        excluded_classes,
    )


def full_softmax_loss(
    hidden: tf.Tensor, targets: tf.Tensor, item_table: tf.Tensor, compute_dtype: tf.DType = tf.float32,
    label_smoothing: float = 0.0, history: Optional[tf.Tensor] = None,
) -> tf.Tensor:
    """Exact softmax cross-entropy over items 1..N (the padding id is never a class)."""
    hidden, targets, seen = _targeted(hidden, targets, history)
    return _mean(_catalogue_cross_entropy(hidden, targets, item_table, compute_dtype, label_smoothing, seen))


def target_log_probabilities(
    hidden: tf.Tensor, targets: tf.Tensor, item_table: tf.Tensor, compute_dtype: tf.DType = tf.float32
) -> tf.Tensor:
    """[batch, L] full-softmax log P(target) at every position, 0 where there is no target.

    Only positions with a target are scored: the left padding of short or
    compacted windows costs no [*, N] logits.
    """
    scored = tf.where(tf.not_equal(targets, PADDING_ID))
    log_probability = -_catalogue_cross_entropy(
        tf.gather_nd(hidden, scored), tf.gather_nd(targets, scored), item_table, compute_dtype
    )
    return tf.scatter_nd(scored, log_probability, tf.shape(targets, out_type=tf.int64))


def _negative_logits(hidden: tf.Tensor, item_table: tf.Tensor, negatives: tf.Tensor, compute_dtype: tf.DType) -> tf.Tensor:
    """[..., K] float32 scores of the shared negatives for ``hidden`` [..., d], the product in ``compute_dtype``."""
    rows = tf.cast(tf.gather(item_table, negatives), compute_dtype)
    flat = tf.reshape(tf.cast(hidden, compute_dtype), [-1, tf.shape(hidden)[-1]])
    scores = tf.matmul(flat, rows, transpose_b=True)
    return tf.cast(tf.reshape(scores, tf.concat([tf.shape(hidden)[:-1], [-1]], axis=0)), tf.float32)


def sampled_target_log_probabilities(
    hidden: tf.Tensor, targets: tf.Tensor, item_table: tf.Tensor, negatives: tf.Tensor, num_items: int,
    compute_dtype: tf.DType = tf.float32,
) -> tf.Tensor:
    """[batch, L] estimate of :func:`target_log_probabilities` from shared uniform negatives.

    Each of the K negatives (uniform over 1..N, accidental hits masked) stands
    for N / K items of the softmax normaliser, an unbiased estimate of its
    non-target part; memory is [batch, L, K] instead of [batch, L, N], which is
    what lets rewards run on million-item catalogues. Exact when the negatives
    are every item once.
    """
    positive = tf.reduce_sum(hidden * tf.gather(item_table, targets), axis=-1)
    negative = _negative_logits(hidden, item_table, negatives, compute_dtype)
    accidental_hit = tf.equal(targets[..., tf.newaxis], negatives)
    count = tf.cast(tf.size(negatives), hidden.dtype)
    negative = tf.where(accidental_hit, _EXCLUDED_LOGIT, negative + tf.math.log(num_items / count))
    normaliser = tf.reduce_logsumexp(tf.concat([positive[..., tf.newaxis], negative], axis=-1), axis=-1)
    return tf.where(tf.not_equal(targets, PADDING_ID), positive - normaliser, 0.0)


def sampled_softmax_loss(
    hidden: tf.Tensor, targets: tf.Tensor, item_table: tf.Tensor, negatives: tf.Tensor, compute_dtype: tf.DType = tf.float32,
    label_smoothing: float = 0.0, history: Optional[tf.Tensor] = None,
) -> tf.Tensor:
    """Softmax over [positive, shared negatives]; a negative equal to the positive (or, given a history,
    to a seen item) is masked.

    ``negatives`` [num_negatives] item ids shared by the whole batch. Given every
    item 1..N as negatives this equals :func:`full_softmax_loss` exactly, smoothed or not.
    """
    hidden, targets, seen = _targeted(hidden, targets, history)
    positive = tf.reduce_sum(hidden * tf.gather(item_table, targets), axis=-1, keepdims=True)
    negative = _negative_logits(hidden, item_table, negatives, compute_dtype)
    masked = tf.equal(targets[:, tf.newaxis], negatives[tf.newaxis, :])
    if seen is not None:
        masked |= _seen_negatives(seen, negatives)
    negative = tf.where(masked, _EXCLUDED_LOGIT, negative)
    log_probabilities = tf.nn.log_softmax(tf.concat([positive, negative], axis=-1), axis=-1)
    loss = -log_probabilities[:, 0]
    if label_smoothing:
        classes = tf.concat([tf.ones_like(positive), tf.cast(tf.logical_not(masked), tf.float32)], axis=-1)
        every_class = -tf.reduce_sum(log_probabilities * classes, axis=-1) / tf.reduce_sum(classes, axis=-1)
        loss = _smoothed(loss, every_class, label_smoothing)
    return _mean(loss)


def uniform_negatives(num_negatives: int, num_items: int, seed: tf.Tensor) -> tf.Tensor:
    """``num_negatives`` item ids drawn uniformly (with replacement) from 1..N, from a stateless seed."""
    return tf.random.stateless_uniform([num_negatives], seed, minval=1, maxval=num_items + 1, dtype=tf.int32)
