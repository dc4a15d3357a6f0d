"""Keras models whose ``train_step`` defines one optimisation step.

A model owns its backbone and objective and stays thin: the maths lives in
``losses`` and the backbone; fit orchestration lives in ``training``. Shapes
and id conventions are those of ``input_pipeline.pipeline``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_autosam import losses
from tf_autosam.backbones import SASRec
from tf_autosam.config import TrainerConfig


class SequentialRecommender(tf.keras.Model):
    """Backbone + next-item cross-entropy at every position (full or sampled softmax)."""

    def __init__(self, backbone: SASRec, num_negatives: int, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.num_items = backbone.num_items
        # Sampling as many negatives as there are items costs more than the exact loss.
        self.num_negatives = num_negatives if 0 < num_negatives < self.num_items else 0
        self.seed = seed

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        """[batch, N + 1] scores for the item after each input sequence."""
        hidden = self.backbone(inputs, training=training)[:, -1]
        return self.backbone.logits(hidden)

    def recommendation_loss(self, inputs: tf.Tensor, targets: tf.Tensor, training: bool) -> tf.Tensor:
        hidden = self.backbone(inputs, training=training)
        table = self.backbone.item_table
        if self.num_negatives == 0:
            return losses.full_softmax_loss(hidden, targets, table)
        step_seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(self.optimizer.iterations, tf.int64)])
        negatives = losses.uniform_negatives(self.num_negatives, self.num_items, step_seed)
        return losses.sampled_softmax_loss(hidden, targets, table, negatives)

    def train_step(self, data):
        inputs, targets = data
        with tf.GradientTape() as tape:
            loss = self.recommendation_loss(inputs, targets, training=True)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return {"loss": loss}

    def test_step(self, data):
        inputs, targets = data
        return {"loss": self.recommendation_loss(inputs, targets, training=False)}


class PopularityModel(tf.keras.Model):
    """Most-popular baseline: every user gets the training-set item counts as scores."""

    def __init__(self, item_counts: np.ndarray, **kwargs):
        super().__init__(**kwargs)
        self.item_counts = tf.constant(item_counts, tf.float32)

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        return tf.broadcast_to(self.item_counts[tf.newaxis], [tf.shape(inputs)[0], tf.shape(self.item_counts)[0]])


def build_sasrec(config: TrainerConfig, num_items: int) -> SequentialRecommender:
    backbone = SASRec(
        num_items=num_items,
        max_len=config.max_len,
        hidden_size=config.hidden_size,
        num_blocks=config.num_blocks,
        num_heads=config.num_heads,
        ffn_size=config.ffn_size,
        dropout=config.dropout,
        norm=config.norm,
        residual_scale_init=config.residual_scale_init,
        name="sasrec",
    )
    model = SequentialRecommender(backbone, config.num_negatives, config.seed, name="sequential_recommender")
    model(tf.zeros([1, config.max_len], tf.int32))
    return model


def popularity_counts(sequences: list[np.ndarray], num_items: int) -> np.ndarray:
    """[N + 1] training-set interaction counts per item id (padding column 0 stays 0)."""
    flat = np.concatenate(sequences) if sequences else np.zeros([0], np.int64)
    return np.bincount(flat, minlength=num_items + 1).astype(np.float32)
