"""Synthetic raw interaction files in the published layouts of Tmall, Alipay, Yelp and Amazon.

The real dumps are large, licensed and slow to fetch, so tests and the scale
benchmark write look-alikes: the same file names, header lines, key order, id
shapes and timestamp formats, with the skew that makes real data demanding.

* Item popularity is a power law over the catalogue (exponent ``ITEM_EXPONENT``);
  which item ids are popular is shuffled, so ids carry no popularity signal.
* User activity is lognormal, at least ``MIN_USER_ROWS`` rows per user.
* Each user's rows are contiguous, but in random time order: readers must sort.
* Output depends only on the arguments: rows come in fixed-size chunks, each
  drawn from its own seeded generator, so memory stays bounded and the bytes
  are identical run to run.

Ids that must be unique (users, items, reviews) look random but encode their
index in their last characters through a bijection, so uniqueness never rests
on luck. Broken files for error-handling tests come from :func:`truncate_file`
and :func:`insert_line`.

    python -m input_pipeline.synthetic --layout=tmall --rows=1000000 --out=/tmp/synth
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import pathlib
import secrets
import sys
import time
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

PathLike = Union[str, os.PathLike]

MIN_USER_ROWS = 3
FEW = 3
ITEM_EXPONENT = 1.1
ACTIVITY_SIGMA = 1.2
CSV_CHUNK_ROWS = 2_000_000
JSON_CHUNK_ROWS = 50_000
COMPRESSIONS = ("gz", "zip")
GZIP_LEVEL = 6
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
NEWLINE = ord("\n")
UTF8_CONTINUATION_MASK, UTF8_CONTINUATION = 0xC0, 0x80

ID_MULTIPLIER = 1_000_003  # prime, so coprime to every alphabet size: index -> code is a bijection
UPPER_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
URL_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
DIGITS = b"0123456789"

TMALL_ACTIONS = (0.85, 0.03, 0.06, 0.06)  # click, cart, purchase, favourite
ALIPAY_ACTIONS = (0.95, 0.05)  # click, buy
STAR_SHARES = (0.10, 0.08, 0.11, 0.22, 0.49)  # 1..5 stars, Yelp-like
RATING_SHARES = (0.06, 0.05, 0.08, 0.18, 0.63)  # 1..5 stars, Amazon-like
MISSING_BRAND_SHARE = 0.01
ISBN_SHARE = 0.2
VERIFIED_SHARE = 0.85
SAME_PARENT_SHARE = 0.8
ODD_WORD_SHARE = 0.15

WORDS = tuple(
    "the a this it was is very really quite great good bad okay fine nice lovely awful tasty fresh slow fast "
    "friendly rude staff service food price value quality place product item size colour smell works broke "
    "again would buy come back recommend love hate arrived late early cheap expensive worth every penny".split()
)
ODD_WORDS = (
    "well,", "so, so", '"really"', "it's", "café", "naïve", "Zürich", "東京", "😀", "two\nlines", "back\\slash"
)
NAMES = ("Anna", "Ben", "Chloé", "David", "Emma", "François", "Grace", "Hiro", "Ines", "José", "Kim", "Zoë")


@dataclass(frozen=True)
class Sizes:
    """How many rows, users and items one file has."""

    num_rows: int
    num_users: int
    num_items: int


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows: global row numbers, user and item indices, and the generator for every other column."""

    rows: np.ndarray
    users: np.ndarray
    items: np.ndarray
    rng: np.random.Generator


Columns = Callable[[Chunk], Mapping[str, Any]]
ColumnFactory = Callable[[np.random.Generator, Sizes], Columns]


@dataclass(frozen=True)
class Layout:
    """One published file: its name, its columns in order, and how a chunk of rows gets its values."""

    file_pattern: str
    columns: tuple[str, ...]
    make_columns: ColumnFactory
    json_lines: bool = False
    header: bool = False
    rows_per_user: float = 6.0
    rows_per_item: float = 10.0
    zip_pattern: str = "{file}.zip"
    zip_member: str = "{file}"

    @property
    def chunk_rows(self) -> int:
        """Rows per chunk: JSON rows are built as Python objects, so they come in smaller batches."""
        return JSON_CHUNK_ROWS if self.json_lines else CSV_CHUNK_ROWS


# ---------------------------------------------------------------- population


