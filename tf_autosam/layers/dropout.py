"""Dropout drawn from stateless seeds: a mask is a function of (seed, site), in any process.

Keras' ``Dropout`` draws from a per-process random stream that no checkpoint
holds, so a resumed run drew other masks than the uninterrupted one. Here the
caller passes the step's dropout seed (``SequentialRecommender.replica_step_seed``:
run seed, training pass, optimisation step, replica) and each dropout site of
one forward pass folds in its own ``site`` number. No seed means no dropout
(inference).
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf


def sub_seed(seed: Optional[tf.Tensor], site: int) -> Optional[tf.Tensor]:
    """The seed of one site (or of a sub-layer's sites) within a pass; None stays None."""
    return None if seed is None else tf.random.experimental.stateless_fold_in(seed, site)


def dropout(x: tf.Tensor, rate: float, seed: Optional[tf.Tensor], site: int) -> tf.Tensor:
    """``x`` with each element zeroed with probability ``rate`` and the rest scaled by 1 / (1 - rate),
    where a seed is given; ``x`` itself without one."""
    if seed is None or rate == 0:
        return x
    draws = tf.random.stateless_uniform(tf.shape(x), sub_seed(seed, site))
    return tf.where(draws >= rate, x / (1.0 - rate), tf.zeros_like(x))
