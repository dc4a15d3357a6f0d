"""keras-tuner search: a tiny search completes, an interrupted one resumes, and the best config retrains to its score."""

import csv
import json

import pytest
from tensorboard.backend.event_processing import event_accumulator

from logs import write_interaction_log
from tf_autosam import main as cli
from tf_autosam import training, tune

TINY_FLAGS = ["--epochs=2", "--max_len=8", "--hidden_size=16", "--num_blocks=1", "--num_heads=2", "--ffn_size=16",
              "--batch_size=64", "--eval_batch_size=64", "--sampler_warmup_epochs=0"]


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tune")
    write_interaction_log(folder / "log.csv", users=50, items=30, seed=1, max_length=14)
    return folder


def search(log, search_dir, max_trials):
    return tune.main(["--dataset=csv", f"--data_path={log / 'log.csv'}", f"--data_dir={log / 'cache'}",
                      f"--search_dir={search_dir}", "--tuner=random", f"--max_trials={max_trials}", *TINY_FLAGS])


def test_a_search_writes_results_hparams_and_a_best_config_that_retrains_to_its_score(log, tmp_path):
    assert search(log, tmp_path, 2) == 0
    folder = tmp_path / "csv-random"
    rows = (folder / "results.md").read_text().splitlines()
    assert len(rows) == 2 + 2 and "val_NDCG@10" in rows[0]
    with open(folder / "results.csv") as table:
        scores = [float(row["val_NDCG@10"]) for row in csv.DictReader(table)]
    assert len(scores) == 2 and scores == sorted(scores, reverse=True)
    root = event_accumulator.EventAccumulator(str(folder))
    root.Reload()
    assert "_hparams_/experiment" in root.Tags()["tensors"]
    session = event_accumulator.EventAccumulator(str(folder / "trial_0" / "hparams"))
    session.Reload()
    assert {"_hparams_/session_start_info", "val_NDCG@10"} <= set(session.Tags()["tensors"])
    best = json.loads((folder / "best.json").read_text())
    assert best["run_dir"] is None and best["epochs"] == 2
    run_dir = tmp_path / "retrained"
    assert cli.main([f"--config={folder / 'best.json'}", f"--run_dir={run_dir}", "--verbose=0", "--no-export"]) == 0
    retrained = json.loads((run_dir / "metrics.json").read_text())["validation"]["NDCG@10"]
    assert retrained == pytest.approx(scores[0], abs=1e-6)


def test_an_interrupted_search_resumes_without_rerunning_finished_trials(log, tmp_path, monkeypatch):
    trained = []
    real_run_training = training.run_training

    def counting(config, data, run, log=print):
        trained.append(config.tau)
        if len(trained) == 2:
            raise KeyboardInterrupt  # stopped during the second trial
        return real_run_training(config, data, run, log)

    monkeypatch.setattr(training, "run_training", counting)
    with pytest.raises(KeyboardInterrupt):
        search(log, tmp_path, 3)
    assert search(log, tmp_path, 3) == 0
    rows = (tmp_path / "csv-random" / "results.md").read_text().splitlines()[2:]
    assert len(rows) == 3 and all("COMPLETED" in row for row in rows)
    assert trained.count(trained[0]) == 1  # the finished first trial was not trained again
    assert len(trained) == 4  # trial 1, interrupted trial 2, its retry, trial 3


def test_the_search_space_is_the_configs_and_unset_keep_rate_maps_to_none():
    space = tune.search_hyperparameters()
    assert {hp.name for hp in space.space} == set(tune.config_lib.SEARCH_SPACE)
    assert tune.config_lib.from_search({"target_keep_rate": 0.0, "tau": 2.0, "tuner/epochs": 3}) == {
        "target_keep_rate": None, "tau": 2.0}
