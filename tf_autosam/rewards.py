"""AutoSAM's rewards and REINFORCE loss (AUTOSAM_SPEC sections 4 and 5), as pure functions.

All tensors are [batch, L] in FULL-window coordinates (slot t = 0..L-1, left
padded, 0 = padding):
- ``keep``: the sampled actions a_t as float 0/1 (0 at padding);
- ``keep_probability``: p_t;
- ``full_logp[t]``: log P(y_t | x_<=t) from the full window, where y_t =
  x_{t+1} and y_{L-1} is the true next item after the window;
- ``compacted_logp[j]``: from the pass over the compacted window
  (``tf_autosam.compaction``), log P of compacted target j (the next kept
  item, or the true next item for the last kept one) at compacted slot j.
Rewards carry no gradient: callers pass values computed under
``tf.stop_gradient``.
"""

from __future__ import annotations

import tensorflow as tf

LOG_EPSILON = 1e-12
# Resolvable next to 1 in float32 (1 - 1e-12 rounds to 1, and 0 * log 0 is NaN).
ENTROPY_EPSILON = 1e-6


def keep_threshold(epoch: tf.Tensor, start: float = 0.8, step: float = 0.03, cap: float = 0.99) -> tf.Tensor:
    """The reference schedule th = min(0.8 + 0.03 * epoch, 0.99) gating the future-prediction reward."""
    return tf.minimum(start + step * tf.cast(epoch, tf.float32), cap)


def _last_kept_value(keep: tf.Tensor, compacted_values: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """For every slot t: the compacted value of the last kept item at or before t, and whether one exists."""
    length = tf.shape(keep)[1]
    kept_so_far = tf.cast(tf.cumsum(keep, axis=1), tf.int32)
    total_kept = kept_so_far[:, -1:]
    index = tf.maximum(length - total_kept + kept_so_far - 1, 0)
    return tf.gather(compacted_values, index, batch_dims=1), kept_so_far > 0


def future_prediction_reward(
    keep: tf.Tensor,
    keep_probability: tf.Tensor,
    full_logp: tf.Tensor,
    compacted_logp: tf.Tensor,
    threshold: tf.Tensor,
    gamma: float,
) -> tf.Tensor:
    """Discounted reward-to-go of r_t = logP_samp(x_{t+1}) - logP_full(x_{t+1}).

    r_t is non-zero only where the next item x_{t+1} was kept, some earlier item
    was kept (the first kept item has no sampled prediction), p_{t+1} >=
    ``threshold``, and t is not the last slot.
    """
    sampled_logp, has_kept_prefix = _last_kept_value(keep, compacted_logp)
    next_kept = tf.concat([keep[:, 1:], tf.zeros_like(keep[:, :1])], axis=1)
    next_probability = tf.concat([keep_probability[:, 1:], tf.zeros_like(keep_probability[:, :1])], axis=1)
    gate = next_kept * tf.cast(has_kept_prefix, keep.dtype) * tf.cast(next_probability >= threshold, keep.dtype)
    reward = gate * (sampled_logp - full_logp)
    length = tf.shape(keep)[1]
    offsets = tf.cast(tf.range(length)[tf.newaxis, :] - tf.range(length)[:, tf.newaxis], tf.float32)
    discount = tf.where(offsets >= 0, tf.pow(tf.cast(gamma, tf.float32), offsets), 0.0)  # [t, k]: gamma^(k - t), k >= t
    return tf.matmul(reward, discount, transpose_b=True)


def prefix_mask(valid: tf.Tensor) -> tf.Tensor:
    """1.0 where x_t is a real item with a real item before it: the slots a prediction of x_t exists for."""
    valid = tf.cast(valid, tf.float32)
    return valid * tf.concat([tf.zeros_like(valid[:, :1]), valid[:, :-1]], axis=1)


def centre_per_user(values: tf.Tensor, has_prefix: tf.Tensor) -> tf.Tensor:
    """``values`` minus each user's mean over the ``has_prefix`` slots; 0 elsewhere."""
    values = values * has_prefix
    mean = tf.math.divide_no_nan(tf.reduce_sum(values, axis=1, keepdims=True), tf.reduce_sum(has_prefix, axis=1, keepdims=True))
    return (values - mean) * has_prefix


def sequence_perplexity_reward(keep: tf.Tensor, valid: tf.Tensor, full_logp: tf.Tensor, base_rate: float) -> tf.Tensor:
    """(log P(x_t | x_<t) - mean_t log P + b) * (2 a_t - 1), zero where x_t has no prefix.

    log P(x_t | x_<t) is ``full_logp[t - 1]``; the user's first item (and
    padding) has none, gets reward 0 and is left out of the per-user mean.
    """
    has_prefix = prefix_mask(valid)
    item_logp = tf.concat([tf.zeros_like(full_logp[:, :1]), full_logp[:, :-1]], axis=1)
    return (centre_per_user(item_logp, has_prefix) + base_rate) * (2.0 * keep - 1.0) * has_prefix


def standardize(total_reward: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Zero mean, unit variance over the batch's real positions (0 at padding).

    Subtracting the mean is REINFORCE's constant baseline (variance reduction);
    dividing by the spread makes the sampler's step size independent of the
    reward weights, which otherwise scale it by 1e-2 and leave p near 0.5.
    """
    count = tf.maximum(tf.reduce_sum(valid), 1.0)
    mean = tf.reduce_sum(total_reward * valid) / count
    variance = tf.reduce_sum(tf.square(total_reward - mean) * valid) / count
    return (total_reward - mean) * tf.math.rsqrt(variance + 1e-8) * valid


def keep_rate_penalty(mean_keep_probability: tf.Tensor, target_keep_rate: float) -> tf.Tensor:
    """(mean p - target)^2: a direct, differentiable pull of the sampler towards a keep rate."""
    return tf.square(mean_keep_probability - target_keep_rate)


def mean_keep_entropy(keep_probability: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Mean binary entropy of the keep decisions over real positions (in nats, at most log 2).

    Rewarding it keeps p away from 0 and 1, where the softmax gradient vanishes
    and a policy that saturated early could never learn again.
    """
    p = tf.clip_by_value(keep_probability, ENTROPY_EPSILON, 1.0 - ENTROPY_EPSILON)
    entropy = -(p * tf.math.log(p) + (1.0 - p) * tf.math.log(1.0 - p))
    return tf.reduce_sum(entropy * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)


def policy_loss(rewards: tf.Tensor, keep: tf.Tensor, keep_probability: tf.Tensor) -> tf.Tensor:
    """REINFORCE: mean over batch x L of R_t * -log pi(a_t); only ``keep_probability`` carries gradient."""
    action_probability = keep * keep_probability + (1.0 - keep) * (1.0 - keep_probability)
    return tf.reduce_mean(tf.stop_gradient(rewards) * -tf.math.log(action_probability + LOG_EPSILON))
