"""Hyper-parameter search with keras-tuner; objective: validation NDCG@10 (full ranking).

    python -m tf_autosam.tune --dataset=ml100k --tuner=bayesian --max_trials=12 [--search_dir=tuning]

Searches :data:`tf_autosam.config.SEARCH_SPACE` (declared beside the config it
tunes) on top of ``--preset`` / ``--config`` and any other trainer flag. Each
trial is an ordinary training run in ``<search_dir>/<project>/trial_<id>/run``.
Running the same command again resumes an interrupted search (completed
trials are kept). At the end: ``results.md`` / ``results.csv`` (every trial),
``best.json`` (the best trial's whole config: ``python -m tf_autosam.main
--config=best.json`` retrains it) and TensorBoard's HParams dashboard data
(``tensorboard --logdir <search_dir>/<project>``).

keras-tuner builds with Keras 3 while the trainer uses tf-keras, so the tuner
overrides ``run_trial`` to run our training and report the objective.
"""

from __future__ import annotations

import argparse
import csv
import io
import pathlib
import sys
from typing import Callable, Optional, Sequence

from tf_autosam import config as config_lib
from tf_autosam.main import USAGE_ERROR, add_config_flags

OBJECTIVE = "val_NDCG@10"
TUNERS = ("bayesian", "random", "hyperband")
RESULTS_MARKDOWN = "results.md"
RESULTS_CSV = "results.csv"
BEST_CONFIG = "best.json"
HPARAMS_SUBDIR = "hparams"

Log = Callable[[str], None]


def search_hyperparameters():
    """keras-tuner HyperParameters for SEARCH_SPACE."""
    import keras_tuner as kt

    space = kt.HyperParameters()
    for name, search in config_lib.SEARCH_SPACE.items():
        if search.choices:
            space.Choice(name, list(search.choices))
        else:
            space.Float(name, search.low, search.high, sampling="log" if search.log else "linear")
    return space


def make_oracle(kind: str, max_trials: int, max_epochs: int, seed: int):
    import keras_tuner as kt

    objective = kt.Objective(OBJECTIVE, direction="max")
    common = dict(objective=objective, hyperparameters=search_hyperparameters(), tune_new_entries=False, seed=seed)
    if kind == "random":
        return kt.oracles.RandomSearchOracle(max_trials=max_trials, **common)
    if kind == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(max_trials=max_trials, **common)
    return kt.oracles.HyperbandOracle(max_epochs=max_epochs, **common)


def build_tuner(kind: str, base: config_lib.TrainerConfig, data, folder: pathlib.Path, project: str,
                max_trials: int, log: Log):
    """A tuner whose trials train ``base`` with the trial's values (resumes what ``folder`` holds)."""
    import keras_tuner as kt

    from tf_autosam.run_directory import RunDirectory
    from tf_autosam.training import run_training

    class TrainerTuner(kt.Tuner):
        def run_trial(self, trial, *args, **kwargs):
            values = trial.hyperparameters.values
            trial_config = base.replace(**config_lib.from_search(values))
            if "tuner/epochs" in values:  # Hyperband's budget for this bracket
                trial_config = trial_config.replace(epochs=int(values["tuner/epochs"]))
            trial_folder = pathlib.Path(self.get_trial_dir(trial.trial_id))
            run = RunDirectory.create(str(trial_folder / "run"), trial_config.dataset, trial_config.model)
            log(f"trial {trial.trial_id}: " + ", ".join(f"{k}={_shown(v)}" for k, v in config_lib.from_search(values).items()))
            results = run_training(trial_config.replace(run_dir=str(run.path)), data, run, log=lambda _: None)
            objective = results["validation"]["NDCG@10"]
            write_trial_hparams(trial_folder / HPARAMS_SUBDIR, trial.trial_id, values, objective)
            log(f"trial {trial.trial_id}: {OBJECTIVE} {objective:.4f} (best epoch {results['best_epoch']})")
            return {OBJECTIVE: objective}

    oracle = make_oracle(kind, max_trials, base.epochs, base.seed)
    return TrainerTuner(oracle=oracle, directory=str(folder), project_name=project, overwrite=False)


