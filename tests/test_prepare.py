"""Preparation (order, ids, split, filters), its save/load, the dataset cache and atomic writers."""

import json
import os
import pathlib

import numpy as np
import pytest

from input_pipeline import cache, datasets
from input_pipeline import prepare as prepare_module
from input_pipeline.errors import DataError
from input_pipeline.prepare import PreparedData, load_prepared, prepare, save_prepared
from input_pipeline.schema import PADDING_ID, Interactions


def log_of(rows):
    """Interactions from (user, item, timestamp) tuples, line numbers from 2 as under a header."""
    users, items, timestamps = zip(*rows)
    return Interactions.from_rows(users, items, timestamps, range(2, 2 + len(rows)))


def write_csv(path: pathlib.Path, rows) -> pathlib.Path:
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows), encoding="utf-8")
    return path


# Two interleaved users; u1 has a tie at 881250950 (a before c in the file), u2 a tie at 5.
INTERLEAVED = [
    ("u1", "a", 881250950),
    ("u2", "x", 5),
    ("u1", "b", 881250949),
    ("u1", "c", 881250950),
    ("u2", "y", 5),
    ("u1", "d", 881250951),
    ("u2", "z", 4),
]


def assert_same_data(left: PreparedData, right: PreparedData) -> None:
    for name in ("items", "timestamps", "offsets"):
        np.testing.assert_array_equal(getattr(left, name), getattr(right, name))
        assert getattr(left, name).dtype == getattr(right, name).dtype
    assert (left.user_vocab, left.item_vocab, left.report) == (right.user_vocab, right.item_vocab, right.report)


# --- order, ids and the leave-one-out split ---------------------------------


def test_sequences_are_stably_sorted_by_exact_timestamp():
    assert np.float32(881250949) == np.float32(881250950)  # why timestamps must stay int64
    data = prepare(log_of(INTERLEAVED))
    # items by first appearance in the chronological log: z(4) x(5) y(5) b a c d
    assert data.item_vocab == ["", "z", "x", "y", "b", "a", "c", "d"]
    assert data.user_vocab == ["u1", "u2"]
    np.testing.assert_array_equal(data.offsets, [0, 4, 7])
    np.testing.assert_array_equal(data.sequence(0), [4, 5, 6, 7])  # b a c d
    np.testing.assert_array_equal(data.sequence(1), [1, 2, 3])  # z x y
    assert data.items.dtype == np.int32 and data.timestamps.dtype == np.int64
    assert data.timestamps.tolist() == [881250949, 881250950, 881250950, 881250951, 4, 5, 5]


def test_leave_one_out_split():
    data = prepare(log_of(INTERLEAVED))
    assert [s.tolist() for s in data.train_sequences()] == [[4, 5], [1]]
    histories, targets = data.validation_examples()
    assert [h.tolist() for h in histories] == [[4, 5], [1]]
    assert targets.tolist() == [6, 2] and targets.dtype == np.int32
    histories, targets = data.test_examples()
    assert [h.tolist() for h in histories] == [[4, 5, 6], [1, 2]]
    assert targets.tolist() == [7, 3]


def test_raw_ids_round_trip_and_zero_is_padding():
    rows = [("user, one", "ítem 1", 1), ("user, one", "#2", 2), ("user, one", " 3", 3), ("7", "#2", 1), ("7", "x", 2), ("7", "ítem 1", 3)]
    data = prepare(log_of(rows))
    assert data.item_vocab[PADDING_ID] == "" and PADDING_ID not in data.items
    assert data.num_items == 4 and data.num_users == 2
    for raw in ["ítem 1", "#2", " 3", "x"]:
        assert data.item_vocab[data.item_id(raw)] == raw
    for user, raw in enumerate(["user, one", "7"]):
        assert data.user_index(raw) == user and data.user_vocab[user] == raw
    assert [data.item_vocab[i] for i in data.sequence(1)] == ["#2", "x", "ítem 1"]
    with pytest.raises(KeyError):
        data.item_id("")


