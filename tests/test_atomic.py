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


def test_a_set_whose_second_rename_fails_puts_the_first_file_back(tmp_path, monkeypatch):
    """The rename phase is all or nothing too: when the second file cannot move into place (a folder
    in its way; on Windows a file held open), the first, already renamed, is undone and the file
    it replaced is back; nothing temporary is left."""
    from napari_grainseg.io.atomic import OutputWriteError, atomic_paths

    csv, json_path = tmp_path / "s_grains.csv", tmp_path / "s_summary.json"
    csv.write_text("old csv")
    json_path.mkdir()
    with pytest.raises(OutputWriteError, match="s_summary.json"):
        with atomic_paths([csv, json_path]) as (a, b):
            a.write_text("new csv")
            b.write_text("new json")
    assert csv.read_text() == "old csv" and json_path.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s_grains.csv", "s_summary.json"]
    # Ctrl-C between two renames: the same
    real_replace, calls = os.replace, []

    def interrupted(src, dst):
        calls.append(dst)
        if len(calls) == 3:  # csv aside, then the new csv in, then KeyboardInterrupt
            raise KeyboardInterrupt
        return real_replace(src, dst)

    json_path.rmdir()
    json_path.write_text("old json")
    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with atomic_paths([csv, json_path]) as (a, b):
            a.write_text("new csv")
            b.write_text("new json")
    monkeypatch.undo()
    assert (csv.read_text(), json_path.read_text()) == ("old csv", "old json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s_grains.csv", "s_summary.json"]
