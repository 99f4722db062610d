"""Atomic writes: complete or absent, never half-written; ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from napari_grainseg.io.atomic import atomic_open, atomic_path


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("half of the new content")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_new_file_gets_umask_permissions_not_private(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644


def test_replacing_keeps_the_existing_mode(tmp_path):
    target = tmp_path / "b.txt"
    target.write_text("v1")
    target.chmod(0o600)
    with atomic_open(target) as fh:
        fh.write("v2")
    assert target.read_text() == "v2" and stat.S_IMODE(target.stat().st_mode) == 0o600
