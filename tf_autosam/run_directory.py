"""One directory per run: config, per-epoch and final metrics, checkpoints, TensorBoard logs.

Every file is written atomically (temporary file + rename), so a run killed
mid-write never leaves a truncated JSON behind.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import shutil
from typing import Any, Optional

from input_pipeline.cache import atomic_write_text
from tf_autosam.config import TrainerConfig

CONFIG_FILE = "config.json"
# Written last, and only ever describing a finished run of the config beside it.
METRICS_FILE = "metrics.json"
# While training, each new best epoch's weights go to their own checkpoint
# (``best-epoch-0007`` for 0-based epoch 6): a process killed after writing one
# cannot overwrite the weights of the best epoch its backup resumes with.
# When training ends the best epoch's weights become ``best`` and the others go.
BEST_CHECKPOINT = "best"
EPOCH_CHECKPOINT_PREFIX = "best-epoch-"


def default_run_dir(dataset: str, model: str) -> str:
    """``runs/<dataset>-<model>-<time>``: a fresh directory per run (pass --run_dir to resume one)."""
    return f"runs/{dataset}-{model}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def saved_config(run_dir: pathlib.Path) -> TrainerConfig:
    """The config a run directory was trained with (its ``config.json``)."""
    return TrainerConfig.from_json((pathlib.Path(run_dir) / CONFIG_FILE).read_text())


class RunDirectory:
    """Paths and atomic writers for one run's outputs."""

    def __init__(self, path: pathlib.Path, chief: Optional["RunDirectory"] = None):
        """``chief``: for a non-chief worker of a synchronous cluster, the run directory the chief
        writes, whose backup and best-epoch checkpoints this worker reads."""
        self.path = pathlib.Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.chief = chief

    @classmethod
    def create(cls, run_dir: Optional[str], dataset: str, model: str) -> "RunDirectory":
        return cls(pathlib.Path(run_dir or default_run_dir(dataset, model)))

    @property
    def checkpoint_dir(self) -> pathlib.Path:
        return self.path / "checkpoints"

    @property
    def best_checkpoint(self) -> pathlib.Path:
        """The finished run's best weights (a TensorFlow checkpoint prefix)."""
        return self.checkpoint_dir / BEST_CHECKPOINT

    @property
    def epoch_checkpoint_pattern(self) -> str:
        """``ModelCheckpoint``'s file path: it formats ``epoch`` 1-based."""
        return str(self.checkpoint_dir / (EPOCH_CHECKPOINT_PREFIX + "{epoch:04d}"))

    def epoch_checkpoint(self, epoch: int) -> pathlib.Path:
        """The checkpoint of 0-based ``epoch``, written when it was a new best."""
        return self.checkpoint_dir / f"{EPOCH_CHECKPOINT_PREFIX}{epoch + 1:04d}"

    def remove_epoch_checkpoints(self, keep: frozenset[int] = frozenset()) -> None:
        """Deletes the files of every epoch checkpoint except those of the 0-based epochs in ``keep``."""
        kept = {self.epoch_checkpoint(epoch).name for epoch in keep}
        for path in self.checkpoint_dir.glob(EPOCH_CHECKPOINT_PREFIX + "*"):
            if path.name.split(".")[0] in kept:
                continue
            if path.is_dir():  # a save killed midway leaves its ``_temp`` folder
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    @property
    def backup_dir(self) -> pathlib.Path:
        """Keras' training-state backup and ``resume.json`` (the chief's); removed when training ends normally."""
        return self.chief.backup_dir if self.chief else self.path / "backup"

    @property
    def tensorboard_dir(self) -> pathlib.Path:
        return self.path / "tensorboard"

    def start(self, config: TrainerConfig) -> None:
        """Records the config of the run about to train; an older run's metrics go first."""
        (self.path / METRICS_FILE).unlink(missing_ok=True)
        self.write_text(CONFIG_FILE, config.to_json())

    def finish(self, results: dict) -> pathlib.Path:
        """Writes the final metrics: from now on the directory holds a finished run of its config."""
        return self.write_json(METRICS_FILE, results)

    def finished_results(self, config: TrainerConfig) -> Optional[dict]:
        """The metrics of a run that finished with a config training the same as ``config``, else None.

        Configs compare by :meth:`TrainerConfig.trained_fields`, so a plain
        backbone's run is reused whatever the sampler's settings say; a config
        file this version cannot read is never a match.
        """
        config_path, metrics_path = self.path / CONFIG_FILE, self.path / METRICS_FILE
        if not (config_path.is_file() and metrics_path.is_file()):
            return None
        try:
            saved = TrainerConfig.from_json(config_path.read_text())
        except ValueError:
            return None
        if saved.trained_fields() != config.trained_fields():
            return None
        return json.loads(metrics_path.read_text())

    def write_text(self, name: str, text: str) -> pathlib.Path:
        target = self.path / name
        atomic_write_text(target, text)
        return target

    def write_json(self, name: str, content: Any) -> pathlib.Path:
        return self.write_text(name, json.dumps(content, indent=2, sort_keys=True) + "\n")
