"""A self-attention block in the two layouts SASRec is used with.

Shapes: ``x`` is [batch, length, d]; ``mask`` is the boolean attention mask
[batch, 1, length, length] from :func:`causal_padding_mask` (True = may attend).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf

from tf_autosam.config import TrainerConfig
from tf_autosam.layers.dropout import dropout

# Large negative added to masked attention logits. Finite, so a query whose keys
# are all masked (a padding position) gets uniform weights instead of NaN; its
# output is zeroed by the caller anyway.
_MASKED_LOGIT = -1e9
# A block's dropout sites (``layers.dropout``): the attention weights and each sub-layer's output.
ATTENTION_SITE, ATTENTION_OUTPUT_SITE, FFN_OUTPUT_SITE = 0, 1, 2


def truncated_normal() -> tf.keras.initializers.Initializer:
    """A fresh N(0, 0.02) initializer: one instance per weight, or all weights start identical."""
    return tf.keras.initializers.TruncatedNormal(stddev=0.02)


def causal_padding_mask(valid: tf.Tensor) -> tf.Tensor:
    """[batch, 1, L, L] mask: query t may attend to key s <= t when s is not padding."""
    length = tf.shape(valid)[1]
    causal = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)
    return tf.logical_and(causal[tf.newaxis, tf.newaxis], valid[:, tf.newaxis, tf.newaxis, :])


@dataclasses.dataclass(frozen=True)
class BlockSettings:
    """Hyper-parameters of one transformer block, shared by the backbone and the sampler."""

    hidden_size: int
    num_heads: int
    ffn_size: int
    dropout: float
    norm: str = "post"
    residual_scale_init: float = 1e-8

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.norm not in ("post", "pre"):
            raise ValueError(f"norm must be 'post' or 'pre', got {self.norm!r}")


def block_settings(config: TrainerConfig) -> BlockSettings:
    """The run's block settings: SASRec's blocks and the sampler's own block share them."""
    return BlockSettings(
        config.hidden_size, config.num_heads, config.ffn_size, config.dropout, config.norm, config.residual_scale_init
    )


class TransformerBlock(tf.keras.layers.Layer):
    """Multi-head self-attention + GELU feed-forward, post-norm or pre-norm.

    ``norm="post"`` is the reference block, ``x = LayerNorm(x + Dropout(a * f(x)))``
    with a learnable residual scale ``a`` per sub-layer, initialised tiny so that
    training starts from (almost) the identity. ``norm="pre"`` is
    ``x = x + Dropout(f(LayerNorm(x)))``; its caller applies a final LayerNorm.
    """

    def __init__(self, settings: BlockSettings, **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        hidden_size, dropout = settings.hidden_size, settings.dropout
        self.hidden_size = hidden_size
        self.num_heads = settings.num_heads
        self.norm = settings.norm
        self.qkv = tf.keras.layers.Dense(3 * hidden_size, kernel_initializer=truncated_normal(), name="qkv")
        self.attention_output = tf.keras.layers.Dense(hidden_size, kernel_initializer=truncated_normal(), name="attention_output")
        self.ffn_inner = tf.keras.layers.Dense(settings.ffn_size, activation="gelu", kernel_initializer=truncated_normal(), name="ffn_inner")
        self.ffn_output = tf.keras.layers.Dense(hidden_size, kernel_initializer=truncated_normal(), name="ffn_output")
        self.attention_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self.ffn_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="ffn_norm")
        self.dropout = dropout

    def build(self, input_shape):
        if self.norm == "post":
            scale_init = tf.keras.initializers.Constant(self.settings.residual_scale_init)
            self.attention_scale = self.add_weight("attention_scale", shape=[], initializer=scale_init)
            self.ffn_scale = self.add_weight("ffn_scale", shape=[], initializer=scale_init)
        super().build(input_shape)

    def _attend(
        self, tokens: tf.Tensor, length: tf.Tensor, mask: tf.Tensor, dropout_seed: Optional[tf.Tensor], newest_only: bool
    ) -> tf.Tensor:
        """[batch * Lq, d] attention output for tokens [batch * L, d] (Lq = 1 with ``newest_only``, else L)."""
        head_size = self.hidden_size // self.num_heads
        # One transpose to [3, batch, heads, L, head_size] makes both products plain batched matmuls.
        qkv = tf.transpose(tf.reshape(self.qkv(tokens), [-1, length, 3, self.num_heads, head_size]), [2, 0, 3, 1, 4])
        query, key, value = tf.unstack(qkv)
        if newest_only:
            query, mask = query[:, :, -1:], mask[:, :, -1:]
        logits = tf.matmul(query * (head_size ** -0.5), key, transpose_b=True)
        logits = tf.where(mask, logits, _MASKED_LOGIT)
        weights = dropout(tf.nn.softmax(logits, axis=-1), self.dropout, dropout_seed, ATTENTION_SITE)
        context = tf.transpose(tf.matmul(weights, value), [0, 2, 1, 3])
        return self.attention_output(tf.reshape(context, [-1, self.hidden_size]))

    def _feed_forward(self, tokens: tf.Tensor) -> tf.Tensor:
        return self.ffn_output(self.ffn_inner(tokens))

    def call(
        self, x: tf.Tensor, mask: tf.Tensor, dropout_seed: Optional[tf.Tensor] = None, newest_only: bool = False
    ) -> tf.Tensor:
        """[batch, L, d], or [batch, 1, d] with ``newest_only``: only the last position's output, which
        still attends to every position (what scoring the next item needs, at a fraction of the cost).
        Dropout only with a ``dropout_seed`` (``layers.dropout``).

        Inside, positions are flattened to tokens [batch * L, d], so every Dense layer is one
        MatMul that the graph optimiser fuses with its bias and activation (a Dense layer over
        [batch, L, d] is a tensordot: a dozen shape ops around the MatMul, no fusion).
        """
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        tokens = tf.reshape(x, [-1, self.hidden_size])
        residual = x[:, -1] if newest_only else tokens
        if self.norm == "post":
            update = self.attention_scale * self._attend(tokens, length, mask, dropout_seed, newest_only)
            tokens = self.attention_norm(residual + dropout(update, self.dropout, dropout_seed, ATTENTION_OUTPUT_SITE))
            update = self.ffn_scale * self._feed_forward(tokens)
            tokens = self.ffn_norm(tokens + dropout(update, self.dropout, dropout_seed, FFN_OUTPUT_SITE))
        else:
            update = self._attend(self.attention_norm(tokens), length, mask, dropout_seed, newest_only)
            tokens = residual + dropout(update, self.dropout, dropout_seed, ATTENTION_OUTPUT_SITE)
            update = self._feed_forward(self.ffn_norm(tokens))
            tokens = tokens + dropout(update, self.dropout, dropout_seed, FFN_OUTPUT_SITE)
        return tf.reshape(tokens, [batch, -1, self.hidden_size])

    def get_config(self):
        return dict(super().get_config(), settings=dataclasses.asdict(self.settings))

    @classmethod
    def from_config(cls, config):
        return cls(BlockSettings(**config.pop("settings")), **config)
