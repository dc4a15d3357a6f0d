"""Surviving faults: resumable training state and a stop on non-finite losses or rewards.

Resume. :class:`RunBackup`, Keras' ``BackupAndRestore``, checkpoints the
model every ``backup_every_steps`` steps (or at each epoch's end) under
``RUN/backup/`` (weights, both optimisers with their step counters, the
in-graph epoch, the loss trackers). Just before each checkpoint it writes
what Keras does not keep to ``RUN/backup/resume.json``: early stopping's
state, the best validation score and the epoch history, keyed by the
optimiser step (which also says where in the epoch order the backup was
taken). The last two entries are kept, so a kill between the two writes
still finds the entry of the checkpoint Keras restores. The best epoch's
weights are in its own checkpoint (``RunDirectory.epoch_checkpoint``), kept
while a kept entry names it, so a process killed after writing a newer one
cannot replace them. Random draws inside a step are stateless functions of
(seed, step) and each epoch's order a function of (seed, epoch)
(``input_pipeline.pipeline.training_dataset``), dropout masks included
(``tf_autosam.layers.dropout``), so a resumed run reads and draws what the
uninterrupted one would have.
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil
from dataclasses import dataclass
from typing import Optional

import tensorflow as tf

from input_pipeline.cache import atomic_write_text
from tf_autosam.run_directory import RunDirectory

RESUME_FILE = "resume.json"
KEPT_ENTRIES = 2


class TrainingDivergedError(RuntimeError):
    """A loss or reward became NaN or infinite; the last backup is left as it was."""


class NonFiniteGuard(tf.keras.callbacks.Callback):
    """Stops at the end of the first epoch whose logged losses or rewards are not finite.

    The epoch-level guard: parameter-server training allows no batch-level
    callbacks. Elsewhere :class:`StepNonFiniteGuard` stops at the step.
    """

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        self._epoch = epoch

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        self._check(logs, "end of the epoch")

    def _check(self, logs: Optional[dict], where: str) -> None:
        for name, value in (logs or {}).items():
            if not math.isfinite(float(value)):
                step = int(self.model.optimizer.iterations.numpy())
                raise TrainingDivergedError(
                    f"step {step} (epoch {self._epoch + 1}, {where}): {name} is {float(value)}; "
                    f"the last backup (if any) is intact"
                )


class StepNonFiniteGuard(NonFiniteGuard):
    """Stops at the first step whose logged losses or rewards are not finite, before anything is backed up.

    Keras logs running epoch means, so one non-finite step makes its mean non-finite at once.
    Place it before the backup callbacks: it raises before they run for that step.
    """

    def on_train_batch_end(self, batch: int, logs: Optional[dict] = None) -> None:
        self._check(logs, f"batch {batch + 1}")


@dataclass(frozen=True)
class ResumePoint:
    """Where a backed-up run continues: epoch index, batches of it already done, callback state."""

    epoch: int
    batch: int
    state: dict

    @property
    def stopped_early(self) -> bool:
        """Backed up at the end of the epoch that stopped the run: only the end of training is left."""
        return self.state["stopper"]["stopped_epoch"] > 0


class RunBackup(tf.keras.callbacks.BackupAndRestore):
    """Keras' backup plus the callback state it lacks (``resume.json``), put back on resume.

    Backs up every ``every_steps`` steps (0: at each epoch's end). A step
    backup due on an epoch's last batch waits for the epoch's end: taken at
    the batch it would precede the epoch's validation, and Keras resumes such
    a backup at the next epoch, so a run killed during validation would lose
    the finished epoch's score, early stopping and record. Place it after the
    validation, early-stopping, checkpoint and recording callbacks.
    """

    def __init__(self, run: RunDirectory, every_steps: int, steps_per_epoch: int,
                 stopper: tf.keras.callbacks.EarlyStopping, best_checkpoint: tf.keras.callbacks.ModelCheckpoint,
                 epochs: list[dict], resume: Optional[ResumePoint]):
        super().__init__(str(run.backup_dir), save_freq=every_steps or "epoch")
        self.run = run
        self.path = run.backup_dir / RESUME_FILE
        self.steps_per_epoch = steps_per_epoch
        self.stopper = stopper
        self.best_checkpoint = best_checkpoint
        self.epochs = epochs
        self.resume = resume
        self._due_at_epoch_end = False
        self._tracker_values: Optional[list] = None

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        super().on_train_begin(logs)  # restores Keras' checkpoint, if any
        if self.resume is None:
            return
        state = self.resume.state
        for name in ("wait", "best", "best_epoch", "stopped_epoch"):
            setattr(self.stopper, name, state["stopper"][name])
        # EarlyStopping holding no best weights takes the next epoch as the best one. The best
        # epoch predates this process; its weights are in its epoch checkpoint, which
        # on_train_end reads back unless a later epoch beats it (and replaces these).
        self.stopper.best_weights = self.model.get_weights()
        self.best_checkpoint.best = state["best"]
        self.epochs[:] = state["epochs"]
        # Read now: the epoch's start resets the trackers Keras restored.
        self._tracker_values = [[v.numpy() for v in metric.variables] for metric in self.model.metrics]

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        super().on_epoch_begin(epoch, logs)
        if self._tracker_values is not None and self.resume.batch > 0:
            for metric, values in zip(self.model.metrics, self._tracker_values):
                for variable, value in zip(metric.variables, values):
                    variable.assign(value)
        self._tracker_values = None

    def on_train_batch_end(self, batch: int, logs: Optional[dict] = None) -> None:
        if self.save_freq == "epoch" or batch + 1 < self.steps_per_epoch:
            super().on_train_batch_end(batch, logs)
            return
        self._training_state.backup_if_preempted()
        self._batches_count += 1
        self._due_at_epoch_end = self._batches_count >= self.save_freq
        if self._due_at_epoch_end:
            self._batches_count = 0

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        if self.save_freq == "epoch" or self._due_at_epoch_end:
            self._due_at_epoch_end = False
            self._backup(epoch=epoch, batch=self.steps_per_epoch - 1)

    def on_train_end(self, logs: Optional[dict] = None) -> None:
        """Training ended normally: the best epoch's weights become ``checkpoints/best``, then the backup goes.

        Runs after early stopping put the best weights it holds back in the
        model. If the best epoch ended before this process resumed, those are
        the placeholder: its checkpoint is read instead. Anything failing here
        leaves the backup to resume from.
        """
        if self.resume is not None and self.stopper.best_epoch < self.resume.epoch:
            self.model.load_weights(str(self._epoch_weights(self.stopper.best_epoch))).expect_partial()
        # Every worker saves (a synchronous cluster's save is a collective); the chief deletes the
        # epoch checkpoints, which the others have read by then, only after it.
        self.model.save_weights(str(self.run.best_checkpoint))
        self.run.remove_epoch_checkpoints()
        super().on_train_end(logs)  # Keras removes its checkpoint (the chief's) or its temporary copy
        if self._chief:
            shutil.rmtree(self.path.parent, ignore_errors=True)

    @property
    def _chief(self) -> bool:
        """Keras' own test: the chief (any process outside a multi-worker cluster) writes the backup;
        the other workers restore from it and write only their temporary copies."""
        return self.model.distribute_strategy.extended.should_checkpoint

    def _epoch_weights(self, epoch: int) -> pathlib.Path:
        written = self.run.chief or self.run
        checkpoint = written.epoch_checkpoint(epoch)
        if tf.io.gfile.exists(f"{checkpoint}.index"):
            return checkpoint
        # A run started before best checkpoints were kept per epoch (2026-12-07) has only this one.
        return written.best_checkpoint

    def _backup(self, epoch: int, batch: int = 0) -> None:
        if not self._chief:
            super()._backup(epoch=epoch, batch=batch)  # every worker takes part in Keras' save
            return
        kept = self._write_state()
        super()._backup(epoch=epoch, batch=batch)
        self.run.remove_epoch_checkpoints(keep=frozenset(entry["stopper"]["best_epoch"] for entry in kept.values()))

    def _write_state(self) -> dict:
        """Adds this step's entry to ``resume.json`` (the last KEPT_ENTRIES stay) and returns the entries kept."""
        step = int(self.model.optimizer.iterations.numpy())
        # Entries past this step were written by a process killed before their checkpoints completed.
        entries = {key: entry for key, entry in read_entries(self.path).items() if int(key) < step}
        entries[str(step)] = {
            "stopper": {"wait": self.stopper.wait, "best": float(self.stopper.best),
                        "best_epoch": self.stopper.best_epoch, "stopped_epoch": self.stopper.stopped_epoch},
            "best": float(self.best_checkpoint.best),
            "epochs": list(self.epochs),
        }
        kept = dict(sorted(entries.items(), key=lambda item: int(item[0]))[-KEPT_ENTRIES:])
        atomic_write_text(self.path, json.dumps(kept))
        return kept


def read_entries(path: pathlib.Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def resume_point(backup_dir: pathlib.Path, steps_per_epoch: int) -> Optional[ResumePoint]:
    """The point a backup in ``backup_dir`` resumes from, or None without a backup.

    The step comes from Keras' checkpoint (the optimiser's iteration count);
    epoch and batch follow from it, since every epoch has ``steps_per_epoch`` steps.
    """
    checkpoint = tf.train.latest_checkpoint(str(pathlib.Path(backup_dir) / "chief"))
    if checkpoint is None:
        return None
    step = int(tf.train.load_checkpoint(checkpoint).get_tensor("model/optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))
    entries = read_entries(pathlib.Path(backup_dir) / RESUME_FILE)
    if str(step) not in entries:
        raise RuntimeError(f"the backup in {backup_dir} (step {step}) has no matching {RESUME_FILE}; "
                           f"delete {backup_dir} to start the run afresh")
    return ResumePoint(epoch=step // steps_per_epoch, batch=step % steps_per_epoch, state=entries[str(step)])
