"""Full and sampled softmax: agreement, accidental hits, padding, NumPy reference."""

import numpy as np
import pytest
import tensorflow as tf

from tf_autosam import losses


def numpy_allowed(targets, num_items, history=None):
    """[batch, L, N] True where item n + 1 is a class of position t's softmax: every item, or with a
    history every item but those the window holds at or before t (the target excepted)."""
    allowed = np.ones(targets.shape + (num_items,), bool)
    if history is not None:
        for b, t in np.ndindex(targets.shape):
            for item in history[b, : t + 1]:
                if item != 0 and item != targets[b, t]:
                    allowed[b, t, item - 1] = False
    return allowed


def numpy_log_softmax(hidden, table, allowed):
    """[batch, L, N] log-softmax over the allowed items 1..N (-inf elsewhere)."""
    logits = np.where(allowed, (hidden @ table.T)[..., 1:], -np.inf)  # the padding column is no class
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def numpy_full_softmax(hidden, targets, table, label_smoothing=0.0, history=None):
    """Mean cross-entropy against (1 - s) x one-hot + s / (classes) over the allowed items."""
    allowed = numpy_allowed(targets, table.shape[0] - 1, history)
    log_probs = numpy_log_softmax(hidden, table, allowed)
    valid = targets != 0
    picked = np.take_along_axis(log_probs, np.maximum(targets - 1, 0)[..., None], axis=-1)[..., 0]
    class_mean = np.where(allowed, log_probs, 0.0).sum(-1) / allowed.sum(-1)
    per_position = (1.0 - label_smoothing) * picked + label_smoothing * class_mean
    return -per_position[valid].sum() / valid.sum()


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


def test_label_smoothing_matches_numpy_and_moves_the_loss(case):
    hidden, targets, table = case
    got = losses.full_softmax_loss(tf.constant(hidden), tf.constant(targets), tf.constant(table), label_smoothing=0.2).numpy()
    expected = numpy_full_softmax(hidden.astype(np.float64), targets, table.astype(np.float64), label_smoothing=0.2)
    assert got == pytest.approx(expected, rel=1e-5)
    assert got != pytest.approx(numpy_full_softmax(hidden.astype(np.float64), targets, table.astype(np.float64)), rel=1e-3)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_sampled_with_every_item_as_negative_equals_full(case, label_smoothing):
    hidden, targets, table = case
    all_items = tf.range(1, table.shape[0], dtype=tf.int32)
    full = losses.full_softmax_loss(tf.constant(hidden), tf.constant(targets), tf.constant(table), label_smoothing=label_smoothing)
    sampled = losses.sampled_softmax_loss(
        tf.constant(hidden), tf.constant(targets), tf.constant(table), all_items, label_smoothing=label_smoothing)
    assert sampled.numpy() == pytest.approx(full.numpy(), rel=1e-6)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_accidental_hits_are_masked(case, label_smoothing):
    hidden, targets, table = case
    # Negatives that are all equal to some target must not change that position's loss
    # relative to the same negatives with that item removed (nor take a share of the smoothing).
    target = int(targets[1, 0])
    others = [i for i in range(1, 6) if i != target]
    with_hit = losses.sampled_softmax_loss(
        hidden[1:2, :1], targets[1:2, :1], table, tf.constant(others + [target, target]), label_smoothing=label_smoothing)
    without = losses.sampled_softmax_loss(
        hidden[1:2, :1], targets[1:2, :1], table, tf.constant(others), label_smoothing=label_smoothing)
    assert with_hit.numpy() == pytest.approx(without.numpy(), rel=1e-6)


def window_of(targets):
    """The inputs whose next items are ``targets``: each row shifted right by one, an arbitrary first item,
    one repeat of a later target (so a seen item is also some position's target)."""
    history = np.zeros_like(targets)
    history[:, 1:] = targets[:, :-1]
    history[:, 0] = np.where(targets[:, 0] != 0, 7, 0)
    history[2, 1] = targets[2, 3]
    return history


