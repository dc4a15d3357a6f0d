"""Hand-downloaded raw files, read as they are distributed: plain, gzip, zip or tar.

Users should not have to unpack a multi-gigabyte download before a run, so a
reader gets a binary stream of the data file wherever it sits. A truncated
download shows up as an error naming the file, never as a silently shorter log.
"""

from __future__ import annotations

import contextlib
import gzip
import pathlib
import tarfile
import zipfile
import zlib
from typing import BinaryIO, Iterator, Sequence

from input_pipeline.errors import DataError

COMPRESSED_SUFFIXES = (".gz", ".zip", ".tar", ".tar.gz", ".tgz")
TRUNCATED = "the compressed file ends early (an interrupted download?); download it again"


def candidate_names(data_file: str) -> list[str]:
    """Every name under which ``data_file`` is accepted: itself, or inside one of the compressed forms."""
    stem = data_file
    for suffix in (".csv", ".jsonl", ".json"):
        if data_file.endswith(suffix):
            stem = data_file[: -len(suffix)]
    return [data_file, f"{data_file}.gz", f"{data_file}.zip", f"{stem}.zip", f"{stem}.tar", f"{stem}.tar.gz"]


def find_raw_file(folder: pathlib.Path, names: Sequence[str]) -> pathlib.Path | None:
    """The first of ``names`` present in ``folder`` (case-insensitive: categories are spelled many ways)."""
    if not folder.is_dir():
        return None
    present = {path.name.lower(): path for path in folder.iterdir() if path.is_file()}
    for name in names:
        if name.lower() in present:
            return present[name.lower()]
    return None


def _member(names: Sequence[str], data_file: str, archive: pathlib.Path) -> str:
    """The archive member that is ``data_file`` (at any depth; case-insensitive, as file names are, exact case first)."""
    wanted = data_file.lower()
    matches = [name for name in names if name.lower() == wanted or name.lower().endswith("/" + wanted)]
    if not matches:
        raise DataError(archive, None, f"the archive holds no {data_file}")
    exact = [name for name in matches if name == data_file or name.endswith("/" + data_file)]
    return (exact or matches)[0]


@contextlib.contextmanager
def open_raw(path: pathlib.Path, data_file: str) -> Iterator[tuple[BinaryIO, str]]:
    """Yields (binary stream of ``data_file``, label for messages) from ``path`` in any accepted form.

    Read errors of the compressed forms (truncation, corruption) surface as
    :class:`DataError` while the caller reads.
    """
    name = path.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as bundle:
                member = _member(bundle.namelist(), data_file, path)
                with bundle.open(member) as stream:
                    yield stream, f"{path}!{member}"
        elif name.endswith((".tar", ".tar.gz", ".tgz")):
            with tarfile.open(path, mode="r:*") as bundle:
                member = _member(bundle.getnames(), data_file, path)
                stream = bundle.extractfile(member)
                if stream is None:
                    raise DataError(path, None, f"{member} in the archive is not a regular file")
                yield stream, f"{path}!{member}"
        elif name.endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                yield stream, str(path)
        else:
            with open(path, "rb") as stream:
                yield stream, str(path)
    except (EOFError, zlib.error, zipfile.BadZipFile, gzip.BadGzipFile, tarfile.TarError) as error:
        raise DataError(path, None, f"{TRUNCATED} ({error})") from None
