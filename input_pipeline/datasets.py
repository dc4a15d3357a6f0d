"""Dataset names -> prepared data, cached so later runs skip parsing and preparation.

A dataset is a :class:`DatasetSource` in :data:`DATASETS`: a content
fingerprint (cheap, so a cache hit needs no parsing or download) and a reader
returning raw rows. New datasets (tensorflow-datasets builders for Tmall,
Alipay, Yelp, Amazon) plug in by adding an entry; model code only ever sees
:class:`PreparedData`.

Prepared data lives in ``<cache>/prepared/<name>-<key>/``, where the key
hashes the source fingerprint, the preparation options and
:data:`~input_pipeline.prepare.PREPARATION_VERSION`: changing any of them
prepares afresh instead of reusing stale data.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pathlib
from dataclasses import dataclass
from typing import Callable, Optional, Union

from input_pipeline import cache
from input_pipeline.prepare import PREPARATION_VERSION, PreparedData, load_prepared, prepare, save_prepared
from input_pipeline.schema import Interactions
from input_pipeline.sources import movielens
from input_pipeline.sources.csv_log import read_csv_log

PREPARED_SUBDIR = "prepared"
KEY_LENGTH = 16

Log = Callable[[str], None]


class DatasetRequestError(ValueError):
    """The request itself is wrong (not the data): a usage error."""


class UnknownDatasetError(DatasetRequestError):
    """No dataset of that name; the message lists the known names."""


@dataclass(frozen=True)
class SourceRequest:
    """What a source may need from :func:`load_dataset`'s arguments."""

    data_path: Optional[pathlib.Path]
    cache_dir: pathlib.Path
    skip_bad_rows: bool
    log: Log


@dataclass(frozen=True)
class RawLog:
    interactions: Interactions
    skipped_rows: collections.Counter
    description: str


@dataclass(frozen=True)
class DatasetSource:
    """``fingerprint`` identifies the content without parsing it; ``read`` parses it."""

    fingerprint: Callable[[SourceRequest], str]
    read: Callable[[SourceRequest], RawLog]
    needs_data_path: bool = False


def _file_sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_csv(request: SourceRequest) -> RawLog:
    interactions, skipped = read_csv_log(request.data_path, skip_bad_rows=request.skip_bad_rows)
    return RawLog(interactions, skipped, f"CSV log {request.data_path.resolve()}")


def _read_ml100k(request: SourceRequest) -> RawLog:
    interactions, origin = movielens.load_ml100k(request.cache_dir, log=request.log)
    return RawLog(interactions, collections.Counter(), f"MovieLens-100K ({origin})")


DATASETS: dict[str, DatasetSource] = {
    "ml100k": DatasetSource(fingerprint=lambda request: movielens.ML100K.sha256, read=_read_ml100k),
    "csv": DatasetSource(
        fingerprint=lambda request: _file_sha256(request.data_path), read=_read_csv, needs_data_path=True
    ),
}


def preparation_key(fingerprint: str, *, dedupe: bool, k_core: int, skip_bad_rows: bool) -> str:
    """Short hash naming one (content, options, preparation code) combination."""
    identity = {
        "source": fingerprint,
        "dedupe": dedupe,
        "k_core": k_core,
        "skip_bad_rows": skip_bad_rows,
        "preparation_version": PREPARATION_VERSION,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:KEY_LENGTH]


def load_dataset(
    name: str = "ml100k",
    *,
    data_path: Optional[Union[str, os.PathLike]] = None,
    data_dir: Optional[Union[str, os.PathLike]] = None,
    dedupe: bool = True,
    k_core: int = 0,
    skip_bad_rows: bool = False,
    log: Log = print,
) -> PreparedData:
    """Prepared data for dataset ``name``, from the cache when already prepared; logs its report.

    Raises UnknownDatasetError / DatasetRequestError (usage), DataError (bad
    file), DataUnavailableError (cannot obtain), FileNotFoundError (no such
    ``data_path``).
    """
    source = DATASETS.get(name)
    if source is None:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    if source.needs_data_path != (data_path is not None):
        needs = "needs data_path (a file)" if source.needs_data_path else "takes no data_path"
        raise DatasetRequestError(f"dataset {name!r} {needs}")
    request = SourceRequest(
        data_path=pathlib.Path(data_path) if data_path is not None else None,
        cache_dir=cache.resolve_cache_dir(data_dir),
        skip_bad_rows=skip_bad_rows,
        log=log,
    )
    key = preparation_key(source.fingerprint(request), dedupe=dedupe, k_core=k_core, skip_bad_rows=skip_bad_rows)
    folder = request.cache_dir / PREPARED_SUBDIR / f"{name}-{key}"
    if folder.exists():
        log(f"reusing prepared data at {folder}")
        data = load_prepared(folder)
    else:
        raw = source.read(request)
        data = prepare(
            raw.interactions, dedupe=dedupe, k_core=k_core, skipped_rows=raw.skipped_rows, source=raw.description
        )
        try:
            save_prepared(data, folder)
            log(f"prepared data saved to {folder}")
        except FileExistsError:
            log(f"prepared data at {folder} was written meanwhile by another process")
    log(data.report.format())
    return data
