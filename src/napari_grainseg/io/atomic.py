"""Atomic file writing: a file is either complete or absent, never half-written.

Write to a temporary file in the destination folder, flush and fsync it, then
``os.replace`` it onto the final name (atomic on POSIX and Windows). A set of files
that belong together (one field's exports) is written all or nothing with
:func:`atomic_paths`: every file to its temporary name first, then all renamed.

A full disk, a read-only folder or a denied permission while writing becomes
:class:`OutputWriteError` (an :class:`~napari_grainseg.errors.InputError`: the CLI
exits 2 with one line such as ``no space left on device at /data/out``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import uuid
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
    path = final_path(Path(path))
    folder = path.parent
    if folder.name.startswith(".") and ".staging-" in folder.name:  # name the output folder, not the staging one
        folder = folder.parent
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputWriteError(f"{_USER_ERRNOS[exc.errno]} at {folder} (writing {path.name})", exc.errno)
    return OutputWriteError(f"cannot write {path}: {_USER_ERRNOS[exc.errno]}", exc.errno)


#: A temporary file of :func:`atomic_path`: ``.<name>.<random>.part<suffix>``.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[^.]+\.part(\.[^.]*)?$")


def final_path(path: Path) -> Path:
    """The file a temporary file of :func:`atomic_path` (or one of its temporaries) will become;
    any other path as it is. Messages name the user's file, not ``.x.csv.k3j.part.csv``."""
    while match := _TEMPORARY.match(path.name):
        path = path.with_name(match["name"])
    return path


def _temporary(path: Path) -> Path:
    """A new empty temporary file next to ``path`` (its folder made if needed)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise as_output_error(exc, path) from exc
    return Path(tmp_name)


def _seal(tmp: Path, path: Path) -> None:
    """Flush ``tmp`` to the disk and give it the mode ``path`` has (or a plain ``open()`` would give)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    # mkstemp makes the file private (0600); give it the mode a plain open() would.
    os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())


@contextlib.contextmanager
def atomic_paths(paths) -> Iterator[list[Path]]:
    """Yield temporary paths next to each of ``paths``; once all are written, move them all into place.

    All or nothing for a set of files: every file is written under its temporary name
    first (a full disk stops the set there), then each is renamed onto its final name
    (renames write no data; the files they replace are kept aside until all have moved, and put
    back if one cannot, e.g. a file held open on Windows). On an exception every temporary file
    is removed and every file in ``paths`` is left as it was.

    Examples
    --------
    >>> with atomic_paths(["a.csv", "a.png"]) as (csv, png):   # doctest: +SKIP
    ...     table.to_csv(csv)
    ...     fig.savefig(png)
    """
    paths = [Path(p) for p in paths]
    tmps: list[Path] = []
    current: Path | None = None  # the file being sealed or moved (None: the caller's writers run)
    try:
        for path in paths:
            tmps.append(_temporary(path))
        yield list(tmps)
        for current, tmp in zip(paths, tmps):
            _seal(tmp, current)
        asides: list[Path | None] = []  # the files being replaced, moved aside until all have moved
        moved: list[Path] = []
        try:
            for current in paths:
                aside = None
                if current.is_file():  # (a folder in the way makes its rename fail below)
                    aside = current.with_name(f".{current.name}.{uuid.uuid4().hex[:12]}.old")
                    os.replace(current, aside)
                asides.append(aside)
            for current, tmp in zip(paths, tmps):
                os.replace(tmp, current)
                moved.append(current)
        except BaseException:  # one could not move (or Ctrl-C): undo, and put the old files back
            for path in moved:
                with contextlib.suppress(OSError):
                    path.unlink()
            for path, aside in zip(paths, asides):
                if aside is not None:
                    with contextlib.suppress(OSError):
                        os.replace(aside, path)
            raise
        for aside in asides:
            if aside is not None:
                with contextlib.suppress(OSError):
                    aside.unlink()
    except OSError as exc:
        for tmp in tmps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if current is None and exc.filename is not None:  # a writer's own error: the file it wrote
            current = Path(exc.filename)
        err = exc if current is None else as_output_error(exc, current)
        if err is exc:
            raise
        raise err from exc
    except BaseException:
        for tmp in tmps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise


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
    tmp = _temporary(path)
    try:
        yield tmp
        _seal(tmp, path)
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
