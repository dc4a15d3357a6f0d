"""Planted-noise logs: real behaviour kept exactly, noise where and as often as asked, labels aligned after loading."""

import collections
import math

import pytest

from input_pipeline import planted_noise
from input_pipeline.datasets import load_dataset
from input_pipeline.errors import DataError
from input_pipeline.planted_noise import plant_noise, read_noise_labels, synthetic_behaviour, write_planted_csv


def by_user(rows):
    """Raw user id -> that user's rows in emitted order."""
    grouped = collections.defaultdict(list)
    for row in rows:
        grouped[row.user_id].append(row)
    return grouped


def test_real_behaviour_kept_in_order_and_validation_and_test_inputs_end_real():
    sequences, users, catalogue = synthetic_behaviour(num_users=40, num_items=12, length=9, seed=1)
    sequences += [["a"], ["a", "b"], ["a", "b", "c"]] + [["a", "b", "c", "d"]] * 20
    users += ["short1", "short2", "short3"] + [f"four{user}" for user in range(20)]
    rows = plant_noise(sequences, users, catalogue + ["a", "b", "c", "d"], noise_fraction=0.4, seed=3)
    grouped = by_user(rows)
    assert list(grouped) == users
    for user, sequence in zip(users, sequences):
        planted = grouped[user]
        assert [row.item_id for row in planted if not row.is_noise] == sequence
        assert [row.timestamp for row in planted] == list(range(len(planted)))
        # The last three real items: the validation input's newest, the validation target, the test target.
        assert [row.is_noise for row in planted[-3:]] == [False, False, False][:len(planted)]
        assert not planted[0].is_noise
    assert not any(row.is_noise for user in ("short1", "short2", "short3") for row in grouped[user])
    # With four real items the only noisy slot is right after the first one.
    four = [[row.is_noise for row in grouped[f"four{user}"]] for user in range(20)]
    assert [False, True, False, False, False] in four
    assert all(labels in ([False] * 4, [False, True, False, False, False]) for labels in four)


def test_noise_fraction_of_the_noisy_region_matches_the_request():
    fraction = 0.25
    sequences, users, catalogue = synthetic_behaviour(num_users=1000, num_items=50, length=30, seed=0)
    rows = plant_noise(sequences, users, catalogue, noise_fraction=fraction, seed=0)
    slots = sum(len(sequence) - 3 for sequence in sequences)
    noise = sum(row.is_noise for row in rows)
    q = fraction / (1 - fraction)
    assert abs(noise - slots * q) < 5 * math.sqrt(slots * q * (1 - q))
    assert noise / (noise + slots) == pytest.approx(fraction, abs=0.01)


def test_zero_fraction_plants_nothing():
    sequences, users, catalogue = synthetic_behaviour(num_users=5, num_items=7, length=6)
    assert not any(row.is_noise for row in plant_noise(sequences, users, catalogue, noise_fraction=0.0))


def test_same_seed_same_rows_other_seed_other_rows():
    sequences, users, catalogue = synthetic_behaviour(num_users=30, num_items=20, length=12, seed=5)
    first = plant_noise(sequences, users, catalogue, seed=7)
    assert plant_noise(sequences, users, catalogue, seed=7) == first
    assert plant_noise(sequences, users, catalogue, seed=8) != first


def test_popularity_draws_frequent_items_more_and_unseen_items_never():
    sequences = [["a"] * 15 + ["b"] * 4 + ["c"]] * 200
    users = [f"u{user}" for user in range(200)]
    catalogue = ["a", "b", "c", "unseen"]
    popular = collections.Counter(
        row.item_id for row in plant_noise(sequences, users, catalogue, 0.4, "popularity", seed=0) if row.is_noise
    )
    assert popular["a"] > popular["b"] > popular["c"] > 0
    assert popular["unseen"] == 0
    assert popular["a"] / sum(popular.values()) == pytest.approx(0.75, abs=0.03)
    uniform = collections.Counter(
        row.item_id for row in plant_noise(sequences, users, catalogue, 0.4, "uniform", seed=0) if row.is_noise
    )
    assert uniform["unseen"] / sum(uniform.values()) == pytest.approx(0.25, abs=0.03)


