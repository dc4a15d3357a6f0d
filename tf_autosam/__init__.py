"""tf-autosam: AutoSAM sequential recommendation on TensorFlow.

The whole package runs on tf-keras (the Keras 2 API): tensorflow-recommenders,
``fit`` under MultiWorkerMirroredStrategy and SavedModels that TF Serving loads
all work there, and not all of them do with Keras 3 (see BUILD_NOTES.md).
TensorFlow reads ``TF_USE_LEGACY_KERAS`` when ``tf.keras`` is first touched, so
it is set here, before any module of the package imports TensorFlow.
"""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _require_legacy_keras() -> None:
    """Fail at import time, with the fix, if ``tf.keras`` already resolved to Keras 3.

    Only an already imported TensorFlow can be wrong: one imported later sees
    the variable above. Not importing it here keeps quick answers quick (a
    missing data file is reported before TensorFlow loads).
    """
    if "tensorflow" not in sys.modules:
        return
    import tensorflow as tf

    dense_module = tf.keras.layers.Dense.__module__
    if not dense_module.startswith("tf_keras"):
        raise ImportError(
            "tf_autosam needs tf-keras (Keras 2 API), but tf.keras is already "
            f"Keras 3 ({dense_module}) in this process. Set the environment "
            "variable TF_USE_LEGACY_KERAS=1 before TensorFlow is imported (or "
            "import tf_autosam before anything touches tf.keras), and make sure "
            "the tf-keras package is installed (pip install tf-keras)."
        )


_require_legacy_keras()

__version__ = "0.1.0"
