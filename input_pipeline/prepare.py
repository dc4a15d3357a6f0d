"""The one path from raw interactions to per-user chronological sequences, and its split.

Every dataset goes through :func:`prepare`, so ordering, deduplication,
filtering and id assignment cannot drift between datasets:

1. exact duplicate rows (same user, item and timestamp) are dropped, keeping
   the first (``dedupe``);
2. an iterative k-core filter keeps users and items with at least ``k_core``
   interactions each (0 = off); it runs before step 3, so with ``k_core`` of
   1 or 2 an item may end below ``k_core`` once short users are gone;
3. users with fewer than :data:`MIN_SEQUENCE_LENGTH` interactions are excluded:
   leave-one-out needs a training item, a validation item and a test item;
4. each user's interactions are STABLY sorted by exact timestamp (ties keep
   file order; timestamps stay int64 where the file had integers);
5. users are indexed 0..U-1 by first appearance in the file; items get ids
   1..N (``schema.PADDING_ID`` = 0) by first appearance in the kept log sorted
   chronologically (ties in file order), so ids are deterministic.

Split (leave-one-out, per user): the last item is the test target, the second
to last the validation target, the rest is training.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
from dataclasses import dataclass, field
from typing import Mapping, Optional, Union

import numpy as np

from input_pipeline.cache import atomic_directory
from input_pipeline.encoding import EncodedLog, encode_log
from input_pipeline.errors import DataError
from input_pipeline.schema import FIRST_ITEM_ID, PADDING_ID, Interactions

PREPARATION_VERSION = 2
MIN_SEQUENCE_LENGTH = 3

SEQUENCES_FILE = "sequences.npz"
ITEMS_VOCAB_FILE = "items.vocab"
USERS_VOCAB_FILE = "users.vocab"
REPORT_FILE = "report.json"

Examples = tuple[list[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PreparationReport:
    """What preparation did, in numbers, so a surprising result can be traced to its data.

    ``rows`` = ``duplicates_removed + k_core_removed_interactions +
    excluded_interactions + interactions``; ``skipped_rows`` (bad rows, by
    reason) were never part of ``rows``.
    """

    source: str
    rows: int
    users: int
    items: int
    interactions: int
    excluded_users: int
    excluded_interactions: int
    duplicates_removed: int
    k_core_removed_users: int
    k_core_removed_interactions: int
    dedupe: bool
    k_core: int
    skipped_rows: dict[str, int] = field(default_factory=dict)
    time_unit: str = "as in the file"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> "PreparationReport":
        return cls(**values)

    def format(self) -> str:
        """One human-readable paragraph."""
        skipped = sum(self.skipped_rows.values())
        reasons = ", ".join(f"{reason}: {count:,}" for reason, count in sorted(self.skipped_rows.items()))
        per_user = self.interactions / self.users if self.users else 0.0
        return " ".join([
            f"Prepared {self.source}:",
            f"{self.rows:,} rows read" + (f" ({skipped:,} bad rows skipped: {reasons});" if skipped else ";"),
            f"{self.duplicates_removed:,} exact duplicates removed;" if self.dedupe else "duplicates kept;",
            f"{self.k_core}-core filter removed {self.k_core_removed_interactions:,} interactions "
            f"and {self.k_core_removed_users:,} users;" if self.k_core else "no k-core filter;",
            f"{self.excluded_users:,} users with fewer than {MIN_SEQUENCE_LENGTH} interactions excluded "
            f"({self.excluded_interactions:,} interactions).",
            f"Result: {self.users:,} users, {self.items:,} items, {self.interactions:,} interactions "
            f"({per_user:.1f} per user).",
        ])

    def __str__(self) -> str:
        return self.format()


@dataclass(frozen=True, eq=False, repr=False)
class PreparedData:
    """Every user's chronological item sequence, concatenated, plus the raw-id vocabularies.

    ``items[offsets[u]:offsets[u + 1]]`` is user ``u``'s sequence (int32 ids
    1..N); ``timestamps`` is parallel to ``items``. ``user_vocab[u]`` is user
    ``u``'s raw id; ``item_vocab[i]`` is item ``i``'s raw id, with
    ``item_vocab[0] == ""`` for padding.
    """

    items: np.ndarray
    timestamps: np.ndarray
    offsets: np.ndarray
    user_vocab: list[str]
    item_vocab: list[str]
    report: PreparationReport

    def __post_init__(self) -> None:
        offsets, items = self.offsets, self.items
        problems = [
            (offsets.ndim != 1 or len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(items),
             "offsets do not span the items"),
            (len(offsets) > 1 and np.diff(offsets).min(initial=MIN_SEQUENCE_LENGTH) < MIN_SEQUENCE_LENGTH,
             f"a user has fewer than {MIN_SEQUENCE_LENGTH} interactions"),
            (len(self.timestamps) != len(items), "timestamps and items differ in length"),
            (len(self.user_vocab) != len(offsets) - 1, "user vocabulary size differs from the number of users"),
            (not self.item_vocab or self.item_vocab[PADDING_ID] != "", "item vocabulary lacks the padding entry"),
            (len(items) and (items.min() < FIRST_ITEM_ID or items.max() >= len(self.item_vocab)),
             "item ids outside 1..N"),
        ]
        for failed, problem in problems:
            if failed:
                raise ValueError(problem)

    def __repr__(self) -> str:
        return f"PreparedData(users={self.num_users}, items={self.num_items}, interactions={len(self.items)})"

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_items(self) -> int:
        """N: the largest item id (padding not counted)."""
        return len(self.item_vocab) - 1

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user]:self.offsets[user + 1]]

    def sequences(self) -> list[np.ndarray]:
        """Every user's full sequence (views, no copies)."""
        return np.split(self.items, self.offsets[1:-1]) if self.num_users else []

    def train_sequences(self) -> list[np.ndarray]:
        """Each user's sequence without its last two items (the validation and test targets)."""
        return [sequence[:-2] for sequence in self.sequences()]

    def validation_examples(self) -> Examples:
        """(histories, targets): history = sequence[:-2], target = sequence[-2]."""
        return self._examples(held_out=2)

    def test_examples(self) -> Examples:
        """(histories, targets): history = sequence[:-1], target = sequence[-1]."""
        return self._examples(held_out=1)

    def _examples(self, held_out: int) -> Examples:
        sequences = self.sequences()
        histories = [sequence[:-held_out] for sequence in sequences]
        targets = np.array([sequence[-held_out] for sequence in sequences], dtype=np.int32)
        return histories, targets

    @functools.cached_property
    def _item_ids(self) -> dict[str, int]:
        return {raw: item for item, raw in enumerate(self.item_vocab) if item != PADDING_ID}

    @functools.cached_property
    def _user_indices(self) -> dict[str, int]:
        return {raw: user for user, raw in enumerate(self.user_vocab)}

    def item_id(self, raw_id: str) -> int:
        """The id of raw item ``raw_id`` (KeyError if it was not kept)."""
        return self._item_ids[raw_id]

    def user_index(self, raw_id: str) -> int:
        """The index of raw user ``raw_id`` (KeyError if it was not kept)."""
        return self._user_indices[raw_id]


