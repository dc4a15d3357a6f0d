"""The backbone interface: all that the recommender, the sampler, the compaction and the rewards use.

Shapes: ``items`` [batch, L] int32, left-padded (0 = padding, items 1..N; the
convention is owned by ``input_pipeline.schema``); ``positions`` [batch, L]
int32 in [0, max_len): the slot of each item in the full left-padded window,
so that a compacted subsequence (``tf_autosam.compaction``) keeps its items'
original positions; ``None`` means the right-aligned slots of a full window.
Embeddings and hidden states are [batch, L, d], d = the config's ``hidden_size``.
Hidden states and item rows are float32 whatever the compute dtype of a
mixed-precision policy (``--precision``): they score items against the float32
item table; ``embed`` is in the compute dtype (it feeds the sampler's layers).

A backbone provides:

- ``num_items`` (N) and ``max_len`` (L of a full window);
- ``item_table`` [N + 1, d]: the item embeddings that score items (row 0 is
  padding). A hidden state scores item i as its dot product with row i; the
  losses, the rewards, the evaluation and the serving top-k rely on that;
- ``embed_items(items)``: rows of the item table; ``embed(items, positions)``:
  the input embeddings the sampler reads (a backbone without position ids
  may ignore ``positions``);
- ``call(items, positions, dropout_seed, newest_only)``: hidden states, zero at
  padding; the state at t depends only on the items at or before t, and
  extra leading padding changes nothing (so a compacted window is a valid
  input). ``newest_only=True`` returns [batch, 1, d], the newest position's
  state alone (the user vector that scores the next item), skipping what
  only the other positions need; dropout applies only with a ``dropout_seed``
  (``layers.dropout``: masks that depend on the seed alone, so a resumed run
  draws the uninterrupted one's);
- ``logits(hidden)`` [..., N + 1]: every item id's score for each hidden state.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from input_pipeline.schema import PADDING_ID
from tf_autosam.layers import truncated_normal


def real_items(items: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """[batch, L, 1] 1.0 at real items, 0.0 at padding: multiplies hidden states to zero the padding."""
    return tf.cast(tf.not_equal(items, PADDING_ID), dtype)[..., tf.newaxis]


class Backbone(tf.keras.layers.Layer):
    """The shared part of every backbone: the item table that embeds and scores items.

    Subclasses implement :meth:`embed` and :meth:`call` with the promises of
    the module docstring.
    """

    def __init__(self, num_items: int, max_len: int, hidden_size: int, **kwargs):
        super().__init__(**kwargs)
        self.num_items = num_items
        self.max_len = max_len
        self.item_embedding = tf.keras.layers.Embedding(
            num_items + 1, hidden_size, embeddings_initializer=truncated_normal(), name="item_embedding"
        )

    @property
    def item_table(self) -> tf.Tensor:
        """[N + 1, d] item embeddings; row 0 is the padding id and is never a candidate."""
        return self.item_embedding.embeddings

    def embed_items(self, items: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.item_embedding(items), tf.float32)

    def __call__(self, *args, **kwargs) -> tf.Tensor:
        return tf.cast(super().__call__(*args, **kwargs), tf.float32)

    def embed(self, items: tf.Tensor, positions: Optional[tf.Tensor] = None) -> tf.Tensor:
        raise NotImplementedError

    def call(
        self, items: tf.Tensor, positions: Optional[tf.Tensor] = None, dropout_seed: Optional[tf.Tensor] = None,
        newest_only: bool = False,
    ) -> tf.Tensor:
        raise NotImplementedError

    def logits(self, hidden: tf.Tensor) -> tf.Tensor:
        return tf.matmul(hidden, self.item_table, transpose_b=True)
