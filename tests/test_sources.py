"""Raw readers: CSV logs (columns, bad rows) and MovieLens-100K (origins, verification), offline."""

import collections
import hashlib
import io
import pathlib
import subprocess
import tarfile
import zipfile

import numpy as np
import pytest

from input_pipeline import raw_files
from input_pipeline.errors import ChecksumMismatchError, DataError, DataUnavailableError
from input_pipeline.schema import parse_timestamp
from input_pipeline.sources import movielens
from input_pipeline.schema import Interactions
from input_pipeline.sources.csv_log import csv_log_layout, read_csv_log
from input_pipeline.sources import delimited
from logs import read_in_blocks


def write(tmp_path: pathlib.Path, text: str, name: str = "log.csv") -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


# --- CSV logs ---------------------------------------------------------------


def test_csv_columns_in_any_order_extra_columns_ignored_rows_in_file_order(tmp_path):
    path = write(tmp_path, (
        "rating,timestamp,item_id,user_id\n"
        '5,881250950,"item, with comma",u 1\n'
        "3,881250949.0,é,u2\n"
        "1,7,i3,u 1\n"
    ))
    rows, skipped = read_csv_log(path)
    assert list(rows.user) == ["u 1", "u2", "u 1"]
    assert list(rows.item) == ["item, with comma", "é", "i3"]
    assert rows.timestamp.dtype == np.int64
    assert rows.timestamp.tolist() == [881250950, 881250949, 7]
    assert rows.line.tolist() == [2, 3, 4]
    assert skipped == collections.Counter()


def test_csv_timestamps_become_float64_only_when_some_are_fractional(tmp_path):
    rows, _ = read_csv_log(write(tmp_path, "user_id,item_id,timestamp\na,x,1.5\na,y,2\n"))
    assert rows.timestamp.dtype == np.float64
    assert rows.timestamp.tolist() == [1.5, 2.0]


