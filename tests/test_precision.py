"""Mixed precision: bfloat16 compute, float32 variables, scores and losses; the same training as float32."""

import numpy as np
import pytest
import tensorflow as tf

from logs import random_windows
from tf_autosam import models
from tf_autosam.backbones import REGISTRY
from tf_autosam.config import TrainerConfig

NUM_ITEMS = 40


def windows():
    return random_windows(rows=12, length=8, num_items=NUM_ITEMS, padded_rows=3)


def train(precision: str, model: str, backbone: str):
    tf.keras.utils.set_random_seed(0)
    config = TrainerConfig(model=model, backbone=backbone, max_len=8, hidden_size=16, gru_size=16, num_heads=2, ffn_size=16,
                           num_blocks=1, dropout=0.0, precision=precision, sampler_warmup_epochs=0, sampler_surprise=True)
    recommender = models.build_recommender(config, NUM_ITEMS)
    recommender.compile(optimizer=models.recommender_optimizer(config))
    inputs, targets = windows()
    history = recommender.fit(tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(6), epochs=3, verbose=0).history
    return recommender, history


@pytest.mark.parametrize("backbone", sorted(REGISTRY))
@pytest.mark.parametrize("model", ["sasrec", "autosam"])
def test_mixed_bfloat16_trains_like_float32(model, backbone):
    mixed, mixed_history = train("mixed_bfloat16", model, backbone)
    _, float_history = train("float32", model, backbone)
    assert mixed.backbone.compute_dtype == "bfloat16"
    assert {variable.dtype for variable in mixed.trainable_variables} == {tf.float32}
    assert mixed(windows()[0]).dtype == tf.float32
    # bfloat16 keeps 8 bits of mantissa: the logged values agree to about its resolution.
    for name in mixed_history:
        np.testing.assert_allclose(mixed_history[name], float_history[name], rtol=2e-2, atol=1e-3)
    assert tf.keras.mixed_precision.global_policy().name == "float32"
