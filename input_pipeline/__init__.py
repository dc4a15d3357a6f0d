"""Raw interaction logs -> prepared per-user sequences -> tf.data batches.

Reading order: ``schema`` (id convention), ``sources`` (one reader per raw
layout), ``prepare`` (the one path to chronological sequences and the
leave-one-out split), ``datasets`` (names, caching), ``pipeline`` (tf.data).
Only ``pipeline`` imports TensorFlow, so data preparation stays fast to import.
"""
