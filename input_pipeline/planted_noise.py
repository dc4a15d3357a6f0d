"""Interaction logs with planted accidental clicks, labelled, to check that a sampler learns to drop them.

Generator (per user, real items ``r_0 .. r_{n-1}`` in chronological order):
after each real item ``r_i`` with ``i`` in ``0..n-4``, one noise click is
inserted with probability ``q = f / (1 - f)`` (``f`` = ``noise_fraction``,
``0 <= f < 0.5``), so about ``f`` of the interactions before ``r_{n-3}`` are
noise. The noise item is drawn independently of everything around it, from
the catalogue uniformly or in proportion to each item's count in the real
sequences (``popularity``). Users with fewer than 4 real items get no noise.

Noise never changes what follows: the real sequence is kept exactly, in
order, and the next real item does not depend on any noise click. So a
noise click carries no information about the future, and a sampler that
drops exactly the noise loses nothing. The last three real items are never
separated or followed by noise: the validation and test targets of
leave-one-out stay real, and the validation input ends in a real behaviour
just as the test input does, so early stopping selects on inputs shaped like
the test's. (Version 1 of this generator let noise precede the validation
target: 35% of ML-100K's validation inputs ended in a noise click, none of
the test inputs; ``GENERATOR_VERSION`` is in the default file name so runs on
the two logs are never confused.)

Rows get timestamps 0, 1, 2, ... per user in emitted order: strictly
increasing, so preparation keeps this order and no row is an exact duplicate.
The CSV has the usual ``user_id,item_id,timestamp`` columns plus ``is_noise``
(0/1), which the CSV reader ignores and :func:`read_noise_labels` reads.

    python -m input_pipeline.planted_noise --base=ml100k --noise_fraction=0.25
"""

from __future__ import annotations

import argparse
import collections
import csv
import io
import os
import pathlib
import sys
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from input_pipeline.cache import atomic_write_text, resolve_cache_dir
from input_pipeline.datasets import DATASETS, DatasetRequestError, load_dataset
from input_pipeline.errors import DataError, DataUnavailableError, not_utf8
from input_pipeline.schema import parse_timestamp

DISTRIBUTIONS = ("uniform", "popularity")
COLUMNS = ("user_id", "item_id", "timestamp", "is_noise")
LABEL_COLUMNS = ("user_id", "timestamp", "is_noise")
OUTPUT_SUBDIR = "planted_noise"
SYNTHETIC = "synthetic"
USAGE_ERROR = 2
GENERATOR_VERSION = 2
# Real items at the end of each sequence with no noise between or after them:
# the validation input's newest behaviour, the validation target, the test target.
CLEAN_TAIL = 3


@dataclass(frozen=True)
class PlantedRow:
    """One emitted interaction; ``is_noise`` is the ground truth a sampler's drop decisions are scored against."""

    user_id: str
    item_id: str
    timestamp: int
    is_noise: bool


def check_noise_fraction(noise_fraction: float) -> None:
    """ValueError unless ``0 <= noise_fraction < 0.5``: the insertion probability ``f / (1 - f)`` must stay below 1."""
    if not 0 <= noise_fraction < 0.5:
        raise ValueError(
            f"noise_fraction must be in [0, 0.5), got {noise_fraction}: at most one noise click follows each real item"
        )


def plant_noise(
    sequences: Sequence[Sequence[str]],
    user_ids: Sequence[str],
    catalogue: Sequence[str],
    noise_fraction: float = 0.25,
    distribution: str = "uniform",
    seed: int = 0,
) -> list[PlantedRow]:
    """Every user's real items in order with noise clicks planted as in the module docstring; deterministic per seed."""
    check_noise_fraction(noise_fraction)
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
    if len(sequences) != len(user_ids):
        raise ValueError(f"{len(sequences)} sequences but {len(user_ids)} user ids")
    if len(set(user_ids)) != len(user_ids):
        raise ValueError("user ids repeat: each user's rows must form one sequence")
    if not catalogue:
        raise ValueError("the catalogue is empty: there is nothing to draw noise clicks from")
    probabilities = None
    if distribution == "popularity":
        counts = collections.Counter(item for sequence in sequences for item in sequence)
        weights = np.array([counts[item] for item in catalogue], dtype=np.float64)
        if not weights.sum():
            raise ValueError("no catalogue item occurs in the sequences, so popularity is undefined")
        probabilities = weights / weights.sum()

    rng = np.random.default_rng(seed)
    insert_probability = noise_fraction / (1 - noise_fraction)
    rows = []
    for user, sequence in zip(user_ids, sequences):
        noisy_slots = max(len(sequence) - CLEAN_TAIL, 0)
        planted = rng.random(noisy_slots) < insert_probability
        noise = iter(rng.choice(len(catalogue), size=int(planted.sum()), p=probabilities))
        emitted = []
        for position, item in enumerate(sequence):
            emitted.append((item, False))
            if position < noisy_slots and planted[position]:
                emitted.append((catalogue[next(noise)], True))
        rows.extend(PlantedRow(user, item, timestamp, is_noise) for timestamp, (item, is_noise) in enumerate(emitted))
    return rows


