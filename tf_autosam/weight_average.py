"""An exponential moving average of the trained weights, which validation, test, checkpoints and export use.

On a small log the validation score of the raw weights moves by as much from
one epoch to the next as a change of recipe does, and early stopping picks a
noisy peak. The average follows the same training trajectory (it never feeds
back into the steps) with the step-to-step noise smoothed out.

Between epochs the averaged weights sit in the model and the raw ones in the
average's slots; the next epoch swaps them back. The ``averaged_in_model``
flag is a weight too, so a checkpoint taken either side of the swap restores
to the right state, and a best-epoch snapshot holds the averaged weights.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

# The average's decay at optimiser step t is min(decay, (1 + t) / (10 + t)): early on it
# tracks the weights closely, so the first epochs are not an average with the initialisation.
_WARMUP_OFFSET = 10.0


class WeightAverage(tf.keras.layers.Layer):
    """Shadow copies of ``variables``: their moving average while training, their raw values between epochs."""

    def __init__(self, variables: list[tf.Variable], decay: float, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.decay = decay
        self.tracked = list(variables)
        self.slots = [
            self.add_weight(
                name=f"average_{index}", shape=variable.shape, dtype=variable.dtype, trainable=False,
                initializer=tf.keras.initializers.Constant(variable.numpy()),
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            for index, variable in enumerate(self.tracked)
        ]
        self.averaged_in_model = self.add_weight(
            name="averaged_in_model", shape=[], dtype=tf.bool, trainable=False, initializer="zeros",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    def update(self, step: tf.Tensor) -> None:
        """Folds the weights after optimiser step ``step`` (1 for the first) into the average."""
        step = tf.cast(step, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + step) / (_WARMUP_OFFSET + step))
        for slot, variable in zip(self.slots, self.tracked):
            slot.assign(decay * slot + (1.0 - decay) * variable)

    @tf.function
    def swap(self) -> None:
        """Exchanges the model's weights with the slots' (averaged <-> raw)."""
        for slot, variable in zip(self.slots, self.tracked):
            held = tf.identity(variable)
            variable.assign(slot)
            slot.assign(held)
        self.averaged_in_model.assign(tf.logical_not(self.averaged_in_model))


class EvaluateAveragedWeights(tf.keras.callbacks.Callback):
    """Puts the averaged weights in the model for what follows an epoch (validation, early stopping's
    snapshot, checkpoints, backups) and the raw weights back for the next epoch's training.

    Place it before the callbacks that read the weights at the end of an epoch.
    """

    def __init__(self, average: WeightAverage):
        super().__init__()
        self.average = average

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        # False after a mid-epoch backup's restore, which was taken with the raw weights in place.
        if bool(self.average.averaged_in_model.numpy()):
            self.average.swap()

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        self.average.swap()
