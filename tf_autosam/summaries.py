"""TensorBoard pictures of what the sampler learned, once per epoch.

Scalars (losses, rewards, keep rate, validation metrics) come from Keras'
TensorBoard callback under ``train/`` and ``validation/``; this module adds,
under ``sampler/``:

- ``sampler/keep_probability_panel`` (image): for a fixed panel of
  validation users, keep probability over the positions of their window (a
  heat map with a colour scale; dropped behaviours marked with a cross,
  padding grey), so one can watch the policy form epoch by epoch;
- ``sampler/keep_rate_vs_popularity`` (image): mean keep probability against
  the item's training popularity (log bins): does the sampler just drop
  rare items?;
- ``sampler/keep_probability``, ``sampler/reward``, ``sampler/future_reward``,
  ``sampler/perplexity_reward`` (histograms) over a fixed sample of training
  windows, valid positions only.
"""

from __future__ import annotations

import io
import pathlib
from typing import Optional, Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from input_pipeline.schema import PADDING_ID  # noqa: E402

PANEL_USERS = 16
REWARD_WINDOWS = 256
POPULARITY_BINS = 10


def figure_png(figure: plt.Figure) -> tf.Tensor:
    """[1, H, W, 4] uint8 image of a figure (closed afterwards)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return tf.image.decode_png(buffer.getvalue(), channels=4)[tf.newaxis]


def keep_heatmap(probability: np.ndarray, kept: np.ndarray, valid: np.ndarray, users: Sequence[str], epoch: int) -> tf.Tensor:
    """Users x positions heat map of keep probability; x = dropped, grey = padding."""
    height = 1.2 + 0.3 * len(users)
    figure, axes = plt.subplots(figsize=(10, height))
    shown = np.ma.masked_where(~valid, probability)
    colours = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    image = axes.imshow(shown, aspect="auto", cmap=colours, vmin=0.0, vmax=1.0, interpolation="nearest")
    rows, columns = np.nonzero(valid & ~kept)
    axes.scatter(columns, rows, marker="x", color="red", s=18, linewidths=1.0, label="dropped")
    axes.set_yticks(range(len(users)), labels=list(users), fontsize=7)
    axes.set_xlabel("position in the input window (oldest -> newest)")
    axes.set_ylabel("validation user")
    axes.set_title(f"epoch {epoch}: keep probability per behaviour (x = dropped, grey = padding)")
    colour_bar = figure.colorbar(image, ax=axes)
    colour_bar.set_label("keep probability")
    return figure_png(figure)


def popularity_plot(popularity: np.ndarray, probability: np.ndarray, epoch: int) -> tf.Tensor:
    """Mean keep probability per log-popularity bin, with the number of behaviours in each."""
    edges = np.unique(np.geomspace(1, max(popularity.max(), 2) + 1, POPULARITY_BINS + 1).round())
    bins = np.clip(np.digitize(popularity + 1, edges) - 1, 0, len(edges) - 2)
    counts = np.bincount(bins, minlength=len(edges) - 1)
    means = np.bincount(bins, weights=probability, minlength=len(edges) - 1) / np.maximum(counts, 1)
    centres = np.sqrt(edges[:-1] * edges[1:])
    figure, axes = plt.subplots(figsize=(7, 4))
    present = counts > 0
    axes.plot(centres[present], means[present], marker="o")
    for x, y, n in zip(centres[present], means[present], counts[present]):
        axes.annotate(f"{n}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_ylim(0.0, 1.05)
    axes.set_xlabel("item popularity (training interactions + 1, log scale)")
    axes.set_ylabel("mean keep probability")
    axes.set_title(f"epoch {epoch}: keep probability vs item popularity (labels: behaviours per bin)")
    axes.grid(True, alpha=0.3)
    return figure_png(figure)


class SamplerSummaries(tf.keras.callbacks.Callback):
    """Writes the ``sampler/`` pictures and histograms at the end of every epoch (AutoSAM only)."""

    def __init__(
        self,
        log_dir: pathlib.Path,
        panel_windows: np.ndarray,
        panel_users: Sequence[str],
        reward_windows: tuple[np.ndarray, np.ndarray],
        item_counts: np.ndarray,
    ):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(log_dir))
        self.panel_windows = tf.constant(panel_windows)
        self.panel_users = list(panel_users)
        self.reward_inputs, self.reward_targets = (tf.constant(array) for array in reward_windows)
        self.item_counts = item_counts

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        model = self.model
        probability = model.keep_probability(self.panel_windows)
        kept = model.inference_keep(self.panel_windows, probability)
        valid = (self.panel_windows != PADDING_ID).numpy()
        full_hidden, full_logp = model.full_window_pass(self.reward_inputs, self.reward_targets)
        step = model.step_losses(self.reward_inputs, self.reward_targets, full_hidden, full_logp)
        sample_valid = (self.reward_inputs != PADDING_ID).numpy()
        sample_probability = model.keep_probability(self.reward_inputs).numpy()[sample_valid]
        popularity = self.item_counts[self.reward_inputs.numpy()[sample_valid]]
        with self.writer.as_default(step=epoch):
            tf.summary.image("sampler/keep_probability_panel",
                             keep_heatmap(probability.numpy(), kept.numpy(), valid, self.panel_users, epoch + 1))
            tf.summary.image("sampler/keep_rate_vs_popularity", popularity_plot(popularity, sample_probability, epoch + 1))
            tf.summary.histogram("sampler/keep_probability", sample_probability)
            for name in ("reward", "future_reward", "perplexity_reward"):
                tf.summary.histogram(f"sampler/{name}", step[f"{name}_per_position"].numpy()[sample_valid])
        self.writer.flush()


def panel(histories: Sequence[np.ndarray], users: Sequence[str], max_len: int, size: int = PANEL_USERS):
    """(windows [size, max_len], user labels): validation histories of users spread evenly over the index."""
    chosen = np.unique(np.linspace(0, len(histories) - 1, num=min(size, len(histories))).round().astype(int))
    windows = np.zeros((len(chosen), max_len), np.int32)
    for row, user in enumerate(chosen):
        recent = histories[user][-max_len:]
        windows[row, max_len - len(recent):] = recent
    return windows, [users[user] for user in chosen]
