"""Keras layers shared by the backbones (and, later, the sampler)."""

from tf_autosam.layers.transformer import BlockSettings, TransformerBlock, causal_padding_mask, truncated_normal

__all__ = ["BlockSettings", "TransformerBlock", "causal_padding_mask", "truncated_normal"]
