"""The SavedModel for TF Serving: signatures vs the Python model, as TF Serving's own tool loads it."""

import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from input_pipeline import pipeline
from input_pipeline.datasets import load_dataset
from logs import write_interaction_log
from serving import export
from tf_autosam import main as cli
from tf_autosam.backbones import REGISTRY
from tf_autosam.config import preset
from tf_autosam.models import build_recommender, recommender_optimizer
from tf_autosam.training import load_best_model

TINY_FLAGS = ["--epochs=2", "--max_len=8", "--hidden_size=16", "--num_blocks=1", "--num_heads=2", "--ffn_size=16",
              "--batch_size=64", "--eval_batch_size=64", "--verbose=0", "--sampler_warmup_epochs=0"]


@pytest.fixture(scope="module")
def tiny_log(tmp_path_factory):
    """(folder, log CSV, prepared data) of 60 users x 40 items."""
    folder = tmp_path_factory.mktemp("export")
    log = write_interaction_log(folder / "log.csv", users=60, items=40, seed=0, max_length=16)
    return folder, log, load_dataset("csv", data_path=log, data_dir=folder / "cache", log=lambda _: None)


@pytest.fixture(scope="module")
def trained(tiny_log):
    """An AutoSAM run on the tiny log, exported by the main job itself."""
    folder, log, data = tiny_log
    run_dir = folder / "run"
    args = ["--dataset=csv", f"--data_path={log}", f"--data_dir={folder / 'cache'}", f"--run_dir={run_dir}", *TINY_FLAGS]
    assert cli.main(args) == 0
    return run_dir, data


def python_top_k(model, data, histories, k):
    """Top-k raw ids from the trained Keras model, the whole history masked, computed without the export."""
    max_len = model.backbone.max_len
    windows = np.zeros((len(histories), max_len), np.int32)
    for row, history in enumerate(histories):
        ids = [data.item_id(raw) for raw in history][-max_len:]
        windows[row, max_len - len(ids):] = ids
    scores = model(tf.constant(windows)).numpy()
    scores[:, 0] = -np.inf
    for row, history in enumerate(histories):
        scores[row, [data.item_id(raw) for raw in history]] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[data.item_vocab[item] for item in row] for row in top], np.take_along_axis(scores, top, axis=1)


def serve_version(version_dir, signature="serving_default", **inputs):
    loaded = tf.saved_model.load(str(version_dir))
    return {name: value.numpy() for name, value in loaded.signatures[signature](**inputs).items()}


def serve(run_dir, signature="serving_default", **inputs):
    """The main job's own export (version 1)."""
    return serve_version(run_dir / "export" / "autosam" / "1", signature, **inputs)


def test_the_main_job_exports_version_1_with_server_configs(trained):
    run_dir, _ = trained
    base = run_dir / "export"
    assert sorted(path.name for path in base.iterdir()) == ["autosam", "batching.config", "models.config"]
    assert (base / "autosam" / "1" / "saved_model.pb").exists()
    assert (base / "autosam" / "1" / "assets" / "items.vocab").exists()
    [entry] = models_config(base).model_config_list.config
    assert (entry.name, entry.base_path, entry.model_platform) == ("autosam", str((base / "autosam").resolve()), "tensorflow")
    assert entry.model_version_policy.latest.num_versions == 2  # the previous version stays servable, as locally