def test_float_timestamps_are_kept_as_float64():
    data = prepare(log_of([("u", "a", 2.5), ("u", "b", 1.25), ("u", "c", 2.0)]))
    assert data.timestamps.dtype == np.float64
    assert data.timestamps.tolist() == [1.25, 2.0, 2.5]
    assert [data.item_vocab[i] for i in data.sequence(0)] == ["b", "c", "a"]


# --- dedupe, k-core, short users ----------------------------------------------


def test_dedupe_drops_exact_repeats_only_and_can_be_turned_off():
    rows = [("u", "a", 1), ("u", "b", 2), ("u", "a", 1), ("u", "a", 3), ("v", "a", 1), ("v", "b", 2), ("v", "c", 3)]
    data = prepare(log_of(rows))
    assert data.report.duplicates_removed == 1
    assert [data.item_vocab[i] for i in data.sequence(0)] == ["a", "b", "a"]  # (u, a, 3) is not a repeat
    kept = prepare(log_of(rows), dedupe=False)
    assert kept.report.duplicates_removed == 0
    assert [kept.item_vocab[i] for i in kept.sequence(0)] == ["a", "a", "b", "a"]


def test_k_core_is_iterative():
    # A, B, C x i1..i3 is the 3-core. D (2 rows) and i5 (1 row) go first; E then has 2 rows and
    # goes; i4 is then left with A and B only and goes. A single pass would keep E and i4.
    rows = [(u, i, 0) for u in "ABC" for i in ("i1", "i2", "i3")]
    rows += [("A", "i4", 1), ("B", "i4", 1), ("E", "i1", 2), ("E", "i4", 3), ("E", "i5", 4), ("D", "i1", 5), ("D", "i2", 6)]
    report = prepare(log_of(rows), k_core=3).report
    assert (report.users, report.items, report.interactions) == (3, 3, 9)
    assert (report.k_core_removed_users, report.k_core_removed_interactions) == (2, 7)
    assert (report.excluded_users, report.excluded_interactions) == (0, 0)
    unfiltered = prepare(log_of(rows), k_core=0).report  # only D (2 rows) is too short
    assert (unfiltered.interactions, unfiltered.excluded_users, unfiltered.k_core_removed_interactions) == (14, 1, 0)


def test_users_with_fewer_than_three_interactions_are_excluded_and_counted():
    rows = [("keep", "a", 1), ("one", "only", 1), ("keep", "b", 2), ("two", "a", 1), ("two", "c", 2), ("keep", "a", 3)]
    data = prepare(log_of(rows), skipped_rows={"bad timestamp": 2}, source="test log")
    report = data.report
    assert data.user_vocab == ["keep"] and data.item_vocab == ["", "a", "b"]  # "only" and "c" left with their users
    assert (report.excluded_users, report.excluded_interactions) == (2, 3)
    assert (report.rows, report.users, report.items, report.interactions) == (6, 1, 2, 3)
    assert report.skipped_rows == {"bad timestamp": 2}
    assert report.format() == (
        "Prepared test log: 6 rows read (2 bad rows skipped: bad timestamp: 2); 0 exact duplicates removed; "
        "no k-core filter; 2 users with fewer than 3 interactions excluded (3 interactions). "
        "Result: 1 users, 2 items, 3 interactions (3.0 per user)."
    )
    assert str(report) == report.format()


def test_nothing_left_is_a_data_error():
    with pytest.raises(DataError, match="^tiny: no user has at least 3 interactions"):
        prepare(log_of([("u", "a", 1), ("u", "b", 2)]), source="tiny")


# --- save / load ----------------------------------------------------------------


def test_save_load_round_trip_and_vocabulary_files(tmp_path):
    data = prepare(log_of(INTERLEAVED), source="hand-made")
    save_prepared(data, tmp_path / "prepared")
    assert sorted(os.listdir(tmp_path)) == ["prepared"]  # no temporary folder left
    assert (tmp_path / "prepared" / "items.vocab").read_text() == "z\nx\ny\nb\na\nc\nd\n"  # line k = item k + 1
    assert (tmp_path / "prepared" / "users.vocab").read_text() == "u1\nu2\n"
    assert json.loads((tmp_path / "prepared" / "report.json").read_text())["interactions"] == 7
    assert_same_data(load_prepared(tmp_path / "prepared"), data)


