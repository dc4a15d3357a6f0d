"""Faults: a killed run resumes where it stopped, a diverging run stops cleanly, a bad run directory stops at once."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import pipeline
from input_pipeline.datasets import load_dataset
from logs import write_interaction_log
from tf_autosam import fault_tolerance, training
from tf_autosam import main as cli
from tf_autosam import preflight
from tf_autosam.config import preset
from tf_autosam.run_directory import RunDirectory

ROOT = pathlib.Path(__file__).parent.parent
TIMEOUT_S = 300
# With dropout: its masks, like every draw of a step, are functions of (seed, step), so a resume is exact.
FLAGS = ["--model=autosam", "--sampler_warmup_epochs=1", "--epochs=6", "--patience=6", "--max_len=8",
         "--hidden_size=16", "--num_heads=2", "--ffn_size=16", "--num_blocks=1", "--batch_size=8", "--dropout=0.2",
         "--verbose=2", "--no-export"]


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory):
    return write_interaction_log(tmp_path_factory.mktemp("data") / "log.csv", users=60, items=40, seed=5)


def steps_per_epoch(csv: pathlib.Path, data_dir: pathlib.Path) -> int:
    config = preset("default").replace(max_len=8, batch_size=8)
    data = load_dataset("csv", data_path=str(csv), data_dir=str(data_dir))
    windows = pipeline.training_windows(data.train_sequences(), config.max_len, config.window_stride)
    return -(-len(windows[0]) // config.batch_size)


def command(csv, data_dir, run_dir, *extra):
    return [sys.executable, "-m", "tf_autosam.main", "--dataset=csv", f"--data_path={csv}", f"--data_dir={data_dir}",
            f"--run_dir={run_dir}", *FLAGS, *extra]


def run_to_end(args) -> str:
    finished = subprocess.run(args, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                              text=True, timeout=TIMEOUT_S)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stdout


def epochs_without_timing(run_dir: pathlib.Path) -> list[dict]:
    return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in json.loads((run_dir / "epochs.json").read_text())]


def assert_same_epochs(resumed_run: pathlib.Path, whole_run: pathlib.Path) -> None:
    resumed_epochs, whole_epochs = epochs_without_timing(resumed_run), epochs_without_timing(whole_run)
    assert len(resumed_epochs) == len(whole_epochs)
    for resumed_epoch, whole_epoch in zip(resumed_epochs, whole_epochs):
        assert resumed_epoch == pytest.approx(whole_epoch, rel=1e-5, abs=1e-7)


def test_a_run_killed_mid_epoch_resumes_and_ends_as_an_uninterrupted_one(tmp_path, tiny_csv):
    data_dir = tmp_path / "cache"
    per_epoch = steps_per_epoch(tiny_csv, data_dir)
    every = next(b for b in (3, 4, 5, 7) if per_epoch % b)  # backups fall inside epochs, not only on their ends
    backup = ["--backup_every_steps", str(every)]
    run_to_end(command(tiny_csv, data_dir, tmp_path / "whole", *backup))

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(tiny_csv, data_dir, killed, *backup), cwd=ROOT,
                               env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, killed_at = time.monotonic() + TIMEOUT_S, None
        while killed_at is None and time.monotonic() < deadline and process.poll() is None:
            try:
                steps = [int(step) for step in json.loads((killed / "backup" / "resume.json").read_text())]
            except (OSError, ValueError):
                steps = []
            mid_epoch = [step for step in steps if step > per_epoch and step % per_epoch]
            # Each entry is written just before its checkpoint: the older of two has its checkpoint whole.
            if len(mid_epoch) >= 2:
                process.send_signal(signal.SIGKILL)
                killed_at = max(mid_epoch)
            time.sleep(0.05)
        process.wait(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert killed_at is not None and process.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-epoch"
    assert not (killed / "metrics.json").exists()

    output = run_to_end(command(tiny_csv, data_dir, killed, *backup))
    resumed_at = re.search(r"resuming from the backup .*: epoch (\d+), batch (\d+)", output)
    assert resumed_at and int(resumed_at.group(1)) > 1 and int(resumed_at.group(2)) > 1, output  # mid-epoch
    assert_same_epochs(killed, tmp_path / "whole")
    whole, resumed = (json.loads((run / "metrics.json").read_text()) for run in (tmp_path / "whole", killed))
    assert resumed["best_epoch"] == whole["best_epoch"]
    assert resumed["test"] == pytest.approx(whole["test"], abs=1e-6)
    assert not (killed / "backup").exists()


# SASRec on a log of random items: validation rises and falls, and patience 2 ends the run two epochs after its best.
IN_PROCESS_FLAGS = ["--model=sasrec", "--epochs=20", "--patience=2", "--max_len=8", "--hidden_size=16", "--num_heads=2",
                    "--ffn_size=16", "--num_blocks=1", "--batch_size=8", "--dropout=0.2", "--verbose=0", "--no-export"]


def random_log(tmp_path: pathlib.Path) -> pathlib.Path:
    csv = tmp_path / "log.csv"
    return csv if csv.exists() else write_interaction_log(csv, users=60, items=40, seed=6, random_items=True)


def train_in_process(tmp_path: pathlib.Path, run_dir: pathlib.Path, *extra: str) -> dict:
    csv = random_log(tmp_path)
    assert cli.main(["--dataset=csv", f"--data_path={csv}", f"--data_dir={tmp_path / 'cache'}",
                     f"--run_dir={run_dir}", *IN_PROCESS_FLAGS, *extra]) == 0
    return json.loads((run_dir / "metrics.json").read_text())


def interrupted(tmp_path, monkeypatch, callback: type, at_epoch: int, *extra: str) -> pathlib.Path:
    """The run directory of a run stopped by KeyboardInterrupt after ``callback.on_epoch_end`` of 0-based ``at_epoch``."""
    original = callback.on_epoch_end

    def interrupting(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == at_epoch:
            raise KeyboardInterrupt

    run_dir = tmp_path / "interrupted"
    with monkeypatch.context() as patched:
        patched.setattr(callback, "on_epoch_end", interrupting)
        with pytest.raises(KeyboardInterrupt):
            train_in_process(tmp_path, run_dir, *extra)
    return run_dir


def interrupted_then_resumed(tmp_path, monkeypatch, callback: type, at_epoch: int, *extra: str) -> dict:
    return train_in_process(tmp_path, interrupted(tmp_path, monkeypatch, callback, at_epoch, *extra), *extra)


def assert_resumed_as_whole(resumed: dict, whole: dict, tmp_path: pathlib.Path) -> None:
    assert resumed["best_epoch"] == whole["best_epoch"]
    assert resumed["test"] == pytest.approx(whole["test"], abs=1e-6)
    assert resumed["validation"] == pytest.approx(whole["validation"], abs=1e-6)
    assert_same_epochs(tmp_path / "interrupted", tmp_path / "whole")


def test_a_run_resumed_after_its_best_epoch_reports_and_keeps_that_epoch(tmp_path, monkeypatch):
    """Keras' EarlyStopping takes the first epoch a process sees as the best when it holds no best weights:
    a resume after the best epoch must still end with the best epoch's weights and metrics."""
    whole = train_in_process(tmp_path, tmp_path / "whole")
    best_epoch = whole["best_epoch"]
    # Stopped after one epoch beyond the best, the resumed process holds that epoch's weights, not the best.
    assert best_epoch + 1 < whole["epochs_run"], whole
    resumed = interrupted_then_resumed(tmp_path, monkeypatch, fault_tolerance.RunBackup, best_epoch)
    assert_resumed_as_whole(resumed, whole, tmp_path)