def prepare(
    log: Union[Interactions, EncodedLog],
    *,
    dedupe: bool = True,
    k_core: int = 0,
    skipped_rows: Optional[Mapping[str, int]] = None,
    source: str = "interactions",
    time_unit: str = "as in the file",
) -> PreparedData:
    """Raw rows in file order -> :class:`PreparedData` (steps in the module docstring).

    Large logs arrive already encoded (:func:`input_pipeline.encoding.encode_log`
    streams them); small ones may come as :class:`Interactions`. ``skipped_rows``
    defaults to the encoded log's own count.
    """
    if k_core < 0:
        raise ValueError(f"k_core must be 0 (off) or positive, got {k_core}")
    encoded = log if isinstance(log, EncodedLog) else encode_log(log)
    if skipped_rows is None:
        skipped_rows = encoded.skipped_rows
    user_codes, item_codes, timestamps = encoded.user, encoded.item, encoded.timestamp
    user_names, item_names = encoded.user_names, encoded.item_names

    keep = ~_duplicates(user_codes, item_codes, timestamps) if dedupe else np.ones(len(encoded), bool)
    after_dedupe = int(keep.sum())
    if k_core:
        keep = _k_core(user_codes, item_codes, keep, k_core, len(user_names), len(item_names))
    counts = np.bincount(user_codes[keep], minlength=len(user_names))
    short = (counts > 0) & (counts < MIN_SEQUENCE_LENGTH)
    keep &= ~short[user_codes]

    rows = np.flatnonzero(keep)
    del keep
    if len(rows) == 0:
        raise DataError(source, None, f"no user has at least {MIN_SEQUENCE_LENGTH} interactions after preparation")
    kept_users = np.bincount(user_codes[rows], minlength=len(user_names)) > 0
    user_index = np.cumsum(kept_users) - 1
    users = user_index[user_codes[rows]]
    times = timestamps[rows]
    items = item_codes[rows]
    del rows

    chronological = np.argsort(times, kind="stable")
    item_id, item_order = _ids_by_first_appearance(items[chronological], len(item_names))
    by_user = chronological[np.argsort(users[chronological], kind="stable")]
    del chronological

    report = PreparationReport(
        source=source,
        rows=len(encoded),
        users=int(kept_users.sum()),
        items=len(item_order),
        interactions=len(items),
        excluded_users=int(short.sum()),
        excluded_interactions=int(counts[short].sum()),
        duplicates_removed=len(encoded) - after_dedupe,
        k_core_removed_users=len(user_names) - int((counts > 0).sum()),
        k_core_removed_interactions=after_dedupe - int(counts.sum()),
        dedupe=dedupe,
        k_core=k_core,
        skipped_rows=dict(sorted((skipped_rows or {}).items())),
        time_unit=time_unit,
    )
    return PreparedData(
        items=item_id[items[by_user]].astype(np.int32),
        timestamps=times[by_user],
        offsets=np.concatenate([[0], np.cumsum(np.bincount(users, minlength=report.users))]).astype(np.int64),
        user_vocab=[user_names[code] for code in np.flatnonzero(kept_users)],
        item_vocab=[""] + [item_names[code] for code in item_order],
        report=report,
    )


