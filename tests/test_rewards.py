"""Rewards and policy loss against hand-worked examples (AUTOSAM_SPEC sections 4 and 5)."""

import numpy as np
import pytest
import tensorflow as tf

from tf_autosam import rewards

# One user, L = 4, every slot a real item. Kept slots 0, 2, 3, so the compacted
# window is [pad, x0, x2, x3] with targets [-, x2, x3, next].
KEEP = tf.constant([[1.0, 0.0, 1.0, 1.0]])
PROBABILITY = tf.constant([[0.9, 0.3, 0.95, 0.99]])
FULL_LOGP = tf.constant([[-1.0, -2.0, -3.0, -4.0]])  # log P_full(x_{t+1} | x_<=t)
COMPACTED_LOGP = tf.constant([[0.0, -1.5, -2.5, -3.5]])  # log P_samp(next kept | kept prefix)


def test_future_prediction_reward_hand_worked():
    # r_1 = -1.5 - (-2) = 0.5 (x2 kept, predicted from kept slot 0); r_2 = -2.5 - (-3) = 0.5;
    # r_0 = 0 (x1 dropped); r_3 = 0 (last slot). gamma 0.5: R = [0.375, 0.75, 0.5, 0].
    got = rewards.future_prediction_reward(KEEP, PROBABILITY, FULL_LOGP, COMPACTED_LOGP, tf.constant(0.9), 0.5)
    np.testing.assert_allclose(got.numpy(), [[0.375, 0.75, 0.5, 0.0]], atol=1e-6)


def test_threshold_gates_on_next_items_keep_probability():
    # p_2 = 0.95 < 0.97 removes r_1: R = [0.125, 0.25, 0.5, 0].
    got = rewards.future_prediction_reward(KEEP, PROBABILITY, FULL_LOGP, COMPACTED_LOGP, tf.constant(0.97), 0.5)
    np.testing.assert_allclose(got.numpy(), [[0.125, 0.25, 0.5, 0.0]], atol=1e-6)


def test_first_kept_item_gets_no_future_term():
    keep = tf.constant([[0.0, 1.0, 1.0, 0.0]])  # x1 is the first kept item: r_0 must stay 0
    compacted = tf.constant([[0.0, 0.0, -0.5, -0.7]])
    got = rewards.future_prediction_reward(keep, tf.ones([1, 4]), FULL_LOGP, compacted, tf.constant(0.5), 1.0)
    # Only r_1 = -0.5 - (-2) = 1.5 (x2 predicted from x1); gamma 1 accumulates it backwards.
    np.testing.assert_allclose(got.numpy(), [[1.5, 1.5, 0.0, 0.0]], atol=1e-6)


def test_threshold_schedule():
    assert rewards.keep_threshold(0).numpy() == pytest.approx(0.8)
    assert rewards.keep_threshold(3).numpy() == pytest.approx(0.89)
    assert rewards.keep_threshold(50).numpy() == pytest.approx(0.99)


def test_sequence_perplexity_reward_hand_worked():
    # log P(x_t | x_<t) = [-, -1, -2, -3], mean -2, b = 1: (logP + 3) * (2a - 1) = [0, -2, 1, 0].
    valid = tf.constant([[True, True, True, True]])
    got = rewards.sequence_perplexity_reward(KEEP, valid, FULL_LOGP, base_rate=1.0)
    np.testing.assert_allclose(got.numpy(), [[0.0, -2.0, 1.0, 0.0]], atol=1e-6)


def test_sequence_perplexity_ignores_padding():
    valid = tf.constant([[False, True, True, True]])
    keep = tf.constant([[0.0, 1.0, 0.0, 1.0]])
    # Real items x1..x3; x1 has no prefix. log P(x2) = -2, log P(x3) = -3, mean -2.5, b = 0.
    got = rewards.sequence_perplexity_reward(keep, valid, FULL_LOGP, base_rate=0.0)
    np.testing.assert_allclose(got.numpy(), [[0.0, 0.0, -0.5, -0.5]], atol=1e-6)


def test_policy_loss_value_and_gradient_reach_only_keep_probability():
    reward = tf.Variable([[1.0, -2.0, 0.5, 0.0]])
    probability = tf.Variable(PROBABILITY)
    with tf.GradientTape(persistent=True) as tape:
        loss = rewards.policy_loss(reward, KEEP, probability)
    p = PROBABILITY.numpy()[0]
    expected = np.mean([-1.0 * np.log(p[0]), 2.0 * np.log(1 - p[1]), -0.5 * np.log(p[2]), 0.0])
    assert loss.numpy() == pytest.approx(expected, rel=1e-5)
    assert tape.gradient(loss, reward) is None
    expected_grad = np.array([-1.0 / p[0], -2.0 / (1 - p[1]), -0.5 / p[2], 0.0]) / 4
    np.testing.assert_allclose(tape.gradient(loss, probability).numpy()[0], expected_grad, rtol=1e-5)
