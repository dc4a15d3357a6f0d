"""tensorflow-datasets builders for the hand-downloaded datasets (Tmall, Alipay, Yelp, Amazon).

Each builder reads its raw file from the manual folder (see
:mod:`input_pipeline.sources.manual`), streams it through the one shared
preparation path and writes a versioned TFDS dataset: one example per user
(``user_id``, chronological ``items`` as ids 1..N, ``timestamps``), in user
order, with ``users.vocab``, ``items.vocab`` and ``report.json`` beside the
records. TFDS prepares into a temporary folder and renames it when complete,
so a failed preparation leaves nothing a later run would take for complete.

Builder configs carry every option that changes the prepared content
(:class:`~input_pipeline.sources.manual.ManualOptions`); the config name spells
out the non-default ones (``default``, ``beauty``, ``default-k10-actions0``)
so differently prepared data never mix.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Callable, ClassVar, Iterator, Optional

import numpy as np
import tensorflow_datasets as tfds
import tqdm

from input_pipeline.encoding import encode_log
from input_pipeline.errors import DataError, DataUnavailableError
from input_pipeline.datasets import TFDS_VERSION as VERSION
from input_pipeline.prepare import PreparedData, assemble_prepared, prepare, save_vocabularies
from input_pipeline.raw_files import open_raw
from input_pipeline.schema import Interactions
from input_pipeline.sources import alipay, amazon, tmall, yelp
from input_pipeline.sources.manual import ManualOptions, ManualSource
from input_pipeline.sources.rows import RowCollector

SOURCE_FILE = "source.json"
READ_BATCH = 8192

Log = Callable[[str], None]


@dataclasses.dataclass(eq=False)
class InteractionLogConfig(tfds.core.BuilderConfig):
    """A builder config holding :class:`ManualOptions` (its name is theirs)."""

    options: Optional[ManualOptions] = None


def config_for(options: ManualOptions) -> InteractionLogConfig:
    return InteractionLogConfig(
        name=options.name, version=VERSION, release_notes={}, description=repr(options), options=options
    )


def make_builder(source: ManualSource, options: ManualOptions, tfds_dir: pathlib.Path) -> "InteractionLogBuilder":
    """The builder for these options (TFDS wants a predefined config by name, others as objects)."""
    builder_class = BUILDERS[source.name]
    predefined = {config.name: config for config in builder_class.BUILDER_CONFIGS}
    same = options.name in predefined and predefined[options.name].options == options
    config = options.name if same else config_for(options)
    return builder_class(data_dir=str(tfds_dir), config=config)


def read_source(source: ManualSource, manual_dir: pathlib.Path, options: ManualOptions, log: Log = print) -> PreparedData:
    """Streams the raw file through :func:`~input_pipeline.prepare.prepare`, with a progress bar."""
    path, raw_format = source.locate(manual_dir, options.category)
    log(f"reading {path} ({raw_format.description})")
    actions = frozenset(options.actions) if options.actions is not None else None
    with open_raw(path, raw_format.data_file) as (stream, label):
        collector = RowCollector(label, skip_bad_rows=options.skip_bad_rows)
        with tqdm.tqdm(desc=f"reading {source.name}", unit=" rows", unit_scale=True) as bar:
            encoded = encode_log(_counted(raw_format.read(stream, collector, actions), bar))
    encoded = dataclasses.replace(encoded, skipped_rows=collector.skipped)
    selection = "" if actions is None else f", actions {','.join(sorted(actions))}"
    return prepare(
        encoded, dedupe=options.dedupe, k_core=options.k_core,
        source=f"{source.title} from {path}{selection}", time_unit=raw_format.time_unit,
    )


def _counted(chunks: Iterator[Interactions], bar: tqdm.tqdm) -> Iterator[Interactions]:
    for chunk in chunks:
        bar.update(len(chunk))
        yield chunk


with tfds.core.registered.skip_registration():

    class InteractionLogBuilder(tfds.core.GeneratorBasedBuilder):
        """One example per user; see the module docstring. Every manual source yields integer times."""

        SOURCE: ClassVar[ManualSource]
        VERSION = tfds.core.Version(VERSION)
        RELEASE_NOTES = {str(VERSION): "Prepared by input_pipeline.prepare (leave-one-out ready sequences)."}
        BUILDER_CONFIGS: ClassVar[list[InteractionLogConfig]] = []

        def _info(self) -> tfds.core.DatasetInfo:
            return self.dataset_info_from_configs(
                description=f"{self.SOURCE.title}: per-user chronological item sequences.",
                features=tfds.features.FeaturesDict({
                    "user_id": tfds.features.Text(),
                    "items": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                    "timestamps": tfds.features.Tensor(shape=(None,), dtype=np.int64),
                }),
                homepage=self.SOURCE.homepage,
                disable_shuffling=True,
            )

        def _split_generators(self, dl_manager: tfds.download.DownloadManager):
            manual_dir = pathlib.Path(dl_manager.manual_dir)
            options = self.builder_config.options
            data = read_source(self.SOURCE, manual_dir, options)
            folder = pathlib.Path(self.data_dir)
            save_vocabularies(data, folder)
            path, _ = self.SOURCE.locate(manual_dir, options.category)
            (folder / SOURCE_FILE).write_text(json.dumps(raw_file_identity(path), indent=2) + "\n")
            return {"train": self._generate_examples(data)}

        def _generate_examples(self, data: PreparedData):
            for user, raw_id in enumerate(data.user_vocab):
                start, end = data.offsets[user], data.offsets[user + 1]
                yield user, {
                    "user_id": raw_id,
                    "items": data.items[start:end],
                    "timestamps": data.timestamps[start:end],
                }


def raw_file_identity(path: pathlib.Path) -> dict:
    """Cheap identity of a raw file, to notice a replaced file without reading it."""
    status = path.stat()
    return {"file": str(path.resolve()), "bytes": status.st_size, "modified_ns": status.st_mtime_ns}


def _builder_class(class_name: str, source: ManualSource, default_options: ManualOptions) -> type:
    """A registered builder for ``source``; TFDS names the dataset after ``class_name`` (snake case)."""
    return type(class_name, (InteractionLogBuilder,), {
        "__module__": __name__,
        "__doc__": f"{source.title}; see the module docstring.",
        "SOURCE": source,
        "MANUAL_DOWNLOAD_INSTRUCTIONS": source.instructions(pathlib.Path("<manual_dir>")),
        "BUILDER_CONFIGS": [config_for(default_options)],
    })


Tmall = _builder_class("Tmall", tmall.SOURCE, tmall.SOURCE.options())
Alipay = _builder_class("Alipay", alipay.SOURCE, alipay.SOURCE.options())
Yelp = _builder_class("Yelp", yelp.SOURCE, yelp.SOURCE.options())
Amazon = _builder_class("Amazon", amazon.SOURCE, amazon.SOURCE.options(category="beauty"))


BUILDERS: dict[str, type[InteractionLogBuilder]] = {
    builder.SOURCE.name: builder for builder in (Tmall, Alipay, Yelp, Amazon)
}


def prepare_builder(builder: InteractionLogBuilder, manual_dir: pathlib.Path) -> None:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))


def warn_if_raw_file_changed(
    builder: InteractionLogBuilder, source: ManualSource, manual_dir: pathlib.Path, options: ManualOptions, log: Log
) -> None:
    """Says so when the raw file differs from the one prepared (the prepared data are still used)."""
    recorded = json.loads((pathlib.Path(builder.data_dir) / SOURCE_FILE).read_text())
    try:
        path, _ = source.locate(manual_dir, options.category)
    except DataUnavailableError:
        return
    if raw_file_identity(path) != recorded:
        log(f"note: {path} differs from the file these data were prepared from ({recorded['file']}, "
            f"{recorded['bytes']:,} bytes); delete {builder.data_dir} to prepare it again")


def read_built(builder: InteractionLogBuilder) -> PreparedData:
    """The prepared dataset a builder wrote, as :class:`PreparedData` (records read in large batches)."""
    records = builder.as_dataset(split="train", read_config=tfds.ReadConfig(try_autocache=False))

    def flatten(batch):
        return batch["items"].flat_values, batch["timestamps"].flat_values, batch["items"].row_lengths(), batch["user_id"]

    items, timestamps, lengths, users = [], [], [], []
    for batch in records.ragged_batch(READ_BATCH).map(flatten).as_numpy_iterator():
        for parts, values in zip((items, timestamps, lengths, users), batch):
            parts.append(values)
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64)
    folder = pathlib.Path(builder.data_dir)
    data = assemble_prepared(folder, np.concatenate(items), np.concatenate(timestamps), offsets)
    if [raw.decode("utf-8") for raw in np.concatenate(users)] != data.user_vocab:
        raise DataError(folder, None, "records are not in user order; delete the folder to prepare again")
    return data

