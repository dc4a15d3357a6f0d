"""SASRec: item + learnable position embeddings under causal self-attention.

Shapes: ``items`` [batch, L] int32, left-padded (0 = padding, items 1..N; the
convention is owned by ``input_pipeline.schema``); ``positions`` [batch, L]
int32 in [0, max_len): the slot of each item in the full left-padded window, so
a compacted subsequence can keep its items' original positions. Hidden states
are [batch, L, d] and are zero at padding positions.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from input_pipeline.schema import PADDING_ID
from tf_autosam.layers import BlockSettings, TransformerBlock, causal_padding_mask, truncated_normal


class SASRec(tf.keras.layers.Layer):
    """Self-attentive sequential recommender (Kang & McAuley, 2018) as one layer."""

    def __init__(self, num_items: int, max_len: int, num_blocks: int, block: BlockSettings, **kwargs):
        super().__init__(**kwargs)
        self.num_items = num_items
        self.max_len = max_len
        self.norm = block.norm
        hidden_size, dropout = block.hidden_size, block.dropout
        self.item_embedding = tf.keras.layers.Embedding(num_items + 1, hidden_size, embeddings_initializer=truncated_normal(), name="item_embedding")
        self.position_embedding = tf.keras.layers.Embedding(max_len, hidden_size, embeddings_initializer=truncated_normal(), name="position_embedding")
        self.embedding_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="embedding_norm")
        self.embedding_dropout = tf.keras.layers.Dropout(dropout)
        self.blocks = [
            TransformerBlock(block, name=f"block_{i}")
            for i in range(num_blocks)
        ]
        self.final_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm") if block.norm == "pre" else None

    @property
    def item_table(self) -> tf.Tensor:
        """[N + 1, d] item embeddings; row 0 is the padding id and is never a candidate."""
        return self.item_embedding.embeddings

    def embed_items(self, items: tf.Tensor) -> tf.Tensor:
        """[batch, L, d] item embeddings only (the rows that score items)."""
        return self.item_embedding(items)

    def embed(self, items: tf.Tensor, positions: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Item + position embeddings [batch, L, d]; the sampler reads these too."""
        if positions is None:
            positions = tf.broadcast_to(tf.range(tf.shape(items)[1]) + (self.max_len - tf.shape(items)[1]), tf.shape(items))
        return self.embed_items(items) + self.position_embedding(positions)

    def call(self, items: tf.Tensor, positions: Optional[tf.Tensor] = None, training: bool = False) -> tf.Tensor:
        valid = tf.not_equal(items, PADDING_ID)
        keep = tf.cast(valid, tf.float32)[..., tf.newaxis]
        x = self.embed(items, positions)
        if self.norm == "post":
            x = self.embedding_norm(x)
        x = self.embedding_dropout(x, training=training) * keep
        mask = causal_padding_mask(valid)
        for block in self.blocks:
            x = block(x, mask, training=training) * keep
        if self.final_norm is not None:
            x = self.final_norm(x) * keep
        return x

    def logits(self, hidden: tf.Tensor) -> tf.Tensor:
        """Scores of every item id (padding column included) for each hidden state."""
        return tf.matmul(hidden, self.item_table, transpose_b=True)