def _ids_by_first_appearance(codes: np.ndarray, num_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """(id per code, 1..K in order of first appearance in ``codes``; codes in that order)."""
    unique, first = np.unique(codes, return_index=True)
    order = unique[np.argsort(first, kind="stable")]
    ids = np.full(num_codes, PADDING_ID, dtype=np.int64)
    ids[order] = np.arange(FIRST_ITEM_ID, FIRST_ITEM_ID + len(order))
    return ids, order


def _duplicates(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """True for each row that repeats an earlier row's (user, item, timestamp).

    ``lexsort`` is stable, so within a group of equal rows the first in file
    order comes first and is the one kept.
    """
    order = np.lexsort((timestamps, items, users))
    same = np.ones(max(len(users) - 1, 0), bool)
    for column in (users, items, timestamps):
        sorted_column = column[order]
        same &= sorted_column[1:] == sorted_column[:-1]
    duplicate = np.zeros(len(users), bool)
    duplicate[order[1:][same]] = True
    return duplicate


def _k_core(
    users: np.ndarray, items: np.ndarray, keep: np.ndarray, k: int, num_users: int, num_items: int
) -> np.ndarray:
    """Removes rows of users or items with fewer than ``k`` kept rows until none remain."""
    while True:
        user_counts = np.bincount(users[keep], minlength=num_users)
        item_counts = np.bincount(items[keep], minlength=num_items)
        filtered = keep & (user_counts[users] >= k) & (item_counts[items] >= k)
        if filtered.sum() == keep.sum():
            return filtered
        keep = filtered


def save_prepared(data: PreparedData, directory: Union[str, os.PathLike]) -> pathlib.Path:
    """Writes ``directory`` whole or not at all (FileExistsError if it exists).

    Files: ``sequences.npz`` (items, timestamps, offsets) and those of
    :func:`save_vocabularies`.
    """
    with atomic_directory(directory) as folder:
        np.savez(folder / SEQUENCES_FILE, items=data.items, timestamps=data.timestamps, offsets=data.offsets)
        save_vocabularies(data, folder)
    return pathlib.Path(directory)


def save_vocabularies(data: PreparedData, folder: pathlib.Path) -> None:
    """``users.vocab`` (line u = raw id of user u), ``items.vocab`` (line k = raw id of
    item k + 1: the padding id 0 has no line) and ``report.json``, into an existing folder
    that the caller renames into place when complete."""
    (folder / USERS_VOCAB_FILE).write_bytes(_vocabulary_text(data.user_vocab).encode("utf-8"))
    (folder / ITEMS_VOCAB_FILE).write_bytes(_vocabulary_text(data.item_vocab[FIRST_ITEM_ID:]).encode("utf-8"))
    report = json.dumps(data.report.to_dict(), indent=2, sort_keys=True) + "\n"
    (folder / REPORT_FILE).write_bytes(report.encode("utf-8"))


def load_prepared(directory: Union[str, os.PathLike]) -> PreparedData:
    """Reads what :func:`save_prepared` wrote; DataError if the files disagree with each other."""
    folder = pathlib.Path(directory)
    with np.load(folder / SEQUENCES_FILE, allow_pickle=False) as arrays:
        items, timestamps, offsets = arrays["items"], arrays["timestamps"], arrays["offsets"]
    return assemble_prepared(folder, items, timestamps, offsets)


def assemble_prepared(
    folder: pathlib.Path, items: np.ndarray, timestamps: np.ndarray, offsets: np.ndarray
) -> PreparedData:
    """Sequences plus the files of :func:`save_vocabularies` in ``folder``, checked for consistency."""
    try:
        return PreparedData(
            items=items,
            timestamps=timestamps,
            offsets=offsets,
            user_vocab=_read_vocabulary(folder / USERS_VOCAB_FILE),
            item_vocab=[""] + _read_vocabulary(folder / ITEMS_VOCAB_FILE),
            report=PreparationReport.from_dict(json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))),
        )
    except (ValueError, TypeError) as error:
        raise DataError(folder, None, f"inconsistent prepared data ({error}); delete the folder to prepare again") from None


def _vocabulary_text(raw_ids: list[str]) -> str:
    return "".join(f"{raw_id}\n" for raw_id in raw_ids)


def _read_vocabulary(path: pathlib.Path) -> list[str]:
    lines = path.read_bytes().decode("utf-8").split("\n")
    if lines[-1]:
        raise ValueError(f"{path.name} does not end with a line break")
    return lines[:-1]
