"""The hand-downloaded datasets: generated raw files in every published layout, through the real builders.

The reference for what preparation must produce is a plain re-reading of the
same file (csv / json modules, no pyarrow, no chunks) fed to ``prepare``.
"""

import csv
import datetime
import gzip
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from input_pipeline import datasets, synthetic
from input_pipeline.errors import DataError, DataUnavailableError
from input_pipeline.prepare import prepare
from input_pipeline.schema import Interactions
from input_pipeline.sources import tmall
from tf_autosam import main as cli
from logs import read_in_blocks

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
TINY_FLAGS = ["--epochs=1", "--max_len=8", "--hidden_size=16", "--num_blocks=1", "--num_heads=2",
              "--ffn_size=16", "--batch_size=64", "--eval_batch_size=64", "--verbose=0", "--k_core=2", "--no-export"]

# layout -> (dataset name, reference reader: (user, item, timestamp) per accepted row in file order)
LAYOUTS = {
    "tmall": ("tmall", lambda row: (row["user_id"], row["item_id"], int(row["time_stamp"]))),
    "alipay": ("alipay", lambda row: (row["use_ID"], row["ite_ID"], int(row["time"]))),
    "yelp": ("yelp", lambda row: (row["user_id"], row["business_id"], int(
        datetime.datetime.fromisoformat(row["date"]).replace(tzinfo=datetime.timezone.utc).timestamp()))),
    "amazon_ratings_2014": ("amazon/beauty", lambda row: (row[0], row[1], int(row[3]))),
    "amazon_ratings_2018": ("amazon/beauty", lambda row: (row[1], row[0], int(row[3]))),
    "amazon_reviews_2014": ("amazon/beauty", lambda row: (row["reviewerID"], row["asin"], row["unixReviewTime"])),
    "amazon_reviews_2018": ("amazon/beauty", lambda row: (row["reviewerID"], row["asin"], row["unixReviewTime"])),
    "amazon_reviews_2023": ("amazon/beauty", lambda row: (row["user_id"], row["parent_asin"], row["timestamp"])),
}


def reference_rows(path: pathlib.Path, layout: str) -> Interactions:
    """Every row of a plain generated file, read the simplest possible way."""
    pick = LAYOUTS[layout][1]
    text = path.read_text(encoding="utf-8")
    if synthetic.LAYOUTS[layout].json_lines:
        rows = [pick(json.loads(line)) for line in text.splitlines() if line]
    elif synthetic.LAYOUTS[layout].header:
        rows = [pick(row) for row in csv.DictReader(text.splitlines())]
    else:
        rows = [pick(row) for row in csv.reader(text.splitlines())]
    users, items, times = zip(*rows)
    return Interactions.from_rows(users, items, times, range(len(rows)))


def assert_same_sequences(actual, expected):
    np.testing.assert_array_equal(actual.items, expected.items)
    np.testing.assert_array_equal(actual.offsets, expected.offsets)
    np.testing.assert_array_equal(actual.timestamps, expected.timestamps)
    assert actual.user_vocab == expected.user_vocab
    assert actual.item_vocab == expected.item_vocab


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_prepares_like_a_plain_rereading_of_its_file(tmp_path, layout):
    name = LAYOUTS[layout][0]
    path = synthetic.write_raw_file(layout, tmp_path / "manual", num_rows=3000, seed=3)
    data = datasets.load_dataset(name, data_dir=tmp_path / "cache", manual_dir=tmp_path / "manual", log=lambda _: None)
    expected = prepare(reference_rows(path, layout), k_core=5)
    assert_same_sequences(data, expected)
    assert data.report.k_core == 5 and data.report.rows == 3000
    again = datasets.load_dataset(name, data_dir=tmp_path / "cache", manual_dir=tmp_path / "manual", log=lambda _: None)
    assert_same_sequences(again, data)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_trains_end_to_end_through_the_cli(tmp_path, layout):
    synthetic.write_raw_file(layout, tmp_path / "manual", num_rows=1500, seed=1)
    run_dir = tmp_path / "run"
    args = [f"--dataset={LAYOUTS[layout][0]}", f"--data_dir={tmp_path / 'cache'}", f"--manual_dir={tmp_path / 'manual'}",
            f"--run_dir={run_dir}", "--model=sasrec", *TINY_FLAGS]
    assert cli.main(args) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["NDCG@10"] <= 1.0 and metrics["preparation"]["k_core"] == 2


def test_autosam_trains_on_a_tmall_file_distributed_as_the_contest_zip(tmp_path):
    path = synthetic.write_raw_file("tmall", tmp_path / "manual", num_rows=1500, seed=2, compression="zip")
    assert path.name == "data_format1.zip"
    run_dir = tmp_path / "run"
    args = ["--dataset=tmall", f"--data_dir={tmp_path / 'cache'}", f"--manual_dir={tmp_path / 'manual'}",
            f"--run_dir={run_dir}", "--model=autosam", "--sampler_warmup_epochs=0", *TINY_FLAGS]
    assert cli.main(args) == 0
    assert "keep_rate" in json.loads((run_dir / "metrics.json").read_text())


def test_action_selection_keeps_only_those_actions(tmp_path):
    path = synthetic.write_raw_file("tmall", tmp_path / "manual", num_rows=4000, seed=4)
    rows = list(csv.DictReader(path.read_text().splitlines()))
    clicks = [(r["user_id"], r["item_id"], int(r["time_stamp"])) for r in rows if r["action_type"] == "0"]
    assert 0 < len(clicks) < len(rows)
    users, items, times = zip(*clicks)
    expected = prepare(Interactions.from_rows(users, items, times, range(len(clicks))), k_core=5)
    data = datasets.load_dataset("tmall", data_dir=tmp_path / "cache", manual_dir=tmp_path / "manual",
                                 actions=frozenset({"0"}), log=lambda _: None)
    assert_same_sequences(data, expected)
    with pytest.raises(datasets.DatasetRequestError, match="subset of: 0 = click"):
        datasets.load_dataset("tmall", data_dir=tmp_path / "cache", manual_dir=tmp_path / "manual", actions=frozenset({"7"}))


