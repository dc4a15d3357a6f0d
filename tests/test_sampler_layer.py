"""Sampler layer: probabilities, padding, causality, temperature."""

import numpy as np
import pytest
import tensorflow as tf

from tf_autosam.layers import BlockSettings
from tf_autosam.layers.sampler import BehaviourSampler


def make_sampler(tau):
    tf.keras.utils.set_random_seed(0)
    return BehaviourSampler(BlockSettings(hidden_size=16, num_heads=2, ffn_size=32, dropout=0.0, residual_scale_init=1.0), tau=tau)


def inputs():
    rng = np.random.default_rng(0)
    embeddings = tf.constant(rng.normal(size=(3, 6, 16)).astype(np.float32))
    valid = tf.constant([[False, False, True, True, True, True]] * 3)
    return embeddings, valid


def test_probabilities_in_unit_interval_and_zero_at_padding():
    embeddings, valid = inputs()
    p = make_sampler(5.0)(embeddings, valid).numpy()
    assert np.all(p[:, :2] == 0.0)
    assert np.all((p[:, 2:] > 0.0) & (p[:, 2:] < 1.0))


def test_keep_probability_at_t_ignores_later_behaviours():
    embeddings, valid = inputs()
    sampler = make_sampler(1.0)
    base = sampler(embeddings, valid).numpy()
    changed = embeddings.numpy().copy()
    changed[:, 4:] += 3.0
    after = sampler(tf.constant(changed), valid).numpy()
    np.testing.assert_allclose(after[:, :4], base[:, :4], atol=1e-6)
    assert not np.allclose(after[:, 4:], base[:, 4:])


def test_higher_tau_flattens_towards_one_half():
    embeddings, valid = inputs()
    sharp = make_sampler(0.2)(embeddings, valid).numpy()[:, 2:]
    flat = make_sampler(50.0)(embeddings, valid).numpy()[:, 2:]
    assert np.abs(flat - 0.5).max() < np.abs(sharp - 0.5).max()
    with pytest.raises(ValueError):
        BehaviourSampler(BlockSettings(16, 2, 32, 0.0), tau=0.0)
