"""Raw string ids -> dense integer codes, chunk by chunk, so a log never sits in memory as text.

A 55-million-row log held as Python strings would need tens of gigabytes; as
int32 codes plus one vocabulary entry per distinct id it needs about 1 GB.
Codes count up from 0 in order of first appearance in the file (chunks must
arrive in file order), which is what :mod:`input_pipeline.prepare` relies on
for deterministic user indices.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import pyarrow as pa

from input_pipeline.schema import Interactions

RawIds = Union[pa.Array, Sequence[str], np.ndarray]


class IdEncoder:
    """Gives every distinct raw id a code 0, 1, 2, ... in order of first appearance."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}

    def encode(self, raw_ids: RawIds) -> np.ndarray:
        """int32 code of each id; a chunk's distinct ids are looked up once each, not per row."""
        array = raw_ids if isinstance(raw_ids, pa.Array) else pa.array(raw_ids, type=pa.string())
        encoded = array.dictionary_encode()
        distinct = encoded.dictionary.to_pylist()
        codes = self._codes
        lookup = np.fromiter((codes.setdefault(raw, len(codes)) for raw in distinct), np.int32, len(distinct))
        return lookup[encoded.indices.to_numpy(zero_copy_only=False)]

    @property
    def names(self) -> list[str]:
        """Raw id of each code (position = code)."""
        return list(self._codes)


@dataclass(frozen=True, eq=False)
class EncodedLog:
    """A whole log as codes: row r is (user_names[user[r]], item_names[item[r]], timestamp[r]).

    Rows stay in file order; ``timestamp`` is int64 unless some value was
    fractional (then float64, see :func:`input_pipeline.schema.timestamp_column`).
    """

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    user_names: list[str]
    item_names: list[str]
    skipped_rows: Mapping[str, int]

    def __len__(self) -> int:
        return len(self.user)


def encode_log(
    chunks: Union[Interactions, Iterable[Interactions]], skipped_rows: Optional[Mapping[str, int]] = None
) -> EncodedLog:
    """Encodes chunks in file order. ``skipped_rows`` is read only after the last chunk,
    so a streaming reader may keep counting into it while it yields."""
    if isinstance(chunks, Interactions):
        chunks = [chunks]
    users, items = IdEncoder(), IdEncoder()
    user_codes, item_codes, timestamps = [], [], []
    for chunk in chunks:
        if not len(chunk):
            continue
        user_codes.append(users.encode(chunk.user))
        item_codes.append(items.encode(chunk.item))
        timestamps.append(chunk.timestamp)
    empty = [np.zeros(0, np.int32)]
    return EncodedLog(
        user=np.concatenate(user_codes or empty),
        item=np.concatenate(item_codes or empty),
        timestamp=np.concatenate(timestamps or [np.zeros(0, np.int64)]),
        user_names=users.names,
        item_names=items.names,
        skipped_rows=collections.Counter(skipped_rows or {}),
    )
