"""Dataset names -> prepared data, cached so later runs skip parsing and preparation.

Two kinds of dataset, one preparation path (:func:`input_pipeline.prepare.prepare`):

- obtainable ones (:data:`DATASETS`: ``ml100k``, ``csv``): a content
  fingerprint (cheap, so a cache hit needs no parsing or download) and a
  reader; prepared data lives in ``<cache>/prepared/<name>-<key>/``, where the
  key hashes the fingerprint, the options and
  :data:`~input_pipeline.prepare.PREPARATION_VERSION`;
- hand-downloaded ones (:data:`MANUAL_SOURCES`: ``tmall``, ``alipay``,
  ``yelp``, ``amazon/<category>``): tensorflow-datasets builders
  (:mod:`input_pipeline.builders`) reading from the manual folder and writing
  ``<cache>/tfds/<name>/<options>/<version>/``.

Model code only ever sees :class:`PreparedData`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from dataclasses import dataclass
from typing import Callable, Optional, Union

from input_pipeline import cache
from input_pipeline.encoding import EncodedLog, encode_log
from input_pipeline.prepare import PREPARATION_VERSION, PreparedData, load_prepared, prepare, save_prepared
from input_pipeline.sources import alipay, amazon, movielens, tmall, yelp
from input_pipeline.sources.csv_log import csv_log_chunks
from input_pipeline.sources.manual import ManualOptions, ManualSource
from input_pipeline.sources.rows import RowCollector

PREPARED_SUBDIR = "prepared"
TFDS_SUBDIR = "tfds"
MANUAL_SUBDIR = ("tfds", "downloads", "manual")
TFDS_VERSION = f"1.{PREPARATION_VERSION}.0"
TFDS_COMPLETE_MARKER = "dataset_info.json"
KEY_LENGTH = 16

MANUAL_SOURCES: dict[str, ManualSource] = {
    source.name: source for source in (tmall.SOURCE, alipay.SOURCE, yelp.SOURCE, amazon.SOURCE)
}

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
    log: EncodedLog
    description: str
    time_unit: str = "as in the file"


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
    collector = RowCollector(request.data_path, skip_bad_rows=request.skip_bad_rows)
    with open(request.data_path, "rb") as stream:
        encoded = encode_log(csv_log_chunks(stream, collector))
    return RawLog(dataclasses.replace(encoded, skipped_rows=collector.skipped), f"CSV log {request.data_path.resolve()}")


def _read_ml100k(request: SourceRequest) -> RawLog:
    interactions, origin = movielens.load_ml100k(request.cache_dir, log=request.log)
    return RawLog(encode_log(interactions), f"MovieLens-100K ({origin})", time_unit="unix seconds")


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
    manual_dir: Optional[Union[str, os.PathLike]] = None,
    dedupe: bool = True,
    k_core: Optional[int] = None,
    skip_bad_rows: bool = False,
    actions: Optional[frozenset[str]] = None,
    log: Log = print,
) -> PreparedData:
    """Prepared data for dataset ``name``, from the cache when already prepared; logs its report.

    ``k_core`` None = the dataset's default (5 for the hand-downloaded
    datasets, off otherwise); ``actions`` (codes) only for datasets with
    action types. Raises UnknownDatasetError / DatasetRequestError (usage),
    DataError (bad file), DataUnavailableError (cannot obtain; for a
    hand-downloaded dataset at once, with instructions), FileNotFoundError
    (no such ``data_path``).
    """
    base, _, category = name.partition("/")
    cache_dir = cache.resolve_cache_dir(data_dir)
    if base in MANUAL_SOURCES:
        if data_path is not None:
            raise DatasetRequestError(f"dataset {base!r} takes no data_path; place the raw file in the manual folder")
        try:
            options = MANUAL_SOURCES[base].options(
                category=category or None, k_core=k_core, dedupe=dedupe, skip_bad_rows=skip_bad_rows, actions=actions
            )
        except ValueError as error:
            raise DatasetRequestError(str(error)) from None
        manual = pathlib.Path(manual_dir).expanduser() if manual_dir else cache_dir.joinpath(*MANUAL_SUBDIR)
        data = _load_manual(MANUAL_SOURCES[base], options, cache_dir / TFDS_SUBDIR, manual, log)
    else:
        source = DATASETS.get(name)
        if source is None:
            known = sorted(DATASETS) + sorted(MANUAL_SOURCES)
            raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(known)} (amazon/<category>)")
        if actions is not None:
            raise DatasetRequestError(f"dataset {name!r} has no action types; leave actions unset")
        data = _load_obtainable(name, source, data_path, cache_dir, dedupe, k_core or 0, skip_bad_rows, log)
    log(data.report.format())
    return data


def _load_obtainable(
    name: str, source: DatasetSource, data_path, cache_dir: pathlib.Path, dedupe: bool, k_core: int,
    skip_bad_rows: bool, log: Log,
) -> PreparedData:
    if source.needs_data_path != (data_path is not None):
        needs = "needs data_path (a file)" if source.needs_data_path else "takes no data_path"
        raise DatasetRequestError(f"dataset {name!r} {needs}")
    request = SourceRequest(
        data_path=pathlib.Path(data_path) if data_path is not None else None,
        cache_dir=cache_dir,
        skip_bad_rows=skip_bad_rows,
        log=log,
    )
    key = preparation_key(source.fingerprint(request), dedupe=dedupe, k_core=k_core, skip_bad_rows=skip_bad_rows)
    folder = request.cache_dir / PREPARED_SUBDIR / f"{name}-{key}"
    if folder.exists():
        log(f"reusing prepared data at {folder}")
        return load_prepared(folder)
    raw = source.read(request)
    data = prepare(raw.log, dedupe=dedupe, k_core=k_core, source=raw.description, time_unit=raw.time_unit)
    try:
        save_prepared(data, folder)
        log(f"prepared data saved to {folder}")
    except FileExistsError:
        log(f"prepared data at {folder} was written meanwhile by another process")
    return data


def manual_dataset_folder(tfds_dir: pathlib.Path, source: ManualSource, options: ManualOptions) -> pathlib.Path:
    """Where the builder puts the prepared dataset (tensorflow-datasets' own layout)."""
    return tfds_dir / source.name / options.name / TFDS_VERSION


def _load_manual(
    source: ManualSource, options: ManualOptions, tfds_dir: pathlib.Path, manual_dir: pathlib.Path, log: Log
) -> PreparedData:
    folder = manual_dataset_folder(tfds_dir, source, options)
    prepared = (folder / TFDS_COMPLETE_MARKER).exists()
    if not prepared:
        source.locate(manual_dir, options.category)
    from input_pipeline import builders  # imports TensorFlow: only once the raw file is known to be there

    builder = builders.make_builder(source, options, tfds_dir)
    if prepared:
        log(f"reusing prepared data at {folder}")
        builders.warn_if_raw_file_changed(builder, source, manual_dir, options, log)
    else:
        log(f"preparing {source.name} ({options.name}) into {folder}")
        builders.prepare_builder(builder, manual_dir)
    return builders.read_built(builder)
