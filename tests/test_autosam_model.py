"""AutoSAM model: where the policy gradient goes, inference modes, reproducibility."""

import numpy as np
import pytest
import tensorflow as tf

from tf_autosam import losses, models
from tf_autosam.backbones import REGISTRY
from logs import random_windows
from tf_autosam.config import TrainerConfig

NUM_ITEMS = 40
BACKBONES = sorted(REGISTRY)


def build(**overrides):
    tf.keras.utils.set_random_seed(0)
    config = TrainerConfig(model="autosam", max_len=8, hidden_size=16, gru_size=16, num_heads=2, ffn_size=16, num_blocks=1,
                           residual_scale_init=1.0, lambda1=1.0, lambda2=1.0, tau=1.0).replace(**overrides)
    model = models.build_recommender(config, NUM_ITEMS)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    return model


def batch():
    inputs, targets = random_windows(rows=6, length=8, num_items=NUM_ITEMS, padded_rows=2)
    return tf.constant(inputs), tf.constant(targets)


def reached_by(loss_of, variables):
    """Names of the variables that get a non-zero gradient from ``loss_of()``."""
    with tf.GradientTape() as tape:
        loss = loss_of()
    gradients = tape.gradient(loss, variables)
    return {v.name for v, g in zip(variables, gradients) if g is not None and np.any(tf.convert_to_tensor(g).numpy() != 0)}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_policy_gradient_reaches_sampler_and_backbone_embeddings_only(backbone):
    model = build(backbone=backbone)
    inputs, targets = batch()

    def policy_loss():
        full_hidden, full_logp = model.full_window_pass(inputs, targets)
        return model.step_losses(inputs, targets, full_hidden, full_logp)["policy_loss"]

    reached = reached_by(policy_loss, model.trainable_variables)
    backbone_variables = model.backbone.trainable_variables
    embedding_variables = reached_by(lambda: tf.reduce_sum(model.backbone.embed(inputs)), backbone_variables)
    assert any("sampler" in name for name in reached)
    assert reached & {v.name for v in backbone_variables} == embedding_variables != set()


@pytest.mark.parametrize("backbone", BACKBONES)
def test_keep_all_equals_plain_backbone(backbone):
    model = build(backbone=backbone, inference_mode="keep_all")
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


# AutoSAM's step runs every backbone pass the plain step does (and the compacted one), so one plain run suffices.
@pytest.mark.parametrize("name,backbone", [("sasrec", "sasrec")] + [("autosam", backbone) for backbone in BACKBONES])
def test_training_step_compiles_with_xla(name, backbone):
    config = TrainerConfig(model=name, backbone=backbone, max_len=8, hidden_size=16, gru_size=16, num_heads=2, ffn_size=16,
                           num_blocks=1, jit_compile=True)
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
    _, _, kept_targets, logp = model._compacted_pass(inputs, kept, targets, training=False)
    assert kept.numpy()[:, -1].all()
    assert loss == pytest.approx(-logp.numpy()[kept_targets.numpy() != 0].mean(), rel=1e-5)


def test_new_targets_only_trains_the_new_slots_while_rewards_score_every_next_item():
    model = build(sampler_warmup_epochs=1, dropout=0.0)  # warm-up keeps every behaviour: compacted = full window
    inputs, targets = batch()
    new_only = targets.numpy().copy()
    new_only[:, :5] = 0  # what training_windows(new_targets_only=True) leaves of an overlapping window
    full_hidden, full_logp = model.full_window_pass(inputs, tf.constant(new_only))
    np.testing.assert_allclose(full_logp.numpy(), model.full_window_pass(inputs, targets)[1].numpy(), atol=1e-6)
    loss = float(model.step_losses(inputs, tf.constant(new_only), full_hidden, full_logp)["recommendation_loss"])
    assert loss == pytest.approx(-full_logp.numpy()[new_only != 0].mean(), rel=1e-5)