def test_seen_items_by_hand():
    history = tf.constant([[0, 4, 2, 6], [3, 5, 3, 8]])
    targets = tf.constant([[0, 2, 6, 9], [5, 3, 8, 1]])
    expected = [
        [[0, 0, 0, 0], [0, 4, 0, 0], [0, 4, 2, 0], [0, 4, 2, 6]],
        [[3, 0, 0, 0], [0, 5, 0, 0], [3, 5, 3, 0], [3, 5, 3, 8]],  # target 3 at t = 1 is not left out
    ]
    np.testing.assert_array_equal(losses.seen_items(history, targets).numpy(), expected)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_history_leaves_the_softmax_as_numpy_says_and_sampled_agrees_with_every_item(case, label_smoothing):
    hidden, targets, table = case
    history = window_of(targets)
    arguments = (tf.constant(hidden), tf.constant(targets), tf.constant(table))
    full = losses.full_softmax_loss(*arguments, label_smoothing=label_smoothing, history=tf.constant(history)).numpy()
    expected = numpy_full_softmax(hidden.astype(np.float64), targets, table.astype(np.float64), label_smoothing, history)
    assert full == pytest.approx(expected, rel=1e-5)
    # Leaving classes out changes the loss: the test can tell the two apart.
    assert full != pytest.approx(losses.full_softmax_loss(*arguments, label_smoothing=label_smoothing).numpy(), rel=1e-3)
    shuffled_items = tf.constant(np.random.default_rng(1).permutation(np.arange(1, table.shape[0])).astype(np.int32))
    sampled = losses.sampled_softmax_loss(
        *arguments, shuffled_items, label_smoothing=label_smoothing, history=tf.constant(history)).numpy()
    assert sampled == pytest.approx(full, rel=1e-5)


@pytest.mark.parametrize("sampled", [False, True])
def test_history_exclusion_compiles_with_xla_to_the_same_loss(case, sampled):
    """``--jit_compile`` needs static shapes: the seen-item masks must not derive a shape from values."""
    hidden, targets, table = case
    arguments = (tf.constant(hidden), tf.constant(targets), tf.constant(table))
    history = tf.constant(window_of(targets))

    def loss():
        if sampled:
            return losses.sampled_softmax_loss(*arguments, tf.range(1, table.shape[0]), label_smoothing=0.1, history=history)
        return losses.full_softmax_loss(*arguments, label_smoothing=0.1, history=history)

    assert float(tf.function(loss, jit_compile=True)()) == pytest.approx(float(loss()), rel=1e-6)


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


def numpy_full_softmax_gradients(hidden, targets, table, label_smoothing=0.0, history=None):
    """d loss / d hidden and d loss / d table of numpy_full_softmax, by hand: softmax - smoothed one_hot."""
    valid = targets != 0
    h = hidden[valid]
    allowed = numpy_allowed(targets, table.shape[0] - 1, history)[valid]
    probs = np.exp(numpy_log_softmax(h, table, allowed))
    probs[np.arange(len(h)), targets[valid] - 1] -= 1.0 - label_smoothing
    probs -= label_smoothing * allowed / allowed.sum(-1, keepdims=True)
    probs /= len(h)
    hidden_grad = np.zeros_like(hidden)
    hidden_grad[valid] = probs @ table[1:]
    table_grad = np.zeros_like(table)
    table_grad[1:] = probs.T @ h
    return hidden_grad, table_grad


