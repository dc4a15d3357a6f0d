"""Shared test set-up: the package selects tf-keras before anything imports TensorFlow."""

import tf_autosam  # noqa: F401  (must run before TensorFlow is imported by a test module)
