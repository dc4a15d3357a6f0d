"""Keras layers shared by the backbones and the sampler."""

from tf_autosam.layers.transformer import BlockSettings, TransformerBlock, block_settings, causal_padding_mask, truncated_normal

__all__ = ["BlockSettings", "TransformerBlock", "block_settings", "causal_padding_mask", "truncated_normal"]
