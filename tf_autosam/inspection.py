"""What the behaviour sampler does: keep probabilities and decisions, per user or on average.

    python -m tf_autosam.inspection --run_dir=runs/ml100k-autosam-... --user=196 --user=186

prints, for each user's test-time input window (oldest first), every
behaviour's raw item id, its keep probability and whether the run's inference
mode keeps it. Shapes follow ``input_pipeline.pipeline`` ([batch, max_len],
left padded, 0 = padding).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from input_pipeline.pipeline import left_pad
from input_pipeline.prepare import PreparedData
from input_pipeline.schema import PADDING_ID
from tf_autosam.config import INFERENCE_MODES
from tf_autosam.models import AutoSAMRecommender
from tf_autosam.run_directory import CONFIG_FILE, saved_config
from tf_autosam.training import load_best_model

SPLITS = ("validation", "test")


@dataclass(frozen=True)
class SamplerDecision:
    """One behaviour in a user's input window."""

    position: int
    item: str
    keep_probability: float
    kept: bool


def sampler_decisions(model: AutoSAMRecommender, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[batch, L] keep probabilities and [batch, L] bool decisions (the model's inference mode)."""
    inputs = tf.convert_to_tensor(inputs, tf.int32)
    probability = model.keep_probability(inputs)
    return probability.numpy(), model.inference_keep(inputs, probability).numpy()


def _split_histories(data: PreparedData, split: str) -> list[np.ndarray]:
    """Every user's input history for ``split`` (one of :data:`SPLITS`)."""
    histories, _ = data.test_examples() if split == "test" else data.validation_examples()
    return histories


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting 1/2 (Mann-Whitney U / (n+ n-))."""
    scores, positive = np.asarray(scores, np.float64).ravel(), np.asarray(positive, bool).ravel()
    order = np.argsort(scores, kind="stable")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    num_positive = int(positive.sum())
    num_negative = len(scores) - num_positive
    if num_positive == 0 or num_negative == 0:
        raise ValueError("ROC AUC needs both positive and negative examples")
    return float((ranks[positive].sum() - num_positive * (num_positive + 1) / 2.0) / (num_positive * num_negative))


def noise_separation(
    model: AutoSAMRecommender, data: PreparedData, noise_labels: dict[str, np.ndarray], split: str = "test"
) -> dict[str, float]:
    """How well keep probabilities tell real behaviours from planted noise over every user's input window.

    ``noise_labels`` maps raw user id -> bool per interaction in chronological
    order (``input_pipeline.planted_noise.read_noise_labels``). Returns the ROC
    AUC of "real" against the keep probability and the mean probability of each kind.
    """
    histories = _split_histories(data, split)
    max_len = model.backbone.max_len
    windows = left_pad(histories, max_len)
    is_noise = np.zeros(windows.shape, bool)
    for user, history in enumerate(histories):
        labels = noise_labels[data.user_vocab[user]][: len(history)][-max_len:]
        is_noise[user, max_len - len(labels):] = labels
    probabilities = np.concatenate([
        model.keep_probability(tf.constant(windows[start:start + 256])).numpy()
        for start in range(0, len(windows), 256)
    ])
    real_position = windows != PADDING_ID
    scores, noise = probabilities[real_position], is_noise[real_position]
    return {
        "auc": roc_auc(scores, ~noise),
        "keep_probability_real": float(scores[~noise].mean()),
        "keep_probability_noise": float(scores[noise].mean()),
    }


def describe_user(model: AutoSAMRecommender, data: PreparedData, raw_user: str, split: str = "test") -> list[SamplerDecision]:
    """The sampler's view of one user's input window for ``split`` (oldest behaviour first)."""
    histories = _split_histories(data, split)
    window = left_pad([histories[data.user_index(raw_user)]], model.backbone.max_len)
    probability, keep = sampler_decisions(model, window)
    return [
        SamplerDecision(position, data.item_vocab[item], float(probability[0, position]), bool(keep[0, position]))
        for position, item in enumerate(window[0])
        if item != PADDING_ID
    ]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tf_autosam.inspection", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", required=True, help="Directory of a finished autosam run (config.json and checkpoints/).")
    parser.add_argument("--user", action="append", required=True, help="Raw user id to show; repeat for several users.")
    parser.add_argument("--split", default="test", choices=SPLITS, help="Whose input window: test (history before the last item) or validation.")
    parser.add_argument("--inference_mode", default=None, choices=INFERENCE_MODES,
                        help="Override the run's inference mode for the keep decisions.")
    args = parser.parse_args(argv)

    from input_pipeline.datasets import load_dataset

    run_dir = pathlib.Path(args.run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        parser.error(f"{run_dir} has no {CONFIG_FILE}: not a run directory")
    config = saved_config(run_dir)
    data = load_dataset(config.dataset, **config.dataset_options(), log=lambda line: None)
    try:
        if config.model != "autosam":
            raise ValueError(f"{run_dir} trained model {config.model!r}; only autosam runs have a sampler")
        model = load_best_model(run_dir, data, **({"inference_mode": args.inference_mode} if args.inference_mode else {}))
        for user in args.user:
            decisions = describe_user(model, data, user, args.split)
            kept = sum(d.kept for d in decisions)
            print(f"user {user}: {kept} of {len(decisions)} behaviours kept ({model.settings.inference_mode} mode)")
            print(f"{'position':>8}  {'item':<12}{'p(keep)':>8}  kept")
            for d in decisions:
                print(f"{d.position:>8}  {d.item:<12}{d.keep_probability:>8.3f}  {'yes' if d.kept else 'no'}")
    except KeyError as error:
        print(f"error: user {error} is not in the prepared data of {config.dataset}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
