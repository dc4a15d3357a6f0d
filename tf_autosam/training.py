"""Fit orchestration: datasets, callbacks, early stopping, final evaluation, run directory."""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from input_pipeline import pipeline
from input_pipeline.prepare import PreparedData
from tf_autosam import distribution, fault_tolerance, models, summaries
from tf_autosam.config import TrainerConfig
from tf_autosam.evaluation import RankingEvaluator, inference_keep_rate
from tf_autosam.run_directory import RunDirectory, saved_config
from tf_autosam.weight_average import EvaluateAveragedWeights

SELECTION_METRIC = "NDCG@10"


@dataclass
class EvaluationData:
    """The validation and test splits as evaluation datasets."""

    validation: tf.data.Dataset
    test: tf.data.Dataset

    @classmethod
    def from_prepared(cls, data: PreparedData, config: TrainerConfig) -> "EvaluationData":
        def build(split):
            histories, targets = split
            return pipeline.evaluation_dataset(histories, targets, config.max_len, config.eval_batch_size)

        return cls(validation=build(data.validation_examples()), test=build(data.test_examples()))


class ValidationCallback(tf.keras.callbacks.Callback):
    """Adds full-ranking validation metrics (``val_`` prefix) to each epoch's logs."""

    def __init__(self, evaluator: RankingEvaluator, dataset: tf.data.Dataset):
        super().__init__()
        self.evaluator = evaluator
        self.dataset = dataset

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in self.evaluator.evaluate(self.dataset).items()})


class EpochTracker(tf.keras.callbacks.Callback):
    """Keeps the model's in-graph ``epoch`` variable current (epoch-dependent schedules read it)."""

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        self.model.epoch.assign(epoch)


class EpochRecorder(tf.keras.callbacks.Callback):
    """Keeps every epoch's logs and rewrites ``epochs.json`` after each epoch."""

    def __init__(self, run: RunDirectory, log: Callable[[str], None]):
        super().__init__()
        self.run = run
        self.log = log
        self.epochs: list[dict] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        record = {"epoch": epoch + 1, "seconds": time.perf_counter() - self._started}
        record.update({k: float(v) for k, v in (logs or {}).items()})
        self.epochs.append(record)
        self.run.write_json("epochs.json", self.epochs)
        trained = "  ".join(f"{name} {record[name]:.4f}" for name in self.model.LOGGED if name in record)
        self.log(
            f"epoch {epoch + 1}: {trained}  "
            f"val {SELECTION_METRIC} {record.get('val_' + SELECTION_METRIC, float('nan')):.4f}  "
            f"({record['seconds']:.1f}s)"
        )


def _silent(_: str) -> None:
    pass


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow and makes TF kernels deterministic on CPU."""
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _write_config_summary(run: RunDirectory, config: TrainerConfig) -> None:
    with tf.summary.create_file_writer(str(run.tensorboard_dir / "config")).as_default():
        tf.summary.text("config", "```\n" + config.to_json() + "\n```", step=0)


def fit_recommender(
    model: tf.keras.Model, config: TrainerConfig, data: PreparedData, evaluator: RankingEvaluator,
    validation: tf.data.Dataset, run: RunDirectory, log: Callable[[str], None],
) -> dict:
    """Fits with early stopping on validation NDCG@10 and leaves the best epoch's weights in ``model``."""
    windows = pipeline.training_windows(
        data.train_sequences(), config.max_len, config.window_stride, config.new_targets_only
    )
    log(f"training windows per epoch: {len(windows[0])}")
    steps_per_epoch = -(-len(windows[0]) // config.batch_size)
    parameter_server = distribution.is_parameter_server()
    resume = None if parameter_server else fault_tolerance.resume_point(run.backup_dir, steps_per_epoch)
    if resume is not None:
        log(f"resuming from the backup in {run.backup_dir}: epoch {resume.epoch + 1}, batch {resume.batch + 1}")
    train = distribution.training_input(lambda: pipeline.training_dataset(
        windows, config.batch_size, config.seed, config.epochs,
        start_epoch=resume.epoch if resume else 0, skip_batches=resume.batch if resume else 0,
    ))
    model.compile(optimizer=models.recommender_optimizer(config), jit_compile=config.jit_compile)
    monitor = f"val_{SELECTION_METRIC}"
    stopper = tf.keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=config.patience, restore_best_weights=True)
    # Without a backup (parameter-server training) there is no resume whose best epoch a newer
    # checkpoint could replace: one checkpoint, overwritten at each new best.
    best_checkpoint = tf.keras.callbacks.ModelCheckpoint(
        str(run.best_checkpoint) if parameter_server else run.epoch_checkpoint_pattern,
        monitor=monitor, mode="max", save_best_only=True, save_weights_only=True,
    )
    # verbose=1 shows Keras' progress bar, which already prints each epoch's metrics.
    recorder = EpochRecorder(run, log if config.verbose == 2 else _silent)
    callbacks = [
        fault_tolerance.NonFiniteGuard() if parameter_server else fault_tolerance.StepNonFiniteGuard(),
        EpochTracker(),
        *([EvaluateAveragedWeights(model.weight_average)] if model.weight_average is not None else []),
        ValidationCallback(evaluator, validation),
        stopper,
        best_checkpoint,
        tf.keras.callbacks.TensorBoard(str(run.tensorboard_dir), update_freq="epoch", profile_batch=0),
        recorder,
    ]
    if isinstance(model, models.AutoSAMRecommender):
        callbacks.append(sampler_summaries(config, data, windows, run))
    if not parameter_server:
        callbacks.append(fault_tolerance.RunBackup(
            run, config.backup_every_steps, steps_per_epoch, stopper, best_checkpoint, recorder.epochs, resume
        ))
    _write_config_summary(run, config)
    # Killed after early stopping's last backup: no epoch is left to run, only the end of training.
    epochs = resume.epoch if resume is not None and resume.stopped_early else config.epochs
    model.fit(train, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks,
              verbose=1 if config.verbose == 1 else 0)
    best = recorder.epochs[stopper.best_epoch]
    summary = {"best_epoch": best["epoch"], "epochs_run": len(recorder.epochs)}
    if "keep_rate" in best:
        summary["keep_rate"] = best["keep_rate"]
    return summary


