"""A trained run -> a SavedModel that TF Serving loads as it is.

    python -m serving.export --run_dir=RUN --export_base=DIR [--model_name=autosam] [--jit_compile]

Layout: ``<export_base>/<model_name>/<version>/`` with integer versions; each
export is a new version, written into a hidden temporary folder beside it and
renamed, so a server polling the folder never sees half a model. Beside the
versions: ``models.config`` and ``batching.config`` for the official server.

Signatures (batch = requests in one call; a history is a user's raw item ids,
oldest first, padded at the end with ""):

- ``serving_default``: ``history`` string [batch, L] -> ``item_ids`` string
  [batch, k] and ``scores`` float32 [batch, k] (top-k of the catalogue, every
  item of the history excluded, k = the export's default), ``keep_probability``
  float32 [batch, L] and ``kept`` bool [batch, L] (the sampler's view of each
  input position: what drove the recommendation), ``unknown_items`` int32
  [batch] (ids not in the training vocabulary, ignored) and ``fallback`` bool
  [batch] (no known item left: most-popular items instead);
- ``recommend_k``: the same with an int32 scalar input ``k``;
- ``score_candidates``: ``history`` and ``candidates`` string [batch, C] ->
  ``scores`` float32 [batch, C] (0 where unknown), ``known`` bool [batch, C],
  ``fallback`` bool [batch] (popularity counts scored instead).

Only the most recent ``max_len`` known items are read; the sampler runs in
deterministic mode unless asked otherwise, so a request always gets the same
answer. Raw ids are mapped inside the graph, from the vocabulary shipped as
an asset.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import pathlib
import sys
import tempfile
from typing import Callable, Iterator, Optional, Sequence

import tf_autosam  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf

from input_pipeline.cache import atomic_directory, atomic_write_text
from input_pipeline.prepare import PreparedData
from input_pipeline.schema import PADDING_ID
from serving import protocol
from serving.retrieval import exact_top_k, top_k_excluding
from serving.protocol import DEFAULT_MODEL_NAME
from tf_autosam.config import INFERENCE_MODES, TrainerConfig
from tf_autosam.models import SequentialRecommender, popularity_counts
from tf_autosam.run_directory import CONFIG_FILE, saved_config

DEFAULT_K = 10
VOCABULARY_ASSET = "items.vocab"
MODELS_CONFIG = "models.config"
BATCHING_CONFIG = "batching.config"
HISTORY_SPEC = tf.TensorSpec([None, None], tf.string, name=protocol.HISTORY)

Log = Callable[[str], None]


class ServingModule(tf.Module):
    """The trained recommender behind raw-id signatures (see the module docstring)."""

    def __init__(
        self, model: SequentialRecommender, vocabulary_file: str, item_counts: np.ndarray, max_len: int, default_k: int,
        chunk_items: int, jit_compile: bool = False,
    ):
        super().__init__()
        self.model = model
        # One XLA executable for the model instead of hundreds of small kernels: in process
        # 1.2x faster at batch 1 and 1.5x at batch 32 on CPU (BUILD_NOTES, "Serving
        # latency"). TF Serving runs it only with --xla_cpu_compilation_enabled=true.
        self._inference = (
            tf.function(functools.partial(model.inference, static_width=True), jit_compile=True) if jit_compile
            else model.inference
        )
        self.max_len = max_len
        self.default_k = default_k
        self.num_items = model.num_items
        whole_line, line_number = tf.lookup.TextFileIndex.WHOLE_LINE, tf.lookup.TextFileIndex.LINE_NUMBER
        # items.vocab line k holds the raw id of item k + 1 (schema: 0 is padding).
        self.item_of_raw = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(vocabulary_file, tf.string, whole_line, tf.int64, line_number),
            default_value=-1,
        )
        self.raw_of_line = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(vocabulary_file, tf.int64, line_number, tf.string, whole_line),
            default_value="",
        )
        counts = item_counts.astype(np.float32)
        self.item_counts = tf.constant(counts)
        self.popular_items = tf.constant(np.argsort(-counts[1:], kind="stable").astype(np.int32) + 1)
        self.retrieval = exact_top_k(self.num_items, chunk_items, default_k)
        self.retrieval.index(model.backbone.item_table[1:], identifiers=tf.range(1, self.num_items + 1, dtype=tf.int32))

    @tf.function(input_signature=[HISTORY_SPEC])
    def recommend(self, history: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._recommend(history, tf.constant(self.default_k, tf.int32))

    @tf.function(input_signature=[HISTORY_SPEC, tf.TensorSpec([], tf.int32, name=protocol.K)])
    def recommend_k(self, history: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._recommend(history, k)

    @tf.function(input_signature=[HISTORY_SPEC, tf.TensorSpec([None, None], tf.string, name=protocol.CANDIDATES)])
    def score_candidates(self, history: tf.Tensor, candidates: tf.Tensor) -> dict[str, tf.Tensor]:
        window, _, _, _, fallback = self._read_history(history)
        _, _, vector = self._inference(window)
        items = self._item_ids(candidates)
        known = tf.not_equal(items, PADDING_ID)
        embedded = tf.gather(self.model.backbone.item_table, items)
        model_scores = tf.reduce_sum(vector[:, tf.newaxis, :] * embedded, axis=-1)
        scores = tf.where(fallback[:, tf.newaxis], tf.gather(self.item_counts, items), model_scores)
        return {"scores": tf.where(known, scores, 0.0), "known": known, "fallback": fallback}

    def _item_ids(self, raw: tf.Tensor) -> tf.Tensor:
        """Item ids of raw ids; padding ("") and unknown ids -> 0."""
        return tf.cast(self.item_of_raw.lookup(raw) + 1, tf.int32)

    def _read_history(self, history: tf.Tensor):
        """(window [batch, max_len], window slot of each input position (-1: not read), the history's
        item ids (0: padding or unknown), unknown count, fallback): the newest ``max_len`` known items, right-aligned."""
        items = self._item_ids(history)
        known = tf.not_equal(items, PADDING_ID)
        unknown = tf.reduce_sum(tf.cast(tf.logical_and(tf.logical_not(known), tf.not_equal(history, "")), tf.int32), 1)
        from_end = tf.cumsum(tf.cast(known, tf.int32), axis=1, reverse=True)
        read = tf.logical_and(known, from_end <= self.max_len)
        slot = tf.where(read, self.max_len - from_end, -1)
        rows = tf.broadcast_to(tf.range(tf.shape(items)[0])[:, tf.newaxis], tf.shape(items))
        where = tf.where(read)
        window = tf.scatter_nd(
            tf.stack([tf.gather_nd(rows, where), tf.gather_nd(slot, where)], axis=1),
            tf.gather_nd(items, where),
            tf.stack([tf.shape(items)[0], self.max_len]),
        )
        fallback = tf.logical_not(tf.reduce_any(known, axis=1))
        return window, slot, items, unknown, fallback

    def _recommend(self, history: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        tf.debugging.assert_positive(k, message="k must be at least 1")
        k = tf.minimum(k, self.num_items - self.max_len)
        window, slot, history_items, unknown, fallback = self._read_history(history)
        probability, kept, vector = self._inference(window)
        # The whole history is excluded, not only the window the model reads: as in evaluation.
        scores, items = top_k_excluding(self.retrieval, self.num_items, vector, history_items, k)
        popular = tf.broadcast_to(self.popular_items[:k][tf.newaxis], tf.shape(items))
        items = tf.where(fallback[:, tf.newaxis], popular, items)
        scores = tf.where(fallback[:, tf.newaxis], tf.gather(self.item_counts, popular), scores)
        in_window = tf.maximum(slot, 0)
        read = slot >= 0
        return {
            "item_ids": self.raw_of_line.lookup(tf.cast(items - 1, tf.int64)),
            "scores": scores,
            "keep_probability": tf.where(read, tf.gather(probability, in_window, batch_dims=1), 0.0),
            "kept": tf.logical_and(read, tf.gather(kept, in_window, batch_dims=1)),
            "unknown_items": unknown,
            "fallback": fallback,
        }

    def signatures(self) -> dict[str, tf.types.experimental.ConcreteFunction]:
        return {
            protocol.SERVING_DEFAULT: self.recommend.get_concrete_function(),
            protocol.RECOMMEND_K: self.recommend_k.get_concrete_function(),
            protocol.SCORE_CANDIDATES: self.score_candidates.get_concrete_function(),
        }


def next_version(model_folder: pathlib.Path) -> int:
    """One more than the highest integer version present (1 for none)."""
    versions = [int(path.name) for path in model_folder.glob("*") if path.name.isdigit()] if model_folder.exists() else []
    return max(versions, default=0) + 1


@contextlib.contextmanager
def _vocabulary_file(item_vocab: Sequence[str]) -> Iterator[str]:
    """items.vocab (line k = raw id of item k + 1) in a scratch folder; the export copies it as an asset."""
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / VOCABULARY_ASSET
        path.write_text("".join(f"{raw}\n" for raw in item_vocab[1:]), encoding="utf-8")
        yield str(path)


def export_model(
    model: SequentialRecommender,
    data: PreparedData,
    config: TrainerConfig,
    export_base: pathlib.Path,
    model_name: str = DEFAULT_MODEL_NAME,
    default_k: int = DEFAULT_K,
    jit_compile: bool = False,
) -> pathlib.Path:
    """Writes the next version of ``model_name`` under ``export_base`` (and the server configs); returns it.

    ``jit_compile`` compiles the model's part of every signature with XLA.
    """
    if not isinstance(model, SequentialRecommender):
        raise ValueError(f"model {config.model!r} has no user vector to serve; export sasrec or autosam runs")
    if data.num_items <= config.max_len:
        raise ValueError(f"serving needs more items ({data.num_items}) than max_len ({config.max_len})")
    folder = pathlib.Path(export_base) / model_name
    counts = popularity_counts(data.train_sequences(), data.num_items)
    with _vocabulary_file(data.item_vocab) as vocabulary:
        module = ServingModule(model, vocabulary, counts, config.max_len, default_k, config.serving_chunk_items, jit_compile)
        while True:
            target = folder / str(next_version(folder))
            try:
                with atomic_directory(target) as scratch:
                    tf.saved_model.save(module, str(scratch), signatures=module.signatures())
                break
            except FileExistsError:
                continue  # another export took this version meanwhile
    write_server_configs(pathlib.Path(export_base), model_name)
    return target


def served_model_names(export_base: pathlib.Path) -> list[str]:
    """The folders of ``export_base`` holding at least one integer version with a SavedModel."""
    return sorted(folder.name for folder in export_base.iterdir() if protocol.version_folders(folder))


def write_server_configs(export_base: pathlib.Path, model_name: str) -> None:
    """``models.config`` (every model exported under ``export_base``) and ``batching.config`` for ``tensorflow_model_server``.

    Each model keeps its newest protocol.VERSIONS_SERVED versions loaded, as the local server does.
    """
    names = sorted(set(served_model_names(export_base)) | {model_name})
    entries = "".join(
        "  config {\n"
        f'    name: "{name}"\n'
        f'    base_path: "{(export_base / name).resolve()}"\n'
        '    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ latest {{ num_versions: {protocol.VERSIONS_SERVED} }} }}\n"
        "  }\n"
        for name in names
    )
    atomic_write_text(export_base / MODELS_CONFIG, f"model_config_list {{\n{entries}}}\n")
    atomic_write_text(export_base / BATCHING_CONFIG, (
        "# TF Serving batches every signature of a model along dimension 0 of every input, so with\n"
        "# --enable_batching: requests of one batch must send histories of the same width (pad every\n"
        "# history to one width, e.g. the model's max_len; TF Serving's own padding would repeat a\n"
        "# real item id), and recommend_k, whose k is a scalar, cannot be called.\n"
        "max_batch_size { value: 32 }\n"
        "batch_timeout_micros { value: 2000 }\n"
        "max_enqueued_batches { value: 100 }\n"
        "num_batch_threads { value: 2 }\n"
    ))


def export_run(
    run_dir: pathlib.Path,
    export_base: pathlib.Path,
    model_name: str = DEFAULT_MODEL_NAME,
    default_k: int = DEFAULT_K,
    inference_mode: str = "deterministic",
    data: Optional[PreparedData] = None,
    log: Log = print,
    jit_compile: bool = False,
    chunk_items: Optional[int] = None,
) -> pathlib.Path:
    """Exports a finished run's best model (its data prepared from the run's own config if not given).

    ``chunk_items`` replaces the run's ``serving_chunk_items`` when given.
    """
    from input_pipeline.datasets import load_dataset
    from tf_autosam.training import load_best_model

    config = saved_config(run_dir)
    if chunk_items is not None:
        config = config.replace(serving_chunk_items=chunk_items)  # checked here, before the data and the model load
    if data is None:
        data = load_dataset(config.dataset, **config.dataset_options(), log=log)
    overrides = {"inference_mode": inference_mode} if config.model == "autosam" else {}
    model = load_best_model(run_dir, data, **overrides)
    return export_model(model, data, config.replace(**overrides), export_base, model_name, default_k, jit_compile)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.export", description=__doc__.split("\n")[0])
    parser.add_argument("--run_dir", required=True, help="A finished training run (its config.json and best checkpoint).")
    parser.add_argument("--export_base", required=True, help="Folder of exported models: <export_base>/<model_name>/<version>/.")
    parser.add_argument("--model_name", default=DEFAULT_MODEL_NAME, help=f"Model name TF Serving serves it under. [default: {DEFAULT_MODEL_NAME}]")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help=f"Recommendations per request of the serving_default signature. [default: {DEFAULT_K}]")
    parser.add_argument("--inference_mode", default="deterministic", choices=INFERENCE_MODES,
                        help="How the AutoSAM sampler acts when serving. [default: deterministic]")
    parser.add_argument("--jit_compile", action="store_true",
                        help="Compile the model inside the signatures with XLA (on CPU 1.2x faster at batch 1, 1.5x at batch 32); "
                             "TF Serving then needs --xla_cpu_compilation_enabled=true. [default: off]")
    parser.add_argument("--chunk_items", type=int, default=None,
                        help="Score catalogues larger than this in chunks of this many items (exact top-k in bounded memory). "
                             "[default: the run's serving_chunk_items]")
    args = parser.parse_args(argv)
    if not (pathlib.Path(args.run_dir) / CONFIG_FILE).exists():
        parser.error(f"{args.run_dir} is not a run directory (no {CONFIG_FILE})")
    try:
        path = export_run(
            pathlib.Path(args.run_dir), pathlib.Path(args.export_base), args.model_name, args.k, args.inference_mode,
            jit_compile=args.jit_compile, chunk_items=args.chunk_items,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
