"""tf.data pipelines: windows on a hand-made sequence, evaluation batches."""

import numpy as np

from input_pipeline.pipeline import evaluation_dataset, left_pad, training_dataset, training_windows


def test_left_pad_keeps_most_recent_items():
    padded = left_pad([np.array([1, 2, 3, 4, 5]), np.array([7]), np.array([], dtype=np.int32)], 3)
    np.testing.assert_array_equal(padded, [[3, 4, 5], [0, 0, 7], [0, 0, 0]])


def test_windows_tile_the_history_and_predict_every_next_item():
    sequence = np.arange(1, 9, dtype=np.int32)  # 8 training items
    inputs, targets = training_windows([sequence], max_len=3)
    np.testing.assert_array_equal(inputs, [[5, 6, 7], [2, 3, 4], [0, 0, 1]])
    np.testing.assert_array_equal(targets, [[6, 7, 8], [3, 4, 5], [0, 0, 2]])
    # Every (input -> next item) pair of the sequence appears exactly once.
    pairs = {(int(i), int(t)) for row_i, row_t in zip(inputs, targets) for i, t in zip(row_i, row_t) if i}
    assert pairs == {(k, k + 1) for k in range(1, 8)}


def test_windows_with_stride_one_end_at_every_item():
    inputs, targets = training_windows([np.array([4, 5, 6], dtype=np.int32), np.array([9], dtype=np.int32)], max_len=2, stride=1)
    np.testing.assert_array_equal(inputs, [[4, 5], [0, 4]])
    np.testing.assert_array_equal(targets, [[5, 6], [0, 5]])


def test_new_targets_only_trains_each_target_once_with_long_context():
    sequence = np.arange(1, 12, dtype=np.int32)
    inputs, targets = training_windows([sequence], max_len=4, stride=2, new_targets_only=True)
    kept = targets[targets > 0]
    assert sorted(kept.tolist()) == list(range(2, 12))  # every target exactly once
    # Outside the earliest window, a target's input has the full 4-item context before it.
    for row_inputs, row_targets in zip(inputs[:-1], targets[:-1]):
        assert (row_inputs > 0).all() and (row_targets[:2] == 0).all()
    np.testing.assert_array_equal(targets[-1], [0, 0, 2, 3])


def test_training_dataset_is_seeded():
    windows = training_windows([np.arange(1, 40, dtype=np.int32)], max_len=4)
    first = [b[0].numpy() for b in training_dataset(windows, 3, seed=7)]
    second = [b[0].numpy() for b in training_dataset(windows, 3, seed=7)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(second))
    assert sorted(map(tuple, np.concatenate(first))) == sorted(map(tuple, windows[0]))


def test_a_resumed_dataset_reads_what_the_uninterrupted_one_reads_next():
    windows = training_windows([np.arange(1, 40, dtype=np.int32)], max_len=4)
    whole = [b[0].numpy() for b in training_dataset(windows, 3, seed=7, epochs=3)]
    per_epoch = len(whole) // 3
    assert len(whole) == 3 * per_epoch == 3 * -(-len(windows[0]) // 3)
    assert not np.array_equal(np.concatenate(whole[:per_epoch]), np.concatenate(whole[per_epoch:2 * per_epoch]))
    resumed = [b[0].numpy() for b in training_dataset(windows, 3, seed=7, epochs=3, start_epoch=1, skip_batches=2)]
    np.testing.assert_array_equal(np.concatenate(resumed), np.concatenate(whole[per_epoch + 2:]))


def test_evaluation_batches_carry_whole_history():
    histories = [np.array([1, 2, 3, 4, 5], dtype=np.int32), np.array([6], dtype=np.int32)]
    batch = next(iter(evaluation_dataset(histories, np.array([9, 8]), max_len=2, batch_size=2)))
    np.testing.assert_array_equal(batch["inputs"].numpy(), [[4, 5], [0, 6]])
    np.testing.assert_array_equal(batch["history"].numpy(), [[1, 2, 3, 4, 5], [6, 0, 0, 0, 0]])
    np.testing.assert_array_equal(batch["target"].numpy(), [9, 8])