def test_full_input_trains_the_recommender_as_the_plain_backbone_while_the_sampler_learns():
    """The recommendation loss is the plain full-window loss; the policy gradient still reaches the sampler."""
    model = build(recommender_input="full", dropout=0.0)
    inputs, targets = batch()
    full_hidden, full_logp = model.full_window_pass(inputs, targets)
    with tf.GradientTape() as tape:
        results = model.step_losses(inputs, targets, full_hidden, full_logp)
    plain = float(model.next_item_loss(model.backbone(inputs), targets, inputs))
    assert float(results["recommendation_loss"]) == pytest.approx(plain, rel=1e-5)
    assert float(results["keep_rate"]) < 1.0  # the actions are still drawn: the future reward scores them
    gradients = tape.gradient(results["policy_loss"], model.sampler.trainable_variables)
    assert any(g is not None and np.any(tf.convert_to_tensor(g).numpy() != 0) for g in gradients)


def test_label_smoothing_reaches_the_recommendation_loss_but_not_the_rewards():
    """Smoothed, the loss is the smoothed loss of the compacted pass; the rewards keep the plain log P(target)."""
    plain, smoothed = build(sampler_warmup_epochs=1, dropout=0.0), build(sampler_warmup_epochs=1, dropout=0.0, label_smoothing=0.3)
    inputs, targets = batch()
    results = {}
    for name, model in (("plain", plain), ("smoothed", smoothed)):
        full_hidden, full_logp = model.full_window_pass(inputs, targets)
        results[name] = model.step_losses(inputs, targets, full_hidden, full_logp)
    expected = float(smoothed.next_item_loss(smoothed.backbone(inputs), targets, inputs))  # warm-up: compacted = full window
    assert float(results["smoothed"]["recommendation_loss"]) == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(float(results["plain"]["recommendation_loss"]), rel=1e-5)  # near-uniform scores: close
    for reward in ("future_reward", "perplexity_reward"):
        assert float(results["smoothed"][reward]) == pytest.approx(float(results["plain"][reward]), rel=1e-6)


@pytest.mark.parametrize("model_name", ["sasrec", "autosam"])
def test_loss_excludes_history_reaches_the_training_loss(model_name):
    """With the option, the step's recommendation loss is the full softmax without the window's seen items."""
    model = build(model=model_name, sampler_warmup_epochs=1, dropout=0.0, loss_excludes_history=True)
    inputs, targets = batch()
    hidden, table = model.backbone(inputs), model.backbone.item_table
    expected = float(losses.full_softmax_loss(hidden, targets, table, history=inputs))
    assert expected != pytest.approx(float(losses.full_softmax_loss(hidden, targets, table)), rel=1e-4)
    if model_name == "autosam":  # warm-up: the compacted window is the full one
        full_hidden, full_logp = model.full_window_pass(inputs, targets)
        loss = model.step_losses(inputs, targets, full_hidden, full_logp)["recommendation_loss"]
    else:  # the loss a step reports is computed before its update
        loss = model.train_step((inputs, targets))["loss"]
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_kept_targets_train_the_full_window_on_the_targets_the_sampler_keeps():
    """Loss = the full-window loss over positions whose next behaviour the p >= 0.5 decision keeps, plus the last."""
    model = build(recommender_input="full_kept_targets", dropout=0.0)
    inputs, targets = batch()
    full_hidden, full_logp = model.full_window_pass(inputs, targets)
    loss = float(model.step_losses(inputs, targets, full_hidden, full_logp)["recommendation_loss"])
    decided = model.decided_keep(inputs, model.keep_probability(inputs, full_hidden) >= 0.5).numpy()
    assert not decided[inputs.numpy() != 0].all()  # the untrained sampler drops some: the mask matters
    next_kept = np.concatenate([decided[:, 1:], np.ones_like(decided[:, :1])], axis=1)
    trained = (targets.numpy() != 0) & next_kept
    assert loss == pytest.approx(-full_logp.numpy()[trained].mean(), rel=1e-5)
    assert loss != pytest.approx(-full_logp.numpy()[targets.numpy() != 0].mean(), rel=1e-5)  # what it would be without the mask
