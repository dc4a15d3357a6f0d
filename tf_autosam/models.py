"""Keras models whose ``train_step`` defines one optimisation step.

A model owns its backbone and objective and stays thin: the maths lives in
``losses`` and the backbone; fit orchestration lives in ``training``. Shapes
and id conventions are those of ``input_pipeline.pipeline``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import numpy as np
import tensorflow as tf

from input_pipeline.schema import PADDING_ID
from tf_autosam import losses, rewards
from tf_autosam.distribution import batch_key, global_mean, is_parameter_server, replica_seed, replica_share, replica_sum
from tf_autosam.backbones import build_backbone
from tf_autosam.backbones.base import Backbone
from tf_autosam.compaction import compact
from tf_autosam.config import TrainerConfig
from tf_autosam.layers import block_settings
from tf_autosam.layers.sampler import BehaviourSampler
from tf_autosam.weight_average import WeightAverage

# A step's random streams (SequentialRecommender.step_seed): the shared negatives, the sampler's
# actions, and the dropout of the recommender's and of the sampler's training passes.
NEGATIVES, ACTIONS, RECOMMENDER_DROPOUT, SAMPLER_DROPOUT = 0, 1, 2, 3


class SequentialRecommender(tf.keras.Model):
    """Backbone + next-item cross-entropy at every position (full or sampled softmax).

    The plain recommender (``--model=sasrec``, whatever the backbone); it and
    :class:`AutoSAMRecommender` use the backbone only through
    :mod:`tf_autosam.backbones.base`.
    """

    # Quantities a training step reports; Keras shows and logs their epoch means.
    LOGGED = ("loss",)

    def __init__(
        self, backbone: Backbone, num_negatives: int, seed: int, label_smoothing: float = 0.0,
        loss_excludes_history: bool = False, **kwargs,
    ):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.num_items = backbone.num_items
        # Sampling as many negatives as there are items costs more than the exact loss.
        self.num_negatives = num_negatives if 0 < num_negatives < self.num_items else 0
        self.seed = seed
        self.label_smoothing = label_smoothing
        self.loss_excludes_history = loss_excludes_history
        # Epoch counter kept in the graph (set by ``training.EpochTracker``) for epoch schedules.
        self.epoch = tf.Variable(0, trainable=False, dtype=tf.int64, name="epoch")
        self.trackers = {name: tf.keras.metrics.Mean(name=name) for name in self.LOGGED}
        # Set by ``seeded_by`` while a parameter-server training step is traced.
        self._step_batch_key: Optional[tf.Tensor] = None
        # Set by ``build_recommender`` when the config asks for one (``weight_average``).
        self.weight_average: Optional[WeightAverage] = None

    @property
    def metrics(self) -> list:
        """Listed so that Keras resets them at every epoch: logs hold epoch means, not last-step values."""
        return list(self.trackers.values())

    def track(self, values: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Epoch means of the step's values; each value is this replica's share, so replicas' sum is the global one."""
        for name, tracker in self.trackers.items():
            tracker.update_state(replica_sum(values[name]))
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        """[batch, N + 1] scores for the item after each input sequence (never with dropout: training
        runs through ``train_step``)."""
        return self.backbone.logits(self.inference(inputs)[2])

    def inference(self, inputs: tf.Tensor, static_width: bool = False) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(keep probability [batch, L], kept [batch, L], user vector [batch, d]) of left-padded windows.

        The user vector scores item i as its dot product with item i's
        embedding (the query side of retrieval). The plain backbone keeps every
        behaviour. ``static_width`` keeps every tensor as wide as ``inputs``
        (what XLA needs); the answer is the same.
        """
        kept = tf.not_equal(inputs, PADDING_ID)
        vector = self.backbone(inputs, newest_only=True)[:, -1]
        return tf.cast(kept, tf.float32), kept, vector

    def step_seed(self, stream: int = NEGATIVES) -> tf.Tensor:
        """A stateless seed unique to (run seed, random stream, optimisation step[, batch]): the batch
        only inside :meth:`seeded_by` under parameter-server training."""
        seed = tf.stack([tf.constant(self.seed * 1000 + stream, tf.int64), tf.cast(self.optimizer.iterations, tf.int64)])
        if self._step_batch_key is None:
            return seed
        return tf.random.experimental.stateless_fold_in(seed, self._step_batch_key)

    @contextlib.contextmanager
    def seeded_by(self, inputs: tf.Tensor) -> Iterator[None]:
        """The training step's scope: under parameter-server training its seeds also depend on its batch.

        Asynchronous workers read the shared step counter, so two workers can
        run the same optimiser step, each on its own batch; with the counter
        alone they would draw the same dropout masks, actions and negatives.
        Synchronous strategies keep (run seed, stream, step) plus the replica id.
        """
        self._step_batch_key = batch_key(inputs) if is_parameter_server() else None
        try:
            yield
        finally:
            self._step_batch_key = None

    def replica_step_seed(self, stream: int) -> tf.Tensor:
        """This step's seed of ``stream``, distinct per replica: for draws each replica makes for its own
        examples (the sampler's actions, a training pass's dropout masks: ``layers.dropout``)."""
        return replica_seed(self.step_seed(stream))

    def next_item_loss(self, hidden: tf.Tensor, targets: tf.Tensor, inputs: tf.Tensor) -> tf.Tensor:
        """The training loss of ``hidden`` computed from the window ``inputs`` (``losses``: the history it holds
        leaves the softmax with ``loss_excludes_history``)."""
        table = self.backbone.item_table
        history = inputs if self.loss_excludes_history else None
        if self.num_negatives == 0:
            return losses.full_softmax_loss(hidden, targets, table, self.compute_dtype, self.label_smoothing, history)
        negatives = losses.uniform_negatives(self.num_negatives, self.num_items, self.step_seed())
        return losses.sampled_softmax_loss(hidden, targets, table, negatives, self.compute_dtype, self.label_smoothing, history)

    def target_log_probabilities(self, hidden: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        """[batch, L] log P(target): exact, or estimated from this step's shared negatives when sampling."""
        table = self.backbone.item_table
        if self.num_negatives == 0:
            return losses.target_log_probabilities(hidden, targets, table, self.compute_dtype)
        negatives = losses.uniform_negatives(self.num_negatives, self.num_items, self.step_seed())
        return losses.sampled_target_log_probabilities(hidden, targets, table, negatives, self.num_items, self.compute_dtype)

    def train_step(self, data):
        inputs, targets = data
        with self.seeded_by(inputs), tf.GradientTape() as tape:
            hidden = self.backbone(inputs, dropout_seed=self.replica_step_seed(RECOMMENDER_DROPOUT))
            loss = self.next_item_loss(hidden, targets, inputs)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        self.update_weight_average()
        return self.track({"loss": loss})

    def update_weight_average(self) -> None:
        """Folds this step's weights into the moving average, if the model keeps one."""
        if self.weight_average is not None:
            self.weight_average.update(self.optimizer.iterations)


