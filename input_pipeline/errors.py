"""Errors a user can act on: bad data (fix the file) and unavailable data (fetch it by hand)."""

from __future__ import annotations

import os
from typing import Optional, Union


class DataError(ValueError):
    """A problem in a data file, reported as ``file:line: problem`` so editors can jump to it."""

    def __init__(self, file: Union[str, os.PathLike], line: Optional[int], problem: str):
        self.file = str(file)
        self.line = line
        self.problem = problem
        location = self.file if line is None else f"{self.file}:{line}"
        super().__init__(f"{location}: {problem}")


def not_utf8(file: Union[str, os.PathLike], error: UnicodeDecodeError) -> DataError:
    """The DataError for undecodable text, pointing at the byte so the user can find it."""
    return DataError(file, None, f"not UTF-8 text ({error.reason} at byte {error.start})")


class ChecksumMismatchError(DataError):
    """Content differs from the verified copy: results would not be comparable with others'."""


class DataUnavailableError(RuntimeError):
    """A dataset could not be obtained automatically; the message says where to put it by hand."""