def test_a_run_killed_after_the_backup_of_its_early_stop_trains_no_further_epoch(tmp_path, monkeypatch):
    whole = train_in_process(tmp_path, tmp_path / "whole")
    assert whole["epochs_run"] < 20, whole  # early stopping ended it
    resumed = interrupted_then_resumed(tmp_path, monkeypatch, fault_tolerance.RunBackup, whole["epochs_run"] - 1)
    assert_resumed_as_whole(resumed, whole, tmp_path)


def test_a_best_checkpoint_written_after_the_last_backup_does_not_replace_the_best_epochs_weights(tmp_path, monkeypatch):
    """Killed after writing a best checkpoint for the epoch past the last backup, whose rerun is no best
    (as when dropout draws differ): the resumed run must still end with the best epoch's weights."""
    whole = train_in_process(tmp_path, tmp_path / "whole")
    after_best = whole["best_epoch"]  # 0-based index of the epoch after the best one
    assert after_best + 1 < whole["epochs_run"], whole
    original = tf.keras.callbacks.ModelCheckpoint.on_epoch_end

    def saving_then_killed(self, epoch, logs=None):
        if epoch == after_best:
            self.best = -np.inf  # this process takes the epoch for a new best and saves it
        original(self, epoch, logs)
        if epoch == after_best:
            raise KeyboardInterrupt  # before the epoch's backup

    run_dir = tmp_path / "interrupted"
    with monkeypatch.context() as patched:
        patched.setattr(tf.keras.callbacks.ModelCheckpoint, "on_epoch_end", saving_then_killed)
        with pytest.raises(KeyboardInterrupt):
            train_in_process(tmp_path, run_dir)
    resumed = train_in_process(tmp_path, run_dir)
    assert_resumed_as_whole(resumed, whole, tmp_path)
    assert sorted(path.name.split(".")[0] for path in (run_dir / "checkpoints").glob("best*")) == ["best", "best"]