def recommender_optimizer(config: TrainerConfig) -> tf.keras.optimizers.Optimizer:
    """Adam, or AdamW when ``weight_decay`` is set (LayerNorm parameters and biases are not decayed)."""
    if not config.weight_decay:
        return tf.keras.optimizers.Adam(config.learning_rate)
    optimizer = tf.keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "scale"])
    return optimizer


def _sampler_optimizer(config: TrainerConfig) -> tf.keras.optimizers.Optimizer:
    if config.sampler_optimizer == "adam":
        return tf.keras.optimizers.Adam(config.sampler_learning_rate)
    return tf.keras.optimizers.SGD(config.sampler_learning_rate)


class AutoSAMRecommender(SequentialRecommender):
    """A backbone trained on the behaviours a learned sampler keeps, sampler trained by REINFORCE.

    One step (AUTOSAM_SPEC sections 2 to 5): keep probabilities from the
    backbone's own embeddings; Bernoulli actions; the recommender loss on the
    compacted window (reference) or on what ``recommender_input`` names
    instead; rewards from a no-gradient pass over the full window;
    ``loss = recommendation + policy``, the recommender's variables updated by
    the compiled optimizer (Adam), the sampler's by its own optimiser.
    """

    LOGGED = (
        "loss", "recommendation_loss", "policy_loss", "keep_rate", "keep_probability",
        "future_reward", "perplexity_reward",
    )

    def __init__(self, backbone: Backbone, sampler: BehaviourSampler, config: TrainerConfig, **kwargs):
        super().__init__(
            backbone, config.num_negatives, config.seed, config.label_smoothing, config.loss_excludes_history, **kwargs
        )
        self.sampler = sampler
        self.settings = config
        self.sampler_optimizer = _sampler_optimizer(config)

    def keep_probability(self, inputs: tf.Tensor, full_hidden: Optional[tf.Tensor] = None, training: bool = False) -> tf.Tensor:
        """[batch, L] probability of keeping each behaviour (0 at padding)."""
        surprise = None
        if self.settings.sampler_surprise:
            if full_hidden is None:
                full_hidden = self.backbone(inputs)
            surprise = tf.stop_gradient(self.surprise(inputs, full_hidden))
        return self.sampler(self.backbone.embed(inputs), tf.not_equal(inputs, PADDING_ID), surprise,
                            self.replica_step_seed(SAMPLER_DROPOUT) if training else None)

    def surprise(self, inputs: tf.Tensor, full_hidden: tf.Tensor) -> tf.Tensor:
        """[batch, L] -(score of x_t given x_<t), centred per user; 0 where x_t has no prefix."""
        previous = tf.concat([tf.zeros_like(full_hidden[:, :1]), full_hidden[:, :-1]], axis=1)
        score = tf.reduce_sum(previous * self.backbone.embed_items(inputs), axis=-1)
        return -rewards.centre_per_user(score, rewards.prefix_mask(tf.not_equal(inputs, PADDING_ID)))

    def sampler_acting(self) -> tf.Tensor:
        """False during the warm-up epochs, when every behaviour is kept and the sampler does not learn."""
        return self.epoch >= self.settings.sampler_warmup_epochs

    def inference_keep(self, inputs: tf.Tensor, probability: tf.Tensor, draw: int = 0) -> tf.Tensor:
        """The evaluation/serving keep decision of ``settings.inference_mode``; the newest item is always kept."""
        mode = self.settings.inference_mode
        if mode == "keep_all":
            return tf.not_equal(inputs, PADDING_ID)
        if mode == "deterministic":
            return self.decided_keep(inputs, probability >= 0.5)
        seed = tf.constant([self.seed, draw], tf.int64)
        return self.decided_keep(inputs, tf.random.stateless_uniform(tf.shape(probability), seed) < probability)

    def decided_keep(self, inputs: tf.Tensor, keep: tf.Tensor) -> tf.Tensor:
        """``keep`` plus the newest behaviour, everything during warm-up, never padding."""
        newest = tf.one_hot(tf.shape(inputs)[1] - 1, tf.shape(inputs)[1], on_value=True, off_value=False)
        keep = tf.logical_or(tf.logical_or(keep, newest[tf.newaxis]), tf.logical_not(self.sampler_acting()))
        return tf.logical_and(keep, tf.not_equal(inputs, PADDING_ID))

    def inference(self, inputs: tf.Tensor, static_width: bool = False) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """As for the plain backbone, with the sampler's decision (of the first draw, in stochastic mode).

        With several draws the user vector is their mean: scores are linear in
        it, so this equals averaging the draws' scores.
        """
        probability = self.keep_probability(inputs)
        draws = self.settings.inference_draws if self.settings.inference_mode == "stochastic" else 1
        decisions, vectors = [], []
        for draw in range(draws):
            decisions.append(self.inference_keep(inputs, probability, draw))
            kept = compact(inputs, decisions[-1], tf.zeros_like(inputs[:, -1]))
            items, positions = self._trim(kept.items, kept.positions, static=static_width)
            vectors.append(self.backbone(items, positions, newest_only=True)[:, -1])
        return probability, decisions[0], tf.add_n(vectors) / float(draws)

    def _trim(self, *compacted: tf.Tensor, static: bool = False) -> tuple[tf.Tensor, ...]:
        """:func:`_trim_to_longest`, except under XLA (``static`` or a compiled step), which needs the full width."""
        return compacted if static or self.settings.jit_compile else _trim_to_longest(*compacted)

    def _compacted_pass(self, inputs: tf.Tensor, keep: tf.Tensor, targets: tf.Tensor, training: bool) -> tuple[tf.Tensor, ...]:
        """The backbone over the kept behaviours: trimmed hidden states, the trimmed compacted items, the
        targets trained on, and log P(target) of every kept item (the rewards score them all).

        A kept item's prediction is trained where the window trains its slot:
        every real slot, or only the new ones with ``new_targets_only``.
        """
        kept = compact(inputs, keep, targets[:, -1])
        trained = tf.gather(tf.not_equal(targets, PADDING_ID), kept.positions, batch_dims=1)
        trained_targets = tf.where(trained, kept.targets, PADDING_ID)
        items, positions, kept_targets, trained_targets = self._trim(kept.items, kept.positions, kept.targets, trained_targets)
        hidden = self.backbone(items, positions, dropout_seed=self.replica_step_seed(RECOMMENDER_DROPOUT) if training else None)
        return hidden, items, trained_targets, self.target_log_probabilities(hidden, kept_targets)

    def full_window_pass(self, inputs: tf.Tensor, targets: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Hidden states [batch, L, d] and log P(next item) [batch, L] of the full window, without dropout.

        The rewards' reference point (and the sampler's surprise feature). It
        scores every next item, also those ``targets`` leaves out (``new_targets_only``).
        """
        hidden = self.backbone(inputs)
        every_next_item = compact(inputs, tf.not_equal(inputs, PADDING_ID), targets[:, -1]).targets
        return hidden, self.target_log_probabilities(hidden, every_next_item)

    def step_losses(self, inputs: tf.Tensor, targets: tf.Tensor, full_hidden: tf.Tensor, full_logp: tf.Tensor) -> dict[str, tf.Tensor]:
        """One step's losses and monitored quantities; call inside the gradient tape.

        ``full_hidden`` and ``full_logp`` come from :meth:`full_window_pass`, computed
        outside the tape so the reward pass keeps no activations for backprop.
        """
        settings = self.settings
        valid = tf.not_equal(inputs, PADDING_ID)
        valid_float = tf.cast(valid, tf.float32)
        real = tf.reduce_sum(valid_float)
        probability = self.keep_probability(inputs, full_hidden, training=True)
        draws = tf.random.stateless_uniform(tf.shape(probability), self.replica_step_seed(ACTIONS))
        acting = self.sampler_acting()
        keep = tf.logical_and(tf.logical_or(draws < probability, tf.logical_not(acting)), valid)
        fed, loss_targets = valid, targets
        if settings.recommender_input == "sampled":
            fed = keep
        elif settings.recommender_input == "decided":
            fed = self.decided_keep(inputs, probability >= 0.5)
        elif settings.recommender_input == "full_kept_targets":
            loss_targets = _kept_targets(targets, self.decided_keep(inputs, probability >= 0.5))
        hidden, fed_items, trained_targets, trimmed_logp = self._compacted_pass(inputs, fed, loss_targets, training=True)
        if self.num_negatives == 0 and not self.label_smoothing and not self.loss_excludes_history:
            # The full-softmax loss is the mean of the log-probabilities the rewards use: no second softmax.
            trained = tf.cast(tf.not_equal(trained_targets, PADDING_ID), tf.float32)
            recommendation_loss = -global_mean(tf.reduce_sum(trimmed_logp * trained), tf.reduce_sum(trained))
        else:
            recommendation_loss = self.next_item_loss(hidden, trained_targets, fed_items)
        actions = tf.cast(keep, tf.float32)
        if settings.lambda1 == 0:
            future = tf.zeros_like(actions)
        else:
            if settings.recommender_input != "sampled":
                # The future reward scores the sampled actions: they need their own (no-gradient) compacted pass.
                trimmed_logp = self._compacted_pass(inputs, keep, targets, training=False)[-1]
            compacted_logp = _left_pad_to(tf.stop_gradient(trimmed_logp), tf.shape(inputs)[1])
            future = rewards.future_prediction_reward(
                actions, probability, full_logp, compacted_logp, rewards.keep_threshold(self.epoch), settings.gamma
            )
        perplexity = rewards.sequence_perplexity_reward(actions, valid, full_logp, settings.base_rate)
        total_reward = (settings.lambda1 * future + settings.lambda2 * perplexity) * valid_float
        if settings.normalize_rewards:
            total_reward = rewards.standardize(total_reward, valid_float)
        policy_loss = rewards.policy_loss(total_reward, actions, probability)
        mean_probability = tf.reduce_sum(probability) / real
        if settings.entropy_weight:
            policy_loss -= settings.entropy_weight * rewards.mean_keep_entropy(probability, valid_float)
        if settings.target_keep_rate is not None:
            policy_loss += settings.keep_rate_weight * rewards.keep_rate_penalty(mean_probability, settings.target_keep_rate)
        # Batch statistics (reward standardisation, keep-rate penalty) are this replica's;
        # the losses and reported means are shares of the global batch's (tf_autosam.distribution).
        return {
            "recommendation_loss": recommendation_loss,
            "policy_loss": replica_share(settings.policy_weight * policy_loss * tf.cast(acting, tf.float32)),
            "keep_rate": global_mean(tf.reduce_sum(actions), real),
            "keep_probability": global_mean(tf.reduce_sum(probability), real),
            "future_reward": global_mean(tf.reduce_sum(future * valid_float), real),
            "perplexity_reward": global_mean(tf.reduce_sum(perplexity * valid_float), real),
            # [batch, L] values behind the means, for TensorBoard's histograms.
            "reward_per_position": total_reward,
            "future_reward_per_position": future,
            "perplexity_reward_per_position": perplexity,
        }

    def train_step(self, data):
        inputs, targets = data
        with self.seeded_by(inputs):
            full_hidden, full_logp = self.full_window_pass(inputs, targets)
            with tf.GradientTape() as tape:
                results = self.step_losses(inputs, targets, full_hidden, full_logp)
                loss = results["recommendation_loss"] + results["policy_loss"]
        sampler_variables = self.sampler.trainable_variables
        sampler_ids = {id(v) for v in sampler_variables}
        recommender_variables = [v for v in self.trainable_variables if id(v) not in sampler_ids]
        gradients = tape.gradient(loss, recommender_variables + sampler_variables)
        self.optimizer.apply_gradients(zip(gradients[: len(recommender_variables)], recommender_variables))
        self.sampler_optimizer.apply_gradients(zip(gradients[len(recommender_variables):], sampler_variables))
        self.update_weight_average()
        return self.track({"loss": loss, **results})


def _kept_targets(targets: tf.Tensor, kept: tf.Tensor) -> tf.Tensor:
    """``targets`` [batch, L] with padding where the target is a behaviour ``kept`` [batch, L] drops.

    The target at t is the window's item t + 1; the last position's target
    lies beyond the window, where the sampler has not decided, and stays.
    """
    target_kept = tf.concat([kept[:, 1:], tf.ones_like(kept[:, :1])], axis=1)
    return tf.where(target_kept, targets, tf.zeros_like(targets))


def _trim_to_longest(*compacted: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """Drops the leading slots that are padding in every row of a right-packed batch.

    Compacted windows are shorter than the full one, so the backbone pass over
    them costs only as much as the batch's longest kept sequence. Positions are
    explicit, so the trimmed window means exactly what the full one did.
    """
    longest = tf.reduce_max(tf.reduce_sum(tf.cast(tf.not_equal(compacted[0], PADDING_ID), tf.int32), axis=1))
    start = tf.shape(compacted[0])[1] - tf.maximum(longest, 1)
    return tuple(tensor[:, start:] for tensor in compacted)


def _left_pad_to(values: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """[batch, l] -> [batch, length] with zeros in front (undoes :func:`_trim_to_longest`)."""
    return tf.pad(values, [[0, 0], [length - tf.shape(values)[1], 0]])


class PopularityModel(tf.keras.Model):
    """Most-popular baseline: every user gets the training-set item counts as scores."""

    def __init__(self, item_counts: np.ndarray, **kwargs):
        super().__init__(**kwargs)
        self.item_counts = tf.constant(item_counts, tf.float32)

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        return tf.broadcast_to(self.item_counts[tf.newaxis], [tf.shape(inputs)[0], tf.shape(self.item_counts)[0]])


def build_recommender(config: TrainerConfig, num_items: int) -> SequentialRecommender:
    """The registered ``config.backbone``, alone or fed by the AutoSAM sampler, built (weights created) for ``config``.

    Layers take the dtype policy of ``config.precision`` when they are created; the global policy is restored after.
    """
    previous_policy = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(config.precision)
    try:
        backbone = build_backbone(config, num_items)
        if config.model == "autosam":
            sampler = BehaviourSampler(block_settings(config), config.tau, name="sampler")
            model = AutoSAMRecommender(backbone, sampler, config, name="autosam")
        else:
            model = SequentialRecommender(
                backbone, config.num_negatives, config.seed, config.label_smoothing, config.loss_excludes_history,
                name=f"{config.backbone}_recommender",
            )
    finally:
        tf.keras.mixed_precision.set_global_policy(previous_policy)
    model(tf.zeros([1, config.max_len], tf.int32))
    if config.weight_average_decay:
        model.weight_average = WeightAverage(model.trainable_variables, config.weight_average_decay, name="weight_average")
    return model


def popularity_counts(sequences: list[np.ndarray], num_items: int) -> np.ndarray:
    """[N + 1] training-set interaction counts per item id (padding column 0 stays 0)."""
    flat = np.concatenate(sequences) if sequences else np.zeros([0], np.int64)
    return np.bincount(flat, minlength=num_items + 1).astype(np.float32)
