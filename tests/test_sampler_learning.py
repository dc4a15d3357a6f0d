"""The sampler learns: noise separation on a planted-noise log, keep-rate control, and their helpers."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from input_pipeline import pipeline, planted_noise
from input_pipeline.datasets import load_dataset
from tf_autosam import models, rewards
from tf_autosam.config import TrainerConfig, preset
from tf_autosam.inspection import noise_separation, roc_auc

# The tests train by steps, not epochs, so the sampler acts from the first step.
SMALL = dict(model="autosam", max_len=20, hidden_size=32, num_heads=2, ffn_size=64, num_blocks=1, dropout=0.1,
             batch_size=64, seed=0, sampler_warmup_epochs=0)


def test_roc_auc_equals_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=300).astype(float)  # many ties
    positive = rng.random(300) < 0.3
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0)
             for p, n in itertools.product(scores[positive], scores[~positive])]
    assert roc_auc(scores, positive) == pytest.approx(np.mean(pairs))
    assert roc_auc([0.1, 0.9, 0.4], [False, True, False]) == 1.0
    with pytest.raises(ValueError):
        roc_auc([0.1, 0.2], [True, True])


def test_standardize_gives_zero_mean_unit_variance_over_real_positions():
    rng = np.random.default_rng(1)
    reward = rng.normal(3.0, 2.0, size=(4, 7)).astype(np.float32)
    valid = (rng.random((4, 7)) < 0.7).astype(np.float32)
    result = rewards.standardize(tf.constant(reward), tf.constant(valid)).numpy()
    real = reward[valid == 1]
    np.testing.assert_allclose(result[valid == 1], (real - real.mean()) / real.std(), rtol=1e-4, atol=1e-5)
    assert np.all(result[valid == 0] == 0)


def test_keep_rate_penalty_hand_example():
    assert float(rewards.keep_rate_penalty(tf.constant(0.8), 0.5)) == pytest.approx(0.09)


def _train(config: TrainerConfig, data, steps: int) -> models.AutoSAMRecommender:
    tf.keras.utils.set_random_seed(config.seed)
    model = models.build_recommender(config, data.num_items)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    windows = pipeline.training_windows(data.train_sequences(), config.max_len, config.window_stride)
    batches = iter(pipeline.training_dataset(windows, config.batch_size, config.seed, epochs=config.epochs))
    step = tf.function(model.train_step)
    for _ in range(steps):
        step(next(batches))
    return model


@pytest.fixture(scope="module")
def planted_log(tmp_path_factory):
    """200 users walking item k -> k + 1 over 50 items, with 25% uniform accidental clicks planted."""
    folder = tmp_path_factory.mktemp("planted")
    sequences, users, catalogue = planted_noise.synthetic_behaviour(200, 50, 30, seed=0)
    planted_noise.write_planted_csv(folder / "log.csv", planted_noise.plant_noise(sequences, users, catalogue, 0.25, seed=0))
    data = load_dataset("csv", data_path=folder / "log.csv", data_dir=folder / "cache", log=lambda line: None)
    return data, planted_noise.read_noise_labels(folder / "log.csv")


@pytest.mark.parametrize("preset_name", ["default", "denoise"])
def test_sampler_separates_planted_noise_from_real_behaviour(planted_log, preset_name):
    data, labels = planted_log
    config = preset(preset_name).replace(**SMALL)
    separation = noise_separation(_train(config, data, steps=400), data, labels)
    assert separation["auc"] >= 0.8
    assert separation["keep_probability_real"] > separation["keep_probability_noise"] + 0.2


def test_reference_sampler_does_not_separate_them(planted_log):
    """The documented failure of the reference settings (tau 5, 1e-2 rewards, SGD): p stays near 0.5."""
    data, labels = planted_log
    config = preset("reference").replace(**SMALL, num_negatives=0)
    separation = noise_separation(_train(config, data, steps=200), data, labels)
    assert separation["auc"] < 0.7
    assert abs(separation["keep_probability_real"] - 0.5) < 0.05


def test_target_keep_rate_drives_the_mean_keep_probability(planted_log):
    data, _ = planted_log
    config = preset("default").replace(**SMALL, target_keep_rate=0.3, keep_rate_weight=10.0)
    model = _train(config, data, steps=150)
    windows = pipeline.left_pad(data.test_examples()[0], config.max_len)
    probability = model.keep_probability(tf.constant(windows)).numpy()[windows != 0]
    assert probability.mean() == pytest.approx(0.3, abs=0.05)


def test_mean_keep_entropy_hand_values():
    probability = tf.constant([[0.5, 0.9, 0.3]])
    valid = tf.constant([[1.0, 1.0, 0.0]])
    expected = (np.log(2.0) - (0.9 * np.log(0.9) + 0.1 * np.log(0.1))) / 2.0
    assert float(rewards.mean_keep_entropy(probability, valid)) == pytest.approx(expected, rel=1e-5)


def test_mean_keep_entropy_is_finite_with_finite_gradient_at_saturation():
    probability = tf.Variable([[0.0, 1.0, 0.5]])
    with tf.GradientTape() as tape:
        entropy = rewards.mean_keep_entropy(probability, tf.ones([1, 3]))
    gradient = tape.gradient(entropy, probability)
    assert np.isfinite(float(entropy)) and np.all(np.isfinite(gradient.numpy()))
