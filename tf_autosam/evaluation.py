"""Runs a model's scores through the exact full-ranking metrics, one batch at a time.

Only [batch, N + 1] scores exist at once; per-user ranks are gathered and
averaged at the end, so the full-ranking result does not depend on the batch
size. The opt-in sampled metrics draw each batch's negatives from (seed, batch
index): they are reproducible for one ``eval_batch_size``, and change with it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from input_pipeline.schema import PADDING_ID
from tf_autosam import metrics
from tf_autosam.models import AutoSAMRecommender

SAMPLED_PREFIX = "sampled{n}_"


class RankingEvaluator:
    """Full-ranking metrics (and, opt-in, sampled metrics labelled as such) of a score function."""

    def __init__(
        self,
        score_fn: Callable[[tf.Tensor], tf.Tensor],
        cutoffs: Sequence[int] = metrics.DEFAULT_CUTOFFS,
        sampled_negatives: int = 0,
        seed: int = 0,
    ):
        self.score_fn = score_fn
        self.cutoffs = tuple(cutoffs)
        self.sampled_negatives = sampled_negatives
        self.seed = seed
        self._batch_ranks = tf.function(self._ranks, reduce_retracing=True)

    def _ranks(self, batch: dict, batch_index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        scores = self.score_fn(batch["inputs"])
        excluded = metrics.excluded_items(batch["history"], batch["target"], tf.shape(scores)[1])
        full = metrics.pessimistic_ranks(scores, batch["target"], excluded)
        if not self.sampled_negatives:
            return full, full
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(batch_index, tf.int64)])
        sampled_excluded = metrics.sampled_negative_mask(excluded, batch["target"], self.sampled_negatives, seed)
        return full, metrics.pessimistic_ranks(scores, batch["target"], sampled_excluded)

    def ranks(self, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
        """Each user's 0-based target rank, full and (if enabled, else the same) sampled, in dataset order."""
        full_ranks, sampled_ranks = [], []
        for index, batch in enumerate(dataset):
            full, sampled = self._batch_ranks(batch, tf.constant(index, tf.int64))
            full_ranks.append(full.numpy())
            sampled_ranks.append(sampled.numpy())
        return np.concatenate(full_ranks), np.concatenate(sampled_ranks)

    def evaluate(self, dataset: tf.data.Dataset) -> dict[str, float]:
        full_ranks, sampled_ranks = self.ranks(dataset)
        results = metrics.metrics_from_ranks(full_ranks, self.cutoffs)
        if self.sampled_negatives:
            prefix = SAMPLED_PREFIX.format(n=self.sampled_negatives)
            results.update(metrics.metrics_from_ranks(sampled_ranks, self.cutoffs, prefix))
        return results


def inference_keep_rate(model: AutoSAMRecommender, dataset: tf.data.Dataset) -> float:
    """Share of real input behaviours that the model's inference mode keeps, over an evaluation dataset."""
    kept = real = 0
    for batch in dataset:
        inputs = batch["inputs"]
        kept += int(tf.reduce_sum(tf.cast(model.inference_keep(inputs, model.keep_probability(inputs)), tf.int64)))
        real += int(tf.math.count_nonzero(tf.not_equal(inputs, PADDING_ID)))
    return kept / max(real, 1)
