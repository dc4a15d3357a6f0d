"""Small interaction logs the tests write themselves (the real CSV format, no downloaded data)."""

import pathlib

import numpy as np


def write_interaction_log(path: pathlib.Path, *, users: int, items: int, seed: int, max_length: int = 15) -> pathlib.Path:
    """``users`` users with 6..max_length-1 interactions each, a minute apart, over ``items`` items.

    Each user walks the catalogue in steps of 3 from its own offset, so there is
    sequential signal a model can learn in a couple of epochs.
    """
    rng = np.random.default_rng(seed)
    lines = ["user_id,item_id,timestamp"]
    for user in range(users):
        start = int(rng.integers(1_000_000, 2_000_000))
        for step in range(int(rng.integers(6, max_length))):
            lines.append(f"u{user},item-{(user + step * 3) % items},{start + 60 * step}")
    path.write_text("\n".join(lines) + "\n")
    return path
