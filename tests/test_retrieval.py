"""The column-major and bfloat16-shortlist top-k: the same answer as TFRS's float32 brute force, and the shortlist's error bound holds."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from serving import retrieval
from serving.retrieval import BFLOAT16_SCORE_ERROR, ColumnMajorBruteForce, ShortlistBruteForce

NUM_ITEMS, WIDTH, SHORTLIST = 3000, 16, 64


def indexed(layer, candidates: np.ndarray):
    return layer.index(tf.constant(candidates), identifiers=tf.range(1, len(candidates) + 1))


def random_candidates(seed: int) -> np.ndarray:
    """Rows of different lengths, as trained item embeddings have."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((NUM_ITEMS, WIDTH)) * rng.uniform(0.01, 0.1, (NUM_ITEMS, 1))).astype(np.float32)


@pytest.mark.parametrize("make_layer", [
    lambda: ShortlistBruteForce(k=10, shortlist=SHORTLIST, max_shortlist_batch=4), lambda: ColumnMajorBruteForce(k=10),
], ids=["shortlist", "column_major"])
@pytest.mark.parametrize("batch", [1, 3, 9])
def test_same_top_k_as_float32_brute_force_with_exclusions(batch, make_layer):
    candidates = random_candidates(seed=batch)
    layer = indexed(make_layer(), candidates)
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


def test_bfloat16_scores_stay_within_the_bound():
    candidates = random_candidates(seed=7) * 30.0
    queries = np.random.default_rng(7).standard_normal((5, WIDTH)).astype(np.float32) * 4.0
    approximate = tf.matmul(tf.cast(queries, tf.bfloat16), tf.cast(candidates, tf.bfloat16), transpose_b=True)
    error = np.abs(tf.cast(approximate, tf.float32).numpy() - queries @ candidates.T)
    bound = BFLOAT16_SCORE_ERROR * np.linalg.norm(queries, axis=1, keepdims=True) * np.linalg.norm(candidates, axis=1).max()
    assert (error <= bound).all()
    assert error.max() > bound.max() / 100  # the check is not vacuous: bfloat16 really is approximate


def exact_sentinel(batch: int, k: int):
    return lambda: (tf.fill([batch, k], -1.0), tf.fill([batch, k], -1))


def test_separated_scores_are_answered_from_the_shortlist():
    layer = indexed(ShortlistBruteForce(k=10, shortlist=SHORTLIST), random_candidates(seed=3))
    queries = tf.constant(np.random.default_rng(3).standard_normal((2, WIDTH)).astype(np.float32))
    _, items = layer._certified_shortlist(queries, 10, exact_sentinel(2, 10))
    assert (items.numpy() > 0).all()


def test_scores_bfloat16_cannot_order_fall_back_to_the_exact_pass():
    # Every candidate rounds to the same bfloat16 row; the best ones (largest offsets) sit at the end of
    # the catalogue, outside a shortlist that bfloat16 ties fill with the first rows.
    offsets = np.linspace(0.0, 1e-3, NUM_ITEMS, dtype=np.float32)[:, np.newaxis]
    candidates = (np.ones((NUM_ITEMS, WIDTH), np.float32) + offsets).astype(np.float32)
    queries = tf.ones([1, WIDTH])
    layer = indexed(ShortlistBruteForce(k=10, shortlist=SHORTLIST), candidates)
    scores, _ = layer._certified_shortlist(queries, 10, exact_sentinel(1, 10))
    np.testing.assert_array_equal(scores.numpy(), -1.0)
    _, items = layer(queries, k=10)
    np.testing.assert_array_equal(items.numpy()[0], np.arange(NUM_ITEMS, NUM_ITEMS - 10, -1))


def test_large_catalogues_get_the_shortlist_where_asked_for_it():
    assert isinstance(retrieval.brute_force_layer(retrieval.SHORTLIST_MIN_ITEMS, 10, True), ShortlistBruteForce)
    for num_items, shortlist in ((retrieval.SHORTLIST_MIN_ITEMS - 1, True), (retrieval.SHORTLIST_MIN_ITEMS, False)):
        assert type(retrieval.brute_force_layer(num_items, 10, shortlist)) is ColumnMajorBruteForce


@pytest.mark.parametrize("cpuinfo, fast", [
    ("flags\t\t: fpu sse2 avx avx2 fma\n", False),  # AVX2 only
    ("flags\t\t: fpu avx2 avx512f avx512dq avx512bw avx512vl\n", True),
    ("flags\t\t: fpu avx2 amx_bf16 amx_tile\n", True),
    ("model name\t: avx512bw in a name\nflags\t\t: fpu avx2\n", False),  # only the flags line counts
    (None, False),  # unreadable (not Linux)
])
def test_the_shortlist_is_chosen_for_cpus_with_fast_bfloat16(tmp_path, monkeypatch, cpuinfo, fast):
    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo)
    assert retrieval.cpu_runs_bfloat16_fast(path) is fast
    monkeypatch.setattr(retrieval, "cpu_runs_bfloat16_fast", lambda: fast)
    assert isinstance(retrieval.brute_force_layer(retrieval.SHORTLIST_MIN_ITEMS, 10), ShortlistBruteForce) is fast


@pytest.mark.parametrize("layer_class", [tfrs.layers.factorized_top_k.BruteForce, ColumnMajorBruteForce, ShortlistBruteForce])
def test_top_k_excluding_a_history_of_any_width_matches_numpy(layer_class):
    candidates = random_candidates(seed=11)
    layer = indexed(layer_class(k=10), candidates)
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
