"""Sequence encoders: item sequence in, one hidden state per position out."""

from tf_autosam.backbones.sasrec import SASRec

__all__ = ["SASRec"]
