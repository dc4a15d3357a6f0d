"""Synthetic raw files: the exact published layouts, realistic skew, reproducible bytes, deliberately broken copies."""

from __future__ import annotations

import collections
import csv
import datetime
import gzip
import io
import json
import re
import statistics
import zipfile
from dataclasses import dataclass
from typing import Callable

import pytest

from input_pipeline import synthetic
from input_pipeline.synthetic import file_name, insert_line, truncate_file, write_raw_file

SMALL_ROWS = 2_000
SKEW_ROWS = 20_000


@dataclass(frozen=True)
class Expected:
    """What a reader of the real file relies on: columns in order, which are user/item/time, and the time's range."""

    columns: tuple[str, ...]
    user: str
    item: str
    time: str
    parse_time: Callable[[object], datetime.datetime]
    first: datetime.datetime
    last: datetime.datetime
    header: bool = False
    json: bool = False


def utc(*parts: int) -> datetime.datetime:
    return datetime.datetime(*parts, tzinfo=datetime.timezone.utc)


def from_seconds(value: object) -> datetime.datetime:
    assert re.fullmatch(r"\d+", str(value)), value
    return datetime.datetime.fromtimestamp(int(value), datetime.timezone.utc)


def from_millis(value: object) -> datetime.datetime:
    assert isinstance(value, int) and value > 10**11, f"not milliseconds: {value}"
    return datetime.datetime.fromtimestamp(value / 1000, datetime.timezone.utc)


def from_month_day(value: object) -> datetime.datetime:
    assert str(value) == str(int(str(value))), f"mmdd with a leading zero: {value}"
    month, day = divmod(int(str(value)), 100)
    return utc(2014, month, day)


def from_pattern(pattern: str) -> Callable[[object], datetime.datetime]:
    return lambda value: datetime.datetime.strptime(str(value), pattern).replace(tzinfo=datetime.timezone.utc)


RATINGS_2014 = ("user", "item", "rating", "timestamp")
RATINGS_2018 = ("item", "user", "rating", "timestamp")
REVIEWS_2014 = (
    "reviewerID", "asin", "reviewerName", "helpful", "reviewText", "overall", "summary", "unixReviewTime", "reviewTime"
)
REVIEWS_2018 = (
    "overall", "verified", "reviewTime", "reviewerID", "asin", "reviewerName", "reviewText", "summary", "unixReviewTime"
)
REVIEWS_2023 = (
    "rating", "title", "text", "images", "asin", "parent_asin",
    "user_id", "timestamp", "helpful_vote", "verified_purchase",
)

EXPECTED = {
    "tmall": Expected(
        ("user_id", "item_id", "cat_id", "seller_id", "brand_id", "time_stamp", "action_type"),
        "user_id", "item_id", "time_stamp", from_month_day, utc(2014, 5, 11), utc(2014, 11, 12), header=True,
    ),
    "alipay": Expected(
        ("use_ID", "sel_ID", "ite_ID", "cat_ID", "act_ID", "time"),
        "use_ID", "ite_ID", "time", from_pattern("%Y%m%d"), utc(2015, 7, 1), utc(2015, 11, 30), header=True,
    ),
    "yelp": Expected(
        ("review_id", "user_id", "business_id", "stars", "useful", "funny", "cool", "text", "date"),
        "user_id", "business_id", "date", from_pattern("%Y-%m-%d %H:%M:%S"),
        utc(2005, 1, 1), utc(2021, 12, 31, 23, 59, 59), json=True,
    ),
    "amazon_ratings_2014": Expected(
        RATINGS_2014, "user", "item", "timestamp", from_seconds, utc(1996, 5, 1), utc(2014, 7, 31)
    ),
    "amazon_ratings_2018": Expected(
        RATINGS_2018, "user", "item", "timestamp", from_seconds, utc(1996, 5, 1), utc(2018, 10, 31)
    ),
    "amazon_reviews_2014": Expected(
        REVIEWS_2014, "reviewerID", "asin", "unixReviewTime", from_seconds, utc(1996, 5, 1), utc(2014, 7, 31),
        json=True,
    ),
    "amazon_reviews_2018": Expected(
        REVIEWS_2018, "reviewerID", "asin", "unixReviewTime", from_seconds, utc(1996, 5, 1), utc(2018, 10, 31),
        json=True,
    ),
    "amazon_reviews_2023": Expected(
        REVIEWS_2023, "user_id", "asin", "timestamp", from_millis, utc(1996, 5, 1), utc(2023, 9, 30), json=True
    ),
}
ALL_LAYOUTS = sorted(EXPECTED)


