"""Where data lives on disk, and writers that never leave a half-written file or folder.

A killed process must not leave a truncated file that a later run trusts, so
every write goes to a temporary name beside its target and is renamed into
place only once complete (a rename within one folder is atomic on POSIX and
Windows). No fsync: this guards against crashed processes, not power loss.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import secrets
import shutil
from typing import Iterator, Mapping, Optional, Union

PathLike = Union[str, os.PathLike]

DATA_DIR_ENV = "TF_AUTOSAM_DATA_DIR"
CACHE_SUBDIR = "tf_autosam"


def resolve_cache_dir(explicit: Optional[PathLike] = None, environ: Mapping[str, str] = os.environ) -> pathlib.Path:
    """The data cache folder: ``explicit`` (``--data_dir``) > $TF_AUTOSAM_DATA_DIR >
    $XDG_CACHE_HOME/tf_autosam > ~/.cache/tf_autosam. Not created here."""
    if explicit:
        return pathlib.Path(explicit).expanduser()
    if environ.get(DATA_DIR_ENV):
        return pathlib.Path(environ[DATA_DIR_ENV]).expanduser()
    if environ.get("XDG_CACHE_HOME"):
        return pathlib.Path(environ["XDG_CACHE_HOME"]).expanduser() / CACHE_SUBDIR
    return pathlib.Path.home() / ".cache" / CACHE_SUBDIR


def _temporary_sibling(path: pathlib.Path) -> pathlib.Path:
    """A hidden name in ``path``'s folder, unique per writer, so concurrent writers never collide."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` (creating parent folders) so readers see the old file or the whole new one."""
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(target)
    try:
        with open(temporary, "xb") as handle:
            handle.write(data)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    """Text version of :func:`atomic_write_bytes`; newlines are written as given, on every OS."""
    atomic_write_bytes(path, text.encode(encoding))


@contextlib.contextmanager
def atomic_directory(final_path: PathLike) -> Iterator[pathlib.Path]:
    """Yields an empty temporary folder that becomes ``final_path`` when the block succeeds.

    If the block raises, the temporary folder is removed and ``final_path`` is
    untouched. Raises FileExistsError if ``final_path`` exists, before the
    block runs or when it is about to be renamed (another writer finished
    first); callers that build deterministic content can then use theirs.
    """
    target = pathlib.Path(final_path)
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(target)
    temporary.mkdir()
    try:
        yield temporary
        if target.exists():
            raise FileExistsError(f"{target} already exists")
        try:
            os.rename(temporary, target)
        except OSError as error:
            # POSIX refuses to rename onto a non-empty folder (ENOTEMPTY or EEXIST): another writer finished first.
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST) and target.exists():
                raise FileExistsError(f"{target} already exists") from None
            raise
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
