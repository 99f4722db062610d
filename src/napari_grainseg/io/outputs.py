"""Output folders that lose nothing: a lock per folder, and a field's files committed as a set.

Used by ``grainseg segment`` and ``grainseg batch`` (one "field" = the files of
one micrograph, ``<stem>_*``).

* :func:`check_output_dir` validates an output folder (a file, under a file,
  read-only, not creatable) before any computation.
* :class:`FolderLock` makes one run at a time own a folder. A second run
  refuses at once (:class:`FolderBusyError`, naming the folder and the holder's
  PID) or waits. The lock is an ``fcntl.flock`` on ``.grainseg.lock``: the kernel
  drops it when its holder dies, so a lock left by a killed run is taken over
  (where ``flock`` is missing, an exclusively created file whose PID is checked
  for life).
* :func:`commit_field` moves a field's files from a staging folder
  (``.<stem>.staging-<run id>``, one per run) into the output folder as a set:
  first a journal ``.<stem>.commit.json`` listing the new files (size, SHA-256),
  then one ``os.replace`` per file, then the completion marker
  ``<stem>_done.json`` (written atomically) listing every output with its size
  and SHA-256, then the journal is removed. A kill during the moves leaves the
  journal, so the half-moved set is never taken as done and is redone.
* :func:`field_state` re-checks a field's files against its marker;
  :func:`check_not_edited` refuses to replace files that differ from what
  grainseg wrote (edited by hand) unless overwriting is asked for.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from napari_grainseg.errors import InputError

__all__ = [
    "DONE_SUFFIX",
    "LOCK_NAME",
    "FolderBusyError",
    "FolderLock",
    "OutputConflictError",
    "check_not_edited",
    "check_output_dir",
    "commit_field",
    "comparable_outputs",
    "fault_point",
    "field_state",
    "file_record",
    "is_staging_name",
    "leftover_files",
    "new_run_id",
    "remove_stale_staging",
    "staging_dir",
]

#: Completion marker of a field, written after every other output of it.
DONE_SUFFIX = "_done.json"
#: Lock file at the top of an output folder.
LOCK_NAME = ".grainseg.lock"
#: Version of the marker format (2: files with size and SHA-256).
MARKER_VERSION = 2


class FolderBusyError(InputError):
    """Another live run holds the output folder's lock."""


class OutputConflictError(InputError):
    """Existing outputs differ from what grainseg wrote (edited by hand?); not replaced."""


_FAULT_COUNTS: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Testing hook: die (SIGKILL) or pause at a named point when ``GRAINSEG_FAULT`` asks for it.

    ``GRAINSEG_FAULT="<point>[:<n>]=kill"`` kills this process with SIGKILL the
    n-th time (default 1st) it reaches ``<point>``; ``...=sleep:<s>`` pauses
    there. Points: ``staged`` (a field written to its staging folder),
    ``journal`` (commit journal written), ``moved`` (after each file moved in),
    ``marker`` (marker written, journal not yet removed). Unset: does nothing.
    """
    spec = os.environ.get("GRAINSEG_FAULT")
    if not spec:
        return
    _FAULT_COUNTS[name] = _FAULT_COUNTS.get(name, 0) + 1
    for part in spec.split(","):
        where, _, action = part.partition("=")
        point, _, nth = where.partition(":")
        if point != name or _FAULT_COUNTS[name] != int(nth or 1):
            continue
        if action == "kill":
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        elif action.startswith("sleep:"):
            time.sleep(float(action.split(":", 1)[1]))


def new_run_id() -> str:
    """A run id unique across processes and hosts: ``<time>-<pid>-<random>``."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- folder checks


#: Characters a file name may not hold on any system this runs on (a separator, or reserved on Windows).
BAD_NAME_CHARS = '/\\:*?"<>|'


