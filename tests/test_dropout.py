"""Stateless dropout: the rate and scaling of Keras' dropout, masks that depend on (seed, site) alone."""

import numpy as np
import pytest
import tensorflow as tf

from tf_autosam.config import TrainerConfig
from tf_autosam.backbones import build_backbone
from tf_autosam.layers.dropout import dropout, sub_seed

SEED = tf.constant([7, 11], tf.int64)


def test_without_a_seed_nothing_is_dropped():
    x = tf.random.normal([5, 6])
    np.testing.assert_array_equal(dropout(x, 0.5, None, site=0).numpy(), x.numpy())


def test_rate_and_scaling():
    x = tf.ones([200, 500])
    dropped = dropout(x, 0.3, SEED, site=0).numpy()
    assert set(np.unique(dropped)) == {0.0, np.float32(1 / 0.7)}
    assert abs((dropped == 0).mean() - 0.3) < 0.005  # 100,000 draws: standard error 0.0015
    assert abs(dropped.mean() - 1.0) < 0.01


def test_masks_depend_on_seed_and_site_alone():
    x = tf.ones([64, 64])
    first = dropout(x, 0.5, SEED, site=1).numpy()
    again = tf.function(lambda: dropout(x, 0.5, tf.constant([7, 11], tf.int64), site=1))().numpy()
    np.testing.assert_array_equal(first, again)
    assert (first != dropout(x, 0.5, SEED, site=2).numpy()).any()
    assert (first != dropout(x, 0.5, SEED + 1, site=1).numpy()).any()


def test_masks_of_other_sites_blocks_steps_and_neighbouring_elements_are_uncorrelated():
    """Two 16-bit draws share one 32-bit Philox word, and sites, blocks and steps share a seed's lineage:
    none of these may correlate the masks. 655,360 draws each: a correlation's standard error is 0.0012."""
    x = tf.ones([128, 40, 128])
    kept = lambda seed, site: (dropout(x, 0.5, seed, site).numpy() > 0).ravel().astype(np.float64)
    first = kept(SEED, 0)
    others = {
        "site": kept(SEED, 1),
        "block": kept(sub_seed(SEED, 1), 0),
        "step": kept(SEED + tf.constant([0, 1], tf.int64), 0),
        "neighbour": np.roll(first, 1),
    }
    for name, other in others.items():
        assert abs(np.corrcoef(first, other)[0, 1]) < 0.006, name


def test_a_backbone_drops_out_with_a_seed_and_repeats_itself():
    config = TrainerConfig(max_len=6, hidden_size=8, num_heads=2, ffn_size=8, num_blocks=2, dropout=0.3)
    items = tf.constant([[0, 3, 1, 4, 1, 5]])
    for name in ("sasrec", "gru4rec"):
        backbone = build_backbone(config.replace(backbone=name), num_items=9)
        plain = backbone(items).numpy()
        np.testing.assert_array_equal(backbone(items).numpy(), plain)
        dropped = backbone(items, dropout_seed=SEED).numpy()
        np.testing.assert_array_equal(backbone(items, dropout_seed=SEED).numpy(), dropped)
        assert not np.allclose(dropped, plain)
        assert not np.allclose(backbone(items, dropout_seed=SEED + 1).numpy(), dropped)


def test_a_rate_of_one_or_more_is_refused():
    for rate in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="dropout must be in"):
            TrainerConfig(dropout=rate)


def test_a_rate_just_under_one_keeps_almost_nothing():
    dropped = dropout(tf.ones([100_000]), 0.99999, SEED, site=0).numpy()
    assert (dropped == 0).mean() > 0.9999
