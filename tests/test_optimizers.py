"""The recommender's optimiser: decoupled weight decay shrinks weights, never LayerNorm parameters or biases."""

import numpy as np
import pytest
import tensorflow as tf

from tf_autosam import models
from tf_autosam.config import TrainerConfig


def test_weight_decay_shrinks_kernels_by_lr_times_decay_and_skips_norms_and_biases():
    optimizer = models.recommender_optimizer(TrainerConfig(learning_rate=0.1, weight_decay=0.5))
    kernel = tf.Variable(np.ones([2, 2], np.float32), name="dense/kernel")
    bias = tf.Variable(np.ones([2], np.float32), name="dense/bias")
    gamma = tf.Variable(np.ones([2], np.float32), name="norm/gamma")
    # Zero gradients: Adam's own update is exactly 0, so only the decay acts.
    optimizer.apply_gradients([(tf.zeros_like(v), v) for v in (kernel, bias, gamma)])
    np.testing.assert_allclose(kernel.numpy(), 1.0 - 0.1 * 0.5, rtol=1e-6)
    np.testing.assert_array_equal(bias.numpy(), 1.0)
    np.testing.assert_array_equal(gamma.numpy(), 1.0)


@pytest.mark.parametrize("decay,kind", [(0.0, "Adam"), (0.01, "AdamW")])
def test_plain_adam_without_decay(decay, kind):
    assert type(models.recommender_optimizer(TrainerConfig(weight_decay=decay))).__name__ == kind