def test_load_rejects_files_that_disagree(tmp_path):
    save_prepared(prepare(log_of(INTERLEAVED)), tmp_path / "p")
    (tmp_path / "p" / "users.vocab").write_text("u1\n")
    with pytest.raises(DataError, match="user vocabulary size differs"):
        load_prepared(tmp_path / "p")


def test_a_failing_save_leaves_nothing(tmp_path, monkeypatch):
    data = prepare(log_of(INTERLEAVED))

    def broken(report):
        raise OSError("disk full")

    monkeypatch.setattr(prepare_module.PreparationReport, "to_dict", broken)
    with pytest.raises(OSError, match="disk full"):
        save_prepared(data, tmp_path / "prepared")
    assert os.listdir(tmp_path) == []


# --- load_dataset and its cache -------------------------------------------------

ROWS = [("u1", "a", 3), ("u1", "b", 1), ("u2", "a", 1), ("u1", "c", 2), ("u2", "b", 2), ("u2", "c", 2), ("u3", "a", 9)]


def test_csv_dataset_is_prepared_once_then_reused(tmp_path, monkeypatch):
    csv_path = write_csv(tmp_path / "log.csv", ROWS)
    messages = []
    first = datasets.load_dataset("csv", data_path=csv_path, data_dir=tmp_path / "cache", log=messages.append)
    assert first.user_vocab == ["u1", "u2"] and first.report.excluded_users == 1
    (folder,) = (tmp_path / "cache" / "prepared").iterdir()
    assert folder.name.startswith("csv-")
    assert messages == [f"prepared data saved to {folder}", first.report.format()]
    assert first.report.source == f"CSV log {csv_path.resolve()}"

    def must_not_run(*args, **kwargs):
        raise AssertionError("parsed or prepared again")

    monkeypatch.setattr(datasets, "csv_log_chunks", must_not_run)
    monkeypatch.setattr(datasets, "prepare", must_not_run)
    messages.clear()
    second = datasets.load_dataset("csv", data_path=csv_path, data_dir=tmp_path / "cache", log=messages.append)
    assert messages == [f"reusing prepared data at {folder}", first.report.format()]
    assert_same_data(second, first)


def test_new_content_or_options_prepare_afresh(tmp_path):
    csv_path = write_csv(tmp_path / "log.csv", ROWS)
    cache_dir = tmp_path / "cache"
    quiet = dict(data_dir=cache_dir, log=lambda _: None)
    datasets.load_dataset("csv", data_path=csv_path, **quiet)
    datasets.load_dataset("csv", data_path=csv_path, dedupe=False, **quiet)
    datasets.load_dataset("csv", data_path=csv_path, k_core=2, **quiet)
    write_csv(csv_path, ROWS + [("u3", "b", 10), ("u3", "c", 11)])
    grown = datasets.load_dataset("csv", data_path=csv_path, **quiet)
    assert grown.user_vocab == ["u1", "u2", "u3"]
    assert len(list((cache_dir / "prepared").iterdir())) == 4


def test_skip_bad_rows_reaches_the_report(tmp_path):
    csv_path = tmp_path / "log.csv"
    csv_path.write_text("user_id,item_id,timestamp\nu,a,1\nu,b,x\nu,b,2\nu,c\nu,c,3\n")
    with pytest.raises(DataError, match=":3: timestamp 'x' is not a number"):
        datasets.load_dataset("csv", data_path=csv_path, data_dir=tmp_path / "cache", log=lambda _: None)
    assert not (tmp_path / "cache" / "prepared").exists()
    data = datasets.load_dataset("csv", data_path=csv_path, data_dir=tmp_path / "cache", skip_bad_rows=True, log=lambda _: None)
    assert data.report.skipped_rows == {"bad timestamp": 1, "wrong field count": 1}
    assert data.sequence(0).tolist() == [1, 2, 3]


