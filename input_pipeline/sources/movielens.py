"""MovieLens-100K, obtained without a manual step and verified against a known checksum.

Order of attempts: the verified copy already in the cache; a file placed by
hand (``u.data`` or ``ml-100k.zip`` in ``<cache>/ml100k/``); the GroupLens
archive; the identical copy of the ratings that ships inside the
``recbole==1.2.1`` wheel on PyPI. Whatever the origin, the parsed rows must
match :data:`ML100K` (row, user and item counts and a sha256 over the rows in
file order), so every run trains on the same data and results compare.

GroupLens licence: research use only; the data may not be redistributed, so
it is fetched at run time into the user's cache and never committed.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import http.client
import io
import pathlib
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from input_pipeline.cache import atomic_write_text
from input_pipeline.errors import ChecksumMismatchError, DataError, DataUnavailableError, not_utf8
from input_pipeline.schema import Interactions
from input_pipeline.sources.csv_log import REQUIRED_COLUMNS, read_csv_log
from input_pipeline.sources.rows import WRONG_FIELD_COUNT, RowCollector

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
GROUPLENS_README_URL = "https://files.grouplens.org/datasets/movielens/ml-100k-README.txt"
URL_TIMEOUT_S = 5.0
RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
PIP_TIMEOUT_S = 120.0

CACHE_SUBDIR = "ml100k"
RATINGS_FILE = "ratings.tsv"
SOURCE_FILE = "SOURCE.txt"
HAND_PLACED_RATINGS = "u.data"
HAND_PLACED_ARCHIVE = "ml-100k.zip"

LICENCE_NOTE = (
    "Licence: MovieLens-100K is provided by GroupLens Research (University of Minnesota) "
    f"for research use only and may not be redistributed; see {GROUPLENS_README_URL}."
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class ContentCheck:
    """What a correct copy looks like; the sha256 is over ``Interactions.canonical_lines``."""

    sha256: str
    rows: int
    users: int
    items: int


ML100K = ContentCheck(
    sha256="5746883952d93f86e140bbbefb7484081cebbb592172f333576b10a9cdc8ce0f",
    rows=100_000,
    users=943,
    items=1682,
)


@dataclass(frozen=True)
class Remote:
    """One automatic way to obtain the ratings: ``fetch`` downloads, ``read`` parses what it got."""

    description: str
    fetch: Callable[[], bytes]
    read: Callable[[bytes, str], Interactions]


def checksum(interactions: Interactions) -> str:
    """sha256 over ``user\\titem\\ttimestamp\\n`` per row, in file order."""
    return hashlib.sha256("".join(interactions.canonical_lines()).encode("utf-8")).hexdigest()


def verify(interactions: Interactions, file: str, expected: ContentCheck = ML100K) -> None:
    """Raises ChecksumMismatchError unless the rows are exactly the expected copy."""
    found = ContentCheck(
        sha256=checksum(interactions),
        rows=len(interactions),
        users=len(set(interactions.user)),
        items=len(set(interactions.item)),
    )
    if (found.rows, found.users, found.items) != (expected.rows, expected.users, expected.items):
        raise ChecksumMismatchError(
            file, None,
            f"expected {expected.rows} rows, {expected.users} users and {expected.items} items; "
            f"found {found.rows}, {found.users} and {found.items}: not the original MovieLens-100K ratings",
        )
    if found.sha256 != expected.sha256:
        raise ChecksumMismatchError(
            file, None,
            f"sha256 of the rows is {found.sha256}, expected {expected.sha256}: "
            "not the original MovieLens-100K ratings in their original order",
        )


def read_tab_ratings(text: str, file: str, *, header: bool) -> Interactions:
    """Parses ``user<TAB>item<TAB>rating<TAB>timestamp`` lines (u.data, or RecBole's .inter with a header)."""
    collector = RowCollector(file)
    lines = text.split("\n")
    for number, line in enumerate(lines[1:] if header else lines, start=2 if header else 1):
        line = line.rstrip("\r")
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 4:
            collector.reject(number, WRONG_FIELD_COUNT, f"expected 4 tab-separated fields, found {len(fields)}")
            continue
        collector.add(number, fields[0], fields[1], fields[3])
    return collector.finish()[0]


def _archive_text(data: bytes, archive: str, member: str) -> tuple[str, str]:
    """(text, label for messages) of the zip member whose path ends with ``member``."""
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        names = [name for name in bundle.namelist() if name == member or name.endswith("/" + member)]
        if not names:
            raise DataError(archive, None, f"archive has no member {member}")
        raw = bundle.read(names[0])
    label = f"{archive}!{names[0]}"
    try:
        return raw.decode("utf-8"), label
    except UnicodeDecodeError as error:
        raise not_utf8(label, error) from None


def read_grouplens_archive(data: bytes, archive: str) -> Interactions:
    """Ratings from the GroupLens ``ml-100k.zip`` (member ``ml-100k/u.data``, no header)."""
    text, label = _archive_text(data, archive, "u.data")
    return read_tab_ratings(text, label, header=False)


def read_recbole_wheel(data: bytes, archive: str) -> Interactions:
    """Ratings from the RecBole wheel's copy (``ml-100k.inter``: same rows, typed header)."""
    text, label = _archive_text(data, archive, RECBOLE_MEMBER)
    columns = [name.split(":")[0] for name in text.split("\n", 1)[0].rstrip("\r").split("\t")]
    if columns != ["user_id", "item_id", "rating", "timestamp"]:
        raise DataError(label, 1, f"unexpected header columns {columns}")
    return read_tab_ratings(text, label, header=True)


def fetch_url(url: str, timeout: float = URL_TIMEOUT_S) -> bytes:
    """The body at ``url``; the short timeout makes an unreachable host cost seconds, not minutes.

    Every failure is an OSError, so callers can move on to the next origin.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except http.client.HTTPException as error:
        raise OSError(f"bad HTTP response from {url}: {error!r}") from None


def fetch_pypi_wheel(requirement: str, timeout: float = PIP_TIMEOUT_S) -> bytes:
    """The wheel's bytes via this interpreter's pip, so the user's index and proxy settings apply."""
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--no-input", "--quiet", "--timeout", "10", "--retries", "1",
            "-d", folder, requirement,
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise OSError(f"pip download {requirement} took longer than {timeout:.0f} s") from None
        wheels = sorted(pathlib.Path(folder).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
            raise OSError(f"pip download {requirement} failed: {reason}")
        return wheels[0].read_bytes()


REMOTES: tuple[Remote, ...] = (
    Remote(f"GroupLens archive {GROUPLENS_URL}", functools.partial(fetch_url, GROUPLENS_URL), read_grouplens_archive),
    Remote(
        f"{RECBOLE_REQUIREMENT} wheel from PyPI, file {RECBOLE_MEMBER}",
        functools.partial(fetch_pypi_wheel, RECBOLE_REQUIREMENT),
        read_recbole_wheel,
    ),
)


def load_ml100k(
    cache_dir: pathlib.Path,
    *,
    log: Log = print,
    expected: ContentCheck = ML100K,
    remotes: Optional[Sequence[Remote]] = None,
) -> tuple[Interactions, str]:
    """The verified ratings and a description of where they came from.

    Raises ChecksumMismatchError for a wrong file placed by hand, and
    DataUnavailableError (saying where to put the file) when nothing works.
    """
    folder = pathlib.Path(cache_dir) / CACHE_SUBDIR
    cached = _read_cached(folder, expected, log)
    if cached:
        return cached
    by_hand = _read_placed_by_hand(folder, expected)
    if by_hand:
        return _store(folder, *by_hand, log)
    failures = []
    for remote in REMOTES if remotes is None else remotes:
        log(f"MovieLens-100K: trying {remote.description}")
        try:
            interactions = remote.read(remote.fetch(), remote.description)
            verify(interactions, remote.description, expected)
        except (OSError, zipfile.BadZipFile, DataError) as error:
            log(f"MovieLens-100K: not from {remote.description}: {error}")
            failures.append(f"{remote.description}: {error}")
            continue
        return _store(folder, interactions, remote.description, log)
    raise DataUnavailableError(
        f"MovieLens-100K could not be obtained automatically ({'; '.join(failures) or 'no sources tried'}). "
        f"Download {GROUPLENS_URL} by hand and put it at {folder / HAND_PLACED_ARCHIVE} "
        f"(or put its u.data at {folder / HAND_PLACED_RATINGS}), then run again."
    )


def _read_cached(folder: pathlib.Path, expected: ContentCheck, log: Log) -> Optional[tuple[Interactions, str]]:
    ratings = folder / RATINGS_FILE
    if not ratings.exists():
        return None
    try:
        interactions, _ = read_csv_log(ratings, delimiter="\t")
        verify(interactions, str(ratings), expected)
    except DataError as error:
        log(f"MovieLens-100K: ignoring the cached copy ({error}); obtaining it again")
        return None
    source = folder / SOURCE_FILE
    origin = source.read_text(encoding="utf-8").split("\n", 1)[0] if source.exists() else str(ratings)
    log(f"MovieLens-100K: using the verified copy at {ratings} ({origin})")
    return interactions, origin


def _read_placed_by_hand(folder: pathlib.Path, expected: ContentCheck) -> Optional[tuple[Interactions, str]]:
    ratings, archive = folder / HAND_PLACED_RATINGS, folder / HAND_PLACED_ARCHIVE
    if ratings.exists():
        try:
            text = ratings.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise not_utf8(ratings, error) from None
        interactions = read_tab_ratings(text, str(ratings), header=False)
        path = ratings
    elif archive.exists():
        try:
            interactions = read_grouplens_archive(archive.read_bytes(), str(archive))
        except zipfile.BadZipFile as error:
            raise DataError(archive, None, f"not a zip archive ({error})") from None
        path = archive
    else:
        return None
    verify(interactions, str(path), expected)
    return interactions, f"file placed by hand at {path}"


def _store(folder: pathlib.Path, interactions: Interactions, origin: str, log: Log) -> tuple[Interactions, str]:
    """Saves the verified rows as a small canonical TSV; SOURCE.txt's first line is the origin."""
    retrieved = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    atomic_write_text(
        folder / SOURCE_FILE,
        f"{origin}\n"
        f"Retrieved {retrieved}; verified: {len(interactions)} rows, sha256 {checksum(interactions)} "
        "over 'user<TAB>item<TAB>timestamp' lines in the original order.\n"
        f"{RATINGS_FILE} keeps the user id, item id and timestamp columns only.\n"
        f"{LICENCE_NOTE}\n",
    )
    header = "\t".join(REQUIRED_COLUMNS) + "\n"
    atomic_write_text(folder / RATINGS_FILE, header + "".join(interactions.canonical_lines()))
    log(f"MovieLens-100K: obtained from {origin}, verified, saved to {folder / RATINGS_FILE}")
    log(LICENCE_NOTE)
    return interactions, origin
