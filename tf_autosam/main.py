"""Command line: flags -> config -> data -> training -> evaluation -> run directory.

    python -m tf_autosam.main --dataset=ml100k --model=sasrec --preset=default

Every field of :class:`tf_autosam.config.TrainerConfig` is a flag; ``--preset``
picks the base values and explicit flags override them. Bad flags, unknown
datasets and bad data exit with code 2 and a one-line reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import tempfile
import typing
from typing import Optional, Sequence

from tf_autosam import config as config_lib

USAGE_ERROR = 2
# Exit code of a run stopped by a NaN or infinite loss or reward.
DIVERGED = 3


def _flag_type(field: dataclasses.Field) -> type:
    hint = typing.get_type_hints(config_lib.TrainerConfig)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tf_autosam.main",
        description="Train and evaluate a sequential recommender (full-ranking metrics, one run directory per run).",
    )
    parser.add_argument(
        "--preset", default=None, choices=sorted(config_lib.PRESETS),
        help="Named set of hyper-parameters; explicit flags override it. [default: default]",
    )
    parser.add_argument(
        "--config", default=None,
        help="A saved config.json (a run's, or the tuner's best.json) to start from instead of a preset; "
             "explicit flags override it.",
    )
    add_config_flags(parser)
    return parser


DATA_FIELDS = ("dataset", "data_path", "data_dir", "manual_dir", "dedupe", "k_core", "actions", "skip_bad_rows")


def add_config_flags(parser: argparse.ArgumentParser, names: Optional[Sequence[str]] = None) -> None:
    """One flag per config field (all, or ``names``), with the field's help text; unset flags stay absent."""
    defaults = config_lib.preset("default")
    for field in dataclasses.fields(config_lib.TrainerConfig):
        if names is not None and field.name not in names:
            continue
        kind = _flag_type(field)
        help_text = f"{field.metadata['help']} [default preset: {getattr(defaults, field.name)}]"
        options = dict(help=help_text, default=argparse.SUPPRESS)
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["type"] = kind
            options["choices"] = field.metadata.get("choices")
        parser.add_argument(f"--{field.name}", **options)


def resolve_config(argv: Optional[Sequence[str]] = None) -> config_lib.TrainerConfig:
    """Parses flags into a config (exits with code 2 on a bad flag)."""
    parser = build_parser()
    arguments = vars(parser.parse_args(argv))
    preset_name, config_file = arguments.pop("preset"), arguments.pop("config")
    if preset_name and config_file:
        parser.error("give --preset or --config, not both")
    try:
        base = (config_lib.TrainerConfig.from_json(pathlib.Path(config_file).read_text()) if config_file
                else config_lib.preset(preset_name or "default"))
    except (OSError, ValueError, TypeError) as error:
        parser.error(f"cannot read --config {config_file}: {error}")
    try:
        resolved = base.replace(**arguments)
    except ValueError as error:
        parser.error(str(error))
    if resolved.dataset == "csv" and not resolved.data_path:
        parser.error("--dataset=csv needs --data_path=FILE")
    return resolved


def main(argv: Optional[Sequence[str]] = None) -> int:
    config = resolve_config(argv)
    from tf_autosam.preflight import RunDirectoryError, check_run_directory
    from tf_autosam.run_directory import default_run_dir

    run_dir = config.run_dir or default_run_dir(config.dataset, config.model)
    try:
        check_run_directory(pathlib.Path(run_dir), config.min_free_gb)
    except RunDirectoryError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    if config.strategy != "default" or config.cpu_devices > 1:
        from tf_autosam import distribution

        distribution.split_cpu(config.cpu_devices)
        if distribution.serve_if_cluster_server(config.strategy):
            return 0
    from input_pipeline.datasets import DatasetRequestError, load_dataset
    from input_pipeline.errors import DataError, DataUnavailableError

    try:
        data = load_dataset(config.dataset, **config.dataset_options())
    except (DatasetRequestError, DataError, DataUnavailableError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    try:
        config.check_catalogue(data.num_items)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    from tf_autosam.metrics import DEFAULT_CUTOFFS, format_table
    from tf_autosam.run_directory import METRICS_FILE, RunDirectory
    from tf_autosam.training import run_training

    if config.strategy != "default" and not distribution.writes_outputs(config.strategy):
        # A non-chief worker of a synchronous cluster trains in step with the chief; the chief writes the
        # run. It reads the chief's backup (Keras restores every worker from it), so that a killed cluster
        # restarted with the same command resumes every worker at the same step.
        with tempfile.TemporaryDirectory(prefix="tf_autosam-worker-") as scratch:
            worker_run = RunDirectory(pathlib.Path(scratch), chief=RunDirectory(pathlib.Path(run_dir)))
            run_training(config, data, worker_run, log=lambda line: None)
        return 0
    from tf_autosam.fault_tolerance import TrainingDivergedError

    run = RunDirectory(pathlib.Path(run_dir))
    print(f"run directory: {run.path}")
    try:
        results = run_training(config, data, run)
    except TrainingDivergedError as error:
        print(f"error: training diverged at {error}", file=sys.stderr)
        return DIVERGED
    columns = [f"{name}@{k}" for k in DEFAULT_CUTOFFS for name in ("NDCG", "Recall", "MRR")]
    print(f"\n{config.model} on {config.dataset}, best epoch {results['best_epoch']} (full ranking, history masked)")
    print(format_table({"validation": results["validation"], "test": results["test"]}, columns))
    if "inference_mode" in results:
        print(f"sampler: {results['inference_mode']} inference keeps {results['test_keep_rate']:.1%} of test inputs; "
              f"training keep rate {results['keep_rate']:.1%} (best epoch)")
    print(f"\nmetrics: {run.path / METRICS_FILE}")
    if config.export and config.model != "popularity":
        from serving.export import export_run

        exported = export_run(run.path, run.path / "export", config.export_model_name, config.serving_k,
                              data=data, inference_mode=config.inference_mode if config.model == "autosam" else "deterministic")
        print(f"SavedModel for TF Serving: {exported}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
