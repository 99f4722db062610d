"""Regenerable sections of markdown documents.

Benchmark scripts and ``grainseg eval`` write their results into
``docs/benchmarks.md`` between markers ``<!-- BEGIN name -->`` and
``<!-- END name -->``, so each command regenerates only its own part and the
hand-written text around it stays.
"""

from __future__ import annotations

import re
from pathlib import Path

from napari_grainseg.errors import InputError
from napari_grainseg.io.atomic import atomic_open


def check_section_name(name: str) -> str:
    """``name`` if it can name markers (letters, digits, ``-``, ``_``); otherwise an InputError."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise InputError(f"section names are letters, digits, '-' or '_' (they name the markers), got {name!r}")
    return name


def replace_section(path: str | Path, name: str, body: str, heading: str | None = None) -> Path:
    """Put ``body`` between the markers of section ``name`` in ``path`` (atomically).

    A missing file is created; a missing section is appended, preceded by
    ``heading`` (a markdown heading line) when given.
    """
    path = Path(path)
    check_section_name(name)
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    else:
        prefix = (text.rstrip() + "\n\n") if text.strip() else ""
        text = prefix + (f"{heading}\n\n" if heading else "") + block + "\n"
    with atomic_open(path) as fh:
        fh.write(text)
    return path