def write_planted_csv(path: Union[str, os.PathLike], rows: Iterable[PlantedRow]) -> None:
    """Writes ``user_id,item_id,timestamp,is_noise`` (0/1), whole or not at all."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows((row.user_id, row.item_id, row.timestamp, int(row.is_noise)) for row in rows)
    atomic_write_text(path, buffer.getvalue())


def read_noise_labels(path: Union[str, os.PathLike]) -> dict[str, np.ndarray]:
    """Raw user id -> is_noise per interaction, stably sorted by timestamp.

    That is the order preparation gives a user's sequence, so for a file
    without exact duplicates (as :func:`write_planted_csv` writes) the labels
    align with the user's prepared sequence. DataError for a missing column
    or a malformed row.
    """
    file = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            missing = [column for column in LABEL_COLUMNS if column not in header]
            if missing:
                raise DataError(file, 1, f"missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
            user_column, time_column, label_column = (header.index(column) for column in LABEL_COLUMNS)
            labelled = collections.defaultdict(list)
            for fields in reader:
                if not fields:
                    continue
                if len(fields) != len(header) or fields[label_column] not in ("0", "1"):
                    raise DataError(file, reader.line_num, f"expected {len(header)} fields with is_noise 0 or 1")
                try:
                    timestamp = parse_timestamp(fields[time_column])
                except ValueError as error:
                    raise DataError(file, reader.line_num, str(error)) from None
                labelled[fields[user_column]].append((timestamp, fields[label_column] == "1"))
    except UnicodeDecodeError as error:
        raise not_utf8(file, error) from None
    return {
        user: np.array([is_noise for _, is_noise in sorted(pairs, key=lambda pair: pair[0])], dtype=bool)
        for user, pairs in labelled.items()
    }


def synthetic_behaviour(
    num_users: int, num_items: int, length: int, seed: int = 0
) -> tuple[list[list[str]], list[str], list[str]]:
    """(sequences, user ids, catalogue) where each user walks item k -> k+1 (mod num_items) from a random start.

    The next item is fully determined by the previous one, so a model trained
    on the noisy log has a clean signal to recover, and tests stay small.
    """
    if min(num_users, num_items, length) < 1:
        raise ValueError(f"num_users, num_items and length must be positive, got {num_users}, {num_items}, {length}")
    starts = np.random.default_rng(seed).integers(num_items, size=num_users)
    sequences = [[f"i{(int(start) + step) % num_items}" for step in range(length)] for start in starts]
    return sequences, [f"u{user}" for user in range(num_users)], [f"i{item}" for item in range(num_items)]


def build_parser() -> argparse.ArgumentParser:
    bases = sorted(name for name, source in DATASETS.items() if not source.needs_data_path) + [SYNTHETIC]
    parser = argparse.ArgumentParser(
        prog="python -m input_pipeline.planted_noise",
        description="Write a copy of a dataset's behaviour with labelled accidental clicks planted in it.",
    )
    parser.add_argument(
        "--base", default="ml100k", choices=bases, help="Real behaviour to plant noise in. [default: ml100k]"
    )
    parser.add_argument(
        "--output", default=None,
        help="CSV to write. [default: <data cache>/planted_noise/"
             "<base>-f<fraction>-<distribution>-s<seed>-v<generator version>.csv, where <base> for "
             "synthetic data is synthetic-u<users>-i<items>-l<length>; outside the repository "
             "because licensed data must not be committed]",
    )
    parser.add_argument("--data_dir", default=None, help="Data cache directory (as for tf_autosam.main).")
    parser.add_argument(
        "--noise_fraction", type=float, default=0.25,
        help="Share of noise among the interactions before each user's third-to-last real item, "
             "in [0, 0.5). [default: 0.25]",
    )
    parser.add_argument(
        "--distribution", default="uniform", choices=DISTRIBUTIONS,
        help="How noise items are drawn: uniformly from the catalogue, or in proportion to their count "
             "in the real sequences. [default: uniform]",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Random seed; the same seed gives the same file. [default: 0]"
    )
    parser.add_argument("--num_users", type=int, default=200, help="Users, for --base=synthetic. [default: 200]")
    parser.add_argument("--num_items", type=int, default=50, help="Items, for --base=synthetic. [default: 50]")
    parser.add_argument(
        "--length", type=int, default=30, help="Real items per user, for --base=synthetic. [default: 30]"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_noise_fraction(args.noise_fraction)
    except ValueError as error:
        parser.error(str(error))

    if args.base == SYNTHETIC:
        try:
            sequences, user_ids, catalogue = synthetic_behaviour(args.num_users, args.num_items, args.length, args.seed)
        except ValueError as error:
            parser.error(str(error))
        base_name = f"{SYNTHETIC}-u{args.num_users}-i{args.num_items}-l{args.length}"
    else:
        try:
            data = load_dataset(args.base, data_dir=args.data_dir)
        except (DatasetRequestError, DataError, DataUnavailableError) as error:
            print(f"error: {error}", file=sys.stderr)
            return USAGE_ERROR
        sequences = [[data.item_vocab[item] for item in sequence] for sequence in data.sequences()]
        user_ids, catalogue = data.user_vocab, data.item_vocab[1:]
        base_name = args.base

    rows = plant_noise(sequences, user_ids, catalogue, args.noise_fraction, args.distribution, args.seed)
    output = pathlib.Path(args.output) if args.output else (
        resolve_cache_dir(args.data_dir) / OUTPUT_SUBDIR
        / f"{base_name}-f{args.noise_fraction:g}-{args.distribution}-s{args.seed}-v{GENERATOR_VERSION}.csv"
    )
    write_planted_csv(output, rows)

    noise = sum(row.is_noise for row in rows)
    real = len(rows) - noise
    noisy_region = noise + sum(max(len(sequence) - CLEAN_TAIL, 0) for sequence in sequences)
    print(f"planted-noise log written to {output}")
    print(f"{len(user_ids):,} users, {real:,} real and {noise:,} noise interactions")
    print(f"realised noise fraction: {noise / max(noisy_region, 1):.4f} before each user's third-to-last real item "
          f"(requested {args.noise_fraction:g}), {noise / max(len(rows), 1):.4f} overall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
