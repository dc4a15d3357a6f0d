"""The CLI end to end on a tiny CSV in the real input format."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tf_autosam import inspection
from tf_autosam import main as cli
from tf_autosam import training
from tf_autosam.config import TrainerConfig
from tf_autosam.run_directory import RunDirectory

TINY_FLAGS = ["--epochs=3", "--max_len=8", "--hidden_size=16", "--num_heads=2", "--ffn_size=16",
              "--num_blocks=1", "--batch_size=16", "--patience=2", "--verbose=0", "--no-export"]


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory):
    """60 users with 6-15 interactions over 40 items, header user_id,item_id,timestamp (+ an extra column)."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "log.csv"
    lines = ["user_id,item_id,timestamp,rating"]
    for user in range(60):
        start = int(rng.integers(1_000_000, 2_000_000))
        for step in range(int(rng.integers(6, 16))):
            lines.append(f"u{user},item-{(user + step * 3) % 40},{start + 60 * step},5")
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(tmp_path, csv_path, run_name, *extra):
    run_dir = tmp_path / run_name
    args = ["--dataset=csv", f"--data_path={csv_path}", f"--data_dir={tmp_path / 'cache'}",
            f"--run_dir={run_dir}", *TINY_FLAGS, *extra]
    assert cli.main(args) == 0
    return run_dir


