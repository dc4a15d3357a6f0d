"""GRU4Rec: a GRU over item embeddings, no attention and no position ids.

Layout of RecBole's GRU4Rec (Hidasi et al., 2016; Tan et al., 2016):
``Dropout(item embedding) -> GRU x num_layers -> Dense(d)``, the projection
bringing the GRU state (``gru_size`` wide) back to the item table's width d so
that it scores items by dot product. Shapes and the interface are those of
:mod:`tf_autosam.backbones.base`.

A recurrence is causal by construction; the padding mask makes the GRU carry
its state through padding unchanged, so leading padding (and the gaps a
compaction leaves in front) change nothing. Order is all a GRU needs, so the
position ids of a compacted window are accepted and ignored: it reads the
kept items as one shorter sequence.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from input_pipeline.schema import PADDING_ID
from tf_autosam.backbones.base import Backbone, real_items
from tf_autosam.config import TrainerConfig
from tf_autosam.layers.dropout import dropout


class GRU4Rec(Backbone):
    """Session-based recurrent recommender as one layer."""

    def __init__(self, num_items: int, max_len: int, hidden_size: int, gru_size: int, num_layers: int, dropout_rate: float, **kwargs):
        super().__init__(num_items, max_len, hidden_size, **kwargs)
        self.dropout_rate = dropout_rate
        # No biases, as in RecBole's reference; masked steps keep the previous state.
        self.grus = [
            tf.keras.layers.GRU(gru_size, return_sequences=True, use_bias=False, name=f"gru_{i}")
            for i in range(num_layers)
        ]
        # Keras' default (Glorot) initialisation, as in the reference: a N(0, 0.02) kernel over the small
        # embeddings starts every score near 0, and training idled near popularity for up to 8 epochs.
        self.projection = tf.keras.layers.Dense(hidden_size, name="projection")

    def embed(self, items: tf.Tensor, positions: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Item embeddings; ``positions`` is ignored (the recurrence reads order from the sequence)."""
        return self.item_embedding(items)

    def call(
        self, items: tf.Tensor, positions: Optional[tf.Tensor] = None, dropout_seed: Optional[tf.Tensor] = None,
        newest_only: bool = False,
    ) -> tf.Tensor:
        valid = tf.not_equal(items, PADDING_ID)
        x = dropout(self.embed(items, positions), self.dropout_rate, dropout_seed, site=0)
        for gru in self.grus:
            x = gru(x, mask=valid)
        if newest_only:
            x, items = x[:, -1:], items[:, -1:]
        x = self.projection(x)
        return x * real_items(items, x.dtype)


def build(config: TrainerConfig, num_items: int) -> GRU4Rec:
    """GRU4Rec with ``num_blocks`` stacked GRUs of ``gru_size`` units and embedding dropout ``dropout``."""
    return GRU4Rec(num_items, config.max_len, config.hidden_size, config.gru_size, config.num_blocks, config.dropout, name="gru4rec")