def read_records(path, layout: str) -> list[dict]:
    """Every data row of a plain file as a dict, checking the header line or the key order on the way."""
    expected = EXPECTED[layout]
    text = path.read_text(encoding="utf-8")
    if expected.json:
        lines = text.split("\n")
        assert lines[-1] == "", "the last line must end with a newline"
        records = [json.loads(line) for line in lines[:-1]]
        for record in records:
            assert tuple(record) == expected.columns
        return records
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if expected.header:
        assert text.split("\n", 1)[0] == ",".join(expected.columns)
        rows = rows[1:]
    for row in rows:
        assert len(row) == len(expected.columns), row
    return [dict(zip(expected.columns, row)) for row in rows]


def runs(values: list) -> list:
    """Values with consecutive repeats collapsed."""
    return [value for index, value in enumerate(values) if index == 0 or values[index - 1] != value]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict[str, list[dict]]:
    """Each layout written once at SMALL_ROWS rows with seed 0, parsed."""
    folder = tmp_path_factory.mktemp("small")
    return {layout: read_records(write_raw_file(layout, folder, num_rows=SMALL_ROWS), layout) for layout in ALL_LAYOUTS}


def test_layout_table_covers_exactly_the_published_layouts():
    assert sorted(synthetic.LAYOUTS) == ALL_LAYOUTS


def test_file_names_are_the_published_ones():
    assert file_name("tmall") == "user_log_format1.csv"
    assert file_name("alipay") == "ijcai2016_taobao.csv"
    assert file_name("yelp") == "yelp_academic_dataset_review.json"
    assert file_name("amazon_ratings_2014", "Books") == "ratings_Books.csv"
    assert file_name("amazon_ratings_2018", "Books") == "Books.csv"
    assert file_name("amazon_reviews_2014", "Books") == "reviews_Books_5.json"
    assert file_name("amazon_reviews_2018", "Books") == "Books.json"
    assert file_name("amazon_reviews_2023", "Books") == "Books.jsonl"


@pytest.mark.parametrize("layout", ALL_LAYOUTS)
def test_exactly_the_requested_rows_with_the_exact_header_or_keys(small, layout):
    assert len(small[layout]) == SMALL_ROWS


@pytest.mark.parametrize("layout", ALL_LAYOUTS)
def test_timestamps_are_valid_dates_in_the_datasets_range(small, layout):
    expected = EXPECTED[layout]
    moments = [expected.parse_time(record[expected.time]) for record in small[layout]]
    assert expected.first <= min(moments) and max(moments) <= expected.last


@pytest.mark.parametrize("layout", ["amazon_reviews_2014", "amazon_reviews_2018"])
def test_amazon_review_time_text_matches_the_unix_time(small, layout):
    for record in small[layout]:
        day = from_seconds(record["unixReviewTime"])
        assert record["reviewTime"] == f"{day.month:02d} {day.day}, {day.year}"
        assert day.hour == day.minute == day.second == 0


@pytest.mark.parametrize("layout", ALL_LAYOUTS)
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, layout):
    seeds = {"first": 0, "again": 0, "other": 1}
    paths = [write_raw_file(layout, tmp_path / name, num_rows=500, seed=seed) for name, seed in seeds.items()]
    first, again, other = (path.read_bytes() for path in paths)
    assert first == again
    assert first != other


