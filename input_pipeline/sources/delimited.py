"""Delimited text logs (CSV and the like) of any size, read block by block.

Fast path: each block of whole lines (about 32 MB) is parsed by pyarrow's C++
reader into string columns and checked with vectorised kernels. A block with
anything unusual (a blank line, a wrong field count, an empty id, a timestamp
that is not a plain integer, bad UTF-8, an unknown action code) is read again
line by line through :class:`~input_pipeline.sources.rows.RowCollector`, the
rules every reader shares, which names the line or counts the skip. Both paths
accept exactly the same rows, so results never depend on where blocks end:
blocks end at row ends (a quoted field may span lines), and only the columns
read must be UTF-8 on either path.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from input_pipeline.errors import DataError, not_utf8
from input_pipeline.schema import Interactions
from input_pipeline.sources.rows import BAD_ACTION, NOT_UTF8, WRONG_FIELD_COUNT, RowCollector

BLOCK_BYTES = 32 << 20
# How far a block may grow past BLOCK_BYTES to end at a row's end (a quoted field may span lines).
LONGEST_QUOTED_ROW = 64 << 20
PLAIN_INTEGER = r"^-?[0-9]{1,18}$"
UTF8_BOM = "\ufeff"
INCOMPLETE_LINE = "incomplete last line"
TRUNCATED_HINT = "is the file truncated?"

HeaderCheck = Callable[[list[str], str], Sequence[str]]


def exact_header(expected: Sequence[str], layout: str) -> HeaderCheck:
    """A header check for published layouts: the header must be exactly ``expected``."""

    def check(header: list[str], file: str) -> Sequence[str]:
        names = [name.strip() for name in header]
        if names != list(expected):
            raise DataError(
                file, 1, f"header is {','.join(names)!r}, expected {','.join(expected)!r}: not a {layout} file"
            )
        return names

    return check


@dataclass(frozen=True)
class DelimitedLayout:
    """Where the fields of one kind of delimited file are.

    ``header``: None for headerless files (``names`` are then the columns),
    else a check that turns the header line into the column names (raising
    DataError for a wrong one). ``ends_with_line_break``: published files do,
    so a last line without one is taken for a truncated download (a cut in
    the last field would otherwise pass as a valid row). ``action``: a column whose value must be one
    of ``action_values``; readers keep only the rows whose action they ask for.
    """

    names: Sequence[str]
    user: str
    item: str
    timestamp: str
    header: Optional[HeaderCheck] = None
    action: Optional[str] = None
    action_values: frozenset[str] = frozenset()
    delimiter: str = ","
    ends_with_line_break: bool = False


@dataclass(frozen=True)
class _Positions:
    width: int
    user: int
    item: int
    timestamp: int
    action: Optional[int]


def reader_for(layout: DelimitedLayout) -> Callable[..., Iterator[Interactions]]:
    """``read(stream, collector, actions)``: the reader a :class:`~input_pipeline.sources.manual.RawFormat` holds."""

    def read(stream: BinaryIO, collector: RowCollector, actions: Optional[frozenset[str]]) -> Iterator[Interactions]:
        return read_delimited(stream, collector.file, layout, collector, keep_actions=actions)

    return read


def read_delimited(
    stream: BinaryIO,
    file: str,
    layout: DelimitedLayout,
    collector: RowCollector,
    *,
    keep_actions: Optional[frozenset[str]] = None,
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[Interactions]:
    """Yields the file's accepted rows in file order, one chunk per block.

    ``collector`` applies the bad-row policy and keeps the skip counts.
    ``keep_actions`` (default: every valid action) selects rows by the
    layout's action column. Raises DataError for an empty file, a wrong
    header, a file without usable rows and (unless skipping) a bad row.
    """
    names, first_line = list(layout.names), 1
    if layout.header is not None:
        names, first_line = list(layout.header(_header_fields(stream, file, layout), file)), 2
    positions = _Positions(
        width=len(names),
        user=names.index(layout.user),
        item=names.index(layout.item),
        timestamp=names.index(layout.timestamp),
        action=names.index(layout.action) if layout.action else None,
    )
    valid = layout.action_values
    keep = valid if keep_actions is None else keep_actions
    rows = 0
    for block, line, complete in _blocks(stream, block_bytes, first_line):
        if not complete and layout.ends_with_line_break:
            collector.reject(line, INCOMPLETE_LINE, f"the last line has no line break: {TRUNCATED_HINT}")
            continue
        chunk = _fast_chunk(block, line, complete, positions, layout.delimiter, valid, keep)
        if chunk is None:
            chunk = _careful_chunk(block, line, complete, positions, layout, collector, keep)
        rows += len(chunk)
        yield chunk
    if not rows:
        collector.finish()


def _header_fields(stream: BinaryIO, file: str, layout: DelimitedLayout) -> list[str]:
    raw = stream.readline()
    try:
        text = raw.decode("utf-8").lstrip(UTF8_BOM)
    except UnicodeDecodeError as error:
        raise not_utf8(file, error) from None
    fields = next(csv.reader([text], delimiter=layout.delimiter), [])
    if not fields:
        raise DataError(file, None, f"empty file; expected a header line {layout.delimiter.join(layout.names)}")
    return fields


def _blocks(stream: BinaryIO, block_bytes: int, first_line: int) -> Iterator[tuple[bytes, int, bool]]:
    """(whole rows, number of the first line, whether the last ends with a line break)."""
    rest, line = b"", first_line
    while True:
        data = stream.read(block_bytes)
        if not data:
            if rest:
                yield rest, line, False
            return
        data = rest + data
        cut = _last_row_end(data)
        if not cut and len(data) > block_bytes + LONGEST_QUOTED_ROW:
            cut = data.rfind(b"\n") + 1  # a stray quote upset the count (see _last_row_end)
        rest = data[cut:]
        if cut:
            yield data[:cut], line, True
            line += data.count(b"\n", 0, cut)


def _last_row_end(data: bytes) -> int:
    """The offset after the last line break of ``data`` that ends a row (0 if none); ``data`` starts a row.

    A quoted field may hold line breaks, and a block cut at one would split
    its row in two bad ones. Before a break inside quotes the number of quote
    characters is odd (a quote within quotes is written twice), so the cut
    moves back to the last break with an even count. A stray quote inside an
    unquoted field upsets the count until the next cut; the caller then
    reads on, up to ``LONGEST_QUOTED_ROW`` more, and cuts at the last break.
    """
    cut = data.rfind(b"\n") + 1
    quotes = data.count(b'"', 0, cut)
    while cut and quotes % 2:
        previous = data.rfind(b"\n", 0, cut - 1) + 1
        quotes -= data.count(b'"', previous, cut)
        cut = previous
    return cut


def _fast_chunk(
    block: bytes,
    line: int,
    complete: bool,
    positions: _Positions,
    delimiter: str,
    valid: frozenset[str],
    keep: frozenset[str],
) -> Optional[Interactions]:
    """The block's rows via pyarrow, or None if anything needs the careful path."""
    wanted = {positions.user, positions.item, positions.timestamp, positions.action} - {None}
    column_names = [f"c{index}" for index in range(positions.width)]
    invalid_rows: list[object] = []
    try:
        table = pcsv.read_csv(
            io.BytesIO(block),
            read_options=pcsv.ReadOptions(column_names=column_names, block_size=max(len(block) // 2, 1 << 20)),
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter,
                newlines_in_values=False,
                ignore_empty_lines=False,
                invalid_row_handler=lambda row: invalid_rows.append(row) or "skip",
            ),
            convert_options=pcsv.ConvertOptions(
                column_types={column_names[index]: pa.string() for index in wanted},
                include_columns=[column_names[index] for index in sorted(wanted)],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    lines = block.count(b"\n") + (0 if complete else 1)
    if invalid_rows or table.num_rows != lines:
        return None
    user, item, timestamp = (table.column(column_names[index]).combine_chunks()
                             for index in (positions.user, positions.item, positions.timestamp))
    for ids in (user, item):
        if len(ids) and pc.min(pc.utf8_length(ids)).as_py() == 0:
            return None
    if len(timestamp) and not pc.all(pc.match_substring_regex(timestamp, PLAIN_INTEGER)).as_py():
        return None
    numbers = np.arange(line, line + lines, dtype=np.int64)
    times = pc.cast(timestamp, pa.int64()).to_numpy()
    if positions.action is not None:
        action = table.column(column_names[positions.action]).combine_chunks()
        if len(action) and not pc.all(pc.is_in(action, value_set=pa.array(sorted(valid)))).as_py():
            return None
        if keep != valid:
            mask = pc.is_in(action, value_set=pa.array(sorted(keep), type=pa.string()))
            user, item = user.filter(mask), item.filter(mask)
            selected = mask.to_numpy(zero_copy_only=False)
            times, numbers = times[selected], numbers[selected]
    return Interactions(user=user, item=item, timestamp=times, line=numbers)


def _careful_chunk(
    block: bytes,
    line: int,
    complete: bool,
    positions: _Positions,
    layout: DelimitedLayout,
    collector: RowCollector,
    keep: frozenset[str],
) -> Interactions:
    """The block's rows line by line, each problem reported at its line or counted."""
    # Undecodable bytes become lone surrogates: only the columns read must be UTF-8, as on the fast path.
    text = block.decode("utf-8", errors="surrogateescape")
    read_columns = {layout.user: positions.user, layout.item: positions.item, layout.timestamp: positions.timestamp}
    if positions.action is not None:
        read_columns[layout.action] = positions.action
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=layout.delimiter)
    last_line = line + text.count("\n") - (1 if complete else 0)
    row_end = 0
    try:
        for fields in reader:
            number, row_end = line + row_end, reader.line_num
            if not fields:
                continue
            if len(fields) != positions.width:
                truncated = number == last_line and not complete
                hint = f" (the last line has no line break: {TRUNCATED_HINT})" if truncated else ""
                expected = f"{positions.width} fields" + (" as in the header" if layout.header else "")
                collector.reject(number, WRONG_FIELD_COUNT, f"expected {expected}, found {len(fields)}{hint}")
                continue
            undecodable = [name for name, index in read_columns.items() if not _is_text(fields[index])]
            if undecodable:
                collector.reject(number, NOT_UTF8, f"not UTF-8 text in {', '.join(undecodable)}")
                continue
            if positions.action is not None:
                action = fields[positions.action]
                if action not in layout.action_values:
                    allowed = ", ".join(sorted(layout.action_values))
                    collector.reject(number, BAD_ACTION, f"{layout.action} {action!r} is not one of {allowed}")
                    continue
                if action not in keep:
                    continue
            collector.add(number, fields[positions.user], fields[positions.item], fields[positions.timestamp])
    except csv.Error as error:
        raise DataError(collector.file, line + row_end, f"unreadable CSV ({error})") from None
    return collector.take()


def _is_text(field: str) -> bool:
    """False for a field holding bytes that were not UTF-8 (decoded to lone surrogates)."""
    if field.isascii():
        return True
    try:
        field.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
