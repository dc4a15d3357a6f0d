"""Small interaction logs and training windows the tests make themselves (the real formats, no downloaded data)."""

import pathlib

import numpy as np

from input_pipeline.sources.delimited import DelimitedLayout, read_delimited
from input_pipeline.sources.rows import RowCollector


def write_interaction_log(
    path: pathlib.Path, *, users: int, items: int, seed: int, max_length: int = 15, random_items: bool = False
) -> pathlib.Path:
    """``users`` users with 6..max_length-1 interactions each, a minute apart, over ``items`` items.

    Each user walks the catalogue in steps of 3 from its own offset, so there is
    sequential signal a model can learn in a couple of epochs. With
    ``random_items`` every item is drawn at random instead: nothing to learn
    but popularity noise, so validation scores rise and fall from epoch to epoch.
    """
    rng = np.random.default_rng(seed)
    lines = ["user_id,item_id,timestamp"]
    for user in range(users):
        start = int(rng.integers(1_000_000, 2_000_000))
        for step in range(int(rng.integers(6, max_length))):
            item = int(rng.integers(items)) if random_items else (user + step * 3) % items
            lines.append(f"u{user},item-{item},{start + 60 * step}")
    path.write_text("\n".join(lines) + "\n")
    return path


def random_windows(*, rows: int, length: int, num_items: int, padded_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) [rows, length] int32 training windows of random items; the first ``padded_rows``
    rows start with 3 padding slots; targets are the next items, 0 at padding."""
    rng = np.random.default_rng(0)
    inputs = rng.integers(1, num_items + 1, size=(rows, length)).astype(np.int32)
    inputs[:padded_rows, :3] = 0
    targets = np.concatenate([inputs[:, 1:], rng.integers(1, num_items + 1, size=(rows, 1))], axis=1).astype(np.int32)
    targets[inputs == 0] = 0
    return inputs, targets


def read_in_blocks(path: pathlib.Path, layout: DelimitedLayout, block_bytes: int, skip_bad_rows: bool = False) -> tuple[list, dict]:
    """The row chunks ``read_delimited`` yields for ``path`` read ``block_bytes`` at a time, and the skipped-row counts."""
    collector = RowCollector(path, skip_bad_rows=skip_bad_rows)
    with open(path, "rb") as stream:
        chunks = list(read_delimited(stream, str(path), layout, collector, block_bytes=block_bytes))
    return chunks, collector.skipped
