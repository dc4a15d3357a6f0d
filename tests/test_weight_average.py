"""The weights' moving average: its recurrence, the swap, and a run that evaluates and keeps the average."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline.datasets import load_dataset
from logs import write_interaction_log
from tf_autosam import main as cli
from tf_autosam.config import TrainerConfig
from tf_autosam.evaluation import RankingEvaluator
from tf_autosam.run_directory import saved_config
from tf_autosam.training import EvaluationData, load_best_model
from tf_autosam.weight_average import WeightAverage

FLAGS = ["--model=sasrec", "--epochs=5", "--patience=5", "--max_len=8", "--hidden_size=16", "--num_heads=2",
         "--ffn_size=16", "--num_blocks=1", "--batch_size=8", "--dropout=0.2", "--verbose=0", "--no-export"]


def test_the_average_follows_the_warmed_up_recurrence_of_a_numpy_reference():
    rng = np.random.default_rng(0)
    weights = tf.Variable(rng.normal(size=[3, 2]).astype(np.float32))
    average = WeightAverage([weights], decay=0.9)
    expected = weights.numpy().astype(np.float64)
    # (1 + t) / (10 + t) reaches 0.9 at t = 81: the steps cover the warm-up and the plain decay after it.
    for step in range(1, 120):
        weights.assign(rng.normal(size=[3, 2]).astype(np.float32))
        average.update(tf.constant(step, tf.int64))
        decay = min(0.9, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * weights.numpy()
        np.testing.assert_allclose(average.slots[0].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_swap_exchanges_weights_and_average_and_two_swaps_undo_it():
    weights = tf.Variable([1.0, 2.0])
    average = WeightAverage([weights], decay=0.5)
    weights.assign([3.0, 6.0])
    average.update(tf.constant(100, tf.int64))  # decay 0.5: average (2, 4)
    average.swap()
    np.testing.assert_allclose(weights.numpy(), [2.0, 4.0])
    np.testing.assert_allclose(average.slots[0].numpy(), [3.0, 6.0])
    assert bool(average.averaged_in_model.numpy())
    average.swap()
    np.testing.assert_allclose(weights.numpy(), [3.0, 6.0])
    assert not bool(average.averaged_in_model.numpy())


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_a_decay_outside_zero_to_one_is_refused(decay):
    with pytest.raises(ValueError, match="weight_average_decay"):
        TrainerConfig(weight_average_decay=decay)


def test_the_average_is_refused_on_a_parameter_server_cluster():
    with pytest.raises(ValueError, match="parameter_server"):
        TrainerConfig(weight_average_decay=0.9, strategy="parameter_server")


@pytest.fixture(scope="module")
def averaged_and_raw_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    csv = write_interaction_log(root / "log.csv", users=60, items=40, seed=6, random_items=True)
    runs = {}
    for name, extra in (("raw", []), ("averaged", ["--weight_average_decay=0.9"])):
        assert cli.main(["--dataset=csv", f"--data_path={csv}", f"--data_dir={root / 'cache'}",
                         f"--run_dir={root / name}", *FLAGS, *extra]) == 0
        runs[name] = root / name
    return csv, root / "cache", runs


def read_json(path: pathlib.Path):
    return json.loads(path.read_text())


def test_the_average_leaves_the_training_trajectory_alone_and_changes_what_is_evaluated(averaged_and_raw_runs):
    _, _, runs = averaged_and_raw_runs
    raw, averaged = (read_json(runs[name] / "epochs.json") for name in ("raw", "averaged"))
    assert [epoch["loss"] for epoch in averaged] == pytest.approx([epoch["loss"] for epoch in raw], rel=1e-6)
    assert [epoch["val_NDCG@10"] for epoch in averaged] != pytest.approx([epoch["val_NDCG@10"] for epoch in raw], rel=1e-3)


def test_the_best_checkpoint_holds_the_averaged_weights_that_validation_scored(averaged_and_raw_runs):
    csv, cache, runs = averaged_and_raw_runs
    metrics, epochs = read_json(runs["averaged"] / "metrics.json"), read_json(runs["averaged"] / "epochs.json")
    best = epochs[metrics["best_epoch"] - 1]
    assert metrics["validation"]["NDCG@10"] == pytest.approx(best["val_NDCG@10"], abs=1e-6)
    data = load_dataset("csv", data_path=str(csv), data_dir=str(cache))
    model = load_best_model(runs["averaged"], data)
    assert model.weight_average is None  # built without the slots: the checkpoint's weights are the average
    evaluation = EvaluationData.from_prepared(data, saved_config(runs["averaged"]))
    reloaded = RankingEvaluator(model).evaluate(evaluation.validation)
    assert reloaded["NDCG@10"] == pytest.approx(best["val_NDCG@10"], abs=1e-6)