def test_a_run_backed_up_before_best_checkpoints_were_kept_per_epoch_resumes_with_its_best_weights(tmp_path, monkeypatch):
    """A run interrupted by the previous build has only ``checkpoints/best``: resumed after its best epoch,
    it must read its best weights from there."""
    whole = train_in_process(tmp_path, tmp_path / "whole")
    best_epoch = whole["best_epoch"]
    run_dir = interrupted(tmp_path, monkeypatch, fault_tolerance.RunBackup, best_epoch)
    run = RunDirectory(run_dir)
    for path in run.checkpoint_dir.glob(run.epoch_checkpoint(best_epoch - 1).name + ".*"):
        path.rename(run.checkpoint_dir / path.name.replace(path.name.split(".")[0], "best"))
    run.remove_epoch_checkpoints()
    assert_resumed_as_whole(train_in_process(tmp_path, run_dir), whole, tmp_path)


def test_pruning_keeps_the_named_epochs_and_removes_the_rest_including_a_killed_saves_folder(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.checkpoint_dir.mkdir()
    for epoch in (0, 1, 2):
        for suffix in (".index", ".data-00000-of-00001"):
            pathlib.Path(f"{run.epoch_checkpoint(epoch)}{suffix}").write_text("weights")
    killed_save = pathlib.Path(f"{run.epoch_checkpoint(3)}_temp")
    killed_save.mkdir()
    (killed_save / "part-00000-of-00001.data-00000-of-00001").write_text("half")
    for name in ("best.index", "best.data-00000-of-00001", "checkpoint"):
        (run.checkpoint_dir / name).write_text("final")
    run.remove_epoch_checkpoints(keep=frozenset({1}))
    assert sorted(path.name for path in run.checkpoint_dir.iterdir()) == [
        "best-epoch-0002.data-00000-of-00001", "best-epoch-0002.index", "best.data-00000-of-00001", "best.index",
        "checkpoint",
    ]


def test_resume_entries_past_the_current_step_are_dropped(tmp_path):
    """Entries are written before their checkpoints: one past the step a resumed run reached belongs to a
    checkpoint that never completed, and must not push out the entry of the checkpoint Keras holds."""
    run = RunDirectory(tmp_path / "run")
    run.backup_dir.mkdir()
    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    stopper = tf.keras.callbacks.EarlyStopping()
    stopper.on_train_begin()  # sets its best score
    backup = fault_tolerance.RunBackup(run, 30, 100, stopper, tf.keras.callbacks.ModelCheckpoint(str(tmp_path / "c")),
                                       [], None)
    backup.set_model(model)
    (run.backup_dir / fault_tolerance.RESUME_FILE).write_text(json.dumps({"200": {}, "300": {}}))
    for step, expected in ((230, ["200", "230"]), (260, ["230", "260"])):
        model.optimizer.iterations.assign(step)
        assert sorted(backup._write_state(), key=int) == expected


def test_a_step_backup_due_on_an_epochs_last_batch_waits_for_its_validation(tmp_path, monkeypatch):
    """Killed during epoch 2's validation, with step backups falling on every epoch's last batch."""
    backup = f"--backup_every_steps={steps_per_epoch(random_log(tmp_path), tmp_path / 'cache')}"
    whole = train_in_process(tmp_path, tmp_path / "whole", backup)
    resumed = interrupted_then_resumed(tmp_path, monkeypatch, training.ValidationCallback, 1, backup)
    assert_resumed_as_whole(resumed, whole, tmp_path)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_backup(tmp_path, tiny_csv, capsys):
    run_dir = tmp_path / "run"
    code = cli.main(["--dataset=csv", f"--data_path={tiny_csv}", f"--data_dir={tmp_path / 'cache'}", f"--run_dir={run_dir}",
                     *FLAGS, "--backup_every_steps=1", "--learning_rate=1e38", "--sampler_warmup_epochs=0"])
    message = capsys.readouterr().err
    assert code == cli.DIVERGED
    assert "step " in message and (" is nan" in message or " is inf" in message), message
    checkpoint = tf.train.latest_checkpoint(str(run_dir / "backup" / "chief"))
    reader = tf.train.load_checkpoint(checkpoint)
    step = int(reader.get_tensor("model/optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))
    assert f"step {step + 1} " in message  # the backup is the step before the bad one
    weights = [reader.get_tensor(name) for name, _ in tf.train.list_variables(checkpoint) if "embeddings" in name]
    assert weights and all(np.all(np.isfinite(w)) for w in weights)
    assert str(step) in json.loads((run_dir / "backup" / "resume.json").read_text())


def test_an_unwritable_run_directory_stops_before_anything_starts(tmp_path, tiny_csv, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    started = time.monotonic()
    code = cli.main(["--dataset=csv", f"--data_path={tiny_csv}", f"--run_dir={blocker / 'run'}", *FLAGS])
    assert code == cli.USAGE_ERROR and time.monotonic() - started < 5
    assert "is a file, not a folder" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes through permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(preflight.RunDirectoryError, match="cannot write"):
            preflight.check_run_directory(locked / "run", min_free_gb=0)


def test_a_full_disk_stops_before_anything_starts(tmp_path, tiny_csv, capsys, monkeypatch):
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 200 * 2**20})())
    code = cli.main(["--dataset=csv", f"--data_path={tiny_csv}", f"--run_dir={tmp_path / 'run'}", *FLAGS])
    assert code == cli.USAGE_ERROR
    assert "only 0.20 GiB free" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    preflight.check_run_directory(tmp_path / "run", min_free_gb=0.1)


def test_a_run_keeping_a_weight_average_resumes_from_an_epoch_end_backup_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """The epoch-end backup is taken with the averaged weights in the model and the raw ones in the slots."""
    average = "--weight_average_decay=0.8"
    whole = train_in_process(tmp_path, tmp_path / "whole", average)
    resumed = interrupted_then_resumed(tmp_path, monkeypatch, fault_tolerance.RunBackup, 1, average)
    assert_resumed_as_whole(resumed, whole, tmp_path)


def test_a_run_keeping_a_weight_average_resumes_from_a_mid_epoch_backup_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """A mid-epoch backup holds the raw weights in the model: the resumed epoch must not swap them out."""
    per_epoch = steps_per_epoch(random_log(tmp_path), tmp_path / "cache")
    every = next(b for b in (3, 4, 5, 7) if per_epoch % b and b < per_epoch)
    flags = ("--weight_average_decay=0.8", f"--backup_every_steps={every}")
    whole = train_in_process(tmp_path, tmp_path / "whole", *flags)
    resumed = interrupted_then_resumed(tmp_path, monkeypatch, training.ValidationCallback, 2, *flags)
    assert_resumed_as_whole(resumed, whole, tmp_path)
