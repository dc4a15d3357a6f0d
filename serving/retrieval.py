"""Exact top-k over the catalogue: tensorflow-recommenders' brute force, with faster paths for large catalogues.

``ColumnMajorBruteForce`` is TFRS's float32 brute force over the candidate
table stored [d, N] instead of [N, d]: the scores are then a plain
[batch, d] x [d, N] product, which TensorFlow's CPU kernels stream at close
to memory bandwidth, where the transposed product over [N, d] ran at half
of it (1M x 128, batch 1: 34-41 ms against 63-67 ms; BUILD_NOTES.md,
"bfloat16 on AVX2").

At batch 1 a brute-force top-k over a large catalogue is bound by reading
the float32 candidate table (512 MB at 1M items and d 128), not by
arithmetic. ``ShortlistBruteForce`` scores a bfloat16 copy instead (half the
bytes), keeps the ``shortlist`` best approximate scores, and rescores those
in float32. The answer is still exact: a bfloat16 score differs from the
float32 one by less than ``2^-6 * |q| * max_j |t_j|`` (both operands rounded
to bfloat16, 2 x 2^-8 relative, the result once more, 2^-8, float32
accumulation), so when the k-th rescored score beats the shortlist's lowest
approximate score (no left-out one is higher) by more than that bound, no
candidate outside the shortlist can be in the top k. When it does not, and
for batches above ``max_shortlist_batch`` (where the bfloat16 product is compute bound and, on
CPUs without bfloat16 units, slower than float32), the float32 brute force of
the parent class answers. Measured in BUILD_NOTES.md ("Serving latency").

The shortlist pays only where TensorFlow's bfloat16 products are fast: on
x86 CPUs with AVX-512 (oneDNN's bfloat16 kernels). On AVX2-only CPUs they
fall back to generic kernels: a [1, 128] x [128, 1M] product measured 569 ms
in bfloat16 against 66 ms in float32 (BUILD_NOTES.md, "bfloat16 on AVX2").
So the shortlist is chosen for the CPU, by default the exporting machine's.
"""

from __future__ import annotations

import pathlib
import re
from typing import Optional

import tensorflow as tf
import tensorflow_recommenders as tfrs

# Catalogues from this size on are served through the bfloat16 shortlist; below it the
# float32 table is small enough that the extra kernels cost more than they save.
SHORTLIST_MIN_ITEMS = 100_000
DEFAULT_SHORTLIST = 512
DEFAULT_MAX_SHORTLIST_BATCH = 4
# Bound on |bfloat16 score - float32 score| / (|q| * max_j |t_j|): see the module docstring.
BFLOAT16_SCORE_ERROR = 2.0**-6


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


class ShortlistBruteForce(tfrs.layers.factorized_top_k.BruteForce):
    """Brute-force top-k that reads a bfloat16 copy of the candidates for small batches; exact (see module docstring).

    The float32 candidates stay row-major ([N, d], TFRS's layout): rescoring
    gathers whole rows (0.4 ms for 512 of them at 1M x 128), where gathering
    the same candidates from a [d, N] table reads 128 scattered floats each
    (5 ms).
    """

    def __init__(
        self, k: int = 10, shortlist: int = DEFAULT_SHORTLIST, max_shortlist_batch: int = DEFAULT_MAX_SHORTLIST_BATCH,
        name: Optional[str] = None,
    ):
        super().__init__(k=k, name=name)
        self.shortlist = shortlist
        self.max_shortlist_batch = max_shortlist_batch
        self._compressed: Optional[tf.Variable] = None
        self._max_norm: Optional[tf.Variable] = None

    def index(self, candidates: tf.Tensor, identifiers: Optional[tf.Tensor] = None) -> ShortlistBruteForce:
        super().index(candidates, identifiers)
        self._compressed = self.add_weight(
            name="candidates_bfloat16", dtype=tf.bfloat16, shape=candidates.shape,
            initializer=tf.keras.initializers.Zeros(), trainable=False,
        )
        self._compressed.assign(tf.cast(candidates, tf.bfloat16))
        self._max_norm = self.add_weight(name="max_candidate_norm", shape=[], initializer="zeros", trainable=False)
        self._max_norm.assign(tf.reduce_max(tf.norm(candidates, axis=1)))
        return self

    def call(self, queries: tf.Tensor, k: Optional[int] = None) -> tuple[tf.Tensor, tf.Tensor]:
        k = k if k is not None else self._k
        exact = lambda: super(ShortlistBruteForce, self).call(queries, k)  # noqa: E731
        small_batch = tf.shape(queries)[0] <= self.max_shortlist_batch
        return tf.cond(small_batch, lambda: self._certified_shortlist(queries, k, exact), exact)

    def _certified_shortlist(self, queries: tf.Tensor, k, exact) -> tuple[tf.Tensor, tf.Tensor]:
        """The shortlist's rescored top-k when the error bound proves it exact, else ``exact()``."""
        num_candidates = self._compressed.shape[0]
        shortlist = tf.minimum(tf.maximum(k, self.shortlist), num_candidates)
        approximate = tf.matmul(tf.cast(queries, tf.bfloat16), self._compressed, transpose_b=True)
        approximate_top, rows = tf.math.top_k(approximate, shortlist)
        rescored = tf.einsum("bd,bsd->bs", queries, tf.gather(self._candidates, rows))
        scores, order = tf.math.top_k(rescored, k)
        rows = tf.gather(rows, order, batch_dims=1)
        bound = BFLOAT16_SCORE_ERROR * tf.norm(queries, axis=1) * self._max_norm
        # No approximate score left out of the shortlist exceeds the shortlist's lowest one.
        left_out_ceiling = tf.cast(approximate_top[:, -1], tf.float32)
        certified = tf.logical_or(
            shortlist >= num_candidates, tf.reduce_all(scores[:, -1] > left_out_ceiling + bound)
        )
        return tf.cond(certified, lambda: (scores, tf.gather(self._identifiers, rows)), exact)


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


def cpu_runs_bfloat16_fast(cpuinfo: pathlib.Path = pathlib.Path("/proc/cpuinfo")) -> bool:
    """Whether this machine's CPU has the AVX-512 (or AMX) units that TensorFlow's fast bfloat16 kernels need.

    False where ``cpuinfo`` cannot be read (not Linux, not x86): the float32
    brute force is the choice that is never much slower.
    """
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    return re.search(r"^flags\s*:.*\b(avx512bw|amx_bf16)\b", text, re.MULTILINE) is not None


def wants_shortlist(bfloat16_shortlist: Optional[bool]) -> bool:
    """The shortlist choice asked for, or (None) the one for this machine's CPU."""
    return cpu_runs_bfloat16_fast() if bfloat16_shortlist is None else bfloat16_shortlist


def brute_force_layer(num_items: int, k: int, bfloat16_shortlist: Optional[bool] = None) -> tfrs.layers.factorized_top_k.BruteForce:
    """The top-k layer for a catalogue of ``num_items``: the bfloat16 shortlist from SHORTLIST_MIN_ITEMS on
    where ``bfloat16_shortlist`` asks for it (see :func:`wants_shortlist`), else the column-major float32
    brute force."""
    if wants_shortlist(bfloat16_shortlist) and num_items >= SHORTLIST_MIN_ITEMS:
        return ShortlistBruteForce(k=k)
    return ColumnMajorBruteForce(k=k)
