"""Row checks shared by every source, so each file layout only has to split its lines.

A bad row either stops the read with a :class:`DataError` at that line (the
default: silently dropping data changes results) or, when the caller asks,
is skipped and counted under a short reason such as ``"bad timestamp"``.
"""

from __future__ import annotations

import collections
import os
from typing import Union

from input_pipeline.errors import DataError
from input_pipeline.schema import Interactions, Timestamp, id_problem, parse_timestamp

WRONG_FIELD_COUNT = "wrong field count"
BAD_TIMESTAMP = "bad timestamp"
BAD_USER_ID = "bad user_id"
BAD_ITEM_ID = "bad item_id"
BAD_ACTION = "bad action"
BAD_JSON = "bad JSON"
MISSING_FIELD = "missing field"
NOT_UTF8 = "not UTF-8"


class RowCollector:
    """Accumulates valid rows of one file and applies the bad-row policy."""

    def __init__(self, file: Union[str, os.PathLike], *, skip_bad_rows: bool = False):
        self.file = str(file)
        self.skip_bad_rows = skip_bad_rows
        self.skipped: collections.Counter[str] = collections.Counter()
        self._users: list[str] = []
        self._items: list[str] = []
        self._timestamps: list[Timestamp] = []
        self._lines: list[int] = []

    def reject(self, line: int, reason: str, problem: str) -> None:
        """Records a bad row: raises, or counts it under ``reason`` in skip mode."""
        if not self.skip_bad_rows:
            raise DataError(self.file, line, problem)
        self.skipped[reason] += 1

    def add(self, line: int, user: str, item: str, timestamp: Union[str, Timestamp]) -> None:
        """Adds one row (timestamp as text, or already a number), or rejects it with the first problem found."""
        problem = id_problem("user_id", user)
        if problem:
            return self.reject(line, BAD_USER_ID, problem)
        problem = id_problem("item_id", item)
        if problem:
            return self.reject(line, BAD_ITEM_ID, problem)
        try:
            value = parse_timestamp(timestamp) if isinstance(timestamp, str) else timestamp
        except ValueError as error:
            return self.reject(line, BAD_TIMESTAMP, str(error))
        self._users.append(user)
        self._items.append(item)
        self._timestamps.append(value)
        self._lines.append(line)

    @property
    def rows(self) -> int:
        """Rows collected since the last :meth:`take`."""
        return len(self._users)

    def take(self) -> Interactions:
        """The rows collected so far, as one chunk; the collector starts empty again."""
        chunk = Interactions.from_rows(self._users, self._items, self._timestamps, self._lines)
        self._users, self._items, self._timestamps, self._lines = [], [], [], []
        return chunk

    def finish(self) -> tuple[Interactions, collections.Counter[str]]:
        """The collected rows and the skip counts; a file with no usable row is an error."""
        if not self._users:
            if self.skipped:
                counts = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.skipped.items()))
                raise DataError(self.file, None, f"no usable rows (every row was skipped: {counts})")
            raise DataError(self.file, None, "no data rows")
        return self.take(), self.skipped