@pytest.mark.parametrize("options, match", [
    (dict(noise_fraction=0.5), "noise_fraction"),
    (dict(noise_fraction=-0.1), "noise_fraction"),
    (dict(distribution="zipf"), "distribution"),
])
def test_invalid_options_raise_value_error(options, match):
    sequences, users, catalogue = synthetic_behaviour(num_users=2, num_items=5, length=4)
    with pytest.raises(ValueError, match=match):
        plant_noise(sequences, users, catalogue, **options)


def test_csv_round_trip_through_load_dataset_keeps_sequences_and_aligns_labels(tmp_path):
    sequences, users, catalogue = synthetic_behaviour(num_users=25, num_items=6, length=10, seed=2)
    sequences.append(["i1", "i2"])
    users.append("u, with comma")
    rows = plant_noise(sequences, users, catalogue, noise_fraction=0.3, seed=4)
    path = tmp_path / "planted.csv"
    write_planted_csv(path, rows)

    data = load_dataset("csv", data_path=path, data_dir=tmp_path / "cache", log=lambda line: None)
    labels = read_noise_labels(path)
    grouped = by_user(rows)
    assert set(labels) == set(users)
    assert data.user_vocab == users[:-1]
    for index, user in enumerate(data.user_vocab):
        prepared = [data.item_vocab[item] for item in data.sequence(index)]
        assert prepared == [row.item_id for row in grouped[user]]
        assert labels[user].tolist() == [row.is_noise for row in grouped[user]]
        assert len(labels[user]) == len(prepared)


def test_read_noise_labels_sorts_by_timestamp_and_needs_the_label_column(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("user_id,item_id,timestamp,is_noise\nu,a,2,0\nu,b,1,1\nv,c,5,0\n", encoding="utf-8")
    labels = read_noise_labels(path)
    assert {user: mask.tolist() for user, mask in labels.items()} == {"u": [True, False], "v": [False]}
    path.write_text("user_id,item_id,timestamp\nu,a,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="is_noise"):
        read_noise_labels(path)


def test_synthetic_behaviour_walks_to_the_next_item():
    sequences, users, catalogue = synthetic_behaviour(num_users=8, num_items=5, length=7, seed=3)
    assert users == [f"u{user}" for user in range(8)]
    assert catalogue == [f"i{item}" for item in range(5)]
    for sequence in sequences:
        assert len(sequence) == 7
        steps = [int(item[1:]) for item in sequence]
        assert all(after == (before + 1) % 5 for before, after in zip(steps, steps[1:]))
    assert len({sequence[0] for sequence in sequences}) > 1


def test_cli_synthetic_writes_the_file_to_the_cache_by_default(tmp_path, capsys):
    argv = ["--base=synthetic", f"--data_dir={tmp_path}", "--num_users=10", "--num_items=8", "--length=6", "--seed=1"]
    assert planted_noise.main(argv) == 0
    written = tmp_path / "planted_noise" / "synthetic-u10-i8-l6-f0.25-uniform-s1-v2.csv"
    assert written.read_text(encoding="utf-8").startswith("user_id,item_id,timestamp,is_noise\n")
    output = capsys.readouterr().out
    assert str(written) in output and "10 users, 60 real" in output

    explicit = tmp_path / "out" / "noisy.csv"
    assert planted_noise.main(argv + [f"--output={explicit}"]) == 0
    assert explicit.read_bytes() == written.read_bytes()
    assert sum(mask.size - mask.sum() for mask in read_noise_labels(explicit).values()) == 60


def test_cli_rejects_a_bad_fraction_before_loading_anything(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        planted_noise.main(["--base=synthetic", f"--data_dir={tmp_path}", "--noise_fraction=0.5"])
    assert exit_info.value.code == 2
    assert "noise_fraction" in capsys.readouterr().err
    assert not (tmp_path / "planted_noise").exists()
