"""JSON-lines logs (one object per line), read line by line in bounded memory.

Some older published review files are Python literals rather than strict JSON
(single quotes); a line that is not JSON is therefore tried as a literal
before it counts as bad.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterator, Optional

from input_pipeline.schema import Interactions, Timestamp
from input_pipeline.sources.rows import BAD_JSON, BAD_TIMESTAMP, MISSING_FIELD, RowCollector

CHUNK_ROWS = 500_000


@dataclass(frozen=True)
class JsonLayout:
    """Which keys hold the user, the item and the time, and how the time becomes a number."""

    user: str
    item: str
    timestamp: str
    to_timestamp: Callable[[Any], Timestamp]


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return ast.literal_eval(text)


def reader_for(layout: JsonLayout) -> Callable[..., Iterator[Interactions]]:
    """``read(stream, collector, actions)``: the reader a :class:`~input_pipeline.sources.manual.RawFormat` holds."""

    def read(stream: BinaryIO, collector: RowCollector, actions: Optional[frozenset[str]]) -> Iterator[Interactions]:
        return read_json_lines(stream, layout, collector)

    return read


def read_json_lines(
    stream: BinaryIO, layout: JsonLayout, collector: RowCollector, *, chunk_rows: int = CHUNK_ROWS
) -> Iterator[Interactions]:
    """Yields the accepted rows in file order, ``chunk_rows`` at a time; problems go to ``collector``."""
    rows = 0
    number = 0
    for number, raw in enumerate(stream, start=1):
        text = _decode(raw, collector, number)
        if not text:
            continue
        try:
            record = _parse(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as error:
            complete = raw.endswith(b"\n")
            hint = "" if complete else " (the last line has no line break: is the file truncated?)"
            collector.reject(number, BAD_JSON, f"not a JSON object ({type(error).__name__}){hint}")
            continue
        if not isinstance(record, dict):
            collector.reject(number, BAD_JSON, f"expected a JSON object, found {type(record).__name__}")
            continue
        missing = [key for key in (layout.user, layout.item, layout.timestamp) if record.get(key) is None]
        if missing:
            collector.reject(number, MISSING_FIELD, f"no {', '.join(missing)}")
            continue
        try:
            timestamp = layout.to_timestamp(record[layout.timestamp])
        except (ValueError, TypeError, OverflowError) as error:
            collector.reject(number, BAD_TIMESTAMP, f"{layout.timestamp} {record[layout.timestamp]!r}: {error}")
            continue
        collector.add(number, str(record[layout.user]), str(record[layout.item]), timestamp)
        if collector.rows >= chunk_rows:
            rows += collector.rows
            yield collector.take()
    rows += collector.rows
    if rows:
        yield collector.take()
    else:
        collector.finish()


def _decode(raw: bytes, collector: RowCollector, number: int) -> str:
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError as error:
        collector.reject(number, BAD_JSON, f"not UTF-8 text ({error.reason} at byte {error.start} of the line)")
        return ""
