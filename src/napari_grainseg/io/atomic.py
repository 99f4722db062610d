"""Atomic file writing: a file is either complete or absent, never half-written.

Write to a temporary file in the destination folder, flush and fsync it, then
``os.replace`` it onto the final name (atomic on POSIX and Windows).

A full disk, a read-only folder or a denied permission while writing becomes
:class:`OutputWriteError` (an :class:`~napari_grainseg.errors.InputError`: the CLI
exits 2 with one line such as ``no space left on device at /data/out``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from napari_grainseg.errors import InputError

#: errno values that mean "the user's disk or folder", not a bug.
_USER_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file",
    errno.EISDIR: "is a directory",
}


class OutputWriteError(InputError):
    """A file could not be written for a reason of the user's disk or folder (full, read-only...)."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


def as_output_error(exc: OSError, path: str | os.PathLike) -> OSError | OutputWriteError:
    """``exc`` as an :class:`OutputWriteError` naming ``path`` when it is a disk/folder problem."""
    if isinstance(exc, OutputWriteError) or exc.errno not in _USER_ERRNOS:
        return exc
    path = Path(path)
    folder = path.parent
    if folder.name.startswith(".") and ".staging-" in folder.name:  # name the output folder, not the staging one
        folder = folder.parent
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputWriteError(f"{_USER_ERRNOS[exc.errno]} at {folder} (writing {path.name})", exc.errno)
    return OutputWriteError(f"cannot write {path}: {_USER_ERRNOS[exc.errno]}", exc.errno)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` on success.

    Use for writers that want a file name (``tifffile.imwrite``, ``fig.savefig``).
    On an exception the temporary file is removed and ``path`` is untouched.

    Examples
    --------
    >>> with atomic_path("out.tif") as tmp:          # doctest: +SKIP
    ...     tifffile.imwrite(tmp, image)
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise as_output_error(exc, path) from exc
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        err = as_output_error(exc, path)
        if err is exc:
            raise
        raise err from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` atomically on close.

    ``mode`` is ``"w"`` (text, UTF-8 by default) or ``"wb"``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', not {mode!r}")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
        kwargs.setdefault("newline", "")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
