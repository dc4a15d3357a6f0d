"""Exact top-k over the catalogue: tensorflow-recommenders' brute force, with the candidates stored column-major.

``ColumnMajorBruteForce`` is TFRS's float32 brute force over the candidate
table stored [d, N] instead of [N, d]: the scores are then a plain
[batch, d] x [d, N] product, which TensorFlow's CPU kernels stream at close
to memory bandwidth, where the transposed product over [N, d] ran at half
of it (1M x 128, batch 1: 34-41 ms against 63-67 ms; BUILD_NOTES.md,
"bfloat16 on AVX2"). It also beat a bfloat16 copy of the table, which halves
the bytes read but was slower on both kinds of CPU measured (AVX-512:
1.1-1.6x; AVX2 only: 11x; BUILD_NOTES.md, "No bfloat16 shortlist").

``ChunkedBruteForce`` gives the same answer over catalogues too large for a
request's [batch, N] scores to be held at once: it scores C items at a time
(the table stored [N / C, d, C]) and merges each chunk's top k into a running
top k, so a request holds [batch, C] scores. ``exact_top_k`` picks between the
two by catalogue size.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf
import tensorflow_recommenders as tfrs


def _checked_index(candidates: tf.Tensor, identifiers: Optional[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
    """(candidates [N, d], identifiers [N]), identifiers defaulting to row numbers; ValueError if they disagree."""
    candidates = tf.convert_to_tensor(candidates)
    if identifiers is None:
        identifiers = tf.range(candidates.shape[0])
    identifiers = tf.convert_to_tensor(identifiers)
    if candidates.shape.rank != 2 or candidates.shape[0] != identifiers.shape[0]:
        raise ValueError(f"candidates must be [N, d] with one identifier per row (got {candidates.shape} "
                         f"and {identifiers.shape[0]} identifiers)")
    return candidates, identifiers


class ColumnMajorBruteForce(tfrs.layers.factorized_top_k.BruteForce):
    """TFRS's brute force with the candidates held as one [d, N] variable (see the module docstring)."""

    def index(self, candidates: tf.Tensor, identifiers: Optional[tf.Tensor] = None) -> ColumnMajorBruteForce:
        candidates, identifiers = _checked_index(candidates, identifiers)
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


class ChunkedBruteForce(tfrs.layers.factorized_top_k.TopK):
    """Exact top-k scoring ``chunk_items`` candidates at a time (see the module docstring).

    Ties go to the candidate indexed first, as in one ``tf.math.top_k`` over
    every score: chunks are merged in index order, the running top k first.
    """

    def __init__(self, chunk_items: int, k: int = 10, name: Optional[str] = None):
        if chunk_items < 1:
            raise ValueError(f"chunk_items must be positive, got {chunk_items}")
        super().__init__(k=k, name=name)
        self.chunk_items = chunk_items
        self._candidates: Optional[tf.Variable] = None

    def index(self, candidates: tf.Tensor, identifiers: Optional[tf.Tensor] = None) -> ChunkedBruteForce:
        candidates, identifiers = _checked_index(candidates, identifiers)
        count, width = candidates.shape
        chunks = -(-count // self.chunk_items)
        padding = chunks * self.chunk_items - count
        # [chunks, C, d] -> [chunks, d, C]: each chunk's scores are one plain product, as in ColumnMajorBruteForce.
        by_chunk = tf.transpose(tf.reshape(tf.pad(candidates, [[0, padding], [0, 0]]), [chunks, self.chunk_items, width]), [0, 2, 1])
        self._num_candidates = count
        self._identifiers = self.add_weight(name="identifiers_by_chunk", dtype=identifiers.dtype, shape=[chunks, self.chunk_items],
                                            initializer="zeros", trainable=False)
        self._candidates = self.add_weight(name="candidates_by_chunk", dtype=candidates.dtype, shape=by_chunk.shape,
                                           initializer="zeros", trainable=False)
        self._identifiers.assign(tf.reshape(tf.pad(identifiers, [[0, padding]]), [chunks, self.chunk_items]))
        self._candidates.assign(by_chunk)
        self._reset_tf_function_cache()
        return self

    def call(self, queries: tf.Tensor, k: Optional[int] = None) -> tuple[tf.Tensor, tf.Tensor]:
        if self._candidates is None:
            raise ValueError("The `index` method must be called first to create the retrieval index.")
        k = self._k if k is None else k
        batch = tf.shape(queries)[0]
        slots = tf.range(self.chunk_items)

        def merge_chunk(chunk, best_scores, best_identifiers):
            scores = tf.matmul(queries, self._candidates[chunk])
            real = slots < self._num_candidates - chunk * self.chunk_items  # the last chunk's padding never wins
            scores = tf.where(real[tf.newaxis, :], scores, -float("inf"))
            chunk_scores, chunk_slots = tf.math.top_k(scores, k=tf.minimum(k, self.chunk_items))
            scores = tf.concat([best_scores, chunk_scores], axis=1)
            identifiers = tf.concat([best_identifiers, tf.gather(self._identifiers[chunk], chunk_slots)], axis=1)
            best_scores, order = tf.math.top_k(scores, k=k)
            return chunk + 1, best_scores, tf.gather(identifiers, order, batch_dims=1)

        start = (0, tf.fill([batch, k], tf.constant(-float("inf"), queries.dtype)), tf.zeros([batch, k], self._identifiers.dtype))
        _, scores, identifiers = tf.while_loop(
            lambda chunk, *_: chunk < self._candidates.shape[0], merge_chunk, start,
            shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None]), tf.TensorShape([None, None])),
        )
        return scores, identifiers

    def is_exact(self) -> bool:
        return True


def exact_top_k(num_items: int, chunk_items: int, k: int) -> tfrs.layers.factorized_top_k.TopK:
    """The column-major brute force for a catalogue of at most ``chunk_items`` items, the chunked one above that."""
    return ColumnMajorBruteForce(k=k) if num_items <= chunk_items else ChunkedBruteForce(chunk_items, k=k)


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