def _shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_trial_hparams(folder: pathlib.Path, trial_id: str, values: dict, objective: float) -> None:
    """One HParams-dashboard session: the trial's searched values and its objective."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    with tf.summary.create_file_writer(str(folder)).as_default():
        hp.hparams({name: values[name] for name in config_lib.SEARCH_SPACE if name in values}, trial_id=trial_id)
        tf.summary.scalar(OBJECTIVE, objective, step=0)


def write_hparams_config(folder: pathlib.Path) -> None:
    """The HParams dashboard's experiment: searched fields and the objective."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    hparams = []
    for name, search in config_lib.SEARCH_SPACE.items():
        domain = hp.Discrete(list(search.choices)) if search.choices else hp.RealInterval(search.low, search.high)
        hparams.append(hp.HParam(name, domain))
    with tf.summary.create_file_writer(str(folder)).as_default():
        hp.hparams_config(hparams=hparams, metrics=[hp.Metric(OBJECTIVE, display_name="validation NDCG@10")])


def results_rows(tuner) -> list[dict]:
    """Every trial, best first: id, status, objective and searched values."""
    rows = []
    for trial in tuner.oracle.trials.values():
        score = trial.score if trial.score is not None else float("nan")
        values = config_lib.from_search(trial.hyperparameters.values)
        rows.append({"trial": trial.trial_id, "status": trial.status, OBJECTIVE: score, **values})
    return sorted(rows, key=lambda row: (-row[OBJECTIVE] if row[OBJECTIVE] == row[OBJECTIVE] else float("inf")))


def write_results(tuner, base: config_lib.TrainerConfig, folder: pathlib.Path) -> Optional[pathlib.Path]:
    """results.md, results.csv and best.json in ``folder``; returns best.json's path (None without a result)."""
    from input_pipeline.cache import atomic_write_text

    rows = results_rows(tuner)
    columns = ["trial", "status", OBJECTIVE, *config_lib.SEARCH_SPACE]
    table = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    table += ["| " + " | ".join(_shown(row.get(column, "")) for column in columns) + " |" for row in rows]
    atomic_write_text(folder / RESULTS_MARKDOWN, "\n".join(table) + "\n")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(folder / RESULTS_CSV, text.getvalue())
    best = tuner.oracle.get_best_trials(num_trials=1)
    if not best:
        return None
    best_config = base.replace(**config_lib.from_search(best[0].hyperparameters.values), run_dir=None)
    atomic_write_text(folder / BEST_CONFIG, best_config.to_json() + "\n")
    return folder / BEST_CONFIG


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tf_autosam.tune", description=__doc__.split("\n")[0])
    parser.add_argument("--tuner", default="bayesian", choices=TUNERS, help="Search algorithm. [default: bayesian]")
    parser.add_argument("--max_trials", type=int, default=12, help="Trials to run in all, counting resumed ones (bayesian, random). [default: 12]")
    parser.add_argument("--search_dir", default="tuning", help="Folder of searches; the same folder and project resume. [default: tuning]")
    parser.add_argument("--project", default=None, help="Search name inside --search_dir. [default: <dataset>-<tuner>]")
    parser.add_argument("--preset", default=None, choices=sorted(config_lib.PRESETS), help="Base config of every trial. [default: default]")
    parser.add_argument("--config", default=None, help="A saved config.json to start every trial from instead of a preset.")
    add_config_flags(parser, [name for name in config_lib.field_names() if name not in ("run_dir",)])
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    arguments = vars(parser.parse_args(argv))
    kind, max_trials = arguments.pop("tuner"), arguments.pop("max_trials")
    search_dir, project = pathlib.Path(arguments.pop("search_dir")), arguments.pop("project")
    preset_name, config_file = arguments.pop("preset"), arguments.pop("config")
    if preset_name and config_file:
        parser.error("give --preset or --config, not both")
    base = (config_lib.TrainerConfig.from_json(pathlib.Path(config_file).read_text()) if config_file
            else config_lib.preset(preset_name or "default")).replace(**arguments)
    if base.model != "autosam":
        parser.error("the search space tunes AutoSAM's knobs: use --model=autosam")
    from input_pipeline.datasets import DatasetRequestError, load_dataset
    from input_pipeline.errors import DataError, DataUnavailableError

    try:
        data = load_dataset(base.dataset, **base.dataset_options())
    except (DatasetRequestError, DataError, DataUnavailableError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    project = project or f"{base.dataset.replace('/', '-')}-{kind}"
    folder = search_dir / project
    tuner = build_tuner(kind, base.replace(export=False, verbose=0), data, search_dir, project, max_trials, print)
    write_hparams_config(folder)
    tuner.search()
    best = write_results(tuner, base, folder)
    print((folder / RESULTS_MARKDOWN).read_text())
    if best:
        print(f"best config: {best}  (retrain: python -m tf_autosam.main --config={best})")
    print(f"TensorBoard (HParams dashboard): tensorboard --logdir {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