def test_target_log_probability_gradients_match_numpy_and_skip_padding(case):
    hidden, targets, table = case
    hidden_t, table_t = tf.constant(hidden), tf.constant(table)
    with tf.GradientTape() as tape:
        tape.watch([hidden_t, table_t])
        total = tf.reduce_sum(losses.target_log_probabilities(hidden_t, tf.constant(targets), table_t))
    hidden_gradient, table_gradient = tape.gradient(total, [hidden_t, table_t])
    # sum_t log p_t = -n x the mean full-softmax loss over the n positions with a target.
    scale = -np.count_nonzero(targets)
    expected_hidden, expected_table = numpy_full_softmax_gradients(hidden.astype(np.float64), targets, table.astype(np.float64))
    np.testing.assert_allclose(tf.convert_to_tensor(hidden_gradient).numpy(), scale * expected_hidden, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(tf.convert_to_tensor(table_gradient).numpy(), scale * expected_table, rtol=1e-4, atol=1e-6)
    assert np.all(tf.convert_to_tensor(hidden_gradient).numpy()[targets == 0] == 0.0)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("with_history", [False, True])
def test_full_softmax_gradients_match_numpy(case, label_smoothing, with_history):
    hidden, targets, table = case
    history = window_of(targets) if with_history else None
    hidden_t, table_t = tf.Variable(hidden), tf.Variable(table)
    with tf.GradientTape() as tape:
        loss = losses.full_softmax_loss(hidden_t, tf.constant(targets), table_t, label_smoothing=label_smoothing,
                                        history=None if history is None else tf.constant(history))
    hidden_grad, table_grad = tape.gradient(loss, [hidden_t, table_t])
    expected_hidden, expected_table = numpy_full_softmax_gradients(
        hidden.astype(np.float64), targets, table.astype(np.float64), label_smoothing, history)
    np.testing.assert_allclose(hidden_grad.numpy(), expected_hidden, atol=1e-6)
    np.testing.assert_allclose(tf.convert_to_tensor(table_grad).numpy(), expected_table, atol=1e-6)


def test_an_underflowing_target_probability_gives_a_capped_finite_loss_and_an_exact_gradient():
    hidden = tf.Variable([[1.0, 0.0]])
    table = tf.constant([[0.0, 0.0], [200.0, 0.0], [-200.0, 0.0]])  # target 2 is 400 nats below item 1
    with tf.GradientTape() as tape:
        loss = losses.full_softmax_loss(hidden, tf.constant([2]), table)
    assert loss.numpy() == pytest.approx(-np.log(np.finfo(np.float32).tiny), rel=1e-6)
    # softmax is (1, 0): d loss / d hidden = table[1] - table[2].
    np.testing.assert_allclose(tape.gradient(loss, hidden).numpy(), [[400.0, 0.0]])


def bfloat16_rounded(array):
    return tf.cast(tf.cast(array, tf.bfloat16), tf.float64).numpy()


@pytest.mark.parametrize("sampled", [False, True])
def test_bfloat16_products_give_float32_losses_of_the_rounded_scores(case, sampled):
    """Under mixed precision the item-scoring products run in bfloat16; the loss is the float32
    softmax of those scores: NumPy on bfloat16-rounded inputs agrees, float32 inputs do not exactly."""
    hidden, targets, table = case
    all_items = tf.range(1, table.shape[0], dtype=tf.int32)

    def loss(compute_dtype):
        arguments = (tf.constant(hidden), tf.constant(targets), tf.constant(table))
        if sampled:
            return losses.sampled_softmax_loss(*arguments, all_items, compute_dtype)
        return losses.full_softmax_loss(*arguments, compute_dtype)

    mixed, exact = loss(tf.bfloat16), loss(tf.float32)
    assert mixed.dtype == tf.float32
    # The positive's score of sampled softmax is a float32 dot product; only the negatives' are rounded.
    rounded = numpy_full_softmax(bfloat16_rounded(hidden), targets, bfloat16_rounded(table))
    assert mixed.numpy() == pytest.approx(rounded, rel=2e-2)
    assert mixed.numpy() != exact.numpy()
    assert mixed.numpy() == pytest.approx(exact.numpy(), rel=2e-2)


def test_bfloat16_gradients_are_float32_and_close(case):
    hidden, targets, table = case
    gradients = {}
    for dtype in (tf.float32, tf.bfloat16):
        variables = tf.Variable(hidden), tf.Variable(table)
        with tf.GradientTape() as tape:
            loss = losses.full_softmax_loss(variables[0], tf.constant(targets), variables[1], dtype)
        gradients[dtype] = tape.gradient(loss, variables)
    for mixed, exact in zip(gradients[tf.bfloat16], gradients[tf.float32]):
        assert mixed.dtype == tf.float32
        np.testing.assert_allclose(mixed.numpy(), exact.numpy(), atol=2e-2 * np.abs(exact.numpy()).max())
        assert not np.array_equal(mixed.numpy(), exact.numpy())
