"""The column-major and chunked top-k and the history exclusion: the same answer as TFRS's brute force and as NumPy."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from serving import retrieval
from serving.retrieval import ChunkedBruteForce, ColumnMajorBruteForce

NUM_ITEMS, WIDTH = 3000, 16


def indexed(layer, candidates: np.ndarray):
    return layer.index(tf.constant(candidates), identifiers=tf.range(1, len(candidates) + 1))


def random_candidates(seed: int) -> np.ndarray:
    """Rows of different lengths, as trained item embeddings have."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((NUM_ITEMS, WIDTH)) * rng.uniform(0.01, 0.1, (NUM_ITEMS, 1))).astype(np.float32)


@pytest.mark.parametrize("batch", [1, 3, 9])
def test_same_top_k_as_float32_brute_force_with_exclusions(batch):
    candidates = random_candidates(seed=batch)
    layer = indexed(ColumnMajorBruteForce(k=10), candidates)
    reference = indexed(tfrs.layers.factorized_top_k.BruteForce(k=10), candidates)
    rng = np.random.default_rng(batch)
    queries = tf.constant(rng.standard_normal((batch, WIDTH)).astype(np.float32))
    exclusions = tf.constant(rng.integers(1, NUM_ITEMS + 1, (batch, 20)).astype(np.int32))
    scores, items = layer.query_with_exclusions(queries, exclusions, k=10)
    expected_scores, expected_items = reference.query_with_exclusions(queries, exclusions, k=10)
    np.testing.assert_array_equal(items.numpy(), expected_items.numpy())
    np.testing.assert_allclose(scores.numpy(), expected_scores.numpy(), rtol=1e-5, atol=1e-6)
    for row_items, row_exclusions in zip(items.numpy(), exclusions.numpy()):
        assert not np.isin(row_items, row_exclusions).any()


@pytest.mark.parametrize("make_layer", [
    tfrs.layers.factorized_top_k.BruteForce, ColumnMajorBruteForce,
    lambda k: ChunkedBruteForce(1024, k=k),  # 3 chunks, the last partly padding
    lambda k: ChunkedBruteForce(7, k=k),  # chunks narrower than the k + 150 fetched
], ids=["tfrs", "column_major", "chunks_of_1024", "chunks_of_7"])
def test_top_k_excluding_a_history_of_any_width_matches_numpy(make_layer):
    candidates = random_candidates(seed=11)
    layer = indexed(make_layer(k=10), candidates)
    rng = np.random.default_rng(11)
    queries = rng.standard_normal((3, WIDTH)).astype(np.float32)
    # Wider than k, with repeats and 0 (padding, not an identifier), as a history's item ids are.
    exclusions = rng.integers(0, 40, (3, 150)).astype(np.int32)
    exclusions[:, :5] = np.argsort(-(queries @ candidates.T), axis=1)[:, :5] + 1  # the best five must go

    @tf.function(input_signature=[tf.TensorSpec([None, WIDTH]), tf.TensorSpec([None, None], tf.int32)])
    def served(query, excluded):  # exclusion width unknown when traced, as in the export
        return retrieval.top_k_excluding(layer, NUM_ITEMS, query, excluded, tf.constant(10))

    scores, items = served(queries, exclusions)
    expected = queries @ candidates.T
    for row in range(3):
        expected[row, exclusions[row][exclusions[row] > 0] - 1] = -np.inf
    top = np.argsort(-expected, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(items.numpy(), top + 1)
    np.testing.assert_allclose(scores.numpy(), np.take_along_axis(expected, top, axis=1), rtol=1e-5, atol=1e-6)


def test_top_k_excluding_puts_the_allowed_candidates_first_when_too_few_are_left():
    # Scores 6, 5, 4, 3, 0, 0 for ids 1..6; ids 1-3 excluded leaves three for k = 4.
    candidates = np.eye(6, 4, dtype=np.float32) * np.arange(6, 0, -1, dtype=np.float32)[:, np.newaxis]
    layer = indexed(tfrs.layers.factorized_top_k.BruteForce(k=4), candidates)
    _, items = retrieval.top_k_excluding(layer, 6, tf.ones([1, 4]), tf.constant([[1, 2, 3]]), tf.constant(4))
    assert items.numpy().tolist() == [[4, 5, 6, 1]]


@pytest.mark.parametrize("chunk_items", [1, 2, 4, 5, 6])
def test_chunked_ties_go_to_the_first_indexed_candidate_as_in_one_top_k(chunk_items):
    # Ten candidates in five pairs of equal scores (3, 3, 1, 1, 2, 2, 0, 0, 2, 2): where a pair spans a
    # chunk boundary, the merge must still rank the lower identifier first.
    scores = np.array([3, 3, 1, 1, 2, 2, 0, 0, 2, 2], np.float32)
    candidates = np.stack([scores, np.zeros_like(scores)], axis=1)
    layer = indexed(ChunkedBruteForce(chunk_items, k=7), candidates)
    top_scores, items = layer(tf.constant([[1.0, 0.0]]))
    assert items.numpy().tolist() == [[1, 2, 5, 6, 9, 10, 3]]
    assert top_scores.numpy().tolist() == [[3, 3, 2, 2, 2, 2, 1]]


def test_chunked_padding_never_outranks_a_candidate():
    # Every score negative: the last chunk's two zero-vector padding slots would score 0 and win.
    candidates = np.stack([-np.arange(1, 11, dtype=np.float32), np.zeros(10, np.float32)], axis=1)
    layer = indexed(ChunkedBruteForce(4, k=10), candidates)
    top_scores, items = layer(tf.constant([[1.0, 0.0]]))
    assert items.numpy().tolist() == [list(range(1, 11))]
    assert top_scores.numpy().tolist() == [[-float(i) for i in range(1, 11)]]


def test_chunked_refuses_an_empty_chunk():
    with pytest.raises(ValueError, match="chunk_items must be positive"):
        ChunkedBruteForce(0)
