"""Full-ranking metrics against an independent NumPy computation."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tf_autosam import metrics
from tf_autosam.evaluation import RankingEvaluator
from input_pipeline.pipeline import evaluation_dataset


def numpy_rank(scores: np.ndarray, history: np.ndarray, target: int) -> int:
    """Rank by enumeration: candidates are items 1..N not in the history (the target always is one)."""
    seen = set(int(i) for i in history if i != 0) - {target}
    better_or_tied = 0
    for item in range(1, len(scores)):
        if item != target and item not in seen and scores[item] >= scores[target]:
            better_or_tied += 1
    return better_or_tied


def numpy_metrics(ranks, k):
    ranks = np.asarray(ranks, dtype=float)
    return {
        f"NDCG@{k}": np.mean([1 / np.log2(r + 2) if r < k else 0 for r in ranks]),
        f"Recall@{k}": np.mean([1.0 if r < k else 0.0 for r in ranks]),
        f"MRR@{k}": np.mean([1 / (r + 1) if r < k else 0 for r in ranks]),
    }


def random_case(rng, batch=40, num_items=30, history_len=12):
    # Integer scores in a small range make ties frequent.
    scores = rng.integers(0, 6, size=(batch, num_items + 1)).astype(np.float32)
    history = rng.integers(0, num_items + 1, size=(batch, history_len)).astype(np.int32)
    targets = rng.integers(1, num_items + 1, size=batch).astype(np.int32)
    history[::3, 0] = targets[::3]  # some targets repeat a history item: they stay rankable
    return scores, history, targets


def test_ranks_match_numpy_with_masking_and_ties():
    rng = np.random.default_rng(0)
    scores, history, targets = random_case(rng)
    excluded = metrics.excluded_items(tf.constant(history), tf.constant(targets), scores.shape[1])
    ranks = metrics.pessimistic_ranks(tf.constant(scores), tf.constant(targets), excluded).numpy()
    expected = [numpy_rank(scores[b], history[b], targets[b]) for b in range(len(targets))]
    np.testing.assert_array_equal(ranks, expected)


def test_metrics_from_ranks_match_numpy():
    ranks = np.random.default_rng(1).integers(0, 40, size=200)
    got = metrics.metrics_from_ranks(ranks, cutoffs=(10, 20))
    for k in (10, 20):
        for name, value in numpy_metrics(ranks, k).items():
            assert got[name] == pytest.approx(value, abs=1e-12)


def test_hand_worked_example():
    # Items 1..4. Scores: item1=0.9 item2=0.5 item3=0.5 item4=0.1; target 3, history [1].
    # Item 1 is masked; item 2 ties with the target and counts against it: rank 1.
    scores = tf.constant([[0.0, 0.9, 0.5, 0.5, 0.1]])
    excluded = metrics.excluded_items(tf.constant([[1, 0]]), tf.constant([3]), 5)
    rank = metrics.pessimistic_ranks(scores, tf.constant([3]), excluded).numpy()
    assert rank.tolist() == [1]
    result = metrics.metrics_from_ranks(rank, cutoffs=(1, 10))
    assert result["Recall@1"] == 0.0 and result["Recall@10"] == 1.0
    assert result["NDCG@10"] == pytest.approx(1 / np.log2(3))
    assert result["MRR@10"] == pytest.approx(0.5)


def test_evaluator_is_batch_size_independent_and_masks_whole_history():
    rng = np.random.default_rng(2)
    num_items, max_len = 25, 4
    table = rng.normal(size=(num_items + 1, 3)).astype(np.float32)
    # A score function that only sees the last max_len items: the mask must still cover older ones.
    score_fn = lambda inputs: tf.matmul(tf.gather(table, inputs[:, -1]), table, transpose_b=True)  # noqa: E731
    histories = [rng.integers(1, num_items + 1, size=n).astype(np.int32) for n in rng.integers(1, 15, size=30)]
    targets = rng.integers(1, num_items + 1, size=30).astype(np.int32)
    expected_ranks = []
    for history, target in zip(histories, targets):
        scores = table[history[-1]] @ table.T
        expected_ranks.append(numpy_rank(scores, history, int(target)))
    expected = metrics.metrics_from_ranks(np.array(expected_ranks))
    for batch_size in (1, 7, 64):
        got = RankingEvaluator(score_fn).evaluate(evaluation_dataset(histories, targets, max_len, batch_size))
        assert got == pytest.approx(expected, abs=1e-9)


def test_sampled_metrics_rank_among_exactly_n_negatives():
    rng = np.random.default_rng(3)
    scores, history, targets = random_case(rng, num_items=200)
    excluded = metrics.excluded_items(tf.constant(history), tf.constant(targets), scores.shape[1])
    mask = metrics.sampled_negative_mask(excluded, tf.constant(targets), 100, tf.constant([1, 2], tf.int64)).numpy()
    rankable = ~mask
    assert (rankable.sum(axis=1) == 101).all()  # 100 negatives + the target
    assert not (rankable & excluded.numpy()).any()
    assert rankable[np.arange(len(targets)), targets].all()


def test_paired_permutation_test_matches_exact_enumeration_on_a_small_case():
    first = np.array([0.5, 0.2, 0.9, 0.0, 0.3])
    second = np.array([0.1, 0.2, 0.4, 0.1, 0.0])
    differences = first - second
    observed = abs(differences.mean())
    flips = np.array(list(itertools.product([-1.0, 1.0], repeat=5)))
    exact = np.mean(np.abs((flips * differences).mean(axis=1)) >= observed - 1e-12)
    assert metrics.paired_permutation_test(first, second, rounds=20_000) == pytest.approx(exact, abs=0.01)
    assert metrics.paired_permutation_test(first, first) == 1.0


def test_per_user_ndcg_hand_values():
    np.testing.assert_allclose(metrics.per_user_ndcg(np.array([0, 1, 9, 10]), 10), [1.0, 1 / np.log2(3), 1 / np.log2(11), 0.0])


def test_nan_scores_count_against_the_target():
    # Items 1..4, nothing masked. A NaN target ranks last; a NaN competitor counts as beating it.
    excluded = metrics.excluded_items(tf.constant([[0], [0]]), tf.constant([2, 2]), 5)
    scores = tf.constant([[0.0, 0.1, np.nan, 0.3, 0.2], [0.0, np.nan, 0.9, 0.3, 0.2]])
    assert metrics.pessimistic_ranks(scores, tf.constant([2, 2]), excluded).numpy().tolist() == [3, 1]


def test_paired_permutation_test_in_chunks_matches_one_pass_with_many_users():
    rng = np.random.default_rng(5)
    first, second = rng.random(300_000), rng.random(300_000) - 0.002  # 2**22 // 300k = 13 rounds a chunk
    p_value = metrics.paired_permutation_test(first, second, rounds=40, seed=3)
    differences = first - second
    signs = np.random.default_rng(3).choice([-1.0, 1.0], size=(40, len(differences)))
    expected = (1 + np.count_nonzero(np.abs(signs @ differences) / len(differences) >= abs(differences.mean()) - 1e-12)) / 41
    assert p_value == pytest.approx(expected)