@pytest.mark.parametrize("layout", ALL_LAYOUTS)
def test_item_popularity_is_skewed(tmp_path, layout):
    expected = EXPECTED[layout]
    records = read_records(write_raw_file(layout, tmp_path, num_rows=SKEW_ROWS), layout)
    counts = sorted(collections.Counter(record[expected.item] for record in records).values(), reverse=True)
    top = counts[: max(1, len(counts) // 100)]
    assert sum(top) > 0.10 * SKEW_ROWS


@pytest.mark.parametrize("layout", ALL_LAYOUTS)
def test_each_users_rows_are_contiguous_but_not_in_time_order(small, layout):
    expected = EXPECTED[layout]
    users = [record[expected.user] for record in small[layout]]
    assert len(runs(users)) == len(set(users))
    assert min(collections.Counter(users).values()) >= 3
    moments = collections.defaultdict(list)
    for record in small[layout]:
        moments[record[expected.user]].append(expected.parse_time(record[expected.time]))
    assert any(times != sorted(times) for times in moments.values())


def test_user_activity_is_heavy_tailed(tmp_path):
    records = read_records(write_raw_file("tmall", tmp_path, num_rows=SKEW_ROWS), "tmall")
    per_user = collections.Counter(record["user_id"] for record in records).values()
    assert max(per_user) >= 5 * statistics.median(per_user)


def test_explicit_user_and_item_counts_are_respected(tmp_path):
    path = write_raw_file("tmall", tmp_path, num_rows=3_000, num_users=50, num_items=30)
    records = read_records(path, "tmall")
    assert len({record["user_id"] for record in records}) == 50
    assert {int(record["item_id"]) for record in records} <= set(range(1, 31))


def test_tmall_values_look_like_the_real_log(tmp_path):
    records = read_records(write_raw_file("tmall", tmp_path, num_rows=SKEW_ROWS), "tmall")
    actions = collections.Counter(record["action_type"] for record in records)
    for action, share in (("0", 0.85), ("1", 0.03), ("2", 0.06), ("3", 0.06)):
        assert actions[action] / SKEW_ROWS == pytest.approx(share, abs=0.015)
    missing_brand = sum(record["brand_id"] == "" for record in records) / SKEW_ROWS
    assert 0.003 < missing_brand < 0.02
    for record in records:
        assert all(re.fullmatch(r"\d+", record[column]) for column in EXPECTED["tmall"].columns if column != "brand_id")
    assert_fixed_per_item(records, "item_id", ("cat_id", "seller_id"))


def test_alipay_values_look_like_the_real_log(tmp_path):
    records = read_records(write_raw_file("alipay", tmp_path, num_rows=SKEW_ROWS), "alipay")
    buys = sum(record["act_ID"] == "1" for record in records) / SKEW_ROWS
    assert buys == pytest.approx(0.05, abs=0.015)
    assert {record["act_ID"] for record in records} == {"0", "1"}
    assert all(re.fullmatch(r"\d+", value) for record in records for value in record.values())
    assert_fixed_per_item(records, "ite_ID", ("cat_ID", "sel_ID"))


def assert_fixed_per_item(records: list[dict], item: str, attributes: tuple[str, ...]) -> None:
    """Each item always carries the same attribute values."""
    seen: dict[str, tuple] = {}
    for record in records:
        values = tuple(record[name] for name in attributes)
        assert seen.setdefault(record[item], values) == values


ASIN = r"B0[A-Z0-9]{8}|\d{10}"
AMAZON_USER = r"A[A-Z0-9]{13}"
YELP_ID = r"[A-Za-z0-9_-]{22}"


@pytest.mark.parametrize(
    "layout, patterns",
    [
        ("yelp", {"review_id": YELP_ID, "user_id": YELP_ID, "business_id": YELP_ID}),
        ("amazon_ratings_2014", {"user": AMAZON_USER, "item": ASIN, "rating": r"[1-5]\.0"}),
        ("amazon_ratings_2018", {"user": AMAZON_USER, "item": ASIN, "rating": r"[1-5]\.0"}),
        ("amazon_reviews_2014", {"reviewerID": AMAZON_USER, "asin": ASIN}),
        ("amazon_reviews_2018", {"reviewerID": AMAZON_USER, "asin": ASIN}),
        ("amazon_reviews_2023", {"user_id": r"A[A-Z0-9]{27}", "asin": ASIN, "parent_asin": ASIN}),
    ],
)
def test_ids_and_ratings_have_the_published_shapes(small, layout, patterns):
    for record in small[layout]:
        for key, pattern in patterns.items():
            assert re.fullmatch(pattern, record[key]), (key, record[key])


def test_json_values_have_the_published_types(small):
    for record in small["yelp"]:
        assert record["stars"] in (1.0, 2.0, 3.0, 4.0, 5.0) and isinstance(record["stars"], float)
        assert all(isinstance(record[key], int) and record[key] >= 0 for key in ("useful", "funny", "cool"))
    for record in small["amazon_reviews_2014"]:
        assert isinstance(record["overall"], float)
        helpful, asked = record["helpful"]
        assert 0 <= helpful <= asked
    for record in small["amazon_reviews_2018"]:
        assert isinstance(record["verified"], bool) and isinstance(record["overall"], float)
    for record in small["amazon_reviews_2023"]:
        assert record["images"] == [] and isinstance(record["rating"], float)
        assert isinstance(record["verified_purchase"], bool) and isinstance(record["helpful_vote"], int)


def test_review_ids_are_unique(small):
    review_ids = [record["review_id"] for record in small["yelp"]]
    assert len(set(review_ids)) == len(review_ids)


def test_texts_carry_the_characters_that_trip_parsers(small, tmp_path):
    texts = [record["text"] for record in small["yelp"]]
    assert any("," in text for text in texts)
    assert any('"' in text for text in texts)
    assert any("\n" in text for text in texts)
    assert any(not text.isascii() for text in texts)


@pytest.mark.parametrize(
    "layout, archive, member",
    [
        ("tmall", "data_format1.zip", "data_format1/user_log_format1.csv"),
        ("yelp", "yelp_academic_dataset_review.json.zip", "yelp_academic_dataset_review.json"),
        ("amazon_ratings_2014", "ratings_Beauty.csv.zip", "ratings_Beauty.csv"),
    ],
)
def test_compressed_copies_hold_the_plain_content(tmp_path, layout, archive, member):
    plain = write_raw_file(layout, tmp_path / "plain", num_rows=SMALL_ROWS).read_bytes()
    gz_path = write_raw_file(layout, tmp_path / "gz", num_rows=SMALL_ROWS, compression="gz")
    assert gz_path.name == member.rsplit("/", 1)[-1] + ".gz"
    assert gzip.decompress(gz_path.read_bytes()) == plain
    zip_path = write_raw_file(layout, tmp_path / "zip", num_rows=SMALL_ROWS, compression="zip")
    assert zip_path.name == archive
    with zipfile.ZipFile(zip_path) as opened:
        assert opened.namelist() == [member]
        assert opened.read(member) == plain


def test_compressed_copies_carry_no_wall_clock_time(tmp_path):
    gz_bytes = write_raw_file("alipay", tmp_path, num_rows=300, compression="gz").read_bytes()
    assert gz_bytes[4:8] == bytes(4), "gzip header mtime must be zero for reproducible bytes"
    with zipfile.ZipFile(write_raw_file("alipay", tmp_path, num_rows=300, compression="zip")) as opened:
        assert [info.date_time for info in opened.infolist()] == [(1980, 1, 1, 0, 0, 0)]


def test_the_file_appears_whole_or_not_at_all(tmp_path):
    path = write_raw_file("tmall", tmp_path / "done", num_rows=100)
    assert [entry.name for entry in path.parent.iterdir()] == [path.name]

    def interrupt(rows: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_raw_file("tmall", tmp_path / "interrupted", num_rows=100, progress=interrupt)
    assert list((tmp_path / "interrupted").iterdir()) == []


def test_chunks_report_progress_and_keep_users_contiguous_across_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "CSV_CHUNK_ROWS", 700)
    reported = []
    path = write_raw_file("tmall", tmp_path, num_rows=SMALL_ROWS, num_users=40, progress=reported.append)
    assert reported == [700, 1400, 2000]
    users = [record["user_id"] for record in read_records(path, "tmall")]
    assert len(users) == SMALL_ROWS
    assert len(runs(users)) == len(set(users)) == 40


def test_truncate_file_cuts_inside_a_line(tmp_path):
    path = write_raw_file("tmall", tmp_path, num_rows=SMALL_ROWS)
    original = path.read_bytes()
    truncate_file(path, 0.5)
    cut = path.read_bytes()
    assert original.startswith(cut)
    assert abs(len(cut) - len(original) / 2) < 100
    assert not cut.endswith(b"\n")
    assert original[len(cut)] != ord("\n")


def test_truncate_file_never_splits_a_character_or_cuts_only_newlines(tmp_path):
    path = tmp_path / "text.txt"
    path.write_bytes("ab\néééé\n".encode("utf-8"))
    truncate_file(path, 0.5)
    assert path.read_bytes().decode("utf-8") == "ab\né"
    path.write_bytes(b"\n\n\n\n")
    with pytest.raises(ValueError):
        truncate_file(path)


def test_insert_line_replaces_exactly_one_line(tmp_path):
    path = write_raw_file("tmall", tmp_path, num_rows=50)
    before = path.read_text(encoding="utf-8").split("\n")
    insert_line(path, 5, "1,2,oops")
    after = path.read_text(encoding="utf-8").split("\n")
    assert len(after) == len(before)
    assert [index for index, (old, new) in enumerate(zip(before, after)) if old != new] == [4]
    assert after[4] == "1,2,oops"
    assert after[-1] == ""
    with pytest.raises(ValueError):
        insert_line(path, len(before), "past the end")
    with pytest.raises(ValueError):
        insert_line(path, 2, "two\nlines")


def test_command_line_writes_the_file_and_reports_speed(tmp_path, capsys):
    assert synthetic.main(["--layout=alipay", "--rows=300", f"--out={tmp_path}", "--seed=3"]) == 0
    report = capsys.readouterr().out
    path = tmp_path / "ijcai2016_taobao.csv"
    assert str(path) in report and "300 rows" in report and "rows/s" in report
    assert path.read_bytes() == write_raw_file("alipay", tmp_path / "api", num_rows=300, seed=3).read_bytes()
    assert synthetic.main(["--layout=alipay", "--rows=0", f"--out={tmp_path}"]) == 2


def test_bad_requests_are_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="unknown layout"):
        write_raw_file("netflix", tmp_path, num_rows=10)
    with pytest.raises(ValueError, match="num_users"):
        write_raw_file("tmall", tmp_path, num_rows=10, num_users=11)
    with pytest.raises(ValueError, match="compression"):
        write_raw_file("tmall", tmp_path, num_rows=10, compression="bz2")
    assert list(tmp_path.iterdir()) == []