def models_config(base: pathlib.Path) -> model_server_config_pb2.ModelServerConfig:
    """models.config parsed as tensorflow_model_server parses it."""
    return text_format.Parse((base / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())


def test_every_model_exported_into_one_base_stays_in_models_config(trained, tmp_path):
    run_dir, data = trained
    for name in ("autosam", "second", "autosam"):
        export.export_run(run_dir, tmp_path, name, data=data, log=lambda _: None)
    entries = models_config(tmp_path).model_config_list.config
    assert [(entry.name, entry.base_path) for entry in entries] == [
        ("autosam", str((tmp_path / "autosam").resolve())), ("second", str((tmp_path / "second").resolve()))]
    assert sorted(path.name for path in (tmp_path / "autosam").iterdir()) == ["1", "2"]


def test_top_k_matches_the_python_model_with_history_excluded(trained):
    run_dir, data = trained
    histories = [["item-1", "item-4", "item-7"], ["item-3", "item-6", "item-9", "item-12", "item-15"]]
    model = load_best_model(run_dir, data, inference_mode="deterministic")
    expected_ids, expected_scores = python_top_k(model, data, histories, k=10)
    padded = tf.constant([histories[0] + ["", ""], histories[1]])
    out = serve(run_dir, history=padded)
    assert [[raw.decode() for raw in row] for row in out["item_ids"]] == expected_ids
    np.testing.assert_allclose(out["scores"], expected_scores, rtol=1e-4, atol=1e-5)
    assert not out["fallback"].any() and out["unknown_items"].tolist() == [0, 0]
    again = serve(run_dir, history=padded)
    np.testing.assert_array_equal(again["item_ids"], out["item_ids"])  # deterministic sampler


def test_unknown_ids_are_ignored_and_counted_and_empty_histories_fall_back_to_popularity(trained):
    run_dir, data = trained
    out = serve(run_dir, history=tf.constant([["item-1", "nope", "item-4"], ["nope", "also-not", ""]]))
    assert out["unknown_items"].tolist() == [1, 2] and out["fallback"].tolist() == [False, True]
    assert out["kept"][0, 1] == False and out["keep_probability"][0, 1] == 0.0  # noqa: E712
    counts = np.bincount(np.concatenate(data.train_sequences()), minlength=data.num_items + 1)
    popular = [data.item_vocab[item] for item in np.argsort(-counts[1:], kind="stable")[:10] + 1]
    assert [raw.decode() for raw in out["item_ids"][1]] == popular
    clean = serve(run_dir, history=tf.constant([["item-1", "item-4"]]))
    np.testing.assert_array_equal(clean["item_ids"][0], out["item_ids"][0])


def test_only_the_newest_max_len_known_items_are_read(trained):
    run_dir, _ = trained
    recent = [f"item-{i}" for i in range(10, 18)]  # max_len = 8
    older = (["item-1", "item-2", "item-3"], ["item-30", "item-31", "item-32"])
    candidates = tf.constant([[f"item-{i}" for i in range(1, 41)]])
    a, b = (serve(run_dir, "score_candidates", history=tf.constant([items + recent]), candidates=candidates) for items in older)
    np.testing.assert_array_equal(a["scores"], b["scores"])
    served = serve(run_dir, history=tf.constant([older[0] + recent]))
    assert not served["kept"][0, :3].any() and served["keep_probability"][0, :3].tolist() == [0.0, 0.0, 0.0]
    assert (served["keep_probability"][0, 3:] > 0).all()


def test_items_older_than_the_window_are_excluded_too(trained):
    run_dir, data = trained
    recent = [f"item-{i}" for i in range(10, 18)]  # max_len = 8
    best = [raw.decode() for raw in serve(run_dir, history=tf.constant([recent]))["item_ids"][0, :2]]
    out = serve(run_dir, history=tf.constant([best + recent]))  # the same window, with its top two read before it
    assert not set(best) & {raw.decode() for raw in out["item_ids"][0]}
    model = load_best_model(run_dir, data, inference_mode="deterministic")
    assert [raw.decode() for raw in out["item_ids"][0]] == python_top_k(model, data, [best + recent], k=10)[0][0]


def test_recommend_k_and_candidate_scores_agree_with_the_default_signature(trained):
    run_dir, _ = trained
    history = tf.constant([["item-5", "item-8", "item-11"]])
    top = serve(run_dir, history=history)
    three = serve(run_dir, "recommend_k", history=history, k=tf.constant(3))
    np.testing.assert_array_equal(three["item_ids"], top["item_ids"][:, :3])
    scored = serve(run_dir, "score_candidates", history=history,
                   candidates=tf.constant([list(top["item_ids"][0, :4]) + [b"nope"]]))
    np.testing.assert_allclose(scored["scores"][0, :4], top["scores"][0, :4], rtol=1e-5)
    assert scored["known"].tolist() == [[True, True, True, True, False]] and scored["scores"][0, 4] == 0.0
    with pytest.raises(tf.errors.InvalidArgumentError, match="k must be at least 1"):
        serve(run_dir, "recommend_k", history=history, k=tf.constant(0))


def test_saved_model_cli_shows_the_signatures_and_runs_like_python(trained):
    run_dir, _ = trained
    directory = run_dir / "export" / "autosam" / "1"
    tool = str(pathlib.Path(sys.executable).parent / "saved_model_cli")
    shown = subprocess.run([tool, "show", "--dir", str(directory), "--all"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    for name in ("serving_default", "recommend_k", "score_candidates", "history", "item_ids", "keep_probability"):
        assert name in shown.stdout
    ran = subprocess.run(
        [tool, "run", "--dir", str(directory), "--tag_set", "serve", "--signature_def", "serving_default",
         "--input_exprs", "history=[['item-1', 'item-4', 'item-7']]"],
        capture_output=True, text=True, timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    printed = re.search(r"Result for output key item_ids:\s*(\[\[.*?\]\])", ran.stdout, re.S).group(1)
    python = serve(run_dir, history=tf.constant([["item-1", "item-4", "item-7"]]))["item_ids"][0]
    assert re.findall(r"b'([^']*)'", printed) == [raw.decode() for raw in python]


def test_a_new_export_is_a_new_version(trained, tmp_path):
    run_dir, data = trained
    base = tmp_path / "models"
    first = export.export_run(run_dir, base, "recs", data=data, log=lambda _: None)
    second = export.export_run(run_dir, base, "recs", data=data, log=lambda _: None)
    assert (first.name, second.name) == ("1", "2")
    assert sorted(path.name for path in (base / "recs").iterdir()) == ["1", "2"]  # no temporary folder left


def test_a_catalogue_scored_in_chunks_answers_like_one_product(trained, tmp_path):
    run_dir, data = trained  # 40 items: chunks of 7 leave the last one mostly padding
    chunked = export.export_run(run_dir, tmp_path, "chunked", data=data, log=lambda _: None, chunk_items=7)
    loaded = tf.saved_model.load(str(chunked))
    assert [variable.shape.as_list() for variable in loaded.retrieval.variables if "by_chunk" in variable.name] == [[6, 7], [6, 16, 7]]
    history = tf.constant([["item-2", "item-5", "item-9", "item-13"], ["item-7", "nope", "", ""], ["nope", "", "", ""]])
    for signature, inputs in (("serving_default", {}), ("recommend_k", {"k": tf.constant(25)})):
        plain = serve(run_dir, signature, history=history, **inputs)
        out = serve_version(chunked, signature, history=history, **inputs)
        np.testing.assert_array_equal(out["item_ids"], plain["item_ids"])
        np.testing.assert_allclose(out["scores"], plain["scores"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(out["fallback"], plain["fallback"])


def test_export_command_refuses_an_empty_chunk_with_exit_2_and_writes_nothing(trained, tmp_path, capsys):
    run_dir, _ = trained
    assert export.main([f"--run_dir={run_dir}", f"--export_base={tmp_path}", "--chunk_items=0"]) == 2
    assert "serving_chunk_items must be positive, got 0" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_xla_compiled_export_answers_like_the_plain_one(trained, tmp_path):
    run_dir, data = trained
    compiled = export.export_run(run_dir, tmp_path, "xla", data=data, log=lambda _: None, jit_compile=True)
    history = tf.constant([["item-2", "item-5", "item-9", "item-13"], ["item-7", "nope", "", ""]])
    plain = serve(run_dir, history=history)
    out = serve_version(compiled, history=history)
    np.testing.assert_array_equal(out["item_ids"], plain["item_ids"])
    np.testing.assert_allclose(out["scores"], plain["scores"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["kept"], plain["kept"])
    np.testing.assert_allclose(out["keep_probability"], plain["keep_probability"], atol=1e-6)


@pytest.mark.parametrize("backbone", sorted(REGISTRY))
def test_every_backbone_serves_its_keras_top_k(backbone, tiny_log, tmp_path):
    """The backbone contract's export round trip (the plain model: the sampler's export is tested above)."""
    _, _, data = tiny_log
    config = preset(backbone).replace(model="sasrec", max_len=8, hidden_size=16, gru_size=16, num_blocks=1, num_heads=2, ffn_size=16)
    model = build_recommender(config, data.num_items)
    model.compile(optimizer=recommender_optimizer(config))
    windows = pipeline.training_windows(data.train_sequences(), config.max_len, config.window_stride)
    model.fit(pipeline.training_dataset(windows, 64, config.seed), epochs=2, verbose=0)
    version = export.export_model(model, data, config, tmp_path)
    histories = [["item-1", "item-4", "item-7"], ["item-3", "item-6", "item-9", "item-12", "item-15"]]
    expected_ids, expected_scores = python_top_k(model, data, histories, k=10)
    padded = tf.constant([histories[0] + ["", ""], histories[1]])
    out = serve_version(version, history=padded)
    assert [[raw.decode() for raw in row] for row in out["item_ids"]] == expected_ids
    np.testing.assert_allclose(out["scores"], expected_scores, rtol=1e-4, atol=1e-5)
    compiled = export.export_model(model, data, config, tmp_path, jit_compile=True)
    out = serve_version(compiled, history=padded)
    assert [[raw.decode() for raw in row] for row in out["item_ids"]] == expected_ids
