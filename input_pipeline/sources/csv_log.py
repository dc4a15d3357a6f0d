"""Interaction logs as CSV: a header naming ``user_id``, ``item_id`` and ``timestamp``.

Columns may come in any order and extra columns are ignored, so exports from
other tools load as they are. Ids are arbitrary strings, kept exactly as
written (no trimming: ``"7"`` and ``" 7"`` are different ids).
"""

from __future__ import annotations

import collections
import csv
import os
from typing import TextIO, Union

from input_pipeline.errors import DataError, not_utf8
from input_pipeline.schema import Interactions
from input_pipeline.sources.rows import WRONG_FIELD_COUNT, RowCollector

REQUIRED_COLUMNS = ("user_id", "item_id", "timestamp")


def read_csv_log(
    path: Union[str, os.PathLike], *, skip_bad_rows: bool = False, delimiter: str = ","
) -> tuple[Interactions, collections.Counter[str]]:
    """Reads the log in file order; returns the rows and the count of skipped rows by reason.

    Raises DataError (``file:line: problem``) for a missing column, an empty
    file, a file without data rows, and, unless ``skip_bad_rows``, at the
    first malformed row.
    """
    file = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return _read_rows(handle, file, skip_bad_rows, delimiter)
    except UnicodeDecodeError as error:
        raise not_utf8(file, error) from None


def _column_positions(header: list[str], file: str) -> list[int]:
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
    return [names.index(column) for column in REQUIRED_COLUMNS]


def _read_rows(
    handle: TextIO, file: str, skip_bad_rows: bool, delimiter: str
) -> tuple[Interactions, collections.Counter[str]]:
    reader = csv.reader(handle, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(file, None, f"empty file; expected a header line {','.join(REQUIRED_COLUMNS)}") from None
    user_column, item_column, time_column = _column_positions(header, file)
    width = len(header)
    collector = RowCollector(file, skip_bad_rows=skip_bad_rows)
    row_end = reader.line_num
    try:
        for fields in reader:
            line, row_end = row_end + 1, reader.line_num
            if not fields:
                continue
            if len(fields) != width:
                collector.reject(line, WRONG_FIELD_COUNT, f"expected {width} fields as in the header, found {len(fields)}")
                continue
            collector.add(line, fields[user_column], fields[item_column], fields[time_column])
    except csv.Error as error:
        raise DataError(file, reader.line_num, f"unreadable CSV ({error})") from None
    return collector.finish()
