"""The AutoSAM sampler: a keep probability for every behaviour in the window.

Shapes: ``embeddings`` [batch, L, d] are the backbone's input embeddings
(``Backbone.embed``) of the full window (not detached: the policy loss reaches them);
``valid`` [batch, L] bool marks real items. Output: keep probability [batch, L],
exactly 0 at padding. Layout follows AUTOSAM_SPEC section 2:
``h = TransformerBlock(E)``, ``u = Dense(d)(E)``,
``pi = softmax(MLP([h ; u]) / tau)``, ``p = pi[..., 0]``.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from tf_autosam.layers.transformer import BlockSettings, TransformerBlock, causal_padding_mask, truncated_normal


class BehaviourSampler(tf.keras.layers.Layer):
    """Scores how worth keeping each past behaviour is; ``tau`` flattens (> 1) or sharpens the policy."""

    def __init__(self, block: BlockSettings, tau: float, **kwargs):
        super().__init__(**kwargs)
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.tau = tau
        hidden_size = block.hidden_size
        self.context = TransformerBlock(block, name="context")
        self.projection = tf.keras.layers.Dense(hidden_size, kernel_initializer=truncated_normal(), name="projection")
        self.mlp_hidden = tf.keras.layers.Dense(hidden_size, activation="relu", kernel_initializer=truncated_normal(), name="mlp_hidden")
        # float32 under a mixed-precision policy: keep probabilities meet float32 draws and rewards.
        self.mlp_output = tf.keras.layers.Dense(2, kernel_initializer=truncated_normal(), dtype="float32", name="mlp_output")

    def call(
        self, embeddings: tf.Tensor, valid: tf.Tensor, surprise: Optional[tf.Tensor] = None,
        dropout_seed: Optional[tf.Tensor] = None,
    ) -> tf.Tensor:
        context = self.context(embeddings, causal_padding_mask(valid), dropout_seed)
        features = [context, self.projection(embeddings)]
        if surprise is not None:
            features.append(tf.cast(surprise, context.dtype)[..., tf.newaxis])
        features = tf.concat(features, axis=-1)
        logits = self.mlp_output(self.mlp_hidden(features))
        keep_probability = tf.nn.softmax(logits / self.tau, axis=-1)[..., 0]
        return keep_probability * tf.cast(valid, keep_probability.dtype)
