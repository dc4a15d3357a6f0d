"""Keras models whose ``train_step`` defines one optimisation step.

A model owns its backbone and objective and stays thin: the maths lives in
``losses`` and the backbone; fit orchestration lives in ``training``. Shapes
and id conventions are those of ``input_pipeline.pipeline``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from input_pipeline.schema import PADDING_ID
from tf_autosam import losses, rewards
from tf_autosam.backbones import SASRec
from tf_autosam.compaction import compact
from tf_autosam.config import TrainerConfig
from tf_autosam.layers import BlockSettings
from tf_autosam.layers.sampler import BehaviourSampler


class SequentialRecommender(tf.keras.Model):
    """Backbone + next-item cross-entropy at every position (full or sampled softmax)."""

    def __init__(self, backbone: SASRec, num_negatives: int, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.num_items = backbone.num_items
        # Sampling as many negatives as there are items costs more than the exact loss.
        self.num_negatives = num_negatives if 0 < num_negatives < self.num_items else 0
        self.seed = seed
        # Epoch counter kept in the graph (set by ``training.EpochTracker``) for epoch schedules.
        self.epoch = tf.Variable(0, trainable=False, dtype=tf.int64, name="epoch")

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        """[batch, N + 1] scores for the item after each input sequence."""
        hidden = self.backbone(inputs, training=training)[:, -1]
        return self.backbone.logits(hidden)

    def step_seed(self, stream: int = 0) -> tf.Tensor:
        """A stateless seed unique to (run seed, random stream, optimisation step)."""
        return tf.stack([tf.constant(self.seed * 1000 + stream, tf.int64), tf.cast(self.optimizer.iterations, tf.int64)])

    def next_item_loss(self, hidden: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        table = self.backbone.item_table
        if self.num_negatives == 0:
            return losses.full_softmax_loss(hidden, targets, table)
        negatives = losses.uniform_negatives(self.num_negatives, self.num_items, self.step_seed())
        return losses.sampled_softmax_loss(hidden, targets, table, negatives)

    def train_step(self, data):
        inputs, targets = data
        with tf.GradientTape() as tape:
            loss = self.next_item_loss(self.backbone(inputs, training=True), targets)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return {"loss": loss}


class AutoSAMRecommender(SequentialRecommender):
    """SASRec trained on the behaviours a learned sampler keeps, sampler trained by REINFORCE.

    One step (AUTOSAM_SPEC sections 2 to 5): keep probabilities from the
    backbone's own embeddings; Bernoulli actions; the recommender loss on the
    compacted window; rewards from a no-gradient pass over the full window;
    ``loss = recommendation + policy``, the recommender's variables updated by
    the compiled optimizer (Adam), the sampler's by its own SGD.
    """

    def __init__(self, backbone: SASRec, sampler: BehaviourSampler, config: TrainerConfig, **kwargs):
        super().__init__(backbone, config.num_negatives, config.seed, **kwargs)
        self.sampler = sampler
        self.settings = config
        self.sampler_optimizer = tf.keras.optimizers.SGD(config.sampler_learning_rate)

    def keep_probability(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        """[batch, L] probability of keeping each behaviour (0 at padding)."""
        return self.sampler(self.backbone.embed(inputs), tf.not_equal(inputs, PADDING_ID), training=training)

    def inference_keep(self, inputs: tf.Tensor, probability: tf.Tensor, draw: int = 0) -> tf.Tensor:
        """The evaluation/serving keep decision of ``settings.inference_mode``; the newest item is always kept."""
        valid = tf.not_equal(inputs, PADDING_ID)
        mode = self.settings.inference_mode
        if mode == "keep_all":
            return valid
        if mode == "deterministic":
            keep = probability >= 0.5
        else:
            seed = tf.constant([self.seed, draw], tf.int64)
            keep = tf.random.stateless_uniform(tf.shape(probability), seed) < probability
        newest = tf.one_hot(tf.shape(inputs)[1] - 1, tf.shape(inputs)[1], on_value=True, off_value=False)
        return tf.logical_and(tf.logical_or(keep, newest[tf.newaxis]), valid)

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        probability = self.keep_probability(inputs)
        draws = self.settings.inference_draws if self.settings.inference_mode == "stochastic" else 1
        scores = []
        for draw in range(draws):
            kept = compact(inputs, self.inference_keep(inputs, probability, draw), tf.zeros_like(inputs[:, -1]))
            hidden = self.backbone(kept.items, kept.positions, training=training)[:, -1]
            scores.append(self.backbone.logits(hidden))
        return tf.add_n(scores) / float(draws)

    def step_losses(self, inputs: tf.Tensor, targets: tf.Tensor) -> dict[str, tf.Tensor]:
        """One step's losses and monitored quantities; call inside the gradient tape."""
        settings = self.settings
        valid = tf.not_equal(inputs, PADDING_ID)
        valid_float = tf.cast(valid, tf.float32)
        full_logp = tf.stop_gradient(losses.target_log_probabilities(self.backbone(inputs), targets, self.backbone.item_table))
        probability = self.keep_probability(inputs, training=True)
        draws = tf.random.stateless_uniform(tf.shape(probability), self.step_seed(stream=1))
        keep = tf.logical_and(draws < probability, valid)
        kept = compact(inputs, keep, targets[:, -1])
        hidden = self.backbone(kept.items, kept.positions, training=True)
        compacted_logp = tf.stop_gradient(losses.target_log_probabilities(hidden, kept.targets, self.backbone.item_table))
        actions = tf.cast(keep, tf.float32)
        future = rewards.future_prediction_reward(
            actions, probability, full_logp, compacted_logp, rewards.keep_threshold(self.epoch), settings.gamma
        )
        perplexity = rewards.sequence_perplexity_reward(actions, valid, full_logp, settings.base_rate)
        total_reward = (settings.lambda1 * future + settings.lambda2 * perplexity) * valid_float
        real = tf.reduce_sum(valid_float)
        return {
            "recommendation_loss": self.next_item_loss(hidden, kept.targets),
            "policy_loss": rewards.policy_loss(total_reward, actions, probability),
            "keep_rate": tf.reduce_sum(actions) / real,
            "keep_probability": tf.reduce_sum(probability) / real,
            "future_reward": tf.reduce_sum(future * valid_float) / real,
            "perplexity_reward": tf.reduce_sum(perplexity * valid_float) / real,
        }

    def train_step(self, data):
        inputs, targets = data
        with tf.GradientTape() as tape:
            results = self.step_losses(inputs, targets)
            loss = results["recommendation_loss"] + results["policy_loss"]
        sampler_variables = self.sampler.trainable_variables
        sampler_ids = {id(v) for v in sampler_variables}
        recommender_variables = [v for v in self.trainable_variables if id(v) not in sampler_ids]
        gradients = tape.gradient(loss, recommender_variables + sampler_variables)
        self.optimizer.apply_gradients(zip(gradients[: len(recommender_variables)], recommender_variables))
        self.sampler_optimizer.apply_gradients(zip(gradients[len(recommender_variables):], sampler_variables))
        return {"loss": loss, **results}