def test_run_writes_config_metrics_checkpoints_and_logs(tmp_path, tiny_csv):
    run_dir = run_cli(tmp_path, tiny_csv, "run")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 1 <= metrics["best_epoch"] <= 3
    for split in ("validation", "test"):
        for name in ("NDCG@10", "NDCG@20", "Recall@10", "Recall@20", "MRR@10"):
            assert 0.0 <= metrics[split][name] <= 1.0
    assert metrics["test"]["Recall@20"] >= metrics["test"]["Recall@10"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["max_len"] == 8 and config["dataset"] == "csv"
    epochs = json.loads((run_dir / "epochs.json").read_text())
    assert [e["epoch"] for e in epochs] == list(range(1, len(epochs) + 1))
    assert any((run_dir / "checkpoints").iterdir())
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    # The validation metrics recorded at the best epoch are those of the restored weights.
    best = epochs[metrics["best_epoch"] - 1]
    assert best["val_NDCG@10"] == pytest.approx(metrics["validation"]["NDCG@10"], abs=1e-6)


def test_a_finished_run_is_recognised_only_for_its_own_config(tmp_path, tiny_csv):
    run_dir = run_cli(tmp_path, tiny_csv, "run")
    config = TrainerConfig.from_json((run_dir / "config.json").read_text())
    run = RunDirectory(run_dir)
    assert run.finished_results(config) == json.loads((run_dir / "metrics.json").read_text())
    assert run.finished_results(config.replace(seed=config.seed + 1)) is None
    (run_dir / "metrics.json").unlink()  # as while the run is still training
    assert run.finished_results(config) is None


@pytest.mark.parametrize("model, reused", [("sasrec", True), ("popularity", True), ("autosam", False)])
def test_only_a_model_with_the_sampler_tells_runs_apart_by_sampler_settings(tmp_path, model, reused):
    run = RunDirectory(tmp_path / model)
    trained = TrainerConfig(model=model)
    run.start(trained)
    run.finish({"best_epoch": 1})
    assert run.finished_results(trained.replace(tau=trained.tau * 2, recommender_input="full")) == (
        {"best_epoch": 1} if reused else None
    )
    assert run.finished_results(trained.replace(data_dir="another/cache", verbose=0)) == {"best_epoch": 1}
    assert run.finished_results(trained.replace(dropout=trained.dropout + 0.1)) is None
    assert run.finished_results(trained.replace(data_path="another.csv")) is None
    (run.path / "config.json").write_text('{"a_field_of_another_version": 1}')
    assert run.finished_results(trained) is None


def test_retraining_into_a_finished_run_discards_its_old_metrics(tmp_path, tiny_csv, monkeypatch):
    run_dir = run_cli(tmp_path, tiny_csv, "run")
    config = TrainerConfig.from_json((run_dir / "config.json").read_text())

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "fit_recommender", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_cli(tmp_path, tiny_csv, "run")
    assert RunDirectory(run_dir).finished_results(config) is None


def test_same_seed_gives_same_metrics(tmp_path, tiny_csv):
    first = json.loads((run_cli(tmp_path, tiny_csv, "a", "--seed=3") / "metrics.json").read_text())
    second = json.loads((run_cli(tmp_path, tiny_csv, "b", "--seed=3") / "metrics.json").read_text())
    assert first["test"] == second["test"] and first["validation"] == second["validation"]


def test_sampled_softmax_and_popularity_run(tmp_path, tiny_csv):
    run_dir = run_cli(tmp_path, tiny_csv, "sampled", "--num_negatives=10", "--sampled_eval_negatives=20")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "sampled20_NDCG@10" in metrics["test"]
    popularity = run_cli(tmp_path, tiny_csv, "pop", "--model=popularity")
    assert json.loads((popularity / "metrics.json").read_text())["best_epoch"] == 0


@pytest.mark.parametrize("args", [["--dataset=nope"], ["--max_len=abc"], ["--model=unknown"], ["--dataset=csv"], ["--serving_chunk_items=0"], ["--label_smoothing=1.0"]])
def test_bad_flags_exit_with_code_2(args, tmp_path):
    process = subprocess.run([sys.executable, "-m", "tf_autosam.main", *args, f"--data_dir={tmp_path}"],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert "error" in process.stderr.lower()


def test_more_sampled_negatives_than_items_exits_with_code_2_before_training(tmp_path, tiny_csv, capsys):
    run_dir = tmp_path / "too_many"
    args = ["--dataset=csv", f"--data_path={tiny_csv}", f"--data_dir={tmp_path / 'cache'}", f"--run_dir={run_dir}",
            *TINY_FLAGS, "--sampled_eval_negatives=40"]
    assert cli.main(args) == 2
    assert "--sampled_eval_negatives=40" in capsys.readouterr().err
    assert not (run_dir / "config.json").exists()


def test_help_documents_every_flag():
    text = cli.build_parser().format_help()
    for flag in ("--dataset", "--data_path", "--data_dir", "--model", "--preset", "--epochs", "--max_len",
                 "--batch_size", "--seed", "--run_dir", "--num_negatives"):
        assert flag in text
    assert all(action.help for action in cli.build_parser()._actions)


def test_autosam_trains_and_reports_its_step_metrics(tmp_path, tiny_csv):
    run_dir = run_cli(tmp_path, tiny_csv, "autosam", "--model=autosam", "--epochs=2")
    epochs = json.loads((run_dir / "epochs.json").read_text())
    for name in ("recommendation_loss", "policy_loss", "keep_rate", "future_reward", "perplexity_reward"):
        assert np.isfinite(epochs[-1][name])
    assert 0.0 < epochs[-1]["keep_rate"] <= 1.0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["NDCG@10"] <= 1.0
    assert metrics["keep_rate"] == epochs[metrics["best_epoch"] - 1]["keep_rate"]
    assert metrics["inference_mode"] == "deterministic" and 0.0 < metrics["test_keep_rate"] <= 1.0


def test_inspection_shows_each_behaviour_of_a_users_window(tmp_path, tiny_csv, capsys):
    run_dir = run_cli(tmp_path, tiny_csv, "autosam", "--model=autosam", "--epochs=1")
    capsys.readouterr()
    assert inspection.main([f"--run_dir={run_dir}", "--user=u3", "--user=u7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    history = [line.split(",")[1] for line in tiny_csv.read_text().splitlines() if line.startswith("u3,")][:-1]
    rows = lines[2:2 + min(len(history), 8)]
    assert [row.split()[1] for row in rows] == history[-8:]
    assert all(0.0 <= float(row.split()[2]) <= 1.0 for row in rows)
    assert rows[-1].split()[3] == "yes"  # the newest behaviour is always kept
    assert lines[0].startswith("user u3:")
    assert inspection.main([f"--run_dir={run_dir}", "--user=nobody"]) == 2
