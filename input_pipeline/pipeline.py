"""tf.data pipelines: training windows and evaluation batches.

Shapes (ids follow ``input_pipeline.schema``: 0 = padding, items 1..N):
- training elements: ``(inputs, targets)``, both [batch, max_len] int32, left
  padded; ``targets[t]`` is the item after ``inputs[t]`` (0 where ``inputs[t]``
  is padding).
- evaluation elements: ``{"inputs": [batch, max_len], "history": [batch, H],
  "target": [batch]}``: the most recent ``max_len`` history items, the user's
  whole history (0-padded to the batch's longest, for masking) and the item to
  rank.
Windows are cut once with NumPy; per step, tf.data only shuffles, batches and
prefetches.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from input_pipeline.schema import PADDING_ID

EPOCH_ORDER_GRAPH_SEED = 20231100


def left_pad(sequences: Sequence[np.ndarray], length: int) -> np.ndarray:
    """[len(sequences), length] int32: each sequence's last ``length`` items, right-aligned."""
    padded = np.full((len(sequences), length), PADDING_ID, dtype=np.int32)
    for row, sequence in enumerate(sequences):
        tail = sequence[-length:]
        if len(tail):
            padded[row, length - len(tail):] = tail
    return padded


def training_windows(
    sequences: Sequence[np.ndarray], max_len: int, stride: int = 0, new_targets_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Cut each training sequence into windows predicting the next item at every position.

    A window of ``max_len + 1`` consecutive items gives ``max_len`` (input,
    target) pairs. Windows end at the sequence's last item and then every
    ``stride`` items earlier (``stride=0`` means ``max_len``: windows that tile
    the history without overlap), so every training target is used. With
    overlapping windows, ``new_targets_only`` keeps only the targets a window
    adds over the next one (its last ``stride`` positions, all positions of the
    earliest window): each target is then trained once per epoch, always with
    at least ``max_len - stride`` items of context where the history has them.
    """
    stride = stride or max_len
    windows, new_counts = [], []
    for sequence in sequences:
        for end in range(len(sequence), 1, -stride):
            windows.append(sequence[max(0, end - max_len - 1):end])
            new_counts.append(stride if end - stride > 1 else max_len)
    inputs = left_pad([w[:-1] for w in windows], max_len)
    targets = left_pad([w[1:] for w in windows], max_len)
    if new_targets_only:
        old_positions = np.arange(max_len)[np.newaxis, :] < max_len - np.array(new_counts)[:, np.newaxis]
        targets[old_positions] = PADDING_ID
    return inputs, targets


def training_dataset(
    windows: tuple[np.ndarray, np.ndarray], batch_size: int, seed: int, epochs: int = 1, start_epoch: int = 0,
    skip_batches: int = 0,
) -> tf.data.Dataset:
    """Batches of epochs ``start_epoch`` .. ``epochs - 1`` back to back, each epoch in its own seeded order.

    An epoch's order is a function of (seed, epoch) alone, not of how many
    epochs this process has iterated, so a run resumed at epoch e, batch b
    (``start_epoch=e, skip_batches=b``) reads exactly what an uninterrupted
    run would have read next.
    """
    inputs, targets = windows
    if len(inputs) == 0:
        raise ValueError("no training windows: every training sequence has fewer than 2 items")
    examples = tf.data.Dataset.from_tensor_slices((inputs, targets))

    def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
        # The order depends on (seed, epoch) only: a fixed graph-level seed for this function
        # (TensorFlow cannot combine a tensor op seed with a global seed of 0) and the op seed below.
        tf.compat.v1.get_default_graph().seed = EPOCH_ORDER_GRAPH_SEED
        return examples.shuffle(len(inputs), seed=tf.constant(seed, tf.int64) * 1_000_003 + epoch).batch(batch_size)

    dataset = tf.data.Dataset.range(start_epoch, epochs).flat_map(epoch_batches)
    return dataset.skip(skip_batches).prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(
    histories: Sequence[np.ndarray], targets: np.ndarray, max_len: int, batch_size: int
) -> tf.data.Dataset:
    """Batches of (model input, whole history for masking, target), in user order."""
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    flat = np.concatenate(histories).astype(np.int32) if len(histories) else np.zeros([0], np.int32)
    elements = {
        "inputs": left_pad(histories, max_len),
        "history": tf.RaggedTensor.from_row_lengths(flat, lengths),
        "target": np.asarray(targets, dtype=np.int32),
    }
    dataset = tf.data.Dataset.from_tensor_slices(elements).batch(batch_size)
    return dataset.map(_dense_history, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _dense_history(element: dict) -> dict:
    return dict(element, history=element["history"].to_tensor(PADDING_ID))
