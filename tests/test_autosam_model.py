"""AutoSAM model: where the policy gradient goes, inference modes, reproducibility."""

import numpy as np
import pytest
import tensorflow as tf

from tf_autosam import models
from tf_autosam.config import TrainerConfig

NUM_ITEMS = 40


def build(**overrides):
    tf.keras.utils.set_random_seed(0)
    config = TrainerConfig(model="autosam", max_len=8, hidden_size=16, num_heads=2, ffn_size=16, num_blocks=1,
                           residual_scale_init=1.0, lambda1=1.0, lambda2=1.0, tau=1.0).replace(**overrides)
    model = models.build_recommender(config, NUM_ITEMS)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    return model


def batch():
    rng = np.random.default_rng(0)
    inputs = rng.integers(1, NUM_ITEMS + 1, size=(6, 8)).astype(np.int32)
    inputs[:2, :3] = 0
    targets = np.concatenate([inputs[:, 1:], rng.integers(1, NUM_ITEMS + 1, size=(6, 1))], axis=1).astype(np.int32)
    targets[inputs == 0] = 0
    return tf.constant(inputs), tf.constant(targets)


def test_policy_gradient_reaches_sampler_and_embeddings_only():
    model = build()
    inputs, targets = batch()
    with tf.GradientTape() as tape:
        full_hidden, full_logp = model.full_window_pass(inputs, targets)
        policy_loss = model.step_losses(inputs, targets, full_hidden, full_logp)["policy_loss"]
    variables = model.trainable_variables
    gradients = dict(zip([v.name for v in variables], tape.gradient(policy_loss, variables)))
    reached = {name for name, g in gradients.items() if g is not None and np.any(tf.convert_to_tensor(g).numpy() != 0)}
    assert any("sampler" in name for name in reached)
    assert any("item_embedding" in name for name in reached) and any("position_embedding" in name for name in reached)
    backbone_blocks = [n for n in reached if "sasrec" in n and "item_embedding" not in n and "position_embedding" not in n]
    assert backbone_blocks == []


def test_keep_all_equals_plain_backbone():
    model = build(inference_mode="keep_all")
    inputs, _ = batch()
    plain = model.backbone.logits(model.backbone(inputs)[:, -1])
    np.testing.assert_allclose(model(inputs).numpy(), plain.numpy(), atol=1e-5)


@pytest.mark.parametrize("mode,draws", [("deterministic", 1), ("stochastic", 3)])
def test_inference_is_reproducible(mode, draws):
    model = build(inference_mode=mode, inference_draws=draws)
    inputs, _ = batch()
    np.testing.assert_array_equal(model(inputs).numpy(), model(inputs).numpy())


def test_deterministic_keeps_newest_item_and_never_padding():
    model = build()
    inputs, _ = batch()
    probability = tf.zeros(inputs.shape)  # a sampler that wants to drop everything
    keep = model.inference_keep(inputs, probability).numpy()
    assert keep[:, -1].all() and keep[:, :-1].sum() == 0
    keep = model.inference_keep(inputs, tf.ones(inputs.shape)).numpy()
    np.testing.assert_array_equal(keep, inputs.numpy() != 0)


def test_train_step_updates_both_parts():
    model = build()
    inputs, targets = batch()
    sampler_before = [v.numpy().copy() for v in model.sampler.trainable_variables]
    table_before = model.backbone.item_table.numpy().copy()
    metrics = model.train_step((inputs, targets))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert any(not np.allclose(b, v.numpy()) for b, v in zip(sampler_before, model.sampler.trainable_variables))
    assert not np.allclose(table_before, model.backbone.item_table.numpy())


def test_warmup_keeps_everything_and_freezes_the_sampler_until_its_epoch():
    model = build(sampler_warmup_epochs=1)
    inputs, targets = batch()
    sampler_before = [v.numpy().copy() for v in model.sampler.trainable_variables]
    metrics = model.train_step((inputs, targets))
    assert float(metrics["keep_rate"]) == 1.0 and float(metrics["policy_loss"]) == 0.0
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(sampler_before, model.sampler.trainable_variables))
    np.testing.assert_array_equal(model.inference_keep(inputs, tf.zeros(inputs.shape)).numpy(), inputs.numpy() != 0)
    model.epoch.assign(1)
    model.train_step((inputs, targets))
    assert any(not np.array_equal(b, v.numpy()) for b, v in zip(sampler_before, model.sampler.trainable_variables))


@pytest.mark.parametrize("name", ["sasrec", "autosam"])
def test_training_step_compiles_with_xla(name):
    config = TrainerConfig(model=name, max_len=8, hidden_size=16, num_heads=2, ffn_size=16, num_blocks=1, jit_compile=True)
    model = models.build_recommender(config, NUM_ITEMS)
    model.compile(optimizer=models.recommender_optimizer(config), jit_compile=True)
    inputs, targets = batch()
    history = model.fit(tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(3), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_decided_input_trains_the_recommender_on_the_inference_decision():
    """The recommendation loss equals the backbone's loss on the p >= 0.5 compaction (dropout off to compare)."""
    model = build(recommender_input="decided", lambda1=0.0, dropout=0.0)
    inputs, targets = batch()
    full_hidden, full_logp = model.full_window_pass(inputs, targets)
    loss = float(model.step_losses(inputs, targets, full_hidden, full_logp)["recommendation_loss"])
    kept = model.decided_keep(inputs, model.keep_probability(inputs, full_hidden) >= 0.5)
    _, kept_targets, logp = model._compacted_pass(inputs, kept, targets, training=False)
    assert kept.numpy()[:, -1].all()
    assert loss == pytest.approx(-logp.numpy()[kept_targets.numpy() != 0].mean(), rel=1e-5)