@pytest.mark.parametrize("text, expected", [
    ("881250949", 881250949), ("881250949.0", 881250949), ("-3.000", -3), (" 12 ", 12), ("1.25", 1.25), ("1e3", 1000.0),
])
def test_parse_timestamp_keeps_integral_text_exact(text, expected):
    value = parse_timestamp(text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text", ["abc", "", "nan", "inf", "-Infinity", "9223372036854775808"])
def test_parse_timestamp_rejects_non_numbers_and_non_finite_values(text):
    with pytest.raises(ValueError, match="timestamp"):
        parse_timestamp(text)


BAD_ROWS = [
    # (data row, problem expected in the message, skip reason)
    ("u1,i1", "expected 3 fields as in the header, found 2", "wrong field count"),
    ("u1,i1,5,extra", "expected 3 fields as in the header, found 4", "wrong field count"),
    (",i1,5", "empty user_id", "bad user_id"),
    ("u1,,5", "empty item_id", "bad item_id"),
    ("u1,i1,abc", "timestamp 'abc' is not a number", "bad timestamp"),
    ("u1,i1,", "timestamp '' is not a number", "bad timestamp"),
    ("u1,i1,nan", "timestamp 'nan' is not a finite number", "bad timestamp"),
    ('"u\n1",i1,5', "user_id 'u\\n1' contains a line break", "bad user_id"),
]


@pytest.mark.parametrize("row, problem, reason", BAD_ROWS)
def test_each_bad_row_stops_the_read_with_file_line_and_problem(tmp_path, row, problem, reason):
    path = write(tmp_path, f"user_id,item_id,timestamp\nok,i0,1\nok,i0,2\n{row}\nok,i9,3\n")
    with pytest.raises(DataError) as raised:
        read_csv_log(path)
    assert str(raised.value) == f"{path}:4: {problem}"
    assert (raised.value.file, raised.value.line, raised.value.problem) == (str(path), 4, problem)


def test_skip_mode_counts_bad_rows_by_reason_and_keeps_the_rest(tmp_path):
    text = "user_id,item_id,timestamp\n" + "".join(f"{row}\nok,i{n},{n}\n" for n, (row, _, _) in enumerate(BAD_ROWS))
    rows, skipped = read_csv_log(write(tmp_path, text), skip_bad_rows=True)
    assert skipped == collections.Counter({"wrong field count": 2, "bad user_id": 2, "bad item_id": 1, "bad timestamp": 3})
    assert list(rows.item) == [f"i{n}" for n in range(len(BAD_ROWS))]
    assert rows.timestamp.tolist() == list(range(len(BAD_ROWS)))


def test_line_numbers_count_physical_lines_and_blank_lines(tmp_path):
    path = write(tmp_path, 'user_id,item_id,timestamp,note\nu1,i1,1,"multi\nline"\n\nu2,i2,oops,\n')
    with pytest.raises(DataError, match=r":5: timestamp 'oops'"):
        read_csv_log(path, skip_bad_rows=False)


def test_missing_columns_are_named_with_the_file(tmp_path):
    path = write(tmp_path, "user,item_id,time\nu1,i1,5\n")
    with pytest.raises(DataError) as raised:
        read_csv_log(path)
    message = str(raised.value)
    assert message.startswith(f"{path}:1: missing column(s) user_id, timestamp;")
    assert "'user', 'item_id', 'time'" in message


@pytest.mark.parametrize("text, problem", [
    ("", "empty file; expected a header line user_id,item_id,timestamp"),
    ("user_id,item_id,timestamp\n", "no data rows"),
    ("user_id,item_id,timestamp\n\n\n", "no data rows"),
])
def test_empty_file_and_header_only_are_errors(tmp_path, text, problem):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as raised:
        read_csv_log(path, skip_bad_rows=True)
    assert str(raised.value) == f"{path}: {problem}"


def test_a_file_whose_every_row_is_skipped_is_an_error(tmp_path):
    path = write(tmp_path, "user_id,item_id,timestamp\nu1,i1,x\n,i2,3\n")
    with pytest.raises(DataError, match=r"no usable rows \(every row was skipped: bad timestamp: 1, bad user_id: 1\)"):
        read_csv_log(path, skip_bad_rows=True)


def test_non_utf8_file_is_a_data_error(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("user_id,item_id,timestamp\nJosé,i1,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8 text"):
        read_csv_log(path)


@pytest.mark.parametrize("blank_line", [False, True], ids=["fast path", "careful path"])
def test_bytes_that_are_not_utf8_in_an_unread_column_are_ignored_on_either_path(tmp_path, blank_line):
    path = tmp_path / "log.csv"
    path.write_bytes(b"user_id,item_id,timestamp,note\nu1,i1,1,caf\xe9\n" + (b"\n" if blank_line else b"") + b"u1,i2,2,ok\n")
    rows, skipped = read_csv_log(path)
    assert list(rows.item) == ["i1", "i2"] and list(rows.line) == [2, 4 if blank_line else 3] and not skipped


def test_bytes_that_are_not_utf8_in_an_id_name_the_line_or_are_skipped_and_counted(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b"user_id,item_id,timestamp\nu1,i1,1\nu1,caf\xe9,2\nu1,i3,3\n")
    with pytest.raises(DataError, match=r"log.csv:3: not UTF-8 text in item_id"):
        read_csv_log(path)
    rows, skipped = read_csv_log(path, skip_bad_rows=True)
    assert list(rows.item) == ["i1", "i3"] and skipped == {"not UTF-8": 1}


@pytest.mark.parametrize("block_bytes", [8, 21, 40, 64, 1 << 20])
def test_quoted_fields_spanning_lines_read_alike_wherever_blocks_end(tmp_path, block_bytes):
    """Blocks that would end inside a quoted note move back to the row's start; lines stay numbered as in the file."""
    lines = ["user_id,item_id,timestamp,note"]
    for step in range(12):
        note = '"line one\nline ""two""\n\nthree"' if step % 3 == 0 else "plain"
        lines.append(f"u{step % 2},i{step},{step},{note}")
    path = write(tmp_path, "\n".join(lines) + "\n")
    chunks, skipped = read_in_blocks(path, csv_log_layout(), block_bytes)
    whole_chunks, _ = read_in_blocks(path, csv_log_layout(), 1 << 30)
    rows, whole = Interactions.concatenate(chunks), Interactions.concatenate(whole_chunks)
    assert not skipped and len(rows) == 12
    assert list(rows.item) == [f"i{step}" for step in range(12)]
    np.testing.assert_array_equal(rows.line, whole.line)
    assert list(rows.line[:3]) == [2, 6, 7]


def test_a_stray_quote_in_an_unquoted_field_neither_splits_rows_nor_holds_the_file_in_one_block(tmp_path, monkeypatch):
    monkeypatch.setattr(delimited, "LONGEST_QUOTED_ROW", 48)
    lines = ["user_id,item_id,timestamp,size"] + [f"u1,i{step},{step},{step}\" wide" for step in range(40)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    chunks, _ = read_in_blocks(path, csv_log_layout(), 32)
    assert max(len(chunk) for chunk in chunks) <= 6  # without the bound: one chunk of 40
    rows = Interactions.concatenate(chunks)
    assert list(rows.item) == [f"i{step}" for step in range(40)] and list(rows.line) == list(range(2, 42))


# --- MovieLens-100K -----------------------------------------------------------

# u.data layout: user, item, rating, timestamp; the real file's first rows.
U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t377\t1\t878887116\n"
FAKE = movielens.ContentCheck(
    sha256=hashlib.sha256(b"196\t242\t881250949\n186\t302\t891717742\n196\t377\t878887116\n").hexdigest(),
    rows=3, users=2, items=3,
)


def zip_bytes(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, text in members.items():
            bundle.writestr(name, text)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_an_archive_member_is_found_whatever_its_case_exact_case_first(tmp_path, kind):
    members = {"Data/BOOKS.JSON": b"upper\n", "data/Books.json": b"exact\n", "other.json": b"other\n"}
    path = tmp_path / f"books.{kind}"
    if kind == "zip":
        path.write_bytes(zip_bytes(members))
    else:
        with tarfile.open(path, "w:gz") as bundle:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                bundle.addfile(info, io.BytesIO(data))
    with raw_files.open_raw(path, "Books.json") as (stream, label):
        assert stream.read() == b"exact\n" and label.endswith("!data/Books.json")
    with raw_files.open_raw(path, "books.JSON") as (stream, label):
        assert stream.read() == b"upper\n"
    with pytest.raises(DataError, match="holds no Music.json"):
        with raw_files.open_raw(path, "Music.json"):
            pass


def fake_wheel(body: str = U_DATA) -> bytes:
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    return zip_bytes({"recbole/__init__.py": "", movielens.RECBOLE_MEMBER: header + body})


def remote(description: str, fetch, read=movielens.read_recbole_wheel) -> movielens.Remote:
    return movielens.Remote(description, fetch, read)


def unreachable() -> bytes:
    raise OSError("network unreachable")


def test_recbole_wheel_rows_parse_in_file_order():
    rows = movielens.read_recbole_wheel(fake_wheel(), "recbole.whl")
    assert list(rows.user) == ["196", "186", "196"]
    assert list(rows.item) == ["242", "302", "377"]
    assert rows.timestamp.tolist() == [881250949, 891717742, 878887116]
    assert rows.line.tolist() == [2, 3, 4]
    assert movielens.checksum(rows) == FAKE.sha256


def test_grouplens_archive_and_recbole_wheel_give_the_same_checksum():
    archive = zip_bytes({"ml-100k/u.data": U_DATA, "ml-100k/u.item": "1|Toy Story\n"})
    rows = movielens.read_grouplens_archive(archive, "ml-100k.zip")
    assert movielens.checksum(rows) == FAKE.sha256


def test_bad_line_in_a_ratings_file_names_the_archive_member_and_line():
    with pytest.raises(DataError, match=r"^w\.whl!recbole/dataset_example/ml-100k/ml-100k\.inter:3: expected 4"):
        movielens.read_recbole_wheel(fake_wheel("1\t2\t3\t4\n1\t2\t3\n"), "w.whl")


def test_falls_back_to_the_wheel_then_caches_the_verified_copy(tmp_path):
    messages = []
    remotes = [remote("grouplens", unreachable), remote("the wheel", fake_wheel)]
    rows, origin = movielens.load_ml100k(tmp_path, log=messages.append, expected=FAKE, remotes=remotes)
    assert origin == "the wheel"
    assert rows.timestamp.tolist() == [881250949, 891717742, 878887116]
    assert "not from grouplens: network unreachable" in "\n".join(messages)
    assert any(m.startswith("MovieLens-100K: obtained from the wheel, verified, saved to") for m in messages)
    folder = tmp_path / "ml100k"
    assert (folder / "ratings.tsv").read_text() == (
        "user_id\titem_id\ttimestamp\n196\t242\t881250949\n186\t302\t891717742\n196\t377\t878887116\n"
    )
    source = (folder / "SOURCE.txt").read_text()
    assert source.startswith("the wheel\n") and "research use only" in source and FAKE.sha256 in source

    again, origin = movielens.load_ml100k(tmp_path, log=messages.append, expected=FAKE, remotes=[remote("x", unreachable)])
    assert origin == "the wheel"
    assert movielens.checksum(again) == FAKE.sha256
    assert messages[-1].startswith(f"MovieLens-100K: using the verified copy at {folder / 'ratings.tsv'}")


def test_a_corrupted_cached_copy_is_obtained_again(tmp_path):
    (tmp_path / "ml100k").mkdir()
    (tmp_path / "ml100k" / "ratings.tsv").write_text("user_id\titem_id\ttimestamp\n1\t2\t3\n")
    messages = []
    rows, _ = movielens.load_ml100k(tmp_path, log=messages.append, expected=FAKE, remotes=[remote("wheel", fake_wheel)])
    assert len(rows) == 3
    assert "ignoring the cached copy" in messages[0]


@pytest.mark.parametrize("name, content", [("u.data", U_DATA.encode()), ("ml-100k.zip", zip_bytes({"ml-100k/u.data": U_DATA}))])
def test_a_file_placed_by_hand_is_used_without_network(tmp_path, name, content):
    (tmp_path / "ml100k").mkdir()
    (tmp_path / "ml100k" / name).write_bytes(content)
    rows, origin = movielens.load_ml100k(tmp_path, log=lambda _: None, expected=FAKE, remotes=[remote("x", unreachable)])
    assert origin == f"file placed by hand at {tmp_path / 'ml100k' / name}"
    assert movielens.checksum(rows) == FAKE.sha256


def test_a_wrong_file_placed_by_hand_is_a_checksum_error(tmp_path):
    (tmp_path / "ml100k").mkdir()
    swapped = "186\t302\t3\t891717742\n196\t242\t3\t881250949\n196\t377\t1\t878887116\n"  # same rows, other order
    (tmp_path / "ml100k" / "u.data").write_text(swapped)
    with pytest.raises(ChecksumMismatchError) as raised:
        movielens.load_ml100k(tmp_path, log=lambda _: None, expected=FAKE, remotes=[])
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'ml100k' / 'u.data'}: sha256 of the rows is ")
    assert f"expected {FAKE.sha256}" in message


def test_verify_checks_counts_before_the_checksum():
    rows = movielens.read_recbole_wheel(fake_wheel(), "w")
    with pytest.raises(ChecksumMismatchError, match="expected 100000 rows, 943 users and 1682 items; found 3, 2 and 3"):
        movielens.verify(rows, "w")


def test_unavailable_error_says_where_to_put_the_file(tmp_path):
    mismatching = movielens.ContentCheck(sha256="0" * 64, rows=3, users=2, items=3)
    remotes = [remote("grouplens", unreachable), remote("the wheel", fake_wheel)]
    with pytest.raises(DataUnavailableError) as raised:
        movielens.load_ml100k(tmp_path, log=lambda _: None, expected=mismatching, remotes=remotes)
    message = str(raised.value)
    assert "grouplens: network unreachable" in message
    assert "the wheel: " in message and "sha256 of the rows is" in message
    assert str(tmp_path / "ml100k" / "ml-100k.zip") in message
    assert str(tmp_path / "ml100k" / "u.data") in message
    assert movielens.GROUPLENS_URL in message
    assert not (tmp_path / "ml100k" / "ratings.tsv").exists()


def test_default_origins_are_grouplens_then_the_recbole_wheel_and_the_real_counts():
    assert [r.description for r in movielens.REMOTES] == [
        f"GroupLens archive {movielens.GROUPLENS_URL}",
        "recbole==1.2.1 wheel from PyPI, file recbole/dataset_example/ml-100k/ml-100k.inter",
    ]
    assert (movielens.ML100K.rows, movielens.ML100K.users, movielens.ML100K.items) == (100_000, 943, 1682)
    assert len(movielens.ML100K.sha256) == 64 and int(movielens.ML100K.sha256, 16) >= 0


def test_fetch_url_reads_the_bytes(tmp_path):
    path = write(tmp_path, "payload", "file.bin")
    assert movielens.fetch_url(path.as_uri()) == b"payload"


def test_wheel_download_runs_pip_download_without_dependencies(monkeypatch):
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        folder = pathlib.Path(command[command.index("-d") + 1])
        (folder / "recbole-1.2.1-py3-none-any.whl").write_bytes(b"wheel")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(movielens.subprocess, "run", fake_run)
    assert movielens.fetch_pypi_wheel("recbole==1.2.1") == b"wheel"
    (command,) = calls
    assert command[1:4] == ["-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:"} <= set(command) and command[-1] == "recbole==1.2.1"


def test_wheel_download_failure_reports_pip_last_error_line(monkeypatch):
    failed = subprocess.CompletedProcess([], 1, "", "WARNING: retrying\nERROR: No matching distribution found\n")
    monkeypatch.setattr(movielens.subprocess, "run", lambda command, **kwargs: failed)
    with pytest.raises(OSError, match="pip download recbole==1.2.1 failed: ERROR: No matching distribution found"):
        movielens.fetch_pypi_wheel("recbole==1.2.1")
