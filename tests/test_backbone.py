"""The backbone contract, one suite run over every registered backbone; then SASRec's block details."""

import numpy as np
import pytest
import tensorflow as tf

from tf_autosam.backbones import REGISTRY, build_backbone
from tf_autosam.backbones.base import Backbone
from tf_autosam.compaction import compact
from tf_autosam.config import TrainerConfig
from tf_autosam.layers import BlockSettings, TransformerBlock

NUM_ITEMS, MAX_LEN, WIDTH = 30, 8, 16

# Every registered backbone (SASRec in both block layouts) meets the same contract.
VARIANTS = {
    "sasrec-post": dict(backbone="sasrec", norm="post"),
    "sasrec-pre": dict(backbone="sasrec", norm="pre"),
    "gru4rec": dict(backbone="gru4rec"),
}


def make_backbone(variant, **overrides):
    config = TrainerConfig(max_len=MAX_LEN, hidden_size=WIDTH, gru_size=WIDTH, num_heads=2, ffn_size=32, num_blocks=2,
                           dropout=0.1, residual_scale_init=1.0, **VARIANTS[variant]).replace(**overrides)
    backbone = build_backbone(config, NUM_ITEMS)
    backbone(tf.zeros([1, MAX_LEN], tf.int32))
    return backbone


@pytest.fixture(params=sorted(VARIANTS))
def backbone(request):
    return make_backbone(request.param)


def test_every_registered_backbone_is_under_contract():
    assert {variant["backbone"] for variant in VARIANTS.values()} == set(REGISTRY)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone(TrainerConfig(backbone="nope"), NUM_ITEMS)


def test_interface_shapes(backbone):
    items = tf.constant(np.random.default_rng(0).integers(0, NUM_ITEMS + 1, size=(4, MAX_LEN)), tf.int32)
    assert isinstance(backbone, Backbone) and (backbone.num_items, backbone.max_len) == (NUM_ITEMS, MAX_LEN)
    hidden = backbone(items)
    assert hidden.shape == backbone.embed(items).shape == backbone.embed_items(items).shape == (4, MAX_LEN, WIDTH)
    assert backbone.item_table.shape == (NUM_ITEMS + 1, WIDTH)
    np.testing.assert_allclose(backbone.logits(hidden).numpy(), np.einsum("bld,nd->bln", hidden, backbone.item_table), atol=1e-5)


def test_outputs_at_t_ignore_inputs_after_t(backbone):
    rng = np.random.default_rng(0)
    items = rng.integers(1, NUM_ITEMS + 1, size=(4, MAX_LEN)).astype(np.int32)
    items[:, :2] = 0
    base = backbone(items).numpy()
    for t in range(2, MAX_LEN - 1):
        changed = items.copy()
        changed[:, t + 1:] = rng.integers(1, NUM_ITEMS + 1, size=(4, MAX_LEN - 1 - t))
        after = backbone(changed).numpy()
        np.testing.assert_allclose(after[:, : t + 1], base[:, : t + 1], atol=1e-5)
        assert not np.allclose(after[:, t + 1:], base[:, t + 1:], atol=1e-5)


def test_padding_is_zero_and_leading_padding_changes_nothing(backbone):
    short = tf.constant([[0, 0, 5, 6, 7]])
    long = tf.constant([[0, 0, 0, 0, 0, 5, 6, 7]])
    np.testing.assert_allclose(backbone(short).numpy()[:, -3:], backbone(long).numpy()[:, -3:], atol=1e-5)
    assert np.all(backbone(long).numpy()[:, :5] == 0.0)


def test_a_compacted_window_means_the_same_however_far_it_is_trimmed(backbone):
    """What AutoSAM feeds: kept items right-aligned with their original position ids, leading padding trimmed."""
    rng = np.random.default_rng(1)
    items = rng.integers(1, NUM_ITEMS + 1, size=(4, MAX_LEN)).astype(np.int32)
    items[0, :3] = 0
    kept = compact(tf.constant(items), tf.constant(rng.random((4, MAX_LEN)) < 0.5), tf.constant(items[:, -1]))
    full = backbone(kept.items, kept.positions).numpy()
    assert np.all(full[kept.items.numpy() == 0] == 0.0)
    shortest = int(tf.reduce_max(tf.math.count_nonzero(kept.items, axis=1)))
    trimmed = backbone(kept.items[:, -shortest:], kept.positions[:, -shortest:]).numpy()
    np.testing.assert_allclose(trimmed, full[:, -shortest:], atol=1e-5)


def test_newest_only_is_the_newest_state_of_the_full_pass(backbone):
    """The user vector serving and evaluation read, computed alone; the last row is all padding."""
    rng = np.random.default_rng(2)
    items = rng.integers(1, NUM_ITEMS + 1, size=(4, MAX_LEN)).astype(np.int32)
    items[1, :5] = 0
    items[3] = 0
    positions = np.sort(rng.integers(0, MAX_LEN, size=(4, MAX_LEN)), axis=1).astype(np.int32)
    for given_positions in (None, positions):
        full = backbone(items, given_positions).numpy()
        newest = backbone(items, given_positions, newest_only=True).numpy()
        assert newest.shape == (4, 1, WIDTH)
        np.testing.assert_allclose(newest, full[:, -1:], atol=1e-5)
    assert np.all(newest[3] == 0.0)


def test_reference_block_starts_near_identity():
    backbone = make_backbone("sasrec-post")
    reference = make_backbone("sasrec-post", dropout=0.0, residual_scale_init=1e-8)
    items = tf.constant([[0, 1, 2, 3, 4, 5, 6, 7]])
    hidden = reference(items).numpy()
    normed = reference.embedding_norm(reference.embed(items)).numpy()
    # With a ~1e-8 the blocks reduce to repeated LayerNorms of the normalised embeddings
    # (each re-normalisation moves values by ~1e-3 through LayerNorm's epsilon).
    np.testing.assert_allclose(hidden[:, 1:], normed[:, 1:], atol=1e-2)
    assert backbone.blocks[0].attention_scale.numpy() == pytest.approx(1.0)


def test_block_config_round_trip_gives_same_outputs():
    block = TransformerBlock(BlockSettings(16, 2, 32, 0.0, "post", 1.0))
    x = tf.random.stateless_normal([2, 5, 16], seed=[1, 2])
    mask = tf.ones([2, 1, 5, 5], tf.bool)
    expected = block(x, mask).numpy()
    clone = TransformerBlock.from_config(block.get_config())
    clone(x, mask)
    clone.set_weights(block.get_weights())
    np.testing.assert_allclose(clone(x, mask).numpy(), expected, atol=1e-6)


def test_bad_block_settings_are_rejected():
    with pytest.raises(ValueError):
        BlockSettings(hidden_size=10, num_heads=3, ffn_size=8, dropout=0.0)
    with pytest.raises(ValueError):
        BlockSettings(hidden_size=8, num_heads=2, ffn_size=8, dropout=0.0, norm="middle")
