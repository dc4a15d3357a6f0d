"""Sequence encoders (backbones) and the registry that picks one by name.

The recommender, the sampler, the compaction and the rewards use a backbone
only through the interface of :mod:`tf_autosam.backbones.base`, so the sampler
works over any registered backbone. Adding one: write a module with a
``build(config, num_items)`` function returning a ``Backbone`` and register it
in :data:`REGISTRY`. The registry names modules instead of importing them so
that the config (whose ``--backbone`` choices are its keys) loads without
TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tf_autosam.backbones.base import Backbone
    from tf_autosam.config import TrainerConfig

# Backbone name (``--backbone``) -> the module whose ``build`` makes it.
REGISTRY: dict[str, str] = {
    "sasrec": "tf_autosam.backbones.sasrec",
    "gru4rec": "tf_autosam.backbones.gru4rec",
}


def build_backbone(config: TrainerConfig, num_items: int) -> Backbone:
    """The registered backbone ``config.backbone`` for a catalogue of ``num_items`` items."""
    if config.backbone not in REGISTRY:
        raise ValueError(f"unknown backbone {config.backbone!r}; known backbones: {', '.join(sorted(REGISTRY))}")
    return importlib.import_module(REGISTRY[config.backbone]).build(config, num_items)