class PopularityModel(tf.keras.Model):
    """Most-popular baseline: every user gets the training-set item counts as scores."""

    def __init__(self, item_counts: np.ndarray, **kwargs):
        super().__init__(**kwargs)
        self.item_counts = tf.constant(item_counts, tf.float32)

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        return tf.broadcast_to(self.item_counts[tf.newaxis], [tf.shape(inputs)[0], tf.shape(self.item_counts)[0]])


def build_recommender(config: TrainerConfig, num_items: int) -> SequentialRecommender:
    """SASRec, or SASRec + AutoSAM sampler, built (weights created) for ``config``."""
    block = BlockSettings(
        config.hidden_size, config.num_heads, config.ffn_size, config.dropout, config.norm, config.residual_scale_init
    )
    backbone = SASRec(num_items, config.max_len, config.num_blocks, block, name="sasrec")
    if config.model == "autosam":
        sampler = BehaviourSampler(block, config.tau, name="sampler")
        model = AutoSAMRecommender(backbone, sampler, config, name="autosam")
    else:
        model = SequentialRecommender(backbone, config.num_negatives, config.seed, name="sasrec_recommender")
    model(tf.zeros([1, config.max_len], tf.int32))
    return model


def popularity_counts(sequences: list[np.ndarray], num_items: int) -> np.ndarray:
    """[N + 1] training-set interaction counts per item id (padding column 0 stays 0)."""
    flat = np.concatenate(sequences) if sequences else np.zeros([0], np.int64)
    return np.bincount(flat, minlength=num_items + 1).astype(np.float32)
