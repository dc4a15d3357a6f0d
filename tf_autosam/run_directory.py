"""One directory per run: config, per-epoch and final metrics, checkpoints, TensorBoard logs.

Every file is written atomically (temporary file + rename), so a run killed
mid-write never leaves a truncated JSON behind.
"""

from __future__ import annotations

import datetime
import json
import pathlib
from typing import Any, Optional

from input_pipeline.cache import atomic_write_text


def default_run_dir(dataset: str, model: str) -> str:
    """``runs/<dataset>-<model>-<time>``: a fresh directory per run (pass --run_dir to resume one)."""
    return f"runs/{dataset}-{model}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"


class RunDirectory:
    """Paths and atomic writers for one run's outputs."""

    def __init__(self, path: pathlib.Path):
        self.path = pathlib.Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def create(cls, run_dir: Optional[str], dataset: str, model: str) -> "RunDirectory":
        return cls(pathlib.Path(run_dir or default_run_dir(dataset, model)))

    @property
    def checkpoint_dir(self) -> pathlib.Path:
        return self.path / "checkpoints"

    @property
    def backup_dir(self) -> pathlib.Path:
        """Keras' training-state backup and ``resume.json``; removed when training ends normally."""
        return self.path / "backup"

    @property
    def tensorboard_dir(self) -> pathlib.Path:
        return self.path / "tensorboard"

    def finished_results(self, config_json: str) -> Optional[dict]:
        """The ``metrics.json`` of a run that finished with exactly this config, else None.

        ``metrics.json`` is written last, so its presence means the run ended;
        comparing the parsed configs (not their text) ignores formatting only.
        """
        config_path, metrics_path = self.path / "config.json", self.path / "metrics.json"
        if not (config_path.is_file() and metrics_path.is_file()):
            return None
        if json.loads(config_path.read_text()) != json.loads(config_json):
            return None
        return json.loads(metrics_path.read_text())

    def write_text(self, name: str, text: str) -> pathlib.Path:
        target = self.path / name
        atomic_write_text(target, text)
        return target

    def write_json(self, name: str, content: Any) -> pathlib.Path:
        return self.write_text(name, json.dumps(content, indent=2, sort_keys=True) + "\n")
