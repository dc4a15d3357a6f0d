"""Full and sampled softmax: agreement, accidental hits, padding, NumPy reference."""

import numpy as np
import pytest
import tensorflow as tf

from tf_autosam import losses


def numpy_full_softmax(hidden, targets, table):
    logits = (hidden @ table.T)[..., 1:]  # items 1..N; the padding column is no class
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    valid = targets != 0
    picked = np.take_along_axis(log_probs, np.maximum(targets - 1, 0)[..., None], axis=-1)[..., 0]
    return -picked[valid].sum() / valid.sum()


@pytest.fixture
def case():
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 5, 8)).astype(np.float32)
    table = rng.normal(size=(21, 8)).astype(np.float32)
    targets = rng.integers(1, 21, size=(3, 5)).astype(np.int32)
    targets[0, :2] = 0  # padding positions carry no target
    return hidden, targets, table


def test_full_softmax_matches_numpy(case):
    hidden, targets, table = case
    got = losses.full_softmax_loss(tf.constant(hidden), tf.constant(targets), tf.constant(table)).numpy()
    assert got == pytest.approx(numpy_full_softmax(hidden.astype(np.float64), targets, table.astype(np.float64)), rel=1e-5)


def test_sampled_with_every_item_as_negative_equals_full(case):
    hidden, targets, table = case
    all_items = tf.range(1, table.shape[0], dtype=tf.int32)
    full = losses.full_softmax_loss(tf.constant(hidden), tf.constant(targets), tf.constant(table))
    sampled = losses.sampled_softmax_loss(tf.constant(hidden), tf.constant(targets), tf.constant(table), all_items)
    assert sampled.numpy() == pytest.approx(full.numpy(), rel=1e-6)


def test_accidental_hits_are_masked(case):
    hidden, targets, table = case
    # Negatives that are all equal to some target must not change that position's loss
    # relative to the same negatives with that item removed.
    target = int(targets[1, 0])
    others = [i for i in range(1, 6) if i != target]
    with_hit = losses.sampled_softmax_loss(hidden[1:2, :1], targets[1:2, :1], table, tf.constant(others + [target, target]))
    without = losses.sampled_softmax_loss(hidden[1:2, :1], targets[1:2, :1], table, tf.constant(others))
    assert with_hit.numpy() == pytest.approx(without.numpy(), rel=1e-6)


def test_padding_positions_do_not_count(case):
    hidden, targets, table = case
    changed = hidden.copy()
    changed[0, :2] += 100.0  # hidden states where the target is padding
    a = losses.full_softmax_loss(tf.constant(hidden), tf.constant(targets), tf.constant(table))
    b = losses.full_softmax_loss(tf.constant(changed), tf.constant(targets), tf.constant(table))
    assert a.numpy() == pytest.approx(b.numpy(), rel=1e-6)


def test_uniform_negatives_cover_catalogue_and_never_padding():
    draws = losses.uniform_negatives(5000, 7, tf.constant([3, 4], tf.int64)).numpy()
    assert draws.min() == 1 and draws.max() == 7
    again = losses.uniform_negatives(5000, 7, tf.constant([3, 4], tf.int64)).numpy()
    np.testing.assert_array_equal(draws, again)


def test_target_log_probabilities_average_to_the_full_loss(case):
    hidden, targets, table = case
    log_p = losses.target_log_probabilities(tf.constant(hidden), tf.constant(targets), tf.constant(table)).numpy()
    assert np.all(log_p[targets == 0] == 0.0) and np.all(log_p[targets > 0] < 0.0)
    full = losses.full_softmax_loss(tf.constant(hidden), tf.constant(targets), tf.constant(table)).numpy()
    assert -log_p[targets > 0].mean() == pytest.approx(full, rel=1e-5)


def test_sampled_log_probabilities_are_exact_with_every_item_once_and_unbiased_in_the_normaliser(case):
    hidden, targets, table = case
    num_items = table.shape[0] - 1
    exact = losses.target_log_probabilities(tf.constant(hidden), tf.constant(targets), tf.constant(table)).numpy()
    every_item = tf.range(1, num_items + 1, dtype=tf.int32)
    estimate = losses.sampled_target_log_probabilities(
        tf.constant(hidden), tf.constant(targets), tf.constant(table), every_item, num_items).numpy()
    np.testing.assert_allclose(estimate, exact, rtol=1e-5, atol=1e-6)
    # Over many random draws, exp(-estimate) - 1 (the normaliser's non-target part over the
    # target's score) averages to the exact value: the estimator is unbiased there.
    draws = [losses.sampled_target_log_probabilities(
        tf.constant(hidden), tf.constant(targets), tf.constant(table),
        losses.uniform_negatives(4, num_items, tf.constant([seed, 0], tf.int64)), num_items).numpy()
        for seed in range(3000)]
    valid = targets > 0
    mean_ratio = np.mean([np.exp(-draw[valid]) - 1 for draw in draws], axis=0)
    np.testing.assert_allclose(mean_ratio, np.exp(-exact[valid]) - 1, rtol=0.1)
