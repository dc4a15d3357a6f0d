"""Checks before a run starts, so that a full disk or a read-only folder stops it in seconds, not after an hour.

Free of TensorFlow imports: the CLI runs them before anything slow.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

GIB = 2**30


class RunDirectoryError(OSError):
    """The run directory cannot hold this run's outputs."""


def nearest_existing(path: pathlib.Path) -> pathlib.Path:
    """``path`` or its closest ancestor that exists (where the run directory will be created)."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_run_directory(run_dir: pathlib.Path, min_free_gb: float) -> None:
    """Raises :class:`RunDirectoryError` unless ``run_dir`` can be created and written and its disk has room.

    Writes and deletes a probe file (permission bits alone miss read-only
    mounts and quotas); creates nothing else.
    """
    existing = nearest_existing(pathlib.Path(run_dir))
    if not existing.is_dir():
        raise RunDirectoryError(f"cannot create run directory {run_dir}: {existing} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".tf_autosam-probe-") as probe:
            probe.write(b"probe")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise RunDirectoryError(f"cannot write run directory {run_dir} (probe in {existing}: {error.strerror or error})") from error
    free = shutil.disk_usage(existing).free
    if free < min_free_gb * GIB:
        raise RunDirectoryError(
            f"run directory {run_dir}: only {free / GIB:.2f} GiB free on its disk, {min_free_gb:g} GiB needed "
            f"(checkpoints, backups, TensorBoard logs, export; lower --min_free_gb to accept the risk)"
        )
