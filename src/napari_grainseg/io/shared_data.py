"""The one lookup of the project's shared data (not shipped): the published networks, the traced crops.

A development checkout keeps ``shared/data`` inside or beside the repository; an environment
variable names a file or folder anywhere else. The lookup never depends on the working folder.

Examples
--------
>>> find_shared_data("tbm_train", env="GRAINSEG_TBM_DIR", accept=Path.is_dir)   # doctest: +SKIP
PosixPath('/work/shared/data/tbm_train')
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["SHARED_DATA", "find_shared_data", "search_roots"]

#: Where the shared data sit below a checkout's root (or the folder beside it).
SHARED_DATA = Path("shared") / "data"


def search_roots() -> list[Path]:
    """The folders whose ``shared/data`` is searched: every folder above this package, nearest first."""
    return list(Path(__file__).resolve().parents)


def find_shared_data(relative: str | Path, *, env: str, accept: Callable[[Path], bool]) -> Path | None:
    """``$env`` if set (returned as given: the caller reports a wrong one), else the first
    ``<root>/shared/data/<relative>`` that ``accept`` takes, for the roots of :func:`search_roots`;
    None when there is none."""
    given = os.environ.get(env)
    if given:
        return Path(given)
    for root in search_roots():
        candidate = root / SHARED_DATA / relative
        if accept(candidate):
            return candidate
    return None