def check_file_name(name: str, what: str = "a file stem") -> str:
    """Refuse a name that is not a plain file name: a path (it would write outside its folder), a
    character Windows reserves, a control character, or a name that starts or ends with '.'.

    ``what`` names it in the message. Used for export stems and model names alike.

    Examples
    --------
    >>> check_file_name("cu film 3")
    'cu film 3'
    >>> check_file_name("../x")
    Traceback (most recent call last):
    ...
    napari_grainseg.errors.InputError: a file stem may not contain '/': '../x'
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{what} must be a name, got {name!r}")
    for ch in BAD_NAME_CHARS:
        if ch in name:
            raise InputError(f"{what} may not contain {ch!r}: {name!r}")
    if any(ord(ch) < 32 for ch in name):
        raise InputError(f"{what} may not contain control characters: {name!r}")
    if name.startswith(".") or name.endswith("."):
        raise InputError(f"{what} may not start or end with '.': {name!r}")
    return name


def check_output_dir(path: str | os.PathLike, *, option: str = "--out", create: bool = True) -> Path:
    """Create ``path`` if needed and check that files can be written in it.

    With ``create=False`` a missing folder is not made: only checked to be creatable
    (its nearest existing parent is a writable folder), so that a command can refuse
    a bad ``--out`` before reading its inputs and still leave nothing behind when an
    input then turns out to be bad; it calls again with ``create=True`` before writing.

    Raises
    ------
    InputError
        When ``path`` is a file, lies under a file, cannot be created, is
        read-only, or its disk is full; the message names the folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is a file, not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{option} {path} cannot be created: {parent} is a file")
            if not create and not path.exists() and not os.access(parent, os.W_OK | os.X_OK):
                raise InputError(f"{option} {path}: cannot create the output folder: {parent} is not writable")
            break
    if not create and not path.exists():
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot create the output folder: {describe_os_error(exc)}") from None
    try:  # a real write: permissions, read-only mounts and full disks all show here
        fd, probe = _mkstemp(path)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot write in the output folder: {describe_os_error(exc)}") from None
    return path


