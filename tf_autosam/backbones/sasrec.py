"""SASRec: item + learnable position embeddings under causal self-attention.

Shapes and the interface are those of :mod:`tf_autosam.backbones.base`.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from input_pipeline.schema import PADDING_ID
from tf_autosam.backbones.base import Backbone, real_items
from tf_autosam.config import TrainerConfig
from tf_autosam.layers.dropout import dropout, sub_seed
from tf_autosam.layers import BlockSettings, TransformerBlock, block_settings, causal_padding_mask, truncated_normal


class SASRec(Backbone):
    """Self-attentive sequential recommender (Kang & McAuley, 2018) as one layer."""

    def __init__(self, num_items: int, max_len: int, num_blocks: int, block: BlockSettings, **kwargs):
        super().__init__(num_items, max_len, block.hidden_size, **kwargs)
        self.norm = block.norm
        self.position_embedding = tf.keras.layers.Embedding(max_len, block.hidden_size, embeddings_initializer=truncated_normal(), name="position_embedding")
        self.embedding_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="embedding_norm")
        self.dropout = block.dropout
        self.blocks = [
            TransformerBlock(block, name=f"block_{i}")
            for i in range(num_blocks)
        ]
        self.final_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm") if block.norm == "pre" else None

    def embed(self, items: tf.Tensor, positions: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Item + position embeddings."""
        if positions is None:
            positions = tf.broadcast_to(tf.range(tf.shape(items)[1]) + (self.max_len - tf.shape(items)[1]), tf.shape(items))
        return self.item_embedding(items) + self.position_embedding(positions)

    def call(
        self, items: tf.Tensor, positions: Optional[tf.Tensor] = None, dropout_seed: Optional[tf.Tensor] = None,
        newest_only: bool = False,
    ) -> tf.Tensor:
        x = self.embed(items, positions)
        keep = real_items(items, x.dtype)
        if self.norm == "post":
            x = self.embedding_norm(x)
        x = dropout(x, self.dropout, dropout_seed, site=0) * keep
        mask = causal_padding_mask(tf.not_equal(items, PADDING_ID))
        for index, block in enumerate(self.blocks):
            last_block = index == len(self.blocks) - 1
            if newest_only and last_block:
                keep = keep[:, -1:]
            x = block(x, mask, sub_seed(dropout_seed, index + 1), newest_only=newest_only and last_block) * keep
        if newest_only:
            x, keep = x[:, -1:], keep[:, -1:]
        if self.final_norm is not None:
            x = self.final_norm(x) * keep
        return x


def build(config: TrainerConfig, num_items: int) -> SASRec:
    """SASRec with ``num_blocks`` transformer blocks of the config's block settings."""
    return SASRec(num_items, config.max_len, config.num_blocks, block_settings(config), name="sasrec")
