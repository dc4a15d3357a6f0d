"""Interaction logs as CSV: a header naming ``user_id``, ``item_id`` and ``timestamp``.

Columns may come in any order and extra columns are ignored, so exports from
other tools load as they are. Ids are arbitrary strings, kept exactly as
written (no trimming: ``"7"`` and ``" 7"`` are different ids).
"""

from __future__ import annotations

import collections
import os
from typing import BinaryIO, Iterator, Sequence, Union

from input_pipeline.errors import DataError
from input_pipeline.schema import Interactions
from input_pipeline.sources.delimited import DelimitedLayout, read_delimited
from input_pipeline.sources.rows import RowCollector

REQUIRED_COLUMNS = ("user_id", "item_id", "timestamp")


def read_csv_log(
    path: Union[str, os.PathLike], *, skip_bad_rows: bool = False, delimiter: str = ","
) -> tuple[Interactions, collections.Counter[str]]:
    """Reads a whole (small) log in file order; returns the rows and the count of skipped rows by reason.

    Raises DataError (``file:line: problem``) for a missing column, an empty
    file, a file without data rows, and, unless ``skip_bad_rows``, at the
    first malformed row.
    """
    collector = RowCollector(path, skip_bad_rows=skip_bad_rows)
    with open(path, "rb") as stream:
        chunks = list(csv_log_chunks(stream, collector, delimiter=delimiter))
    return Interactions.concatenate(chunks), collector.skipped


def csv_log_chunks(stream: BinaryIO, collector: RowCollector, *, delimiter: str = ",") -> Iterator[Interactions]:
    """The log's rows in file order, a chunk at a time (any size of file)."""
    return read_delimited(stream, collector.file, csv_log_layout(delimiter), collector)


def csv_log_layout(delimiter: str = ",") -> DelimitedLayout:
    """A log with a header naming at least user_id, item_id and timestamp, in any order."""
    return DelimitedLayout(
        names=REQUIRED_COLUMNS, user="user_id", item="item_id", timestamp="timestamp",
        header=_column_names, delimiter=delimiter,
    )


def _column_names(header: list[str], file: str) -> Sequence[str]:
    names = [name.strip() for name in header]
    missing = [column for column in REQUIRED_COLUMNS if column not in names]
    if missing:
        raise DataError(
            file, 1,
            f"missing column(s) {', '.join(missing)}; the header has {', '.join(map(repr, names))} "
            f"but needs {','.join(REQUIRED_COLUMNS)}",
        )
    repeated = [column for column in REQUIRED_COLUMNS if names.count(column) > 1]
    if repeated:
        raise DataError(file, 1, f"column(s) {', '.join(repeated)} appear more than once in the header")
    return names