def default_sizes(layout: Layout, num_rows: int, num_users: Optional[int], num_items: Optional[int]) -> Sizes:
    """Users and items scale with rows as in the real data unless given; every user can still get a few rows."""
    if num_rows < 1:
        raise ValueError(f"num_rows must be at least 1, got {num_rows}")
    if num_users is None:
        scaled = max(FEW, round(num_rows / layout.rows_per_user))
        num_users = max(1, min(scaled, num_rows // MIN_USER_ROWS))
    if num_items is None:
        num_items = max(FEW, round(num_rows / layout.rows_per_item))
    if not 1 <= num_users <= num_rows:
        raise ValueError(f"num_users must be in 1..num_rows ({num_rows}), got {num_users}")
    if num_items < 1:
        raise ValueError(f"num_items must be at least 1, got {num_items}")
    return Sizes(num_rows, num_users, num_items)


def user_ends(rng: np.random.Generator, sizes: Sizes) -> np.ndarray:
    """Row after each user's contiguous block: lognormal activity on top of a floor, summing to ``num_rows``."""
    floor = min(MIN_USER_ROWS, sizes.num_rows // sizes.num_users)
    spare = sizes.num_rows - floor * sizes.num_users
    weight = np.cumsum(rng.lognormal(0.0, ACTIVITY_SIGMA, sizes.num_users))
    extra = np.floor(weight / weight[-1] * spare).astype(np.int64)
    extra[-1] = spare
    return floor * np.arange(1, sizes.num_users + 1, dtype=np.int64) + extra


def draw_ranks(rng: np.random.Generator, count: int, num_items: int) -> np.ndarray:
    """Popularity ranks (0 = most popular) with density proportional to ``rank ** -ITEM_EXPONENT``, by inverse CDF."""
    tail = 1.0 - ITEM_EXPONENT
    top = (num_items + 1.0) ** tail
    ranks = (1.0 + rng.random(count) * (top - 1.0)) ** (1.0 / tail)
    return np.minimum(ranks.astype(np.int64) - 1, num_items - 1)


def iter_chunks(
    rng: np.random.Generator, seeds: np.random.SeedSequence, sizes: Sizes, chunk_rows: int
) -> Iterator[Chunk]:
    """The file's rows in order, ``chunk_rows`` at a time; a chunk's values depend only on the seed and its position."""
    ends = user_ends(rng, sizes)
    item_of_rank = rng.permutation(sizes.num_items)
    starts = range(0, sizes.num_rows, chunk_rows)
    for start, seed in zip(starts, seeds.spawn(len(starts))):
        chunk_rng = np.random.default_rng(seed)
        rows = np.arange(start, min(start + chunk_rows, sizes.num_rows), dtype=np.int64)
        users = np.searchsorted(ends, rows, side="right")
        items = item_of_rank[draw_ranks(chunk_rng, len(rows), sizes.num_items)]
        yield Chunk(rows, users, items, chunk_rng)


# ---------------------------------------------------------------- values


def draw_codes(rng: np.random.Generator, shares: Sequence[float], count: int) -> np.ndarray:
    """Codes ``0..len(shares)-1`` drawn with the given shares."""
    return rng.choice(len(shares), size=count, p=shares).astype(np.int8)


def shuffled_ids(rng: np.random.Generator, count: int) -> np.ndarray:
    """Integer ids ``1..count`` in random order, so file order says nothing about id order."""
    return (rng.permutation(count) + 1).astype(np.int32)


def item_attribute(rng: np.random.Generator, num_items: int, items_per_value: int) -> np.ndarray:
    """A fixed value per item (category, seller, brand), 1-based, about ``items_per_value`` items sharing each."""
    return rng.integers(1, max(FEW, num_items // items_per_value) + 1, num_items, dtype=np.int32)


def coded_ids(
    rng: np.random.Generator, index: np.ndarray, total: int, length: int, alphabet: bytes, prefix: bytes = b""
) -> np.ndarray:
    """Random-looking ids of ``length`` characters, unique per index below ``total``.

    The last characters spell the index under an affine bijection modulo
    ``base ** width``, so uniqueness never rests on luck.
    """
    base = len(alphabet)
    width = 1
    while base**width < total:
        width += 1
    if width > length - len(prefix):
        raise ValueError(f"{total} ids do not fit in {length - len(prefix)} characters")
    modulus = base**width
    code = (index.astype(np.int64) * (ID_MULTIPLIER % modulus) + int(rng.integers(modulus))) % modulus
    digits = rng.integers(0, base, size=(len(index), length - len(prefix)), dtype=np.uint8)
    for position in range(1, width + 1):
        digits[:, -position] = code % base
        code //= base
    head = np.broadcast_to(np.frombuffer(prefix, np.uint8), (len(index), len(prefix)))
    chars = np.concatenate([head, np.frombuffer(alphabet, np.uint8)[digits]], axis=1)
    return np.ascontiguousarray(chars).view(f"S{length}").ravel()


def id_table(rng: np.random.Generator, count: int, length: int, alphabet: bytes, prefix: bytes = b"") -> np.ndarray:
    """``count`` distinct ids, one per user or item index."""
    return coded_ids(rng, np.arange(count), count, length, alphabet, prefix)


def asins(rng: np.random.Generator, count: int) -> np.ndarray:
    """Amazon item ids: mostly ``B0`` and 8 alphanumerics, some 10-digit ISBNs as for books; all distinct."""
    is_isbn = rng.random(count) < ISBN_SHARE
    ids = np.empty(count, dtype="S10")
    ids[~is_isbn] = id_table(rng, int((~is_isbn).sum()), 10, UPPER_ALNUM, b"B0")
    ids[is_isbn] = id_table(rng, int(is_isbn.sum()), 10, DIGITS)
    return ids


def as_text(ids: np.ndarray) -> list[str]:
    """Byte-string ids as Python strings, for JSON rows."""
    return ids.astype(str).tolist()


def as_strings(ids: np.ndarray) -> pa.Array:
    """Byte-string ids as an Arrow string array, for CSV rows."""
    return pa.array(ids).cast(pa.string())


def day_range(first: str, last: str) -> np.ndarray:
    """Every calendar day from ``first`` to ``last`` inclusive, so drawn dates are always valid."""
    return np.arange(np.datetime64(first, "D"), np.datetime64(last, "D") + 1)


def month_day(days: np.ndarray) -> np.ndarray:
    """Dates as the integer ``mmdd`` (no leading zero), as in Tmall's ``time_stamp``."""
    months = days.astype("datetime64[M]")
    return ((months.astype(np.int64) % 12 + 1) * 100 + (days - months).astype(np.int64) + 1).astype(np.int32)


def year_month_day(days: np.ndarray) -> np.ndarray:
    """Dates as the integer ``yyyymmdd``, as in Alipay's ``time``."""
    years = days.astype("datetime64[Y]").astype(np.int64) + 1970
    return (years * 10_000 + month_day(days)).astype(np.int32)


def pick_days(rng: np.random.Generator, days: np.ndarray, count: int) -> np.ndarray:
    """Uniform random days from ``days``."""
    return days[rng.integers(0, len(days), count)]


def unix_seconds(days: np.ndarray) -> np.ndarray:
    """Midnight UTC of each day in Unix seconds, as Amazon 2014/2018 stamp reviews."""
    return days.astype("datetime64[s]").astype(np.int64)


def review_times(days: np.ndarray) -> list[str]:
    """Amazon's raw ``reviewTime``: zero-padded month, unpadded day, e.g. ``"01 7, 2014"``."""
    months = days.astype("datetime64[M]")
    month = months.astype(np.int64) % 12 + 1
    day = (days - months).astype(np.int64) + 1
    year = days.astype("datetime64[Y]").astype(np.int64) + 1970
    return [f"{m:02d} {d}, {y}" for m, d, y in zip(month.tolist(), day.tolist(), year.tolist())]


def clock_strings(rng: np.random.Generator, first: str, last: str, count: int) -> list[str]:
    """Uniform random moments as ``YYYY-MM-DD HH:MM:SS``, as Yelp dates reviews."""
    start = np.datetime64(first, "s")
    span = int((np.datetime64(last, "s") - start).astype(np.int64)) + 1
    moments = start + rng.integers(0, span, count)
    return [text.replace("T", " ") for text in np.datetime_as_string(moments).tolist()]


def fake_texts(rng: np.random.Generator, count: int, low: int, high: int) -> list[str]:
    """Sentences of ``low..high`` words; some carry a comma, quote, escape or non-ASCII word to exercise parsers."""
    lengths = rng.integers(low, high + 1, count).tolist()
    words = rng.integers(0, len(WORDS), (count, high)).tolist()
    odd = np.where(rng.random(count) < ODD_WORD_SHARE, rng.integers(0, len(ODD_WORDS), count), -1).tolist()
    texts = []
    for length, row, odd_word in zip(lengths, words, odd):
        tokens = [WORDS[word] for word in row[:length]]
        if odd_word >= 0:
            tokens[length // 2] = ODD_WORDS[odd_word]
        sentence = " ".join(tokens)
        texts.append(sentence[:1].upper() + sentence[1:] + ".")
    return texts


def pick_names(rng: np.random.Generator, count: int) -> list[str]:
    """Reviewer display names."""
    return [NAMES[index] for index in rng.integers(0, len(NAMES), count).tolist()]


def votes(rng: np.random.Generator, count: int) -> np.ndarray:
    """Vote counts: mostly zero, a long tail."""
    return rng.geometric(0.5, count) - 1


# ---------------------------------------------------------------- layouts

TMALL_DAYS = day_range("2014-05-11", "2014-11-12")
ALIPAY_DAYS = day_range("2015-07-01", "2015-11-30")
AMAZON_2014_DAYS = day_range("1997-01-01", "2014-07-23")
AMAZON_2018_DAYS = day_range("1997-01-01", "2018-10-02")
AMAZON_2023_MS = tuple(np.datetime64(day, "ms").astype(np.int64) for day in ("1999-01-01", "2023-09-30"))


def tmall_columns(rng: np.random.Generator, sizes: Sizes) -> Columns:
    """Tmall's user log: category, seller and brand fixed per item; about 1% of rows without a brand."""
    users = shuffled_ids(rng, sizes.num_users)
    categories, sellers, brands = (item_attribute(rng, sizes.num_items, per) for per in (650, 220, 130))
    stamps = month_day(TMALL_DAYS)

    def columns(chunk: Chunk) -> Mapping[str, Any]:
        count = len(chunk.rows)
        return {
            "user_id": users[chunk.users],
            "item_id": (chunk.items + 1).astype(np.int32),
            "cat_id": categories[chunk.items],
            "seller_id": sellers[chunk.items],
            "brand_id": pa.array(brands[chunk.items], mask=chunk.rng.random(count) < MISSING_BRAND_SHARE),
            "time_stamp": stamps[chunk.rng.integers(0, len(stamps), count)],
            "action_type": draw_codes(chunk.rng, TMALL_ACTIONS, count),
        }

    return columns


def alipay_columns(rng: np.random.Generator, sizes: Sizes) -> Columns:
    """IJCAI-16 Taobao log: seller and category fixed per item, clicks and buys by day."""
    users = shuffled_ids(rng, sizes.num_users)
    sellers, categories = (item_attribute(rng, sizes.num_items, per) for per in (235, 30_000))
    stamps = year_month_day(ALIPAY_DAYS)

    def columns(chunk: Chunk) -> Mapping[str, Any]:
        count = len(chunk.rows)
        return {
            "use_ID": users[chunk.users],
            "sel_ID": sellers[chunk.items],
            "ite_ID": (chunk.items + 1).astype(np.int32),
            "cat_ID": categories[chunk.items],
            "act_ID": draw_codes(chunk.rng, ALIPAY_ACTIONS, count),
            "time": stamps[chunk.rng.integers(0, len(stamps), count)],
        }

    return columns


def yelp_columns(rng: np.random.Generator, sizes: Sizes) -> Columns:
    """Yelp reviews: 22-character ids, stars, votes, text and a second-resolution date."""
    users = as_text(id_table(rng, sizes.num_users, 22, URL_SAFE))
    businesses = as_text(id_table(rng, sizes.num_items, 22, URL_SAFE))

    def columns(chunk: Chunk) -> Mapping[str, Any]:
        count = len(chunk.rows)
        return {
            "review_id": as_text(coded_ids(chunk.rng, chunk.rows, sizes.num_rows, 22, URL_SAFE)),
            "user_id": [users[user] for user in chunk.users.tolist()],
            "business_id": [businesses[item] for item in chunk.items.tolist()],
            "stars": (draw_codes(chunk.rng, STAR_SHARES, count) + 1.0).tolist(),
            "useful": votes(chunk.rng, count).tolist(),
            "funny": votes(chunk.rng, count).tolist(),
            "cool": votes(chunk.rng, count).tolist(),
            "text": fake_texts(chunk.rng, count, 6, 24),
            "date": clock_strings(chunk.rng, "2005-01-01T00:00:00", "2021-12-31T23:59:59", count),
        }

    return columns


def amazon_ratings(days: np.ndarray) -> ColumnFactory:
    """Amazon rating-only CSVs (2014 and 2018 differ only in column order): day-resolution Unix seconds."""

    def factory(rng: np.random.Generator, sizes: Sizes) -> Columns:
        users = as_strings(id_table(rng, sizes.num_users, 14, UPPER_ALNUM, b"A"))
        items = as_strings(asins(rng, sizes.num_items))
        ratings = pa.array([f"{stars}.0" for stars in range(1, 6)])

        def columns(chunk: Chunk) -> Mapping[str, Any]:
            count = len(chunk.rows)
            return {
                "user": users.take(chunk.users),
                "item": items.take(chunk.items),
                "rating": ratings.take(draw_codes(chunk.rng, RATING_SHARES, count)),
                "timestamp": unix_seconds(pick_days(chunk.rng, days, count)),
            }

        return columns

    return factory


def amazon_reviews(days: np.ndarray) -> ColumnFactory:
    """Amazon 2014/2018 review JSON; each layout keeps its own keys (2014 ``helpful``, 2018 ``verified``)."""

    def factory(rng: np.random.Generator, sizes: Sizes) -> Columns:
        users = as_text(id_table(rng, sizes.num_users, 14, UPPER_ALNUM, b"A"))
        items = as_text(asins(rng, sizes.num_items))

        def columns(chunk: Chunk) -> Mapping[str, Any]:
            count = len(chunk.rows)
            reviewed = pick_days(chunk.rng, days, count)
            asked = votes(chunk.rng, count)
            helpful = chunk.rng.integers(0, asked + 1)
            return {
                "overall": (draw_codes(chunk.rng, RATING_SHARES, count) + 1.0).tolist(),
                "verified": (chunk.rng.random(count) < VERIFIED_SHARE).tolist(),
                "reviewTime": review_times(reviewed),
                "reviewerID": [users[user] for user in chunk.users.tolist()],
                "asin": [items[item] for item in chunk.items.tolist()],
                "reviewerName": pick_names(chunk.rng, count),
                "helpful": np.stack([helpful, asked], axis=1).tolist(),
                "reviewText": fake_texts(chunk.rng, count, 8, 30),
                "summary": fake_texts(chunk.rng, count, 2, 5),
                "unixReviewTime": unix_seconds(reviewed).tolist(),
            }

        return columns

    return factory


def amazon_2023_columns(rng: np.random.Generator, sizes: Sizes) -> Columns:
    """Amazon 2023 review JSON: 28-character user ids, parent items, millisecond timestamps."""
    users = as_text(id_table(rng, sizes.num_users, 28, UPPER_ALNUM, b"A"))
    items = as_text(asins(rng, sizes.num_items))
    own = rng.random(sizes.num_items) < SAME_PARENT_SHARE
    parents = np.where(own, np.arange(sizes.num_items), rng.integers(0, sizes.num_items, sizes.num_items)).tolist()

    def columns(chunk: Chunk) -> Mapping[str, Any]:
        count = len(chunk.rows)
        return {
            "rating": (draw_codes(chunk.rng, RATING_SHARES, count) + 1.0).tolist(),
            "title": fake_texts(chunk.rng, count, 2, 5),
            "text": fake_texts(chunk.rng, count, 8, 30),
            "images": [[] for _ in range(count)],
            "asin": [items[item] for item in chunk.items.tolist()],
            "parent_asin": [items[parents[item]] for item in chunk.items.tolist()],
            "user_id": [users[user] for user in chunk.users.tolist()],
            "timestamp": chunk.rng.integers(*AMAZON_2023_MS, count).tolist(),
            "helpful_vote": votes(chunk.rng, count).tolist(),
            "verified_purchase": (chunk.rng.random(count) < VERIFIED_SHARE).tolist(),
        }

    return columns


RATING_2014_COLUMNS = ("user", "item", "rating", "timestamp")
RATING_2018_COLUMNS = ("item", "user", "rating", "timestamp")
REVIEW_2014_KEYS = (
    "reviewerID", "asin", "reviewerName", "helpful", "reviewText", "overall", "summary", "unixReviewTime", "reviewTime"
)
REVIEW_2018_KEYS = (
    "overall", "verified", "reviewTime", "reviewerID", "asin", "reviewerName", "reviewText", "summary", "unixReviewTime"
)
REVIEW_2023_KEYS = (
    "rating", "title", "text", "images", "asin", "parent_asin",
    "user_id", "timestamp", "helpful_vote", "verified_purchase",
)

LAYOUTS: dict[str, Layout] = {
    "tmall": Layout(
        "user_log_format1.csv",
        ("user_id", "item_id", "cat_id", "seller_id", "brand_id", "time_stamp", "action_type"),
        tmall_columns,
        header=True,
        rows_per_user=130.0,
        rows_per_item=50.0,
        zip_pattern="data_format1.zip",
        zip_member="data_format1/{file}",
    ),
    "alipay": Layout(
        "ijcai2016_taobao.csv",
        ("use_ID", "sel_ID", "ite_ID", "cat_ID", "act_ID", "time"),
        alipay_columns,
        header=True,
        rows_per_user=46.0,
        rows_per_item=19.0,
    ),
    "yelp": Layout(
        "yelp_academic_dataset_review.json",
        ("review_id", "user_id", "business_id", "stars", "useful", "funny", "cool", "text", "date"),
        yelp_columns,
        json_lines=True,
        rows_per_user=5.0,
        rows_per_item=40.0,
    ),
    "amazon_ratings_2014": Layout("ratings_{category}.csv", RATING_2014_COLUMNS, amazon_ratings(AMAZON_2014_DAYS)),
    "amazon_ratings_2018": Layout("{category}.csv", RATING_2018_COLUMNS, amazon_ratings(AMAZON_2018_DAYS)),
    "amazon_reviews_2014": Layout(
        "reviews_{category}_5.json", REVIEW_2014_KEYS, amazon_reviews(AMAZON_2014_DAYS), json_lines=True
    ),
    "amazon_reviews_2018": Layout(
        "{category}.json", REVIEW_2018_KEYS, amazon_reviews(AMAZON_2018_DAYS), json_lines=True
    ),
    "amazon_reviews_2023": Layout("{category}.jsonl", REVIEW_2023_KEYS, amazon_2023_columns, json_lines=True),
}


# ---------------------------------------------------------------- writing


def layout_named(layout: str) -> Layout:
    """The layout called ``layout``; ValueError naming the choices otherwise."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    return LAYOUTS[layout]


def file_name(layout: str, category: str = "Beauty") -> str:
    """The exact file name the real dataset uses for ``layout`` (Amazon names carry the category)."""
    return layout_named(layout).file_pattern.format(category=category)


def csv_bytes(columns: Mapping[str, Any]) -> bytes:
    """Columns as CSV rows without a header; nulls become empty fields, as in the real files."""
    sink = pa.BufferOutputStream()
    options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
    pa_csv.write_csv(pa.table(dict(columns)), sink, write_options=options)
    return sink.getvalue().to_pybytes()


def json_bytes(columns: Mapping[str, Sequence[Any]]) -> bytes:
    """Columns as JSON lines, keys in the given order, UTF-8 as in the real dumps."""
    keys = list(columns)
    lines = (json.dumps(dict(zip(keys, values)), ensure_ascii=False) + "\n" for values in zip(*columns.values()))
    return "".join(lines).encode("utf-8")


def encode(layout: Layout, columns: Mapping[str, Any]) -> bytes:
    """One chunk's bytes: the layout's columns, in its order and format."""
    ordered = {name: columns[name] for name in layout.columns}
    return json_bytes(ordered) if layout.json_lines else csv_bytes(ordered)


def output_names(layout: Layout, name: str, compression: Optional[str]) -> tuple[str, str]:
    """File name on disk, and the name of the content inside it (the zip member or gzip's stored name)."""
    if compression is None:
        return name, name
    if compression == "gz":
        return f"{name}.gz", name
    if compression == "zip":
        return layout.zip_pattern.format(file=name), layout.zip_member.format(file=name)
    raise ValueError(f"unknown compression {compression!r}; choose from None, {', '.join(COMPRESSIONS)}")


@contextlib.contextmanager
def compressed(raw: BinaryIO, compression: Optional[str], member: str) -> Iterator[BinaryIO]:
    """A stream into ``raw``: plain, gzip or one-member zip, with fixed header times so bytes are reproducible."""
    if compression is None:
        yield raw
    elif compression == "gz":
        with gzip.GzipFile(filename=member, mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0) as stream:
            yield stream
    else:
        info = zipfile.ZipInfo(member, date_time=ZIP_EPOCH)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(raw, "w") as archive, archive.open(info, "w", force_zip64=True) as stream:
            yield stream


@contextlib.contextmanager
def atomic_output(path: pathlib.Path) -> Iterator[BinaryIO]:
    """A file that appears at ``path`` only when the block finishes, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as raw:
            yield raw
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_raw_file(
    layout: str,
    folder: PathLike,
    *,
    num_rows: int,
    seed: int = 0,
    num_users: Optional[int] = None,
    num_items: Optional[int] = None,
    category: str = "Beauty",
    compression: Optional[str] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> pathlib.Path:
    """Writes exactly ``num_rows`` rows in ``layout`` into ``folder`` and returns the path; same arguments, same bytes.

    ``compression`` is None, ``"gz"`` (name + ``.gz``) or ``"zip"`` (the
    distribution's archive name; one member). ``progress`` gets the rows
    written so far after each chunk.
    """
    spec = layout_named(layout)
    disk_name, member = output_names(spec, file_name(layout, category), compression)
    sizes = default_sizes(spec, num_rows, num_users, num_items)
    population_seed, table_seed, chunk_seeds = np.random.SeedSequence(seed).spawn(3)
    columns = spec.make_columns(np.random.default_rng(table_seed), sizes)
    path = pathlib.Path(folder) / disk_name
    with atomic_output(path) as raw, compressed(raw, compression, member) as stream:
        if spec.header:
            stream.write((",".join(spec.columns) + "\n").encode("ascii"))
        for chunk in iter_chunks(np.random.default_rng(population_seed), chunk_seeds, sizes, spec.chunk_rows):
            stream.write(encode(spec, columns(chunk)))
            if progress is not None:
                progress(int(chunk.rows[-1]) + 1)
    return path


# ---------------------------------------------------------------- broken files


def truncate_file(path: PathLike, fraction: float = 0.5) -> None:
    """Cuts a plain file at about ``fraction`` of its size, inside a line: the last line loses its end and newline.

    The cut moves back until characters of the line remain on both sides of
    it and it does not split a UTF-8 character, so the fault is the
    truncation alone.
    """
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        cut = min(int(size * fraction), size - 1)
        while cut > 0:
            handle.seek(cut - 1)
            before, after = handle.read(2)
            if NEWLINE not in (before, after) and after & UTF8_CONTINUATION_MASK != UTF8_CONTINUATION:
                break
            cut -= 1
        if cut <= 0:
            raise ValueError(f"{path}: no place to cut inside a line")
        handle.truncate(cut)


def insert_line(path: PathLike, line_number: int, text: str) -> None:
    """Replaces physical line ``line_number`` (1-based, header counted) of a plain file with ``text``: a bad row."""
    if "\n" in text:
        raise ValueError("text must be a single line")
    target = pathlib.Path(path)
    lines = target.read_bytes().split(b"\n")
    complete = len(lines) - 1 if lines[-1] == b"" else len(lines)
    if not 1 <= line_number <= complete:
        raise ValueError(f"{path} has {complete} lines, no line {line_number}")
    lines[line_number - 1] = text.encode("utf-8")
    target.write_bytes(b"\n".join(lines))


# ---------------------------------------------------------------- command line


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Command-line flags, each with its help text."""
    parser = argparse.ArgumentParser(
        prog="python -m input_pipeline.synthetic",
        description="Write a synthetic raw interaction file in a real dataset's layout.",
    )
    parser.add_argument("--layout", required=True, choices=sorted(LAYOUTS), help="which published layout to imitate")
    parser.add_argument("--rows", required=True, type=int, help="number of data rows to write")
    parser.add_argument("--out", required=True, help="folder to write into (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same bytes")
    parser.add_argument("--category", default="Beauty", help="Amazon category used in the file name")
    parser.add_argument(
        "--compression", choices=COMPRESSIONS, default=None, help="compress as <file>.gz or as the dataset's .zip"
    )
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Writes one file and reports its path, row count and speed."""
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        path = write_raw_file(
            args.layout,
            args.out,
            num_rows=args.rows,
            seed=args.seed,
            category=args.category,
            compression=args.compression,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started
    print(f"{path}  {args.rows:,} rows  {args.rows / seconds:,.0f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