def sampler_summaries(
    config: TrainerConfig, data: PreparedData, windows: tuple[np.ndarray, np.ndarray], run: RunDirectory
) -> summaries.SamplerSummaries:
    """TensorBoard's ``sampler/`` pictures for a fixed validation panel and a fixed sample of training windows."""
    histories, _ = data.validation_examples()
    panel_windows, panel_users = summaries.panel(histories, data.user_vocab, config.max_len)
    sample = np.random.default_rng(config.seed).permutation(len(windows[0]))[: summaries.REWARD_WINDOWS]
    return summaries.SamplerSummaries(
        run.tensorboard_dir / "sampler", panel_windows, panel_users, (windows[0][sample], windows[1][sample]),
        models.popularity_counts(data.train_sequences(), data.num_items),
    )


def build_model(config: TrainerConfig, data: PreparedData) -> tf.keras.Model:
    if config.model == "popularity":
        return models.PopularityModel(models.popularity_counts(data.train_sequences(), data.num_items))
    return models.build_recommender(config, data.num_items)


def load_best_model(run_dir: pathlib.Path, data: PreparedData, **overrides) -> tf.keras.Model:
    """A finished run's model with its best checkpoint, built from the run's own ``config.json``.

    ``overrides`` change settings that need no retraining, e.g. ``inference_mode``. The
    checkpoint's weights are already the averaged ones where the run kept an average
    (``weight_average``), so the model is built without the average's slots.
    """
    config = saved_config(run_dir).replace(weight_average_decay=0.0, **overrides)
    model = build_model(config, data)
    if config.model != "popularity":
        model.load_weights(str(RunDirectory(run_dir).best_checkpoint)).expect_partial()
    return model


def run_training(config: TrainerConfig, data: PreparedData, run: RunDirectory, log: Callable[[str], None] = print) -> dict:
    """Trains the configured model, evaluates its best epoch and writes ``metrics.json``."""
    fitted = config.for_catalogue(data.num_items)
    if fitted != config:
        log(f"{data.num_items:,} items: a full softmax would not fit; training with {fitted.num_negatives:,} "
            f"shared sampled negatives (raise --full_softmax_max_items to force a full softmax)")
        config = fitted
    # First: cluster strategies configure TensorFlow's runtime, which must not have started yet.
    strategy = distribution.make_strategy(config.strategy, data.num_items)
    seed_everything(config.seed)
    run.start(config)
    evaluation = EvaluationData.from_prepared(data, config)
    # Variables and optimisers must be created inside the strategy's scope to be placed by it.
    with strategy.scope():
        model = build_model(config, data)
        evaluator = RankingEvaluator(model, sampled_negatives=config.sampled_eval_negatives, seed=config.seed)
        started = time.perf_counter()
        summary = {"best_epoch": 0, "epochs_run": 0}
        if config.model != "popularity":
            summary = fit_recommender(model, config, data, evaluator, evaluation.validation, run, log)
    results = {
        "model": config.model,
        "dataset": config.dataset,
        **summary,
        "train_seconds": time.perf_counter() - started,
        "validation": evaluator.evaluate(evaluation.validation),
        "test": evaluator.evaluate(evaluation.test),
        "preparation": data.report.to_dict(),
    }
    if isinstance(model, models.AutoSAMRecommender):
        results["inference_mode"] = config.inference_mode
        results["test_keep_rate"] = inference_keep_rate(model, evaluation.test)
    run.finish(results)
    return results