def check_output_file(path: str | os.PathLike, *, option: str = "--out") -> Path:
    """Check, before long work, that a single output file can be written at ``path``.

    Raises
    ------
    InputError
        When ``path`` is a folder, its folder is missing or not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{option} {path}: cannot write in {folder}")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{option} {path} is read-only")
    return path


def _mkstemp(folder: Path) -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(prefix=".grainseg-probe-", dir=folder)


def describe_os_error(exc: OSError) -> str:
    """A short cause for an OSError (read-only, permission denied, no space left...)."""
    return {
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied (read-only?)",
        errno.EPERM: "operation not permitted",
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.ENOTDIR: "a part of the path is a file",
        errno.EEXIST: "exists",
    }.get(exc.errno, exc.strerror or type(exc).__name__)


# --------------------------------------------------------------------------- lock


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


class FolderLock:
    """Exclusive ownership of an output folder by one run (a context manager).

    Parameters
    ----------
    folder
        The output folder (must exist).
    wait
        False: raise :class:`FolderBusyError` at once when another run holds
        it; True: wait until it is free (polling every ``poll`` s).
    run_id
        Recorded in the lock file (default: :func:`new_run_id`).
    """

    def __init__(
        self, folder: str | os.PathLike, *, wait: bool = False, run_id: str | None = None, poll: float = 0.5
    ) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.wait = wait
        self.poll = poll
        self.run_id = run_id or new_run_id()
        self._fd: int | None = None

    def holder(self) -> dict:
        """What the lock file says about its holder (``{}`` when unreadable)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def _busy(self) -> FolderBusyError:
        info = self.holder()
        pid = info.get("pid", "?")
        host = info.get("host")
        where = f" on {host}" if host and host != socket.gethostname() else ""
        return FolderBusyError(
            f"output folder {self.folder} is in use by another grainseg run (PID {pid}{where}, "
            f"started {info.get('started', '?')}); wait for it, or add --wait"
        )

    def acquire(self) -> FolderLock:
        while True:
            if self._try_acquire():
                return self
            if not self.wait:
                raise self._busy()
            time.sleep(self.poll)

    def _try_acquire(self) -> bool:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self._try_acquire_exclusive()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"cannot lock output folder {self.folder}: {describe_os_error(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # e.g. some network mounts
                return self._try_acquire_exclusive()
            raise
        # The previous holder may have removed the file between our open and flock: then we
        # hold a lock on a deleted file, and must retry on the new one.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return self._try_acquire()
        self._fd = fd
        self._write_info(fd)
        return True

    def _try_acquire_exclusive(self) -> bool:
        """Fallback without flock: an O_EXCL lock file; a dead holder's (PID not alive) is taken over."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            info = self.holder()
            same_host = info.get("host") in (None, socket.gethostname())
            if same_host and isinstance(info.get("pid"), int) and not _pid_alive(info["pid"]):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)  # stale: its run died
                return self._try_acquire_exclusive()
            return False
        self._fd = fd
        self._write_info(fd)
        return True

    def _write_info(self, fd: int) -> None:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "run_id": self.run_id,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        data = (json.dumps(info) + "\n").encode()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the lock: a waiter that opened the old file sees the
        # inode change and retries (see _try_acquire).
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# --------------------------------------------------------------------------- staging


_STAGING = ".staging-"


def staging_dir(out_dir: str | os.PathLike, stem: str, run_id: str) -> Path:
    """The staging folder of one field for one run (``.<stem>.staging-<run id>``), created empty."""
    path = Path(out_dir) / f".{stem}{_STAGING}{run_id}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def is_staging_name(name: str) -> bool:
    return name.startswith(".") and _STAGING in name


def _run_pid(run_id: str) -> int | None:
    parts = run_id.split("-")
    try:
        return int(parts[1])
    except (IndexError, ValueError):
        return None


def remove_stale_staging(out_dir: str | os.PathLike, run_id: str) -> list[Path]:
    """Remove this run's staging folders in ``out_dir`` and those of runs whose process is dead.

    A staging folder of another live run (possible only when it writes without
    the folder's lock) is left alone. Also removes the ``.part`` files atomic
    writes of a killed run left. Returns what was removed.
    """
    out_dir = Path(out_dir)
    removed = []
    if not out_dir.is_dir():
        return removed
    for d in out_dir.iterdir():
        if not is_staging_name(d.name):
            continue
        owner = d.name.split(_STAGING, 1)[1]
        pid = _run_pid(owner)
        if owner == run_id or pid is None or (pid != os.getpid() and not _pid_alive(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    for f in out_dir.glob(".*.part*"):
        if f.is_file():
            with contextlib.suppress(OSError):
                f.unlink()
                removed.append(f)
    return removed


# --------------------------------------------------------------------------- records


def check_not_an_input(
    outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike | None], option: str = "--out"
) -> None:
    """Refuse an output path that is one of the input files (same resolved path or same file)."""
    ins = [Path(p) for p in inputs if p is not None]
    for out in outputs:
        out = Path(out)
        for src in ins:
            same = out.resolve() == src.resolve()
            if not same and out.exists() and src.exists():
                try:
                    same = os.path.samefile(out, src)
                except OSError:
                    same = False
            if same:
                raise InputError(
                    f"{option} {out} is the input file {src}; it would be overwritten. Give another output name"
                )


def file_record(path: str | os.PathLike) -> dict:
    """Size and SHA-256 of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def _marker_path(out_dir: Path, stem: str) -> Path:
    return out_dir / f"{stem}{DONE_SUFFIX}"


def _journal_path(out_dir: Path, stem: str) -> Path:
    return out_dir / f".{stem}.commit.json"


def read_marker(out_dir: str | os.PathLike, stem: str) -> dict | None:
    """A field's completion marker, or None when missing, unreadable or of another version."""
    try:
        marker = json.loads(_marker_path(Path(out_dir), stem).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(marker, dict)
        or marker.get("version") != MARKER_VERSION
        or not isinstance(marker.get("files"), dict)
    ):
        return None
    return marker


def field_state(out_dir: str | os.PathLike, stem: str) -> tuple[str, list[str]]:
    """Whether a field's outputs are complete and unchanged since grainseg wrote them.

    Returns ``(state, names)``: ``"done"`` (marker valid, every file present
    with its recorded size and SHA-256, no commit in progress), ``"absent"``
    (no marker), ``"incomplete"`` (a commit was interrupted, or files are
    missing: ``names`` lists them) or ``"changed"`` (files differ from the
    marker: ``names``).
    """
    out_dir = Path(out_dir)
    marker = read_marker(out_dir, stem)
    if _journal_path(out_dir, stem).exists():
        return "incomplete", []
    if marker is None:
        return "absent", []
    missing, changed = [], []
    for name, rec in marker["files"].items():
        p = out_dir / name
        if not p.is_file():
            missing.append(name)
            continue
        try:
            if p.stat().st_size != rec.get("size") or file_record(p)["sha256"] != rec.get("sha256"):
                changed.append(name)
        except OSError:
            missing.append(name)
    if changed:
        return "changed", changed
    if missing:
        return "incomplete", missing
    return "done", []


def _known_hashes(out_dir: Path, stem: str) -> dict[str, set[str]]:
    """SHA-256 of every version of each output grainseg itself wrote and recorded (marker, journal)."""
    known: dict[str, set[str]] = {}
    marker = read_marker(out_dir, stem)
    sources = [marker["files"]] if marker else []
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
        journal = json.loads(_journal_path(out_dir, stem).read_text(encoding="utf-8"))
        sources += [journal.get("files") or {}, journal.get("previous") or {}]
    for files in sources:
        for name, rec in files.items():
            if isinstance(rec, dict) and "sha256" in rec:
                known.setdefault(name, set()).add(rec["sha256"])
    return known


def _legacy_files(out_dir: Path, stem: str) -> dict[str, int]:
    """Files named by a version-1 marker (names only) → the marker's modification time (ns)."""
    path = _marker_path(out_dir, stem)
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(marker, dict) and marker.get("version") == 1 and isinstance(marker.get("files"), list):
            mtime = path.stat().st_mtime_ns
            return {str(name): mtime for name in marker["files"]}
    except (OSError, ValueError):
        pass
    return {}


def check_not_edited(
    out_dir: str | os.PathLike, stem: str, names: Iterable[str], *, overwrite: bool = False
) -> list[str]:
    """Refuse to replace outputs that grainseg did not write as they are now.

    ``names``: the files a new run of the field would write. An existing one
    passes when its SHA-256 is one grainseg recorded for it (in the marker or
    an interrupted commit's journal). Returns the names that would be
    replaced without such a record (empty when ``overwrite``).

    Raises
    ------
    OutputConflictError
        When such a file exists and ``overwrite`` is False.
    """
    out_dir = Path(out_dir)
    names = set(names)
    marker = read_marker(out_dir, stem)
    if marker:
        names |= set(marker["files"])
    known = _known_hashes(out_dir, stem)
    legacy = _legacy_files(out_dir, stem)
    foreign = []
    for name in sorted(names):
        p = out_dir / name
        if not p.is_file():
            continue
        if name in legacy and name not in known:  # an older marker without hashes: not newer than it
            if p.stat().st_mtime_ns <= legacy[name]:
                continue
            known[name] = set()
        if name not in known or file_record(p)["sha256"] not in known[name]:
            foreign.append(name)
    if foreign and not overwrite:
        first = out_dir / foreign[0]
        why = (
            "changed since grainseg wrote it (edited by hand?)"
            if foreign[0] in known
            else f"grainseg has no record of writing it (no valid {stem}{DONE_SUFFIX})"
        )
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise OutputConflictError(
            f"{first}{more}: {why}; not replaced. Add --overwrite to replace, or choose another --out"
        )
    return foreign


def commit_field(
    stage: str | os.PathLike,
    out_dir: str | os.PathLike,
    stem: str,
    *,
    extra: dict | None = None,
    expected: Iterable[str] = (),
) -> dict:
    """Move a field's files from ``stage`` into ``out_dir`` as a set; write its marker. Returns it.

    The files are checked first (every ``expected`` name present, none empty);
    then a journal lists them, each is moved with ``os.replace``, the marker
    ``<stem>_done.json`` (``version``, ``files``: name → size and SHA-256, plus
    ``extra``) is written atomically and the journal removed. ``stage`` is
    removed at the end.
    """
    from napari_grainseg.io.atomic import atomic_open

    stage, out_dir = Path(stage), Path(out_dir)
    fault_point("staged")
    names = sorted(p.name for p in stage.iterdir() if p.is_file() and not p.name.startswith("."))
    missing = sorted(set(expected) - set(names))
    if missing:
        raise RuntimeError(f"outputs missing after writing {stem}: {', '.join(missing)}")
    files = {name: file_record(stage / name) for name in names}
    empty = [n for n, r in files.items() if r["size"] == 0]
    if empty:
        raise RuntimeError(f"empty outputs after writing {stem}: {', '.join(empty)}")
    old = read_marker(out_dir, stem)
    journal = _journal_path(out_dir, stem)
    with atomic_open(journal) as fh:
        json.dump(
            {"stem": stem, "stage": stage.name, "files": files, "previous": old["files"] if old else {}}, fh, indent=1
        )
    fault_point("journal")
    _marker_path(out_dir, stem).unlink(missing_ok=True)  # the old set is no longer complete
    for name in names:
        os.replace(stage / name, out_dir / name)
        fault_point("moved")
    if old:  # outputs of the old set that the new one no longer has would mismatch it: remove
        for name in set(old["files"]) - set(names):
            with contextlib.suppress(FileNotFoundError):
                (out_dir / name).unlink()
    marker = {"version": MARKER_VERSION, **(extra or {}), "files": files}
    with atomic_open(_marker_path(out_dir, stem)) as fh:
        json.dump(marker, fh, indent=2)
        fh.write("\n")
    fault_point("marker")
    journal.unlink(missing_ok=True)
    shutil.rmtree(stage, ignore_errors=True)
    return marker


@contextlib.contextmanager
def locked_output(out_dir: str | os.PathLike, *, wait: bool = False) -> Iterator[FolderLock]:
    """Check ``out_dir`` (:func:`check_output_dir`) and hold its lock for the block."""
    check_output_dir(out_dir)
    with FolderLock(out_dir, wait=wait) as lock:
        yield lock


# --------------------------------------------------------------------------- comparing two runs

#: JSON keys that hold timings or run facts: they differ between two runs that made the same results.
RUN_FACTS = frozenset(
    {
        "seconds",
        "net1_seconds",
        "net2_seconds",
        "cpu_seconds",
        "finished",
        "batch",
        "n_processed",
        "n_skipped",
        "status",
        "started",
        "outputs",  # the folder's own path
    }
)


def _without_run_facts(obj):
    if isinstance(obj, dict):
        return {k: _without_run_facts(v) for k, v in obj.items() if k not in RUN_FACTS}
    if isinstance(obj, list):
        return [_without_run_facts(v) for v in obj]
    return obj


def comparable_outputs(out_dir: str | os.PathLike) -> dict[str, object]:
    """Every output of a folder in a form two runs can be compared by: ``{relative path: content}``.

    Files are compared by their bytes; JSON files by their content without :data:`RUN_FACTS`;
    a completion marker by the files it lists (sizes and SHA-256, JSON files aside: they hold
    timings) and its grain count. Temporary files (names starting with a dot) are left out: see
    :func:`leftover_files`. Two runs that made the same results give equal dictionaries (a
    killed-and-resumed batch must give the clean run's).
    """
    out_dir = Path(out_dir)
    snap: dict[str, object] = {}
    for p in sorted(out_dir.rglob("*")):
        if p.is_dir() or any(part.startswith(".") for part in p.relative_to(out_dir).parts):
            continue
        rel = str(p.relative_to(out_dir))
        if p.suffix == ".json":
            data = _without_run_facts(json.loads(p.read_text()))
            if rel.endswith(DONE_SUFFIX):
                data = {
                    "files": {k: v for k, v in data["files"].items() if not k.endswith(".json")},
                    "n_grains": data.get("n_grains"),
                }
            snap[rel] = data
        else:
            snap[rel] = p.read_bytes()
    return snap


def leftover_files(out_dir: str | os.PathLike) -> list[str]:
    """Temporary files a finished run must not leave: staging folders, ``.part`` files, journals, its lock."""
    out_dir = Path(out_dir)
    return [str(p.relative_to(out_dir)) for p in out_dir.rglob(".*")]
