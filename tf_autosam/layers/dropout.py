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


# Each element's draw is 16 random bits: a Philox call yields 32 bits, so halving the draw
# width halves the random-number work, the largest cost of dropout on a CPU. The drop
# probability is ``rate`` rounded to a multiple of 2^-16.
_DRAW_LEVELS = 1 << 16


def dropout(x: tf.Tensor, rate: float, seed: Optional[tf.Tensor], site: int) -> tf.Tensor:
    """``x`` with each element zeroed with probability ``rate`` and the rest scaled by 1 / (1 - rate),
    where a seed is given; ``x`` itself without one."""
    if seed is None or rate == 0:
        return x
    size = tf.size(x)
    words = tf.random.stateless_uniform([(size + 1) // 2], sub_seed(seed, site), minval=None, maxval=None, dtype=tf.uint32)
    draws = tf.reshape(tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:size], tf.shape(x))
    keep = draws >= tf.constant(min(round(rate * _DRAW_LEVELS), _DRAW_LEVELS - 1), tf.uint16)
    return tf.where(keep, x / (1.0 - rate), tf.zeros_like(x))