def test_a_failing_preparation_leaves_no_prepared_folder(tmp_path, monkeypatch):
    csv_path = write_csv(tmp_path / "log.csv", ROWS)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(prepare_module.np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        datasets.load_dataset("csv", data_path=csv_path, data_dir=tmp_path / "cache", log=lambda _: None)
    assert list((tmp_path / "cache" / "prepared").iterdir()) == []


def test_ml100k_is_keyed_by_its_verified_checksum(tmp_path, monkeypatch):
    calls = []

    def fake_load(cache_dir, log):
        calls.append(cache_dir)
        return log_of(ROWS), "a test origin"

    monkeypatch.setattr(datasets.movielens, "load_ml100k", fake_load)
    data = datasets.load_dataset(data_dir=tmp_path, log=lambda _: None)
    datasets.load_dataset("ml100k", data_dir=tmp_path, log=lambda _: None)
    assert calls == [tmp_path]
    assert data.report.source == "MovieLens-100K (a test origin)"
    key = datasets.preparation_key(datasets.movielens.ML100K.sha256, dedupe=True, k_core=0, skip_bad_rows=False)
    assert [p.name for p in (tmp_path / "prepared").iterdir()] == [f"ml100k-{key}"]


def test_unknown_dataset_lists_the_known_names():
    with pytest.raises(datasets.UnknownDatasetError, match=r"^unknown dataset 'nope'; known datasets: csv, ml100k, alipay, amazon, tmall, yelp \(amazon/<category>\)$"):
        datasets.load_dataset("nope")
    assert issubclass(datasets.UnknownDatasetError, ValueError)


@pytest.mark.parametrize("name, path, problem", [("csv", None, "needs data_path"), ("ml100k", "x.csv", "takes no data_path")])
def test_data_path_must_match_the_dataset(tmp_path, name, path, problem):
    with pytest.raises(datasets.DatasetRequestError, match=problem):
        datasets.load_dataset(name, data_path=path, data_dir=tmp_path)


# --- cache folder and atomic writers ----------------------------------------------


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    env = {"TF_AUTOSAM_DATA_DIR": "/env/data", "XDG_CACHE_HOME": "/xdg"}
    assert cache.resolve_cache_dir("/flag", env) == pathlib.Path("/flag")
    assert cache.resolve_cache_dir(None, env) == pathlib.Path("/env/data")
    assert cache.resolve_cache_dir(None, {"XDG_CACHE_HOME": "/xdg"}) == pathlib.Path("/xdg/tf_autosam")
    assert cache.resolve_cache_dir(None, {}) == tmp_path / "home" / ".cache" / "tf_autosam"


def test_atomic_write_replaces_whole_files_and_cleans_up_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "metrics.json"
    cache.atomic_write_text(target, "old\n")
    cache.atomic_write_bytes(target, b"new\n")
    assert target.read_bytes() == b"new\n"

    def broken(source, destination):
        raise OSError("rename failed")

    monkeypatch.setattr(cache.os, "replace", broken)
    with pytest.raises(OSError, match="rename failed"):
        cache.atomic_write_text(target, "newer\n")
    assert target.read_text() == "new\n"
    assert os.listdir(target.parent) == ["metrics.json"]


def test_atomic_directory_appears_whole_or_not_at_all(tmp_path):
    with cache.atomic_directory(tmp_path / "done") as folder:
        (folder / "a.txt").write_text("a")
        assert not (tmp_path / "done").exists()
    assert (tmp_path / "done" / "a.txt").read_text() == "a"

    with pytest.raises(RuntimeError, match="boom"):
        with cache.atomic_directory(tmp_path / "failed") as folder:
            (folder / "a.txt").write_text("a")
            raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == ["done"]

    with pytest.raises(FileExistsError):
        with cache.atomic_directory(tmp_path / "done"):
            pass


def test_atomic_directory_reports_a_writer_that_finished_during_the_block(tmp_path, monkeypatch):
    """The other writer's folder appears between the existence check and the rename: FileExistsError, theirs kept."""
    target = tmp_path / "prepared"
    real_rename = cache.os.rename

    def finish_other_writer_first(source, destination):
        target.mkdir()
        (target / "theirs.txt").write_text("theirs")
        real_rename(source, destination)

    monkeypatch.setattr(cache.os, "rename", finish_other_writer_first)
    with pytest.raises(FileExistsError):
        with cache.atomic_directory(target) as folder:
            (folder / "ours.txt").write_text("ours")
    assert os.listdir(target) == ["theirs.txt"]
    assert os.listdir(tmp_path) == ["prepared"]
