"""The id convention and the raw-interaction record every source produces.

Id convention (stated here once; everything else imports it):
- items are numbered 1..N in prepared data; 0 (``PADDING_ID``) is padding and
  never a real item, so a zero-filled batch needs no mask of its own;
- users are indexed 0..U-1 in prepared data;
- raw ids are kept as strings next to the numbers (``PreparedData.item_vocab``
  and ``user_vocab``) so results and served recommendations speak raw ids.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import pyarrow as pa

PADDING_ID = 0
FIRST_ITEM_ID = 1

Timestamp = Union[int, float]

_INTEGRAL = re.compile(r"\s*([+-]?\d+)(?:\.0*)?\s*")
_INT64_LIMIT = 2**63


def parse_timestamp(text: str) -> Timestamp:
    """Exact int for integral text ("881250949", "881250949.0"), float otherwise.

    Keeping integral timestamps as Python ints (later int64) matters: float32
    cannot tell 881250949 from 881250950, which would reorder a user's history.
    Raises ValueError (with the reason) for non-numbers, NaN, infinities and
    integers outside int64.
    """
    match = _INTEGRAL.fullmatch(text)
    if match:
        value = int(match.group(1))
        if not -_INT64_LIMIT <= value < _INT64_LIMIT:
            raise ValueError(f"timestamp {text!r} is outside the 64-bit integer range")
        return value
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"timestamp {text!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"timestamp {text!r} is not a finite number")
    return number


def id_problem(column: str, raw_id: str) -> str | None:
    """Why ``raw_id`` cannot be an id (vocabulary files hold one id per line), or None."""
    if not raw_id:
        return f"empty {column}"
    if "\n" in raw_id or "\r" in raw_id:
        return f"{column} {raw_id!r} contains a line break"
    return None


def timestamp_column(values: Sequence[Timestamp]) -> np.ndarray:
    """int64 when every value is an int (exact ordering), else float64."""
    if all(type(value) is int for value in values):
        return np.array(values, dtype=np.int64)
    return np.array(values, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Interactions:
    """Raw interaction rows in file order, as parallel columns.

    ``user`` and ``item`` hold raw string ids (object arrays, or pyarrow string
    arrays when a fast reader produced them); ``timestamp`` is
    int64 or float64 (see :func:`timestamp_column`); ``line`` is each row's
    source line number, kept so later checks can point at the file.
    """

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    line: np.ndarray

    def __post_init__(self) -> None:
        lengths = {len(self.user), len(self.item), len(self.timestamp), len(self.line)}
        if len(lengths) != 1:
            raise ValueError(f"Interactions columns differ in length: {sorted(lengths)}")

    @classmethod
    def from_rows(
        cls, users: Sequence[str], items: Sequence[str], timestamps: Sequence[Timestamp], lines: Sequence[int]
    ) -> "Interactions":
        return cls(
            user=np.array(users, dtype=object),
            item=np.array(items, dtype=object),
            timestamp=timestamp_column(timestamps),
            line=np.array(lines, dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.user)

    @classmethod
    def concatenate(cls, chunks: Sequence["Interactions"]) -> "Interactions":
        """One log from chunks in order (ids as object arrays, whatever form the chunks hold)."""
        def object_ids(column: Sequence[str]) -> np.ndarray:
            return np.array(list(column.to_pylist() if isinstance(column, pa.Array) else column), dtype=object)

        return cls(
            user=np.concatenate([object_ids(chunk.user) for chunk in chunks]) if chunks else np.zeros(0, object),
            item=np.concatenate([object_ids(chunk.item) for chunk in chunks]) if chunks else np.zeros(0, object),
            timestamp=np.concatenate([chunk.timestamp for chunk in chunks]) if chunks else np.zeros(0, np.int64),
            line=np.concatenate([chunk.line for chunk in chunks]) if chunks else np.zeros(0, np.int64),
        )

    def canonical_lines(self) -> list[str]:
        """One ``user\\titem\\ttimestamp`` line per row: the form checksums and caches use."""
        return [f"{u}\t{i}\t{t}\n" for u, i, t in zip(self.user, self.item, self.timestamp.tolist())]
