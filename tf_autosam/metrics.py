"""Exact full-ranking metrics: NDCG@K, Recall@K (= HR@K), MRR@K.

Shapes: ``scores`` [batch, N + 1] (column 0 = padding id, never ranked);
``targets`` [batch] item ids; ``history`` [batch, H] the user's whole input
history, 0-padded. Every history item is excluded from the ranking except the
target itself (a repeated item stays rankable). Ties count against the target:
its rank is the number of other candidates scoring at least as high (0 = top);
a NaN score, the target's or a competitor's, counts against the target.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

from input_pipeline.schema import PADDING_ID

DEFAULT_CUTOFFS = (10, 20)


def excluded_items(history: tf.Tensor, targets: tf.Tensor, num_columns: int) -> tf.Tensor:
    """[batch, N + 1] bool: the padding column and every history item other than the target."""
    rows = tf.broadcast_to(tf.range(tf.shape(history)[0])[:, tf.newaxis], tf.shape(history))
    present = tf.not_equal(history, PADDING_ID)
    indices = tf.stack([tf.boolean_mask(rows, present), tf.boolean_mask(history, present)], axis=1)
    counts = tf.scatter_nd(indices, tf.ones([tf.shape(indices)[0]], tf.int32), [tf.shape(history)[0], num_columns])
    excluded = tf.greater(counts, 0)
    is_target = tf.one_hot(targets, num_columns, on_value=True, off_value=False)
    is_padding = tf.one_hot(PADDING_ID, num_columns, on_value=True, off_value=False)[tf.newaxis]
    return tf.logical_or(tf.logical_and(excluded, tf.logical_not(is_target)), is_padding)


def pessimistic_ranks(scores: tf.Tensor, targets: tf.Tensor, excluded: tf.Tensor) -> tf.Tensor:
    """0-based rank of each target among the candidates that are not excluded; ties rank it lower."""
    target_scores = tf.gather(scores, targets, batch_dims=1)[:, tf.newaxis]
    is_target = tf.one_hot(targets, tf.shape(scores)[1], on_value=True, off_value=False)
    competitors = tf.logical_not(tf.logical_or(excluded, is_target))
    # NaN compares false with everything: count it against the target too (a NaN target ranks last),
    # or a model that outputs NaN would score perfectly.
    unordered = tf.logical_or(tf.math.is_nan(scores), tf.math.is_nan(target_scores))
    at_least_as_high = tf.logical_and(competitors, tf.logical_or(scores >= target_scores, unordered))
    return tf.reduce_sum(tf.cast(at_least_as_high, tf.int32), axis=1)


def per_user_ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k of each user from the target's 0-based rank (one relevant item: 1 / log2(rank + 2))."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def metrics_from_ranks(ranks: np.ndarray, cutoffs: Sequence[int] = DEFAULT_CUTOFFS, prefix: str = "") -> dict[str, float]:
    """Mean NDCG@K, Recall@K and MRR@K over users, from their targets' 0-based ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("no users to evaluate")
    results: dict[str, float] = {}
    for k in cutoffs:
        hit = ranks < k
        results[f"{prefix}NDCG@{k}"] = float(np.mean(per_user_ndcg(ranks, k)))
        results[f"{prefix}Recall@{k}"] = float(np.mean(hit))
        results[f"{prefix}MRR@{k}"] = float(np.mean(np.where(hit, 1.0 / (ranks + 1.0), 0.0)))
    return results


def paired_permutation_test(first: np.ndarray, second: np.ndarray, rounds: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value that two per-user metric arrays have the same mean (random sign flips of the differences).

    Needs no distributional assumption, which matters for NDCG: most users score 0.
    """
    differences = np.asarray(first, np.float64) - np.asarray(second, np.float64)
    observed = abs(differences.mean())
    rng = np.random.default_rng(seed)
    # Rounds in chunks of about 2**22 signs: a [rounds, users] array at once is gigabytes for 20k+ users.
    chunk = max(1, 2**22 // max(1, len(differences)))
    at_least_as_extreme = 0
    for start in range(0, rounds, chunk):
        signs = rng.choice([-1.0, 1.0], size=(min(chunk, rounds - start), len(differences)))
        at_least_as_extreme += np.count_nonzero(np.abs(signs @ differences) / len(differences) >= observed - 1e-12)
    return float((1 + at_least_as_extreme) / (rounds + 1))


def sampled_negative_mask(excluded: tf.Tensor, targets: tf.Tensor, num_negatives: int, seed: tf.Tensor) -> tf.Tensor:
    """Exclusion mask that leaves, per user, only ``num_negatives`` random non-history items and the target.

    For the opt-in sampled metrics: negatives are drawn uniformly without
    replacement among the items that full ranking would rank (Gumbel top-k);
    a user with fewer such items than ``num_negatives`` is ranked against all of them.
    """
    is_target = tf.one_hot(targets, tf.shape(excluded)[1], on_value=True, off_value=False)
    keys = tf.random.stateless_uniform(tf.shape(excluded), seed)
    keys = tf.where(tf.logical_or(excluded, is_target), -1.0, keys)
    _, chosen = tf.math.top_k(keys, k=num_negatives)
    picked = tf.reduce_any(tf.one_hot(chosen, tf.shape(excluded)[1], on_value=True, off_value=False), axis=1)
    rankable = tf.logical_and(picked, tf.logical_not(excluded))
    return tf.logical_not(tf.logical_or(rankable, is_target))


def format_table(rows: dict[str, dict[str, float]], names: Iterable[str]) -> str:
    """A fixed-width table: one row per split (e.g. validation, test), one column per metric."""
    names = list(names)
    width = max(len(n) for n in names) + 2
    header = "split".ljust(12) + "".join(n.rjust(width) for n in names)
    lines = [header, "-" * len(header)]
    for split, values in rows.items():
        lines.append(split.ljust(12) + "".join(f"{values[n]:.4f}".rjust(width) for n in names))
    return "\n".join(lines)