def test_a_missing_file_says_where_to_get_it_without_loading_tensorflow(tmp_path):
    script = (
        "import sys\n"
        "from input_pipeline.datasets import load_dataset\n"
        "from input_pipeline.errors import DataUnavailableError\n"
        "try:\n"
        f"    load_dataset('tmall', data_dir={str(tmp_path)!r})\n"
        "except DataUnavailableError as error:\n"
        "    print(error)\n"
        "print('tensorflow loaded' if 'tensorflow' in sys.modules else 'tensorflow not loaded')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, capture_output=True, text=True, timeout=60)
    assert "https://tianchi.aliyun.com/dataset/42" in result.stdout
    assert f"user_log_format1.csv in {tmp_path}/tfds/downloads/manual/" in result.stdout
    assert result.stdout.strip().endswith("tensorflow not loaded")


def test_the_cli_exits_with_code_2_on_a_missing_file_or_category(tmp_path, capsys):
    assert cli.main(["--dataset=yelp", f"--data_dir={tmp_path}"]) == 2
    assert "yelp_academic_dataset_review.json" in capsys.readouterr().err
    assert cli.main(["--dataset=amazon", f"--data_dir={tmp_path}"]) == 2
    assert "amazon needs a category" in capsys.readouterr().err


def test_a_bad_row_names_file_and_line_and_can_be_skipped_and_counted(tmp_path):
    path = synthetic.write_raw_file("tmall", tmp_path / "manual", num_rows=2000, seed=5)
    synthetic.insert_line(path, 700, "17,18,1,1,1,not-a-day,0")
    synthetic.insert_line(path, 900, "17,18,1,1,1,829,9")
    with pytest.raises(DataError, match=r"user_log_format1.csv:700: timestamp 'not-a-day' is not a number"):
        datasets.load_dataset("tmall", data_dir=tmp_path / "cache", manual_dir=tmp_path / "manual", log=lambda _: None)
    assert not list((tmp_path / "cache" / "tfds" / "tmall").glob("*/1.*"))  # nothing a later run could reuse
    data = datasets.load_dataset("tmall", data_dir=tmp_path / "cache", manual_dir=tmp_path / "manual",
                                 skip_bad_rows=True, log=lambda _: None)
    assert data.report.skipped_rows == {"bad action": 1, "bad timestamp": 1}
    assert data.report.rows == 1998


@pytest.mark.parametrize("compression", [None, "gz"])
def test_a_truncated_file_is_an_error_and_leaves_no_dataset(tmp_path, compression):
    path = synthetic.write_raw_file("alipay", tmp_path / "manual", num_rows=3000, seed=6)
    if compression == "gz":
        data = gzip.compress(path.read_bytes())
        path.unlink()
        (tmp_path / "manual" / (path.name + ".gz")).write_bytes(data[: len(data) // 2])
        problem = "the compressed file ends early"
    else:
        synthetic.truncate_file(path)
        problem = r"ijcai2016_taobao.csv:\d+: the last line has no line break: is the file truncated\?"
    with pytest.raises(DataError, match=problem):
        datasets.load_dataset("alipay", data_dir=tmp_path / "cache", manual_dir=tmp_path / "manual", log=lambda _: None)
    assert not list((tmp_path / "cache" / "tfds" / "alipay").glob("*/1.*"))


def test_a_file_of_another_layout_is_rejected_by_its_header(tmp_path):
    path = synthetic.write_raw_file("alipay", tmp_path / "manual", num_rows=100, seed=7)
    os.rename(path, tmp_path / "manual" / "user_log_format1.csv")
    with pytest.raises(DataError, match=r"user_log_format1.csv:1: header is 'use_ID,.*not a Tmall"):
        datasets.load_dataset("tmall", data_dir=tmp_path / "cache", manual_dir=tmp_path / "manual", log=lambda _: None)


@pytest.mark.parametrize("block_bytes", [64, 1000, 1 << 20])
def test_fast_and_careful_reading_agree_whatever_the_block_size(tmp_path, block_bytes):
    path = synthetic.write_raw_file("tmall", tmp_path, num_rows=1500, seed=8)
    synthetic.insert_line(path, 40, "")
    synthetic.insert_line(path, 300, "1,2,3")
    synthetic.insert_line(path, 1200, "5,6,1,1,1,829,0")

    chunks, skipped = read_in_blocks(path, tmall.LAYOUT, block_bytes, skip_bad_rows=True)
    whole_chunks, whole_skipped = read_in_blocks(path, tmall.LAYOUT, 1 << 30, skip_bad_rows=True)
    rows, whole = Interactions.concatenate(chunks), Interactions.concatenate(whole_chunks)
    assert skipped == whole_skipped == {"wrong field count": 1}
    for column in ("user", "item", "timestamp", "line"):
        np.testing.assert_array_equal(getattr(rows, column), getattr(whole, column))
    assert len(rows) == 1498 and rows.line[-1] == 1501 and 40 not in rows.line and 300 not in rows.line


def test_missing_raw_file_error_is_a_data_unavailable_error():
    with pytest.raises(DataUnavailableError, match="ijcai2016_taobao.csv"):
        datasets.MANUAL_SOURCES["alipay"].locate(pathlib.Path("/nonexistent"))
