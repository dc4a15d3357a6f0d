"""Exact top-k over the catalogue: tensorflow-recommenders' brute force, with the candidates stored column-major.

``ColumnMajorBruteForce`` is TFRS's float32 brute force over the candidate
table stored [d, N] instead of [N, d]: the scores are then a plain
[batch, d] x [d, N] product, which TensorFlow's CPU kernels stream at close
to memory bandwidth, where the transposed product over [N, d] ran at half
of it (1M x 128, batch 1: 34-41 ms against 63-67 ms; BUILD_NOTES.md,
"bfloat16 on AVX2"). It also beat a bfloat16 copy of the table, which halves
the bytes read but was slower on both kinds of CPU measured (AVX-512:
1.1-1.6x; AVX2 only: 11x; BUILD_NOTES.md, "No bfloat16 shortlist").
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf
import tensorflow_recommenders as tfrs


class ColumnMajorBruteForce(tfrs.layers.factorized_top_k.BruteForce):
    """TFRS's brute force with the candidates held as one [d, N] variable (see the module docstring)."""

    def index(self, candidates: tf.Tensor, identifiers: Optional[tf.Tensor] = None) -> ColumnMajorBruteForce:
        candidates = tf.convert_to_tensor(candidates)
        if identifiers is None:
            identifiers = tf.range(candidates.shape[0])
        if candidates.shape.rank != 2 or candidates.shape[0] != identifiers.shape[0]:
            raise ValueError(f"candidates must be [N, d] with one identifier per row (got {candidates.shape} "
                             f"and {identifiers.shape[0]} identifiers)")
        self._identifiers = self.add_weight(name="identifiers", dtype=identifiers.dtype, shape=identifiers.shape,
                                            initializer="zeros", trainable=False)
        self._candidates = self.add_weight(name="candidates_by_column", dtype=candidates.dtype,
                                           shape=[candidates.shape[1], candidates.shape[0]], initializer="zeros",
                                           trainable=False)
        self._identifiers.assign(identifiers)
        self._candidates.assign(tf.transpose(candidates))
        self._reset_tf_function_cache()
        return self

    def _compute_score(self, queries: tf.Tensor, candidates: tf.Tensor) -> tf.Tensor:
        return tf.matmul(queries, candidates)


def top_k_excluding(
    layer: tfrs.layers.factorized_top_k.TopK, num_candidates: int, queries: tf.Tensor, exclusions: tf.Tensor, k: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """(scores, identifiers) [batch, k] of ``layer``'s top k with the identifiers in ``exclusions`` left out.

    ``exclusions`` [batch, E] may be as wide as a request's whole history (E
    unknown until the request; identifiers not in the index, such as 0, exclude
    nothing). TFRS's ``query_with_exclusions`` needs E known when the graph is
    built, so this fetches ``k + E`` candidates (at most the index) and drops
    the excluded ones. When a row's exclusions leave fewer than ``k`` of the
    fetched candidates, its last slots hold excluded candidates.
    """
    fetched = tf.minimum(k + tf.shape(exclusions)[1], num_candidates)
    scores, identifiers = layer(queries, k=fetched)
    excluded = tf.reduce_any(tf.equal(identifiers[:, :, tf.newaxis], exclusions[:, tf.newaxis, :]), axis=-1)
    _, order = tf.math.top_k(tf.where(excluded, -float("inf"), scores), k=tf.minimum(k, fetched))
    return tf.gather(scores, order, batch_dims=1), tf.gather(identifiers, order, batch_dims=1)
