"""Reliability: nothing lost under SIGKILL, concurrent runs, full or read-only disks, hostile or absurd input.

The kill tests fork this (already initialised) test process and run the real
``grainseg`` command in the child, which a fault hook (``GRAINSEG_FAULT``, see
:func:`napari_grainseg.io.outputs.fault_point`) kills with a real SIGKILL at a
chosen point of writing; the resumed run must give the clean run's outputs.
Inputs are tiny (64x96 synthetic fields), so the whole file runs in well under
a minute.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import pickle
import shutil
import signal
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_grainseg.cli import build_parser, main
from napari_grainseg.errors import InputError
from napari_grainseg.io.outputs import LOCK_NAME, FolderLock, comparable_outputs, field_state, leftover_files
from napari_grainseg.synthetic import generate

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="kill tests fork the test process")

SHAPE = (96, 128)
FIELDS = ("a/f0.tif", "a/f1.tif", "b/f2.tif")


def _weights_dir() -> Path:
    from napari_grainseg.models.weights import shipped_weights_dir

    d = shipped_weights_dir()
    if not (d / "net1.pt").is_file():
        pytest.skip("no shipped Net1 weights")
    return d


@pytest.fixture(scope="module")
def fields(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fields")
    for i, rel in enumerate(FIELDS):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / rel, generate(i, SHAPE, "tem").image.astype(np.float32))
    return root


def _batch(fields: Path, out: Path, *extra: str) -> list[str]:
    _weights_dir()
    return [
        "batch",
        str(fields),
        "--out",
        str(out),
        "--workers",
        "1",
        "--net2-steps",
        "0",
        "--pixel-size",
        "2",
        "--no-progress",
        *extra,
    ]


def _segment(inputs, out: Path, *extra: str) -> list[str]:
    _weights_dir()
    return ["segment", *map(str, inputs), "--out", str(out), "--net2-steps", "0", "--pixel-size", "2", *extra]


def _forked(argv: list[str], env: dict[str, str] | None = None, stderr: Path | None = None) -> int:
    """Run ``grainseg argv`` in a forked child; its exit code, or -signal when a signal ended it."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 70
        try:
            os.environ.update(env or {})
            fd = os.open(stderr or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 2)
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            code = 71
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


@pytest.fixture(scope="module")
def clean_batch(fields, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    assert main(_batch(fields, out)) == 0
    assert not leftover_files(out)
    from napari_grainseg.io.outputs import file_record

    for rel in FIELDS:  # every marker lists every output of its field with its size and SHA-256
        stem = Path(rel).stem
        marker = json.loads((out / rel).with_name(f"{stem}_done.json").read_text())
        outputs = sorted(p.name for p in (out / rel).parent.glob(f"{stem}_*") if p.name != f"{stem}_done.json")
        assert sorted(marker["files"]) == outputs and len(outputs) == 6  # the histogram SVG only with --svg
        assert all(marker["files"][n] == file_record((out / rel).parent / n) for n in outputs)
    return out


# --------------------------------------------------------------------------- SIGKILL and resume


@pytest.mark.parametrize("point", ["staged:2", "journal:1", "moved:3", "moved:9", "marker:3"])
def test_batch_killed_then_resumed_gives_the_clean_outputs(point, fields, clean_batch, tmp_path):
    out = tmp_path / "out"
    assert _forked(_batch(fields, out), {"GRAINSEG_FAULT": f"{point}=kill"}) == -signal.SIGKILL
    assert (out / LOCK_NAME).exists()  # the killed run's lock is left behind, with a dead PID
    if point == "moved:3":  # killed half-way through moving a field's files in
        assert field_state(out / "a", "f0")[0] == "incomplete"  # its journal: never taken as done
        assert not (out / "a" / "f0_done.json").exists()
    assert main(_batch(fields, out)) == 0  # resume: takes the stale lock over
    assert comparable_outputs(out) == comparable_outputs(clean_batch)
    assert not leftover_files(out)


def test_resume_redoes_a_field_with_a_missing_file(fields, clean_batch, tmp_path, capsys):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(clean_batch, out)
    (out / "a" / "f1_grains.tif").unlink()
    (out / "b" / "f2_boundaries.tif").unlink()
    assert main(_batch(fields, out)) == 0
    assert "2 processed, 1 skipped" in capsys.readouterr().err
    assert comparable_outputs(out) == comparable_outputs(clean_batch)


def test_segment_killed_then_rerun_gives_the_clean_outputs(fields, tmp_path):
    inputs = [fields / rel for rel in FIELDS[:2]]
    clean = tmp_path / "clean"
    assert main(_segment(inputs, clean)) == 0
    for point in ("journal:2", "moved:10", "marker:1"):
        out = tmp_path / point.replace(":", "_")
        assert _forked(_segment(inputs, out), {"GRAINSEG_FAULT": f"{point}=kill"}) == -signal.SIGKILL
        assert main(_segment(inputs, out)) == 0  # no --overwrite needed: the files are grainseg's own
        assert comparable_outputs(out) == comparable_outputs(clean), point
        assert not leftover_files(out)


def test_a_failing_rerun_keeps_the_old_set(fields, tmp_path):
    """A rerun that fails before committing leaves the previous complete set untouched."""
    out = tmp_path / "out"
    inputs = [fields / FIELDS[0]]
    assert main(_segment(inputs, out)) == 0
    before = comparable_outputs(out)
    assert _forked(_segment(inputs, out, "--watershed-h", "0.4"), {"GRAINSEG_FAULT": "staged=kill"}) == -signal.SIGKILL
    assert comparable_outputs(out) == before
    assert field_state(out, "f0")[0] == "done"
    assert len(leftover_files(out)) == 2  # the dead run's staging folder and its lock, until the next run
    assert main(_segment(inputs, out)) == 0
    assert not leftover_files(out)


# --------------------------------------------------------------------------- concurrent runs


def _wait_for(path: Path, timeout: float = 60) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert time.monotonic() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.05)


def test_two_concurrent_batch_runs_do_not_mix(fields, clean_batch, tmp_path, capsys):
    out = tmp_path / "out"
    pid = os.fork()
    if pid == 0:  # the first run, slowed down while it holds the folder
        code = 70
        try:
            os.environ["GRAINSEG_FAULT"] = "staged:2=sleep:2"
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            code = main(_batch(fields, out))
        finally:
            os._exit(code)
    _wait_for(out / LOCK_NAME)
    time.sleep(0.2)
    t0 = time.monotonic()
    assert main(_batch(fields, out)) == 2  # the second refuses at once...
    assert time.monotonic() - t0 < 5
    err = capsys.readouterr().err
    assert f"output folder {out} is in use by another grainseg run (PID {pid}" in err
    assert len(err.strip().splitlines()) == 1
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0  # ...and the first completes untouched
    assert comparable_outputs(out) == comparable_outputs(clean_batch)
    assert not leftover_files(out)


def test_wait_waits_and_a_dead_holders_lock_is_taken_over(fields, clean_batch, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # holds the lock for 1.5 s
        with FolderLock(out):
            os.write(w, b"x")
            time.sleep(1.5)
        os._exit(0)
    os.read(r, 1)
    t0 = time.monotonic()
    assert main(_batch(fields, out, "--wait")) == 0
    assert time.monotonic() - t0 > 1.0
    os.waitpid(pid, 0)
    # a holder killed with SIGKILL: its lock file stays, naming a dead PID, and is taken over
    pid = os.fork()
    if pid == 0:
        FolderLock(out).acquire()  # held until this child is killed
        os.write(w, b"x")
        time.sleep(60)
        os._exit(0)
    os.read(r, 1)
    assert main(_batch(fields, out)) == 2
    assert f"PID {pid}" in capsys.readouterr().err
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == pid
    assert main(_batch(fields, out)) == 0


def test_lock_without_flock_checks_the_pid(tmp_path):
    """Where flock is missing, the lock file's PID decides: a dead holder's lock is taken over."""
    lock = FolderLock(tmp_path)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": None}))
    assert not lock._try_acquire_exclusive()  # held by a live process (this one)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 12345, "host": None}))
    assert lock._try_acquire_exclusive()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_staging_folders_belong_to_their_run(tmp_path):
    from napari_grainseg.io.outputs import new_run_id, remove_stale_staging, staging_dir

    mine, live, dead = new_run_id(), f"20260101T000000-{os.getppid()}-aaaa", "20260101T000000-99999999-bbbb"
    for run in (mine, live, dead):
        staging_dir(tmp_path, "x", run)
    remove_stale_staging(tmp_path, mine)
    assert [p.name for p in tmp_path.iterdir()] == [f".x.staging-{live}"]  # the live run's is kept


# --------------------------------------------------------------------------- hand edits


def test_rerun_over_hand_edited_outputs_refuses_without_overwrite(fields, tmp_path, capsys):
    out = tmp_path / "out"
    inputs = [fields / FIELDS[0]]
    assert main(_segment(inputs, out)) == 0
    edited = tifffile.imread(out / "f0_grains.tif")
    edited[:8] = 0  # a correction made in napari
    tifffile.imwrite(out / "f0_grains.tif", edited)
    assert main(_segment(inputs, out)) == 2
    err = capsys.readouterr().err
    assert "f0_grains.tif: changed since grainseg wrote it" in err and "--overwrite" in err
    assert np.array_equal(tifffile.imread(out / "f0_grains.tif"), edited)  # kept
    assert main(_batch(fields, tmp_path / "b")) == 0
    (tmp_path / "b" / "a" / "f1_grains.csv").write_text("edited\n")
    assert main(_batch(fields, tmp_path / "b")) == 2  # resume refuses too, before any computation
    assert (tmp_path / "b" / "a" / "f1_grains.csv").read_text() == "edited\n"
    assert main(_segment(inputs, out, "--overwrite")) == 0
    assert field_state(out, "f0")[0] == "done"


# --------------------------------------------------------------------------- output folders and disks


def _ro_tmpfs(path: Path):
    import subprocess

    path.mkdir()
    if (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    ):
        return lambda: subprocess.run(["umount", str(path)], check=False)
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    pytest.skip("cannot make a read-only folder here")


@pytest.mark.parametrize("command", ["segment", "batch"])
def test_output_folder_problems_are_one_line_errors_before_computing(command, fields, tmp_path, capsys, monkeypatch):
    from napari_grainseg.models import weights

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(weights, "load_net1", no_model)
    afile = tmp_path / "afile"
    afile.write_text("x")
    ro = tmp_path / "ro"
    undo = _ro_tmpfs(ro)
    try:
        for out, words in (
            (afile, "is a file"),
            (afile / "sub", f"{afile} is a file"),
            (ro, "cannot write in the output folder"),
            (ro / "new", "cannot create"),
        ):
            argv = _batch(fields, out) if command == "batch" else _segment([fields / FIELDS[0]], out)
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert words in err and str(out) in err and len(err.splitlines()) == 1, err
            assert "internal error" not in err
    finally:
        undo()


def test_segment_with_a_bad_input_leaves_no_output_folder(fields, tmp_path, capsys):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00not a tiff")
    for inputs in ([tmp_path / "missing.tif"], [fields / FIELDS[0], bad]):
        out = tmp_path / "new" / "out"
        assert main(_segment(inputs, out)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("grainseg: error:") and len(err.splitlines()) == 1, err
        assert not (tmp_path / "new").exists()


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("command", ["segment", "batch"])
def test_full_disk_is_exit_2_and_keeps_old_outputs(command, fields, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    argv = _batch(fields, out) if command == "batch" else _segment([fields / FIELDS[0]], out)
    assert main(argv) == 0
    before = comparable_outputs(out)
    monkeypatch.setattr(os, "fsync", _enospc)  # every atomic write now finds the disk full
    assert main([*argv, "--no-resume"] if command == "batch" else [*argv, "--watershed-h", "0.3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 or "running on" in err[0]
    assert "no space left on device at" in err[-1] and str(out) in err[-1] and "internal" not in err[-1]
    assert comparable_outputs(out) == before  # the old complete set is still there, no .part file
    assert not leftover_files(out)


def test_real_full_tmpfs(fields, tmp_path, capsys):
    import subprocess

    out = tmp_path / "small"
    out.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(out)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a small tmpfs here")
    try:
        assert main(_segment([fields / FIELDS[0]], out)) == 2
        err = capsys.readouterr().err
        assert f"no space left on device at {out}" in err
        assert not list(out.rglob("*"))  # nothing half-written is left
    finally:
        subprocess.run(["umount", str(out)], check=False)


# --------------------------------------------------------------------------- hostile files


class _Evil:
    def __init__(self, flag: Path):
        self.flag = flag

    def __reduce__(self):
        return (os.system, (f"touch {self.flag}",))


def _weights_copy(tmp_path: Path, name: str = "net1") -> Path:
    import shutil

    src = _weights_dir() / f"{name}.pt"
    dst = tmp_path / f"{name}_copy.pt"
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def test_malicious_pickles_are_refused_by_every_loader(tmp_path, capsys):
    import torch

    from napari_grainseg.models.paper import load_paper_nets
    from napari_grainseg.models.weights import load_checkpoint, load_net1, load_net2

    flag = tmp_path / "pwned"
    evil_pt = _weights_copy(tmp_path)
    torch.save({"x": _Evil(flag)}, evil_pt)
    for load in (load_net1, load_net2):
        with pytest.raises(InputError) as info:
            load(evil_pt)
        assert "weights_only" not in str(info.value) and "could run code" in str(info.value)
    evil_ckpt = tmp_path / "checkpoint.pt"
    torch.save({"config": "{}", "model": _Evil(flag), "step": 1}, evil_ckpt)
    with pytest.raises(InputError, match="checkpoint .* could run code") as info:
        load_checkpoint(evil_ckpt)
    assert "weights_only" not in str(info.value)
    evil_npy = tmp_path / "labels.npy"
    np.save(evil_npy, np.array([_Evil(flag), 1], dtype=object), allow_pickle=True)
    assert main(["measure", str(evil_npy), "--out", str(tmp_path / "m")]) == 2
    assert "Python objects" in capsys.readouterr().err
    evil_npz = tmp_path / "nets.npz"
    np.savez(evil_npz, spec_json=np.array([_Evil(flag)], dtype=object))
    with pytest.raises(InputError):
        load_paper_nets(evil_npz)
    raw = tmp_path / "raw.pt"  # a plain pickle file, not even a torch archive
    raw.write_bytes(pickle.dumps(_Evil(flag)))
    raw.with_suffix(".json").write_text(evil_pt.with_suffix(".json").read_text())
    with pytest.raises(InputError):
        load_net1(raw)
    assert not flag.exists()  # no code ran


@pytest.mark.parametrize(
    "text, words",
    [
        ("{", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object, not a list"),
        ('{"model": "net1"}', 'no "architecture" object'),
        ('{"architecture": [16, 4]}', 'no "architecture" object (it is a list)'),
        (
            '{"architecture": {"base_channels": 16, "depth": 4, "in_channels": 4, "dropout": 0.5}}',
            "not Net1 weights: unknown architecture key dropout",
        ),
        ('{"architecture": {"base_channels": -16, "depth": 4, "in_channels": 4}}', "net1"),
        ('{"architecture": {"base_channels": "wide", "depth": 4, "in_channels": 4}}', "net1"),
        ("\udcff", "not a text (JSON) file"),
    ],
)
def test_hostile_weight_jsons_are_one_line_errors(text, words, fields, tmp_path, capsys):
    w = _weights_copy(tmp_path)
    w.with_suffix(".json").write_bytes(text.encode("utf-8", "surrogateescape"))
    assert main(_segment([fields / FIELDS[0]], tmp_path / "o", "--weights", str(w))) == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and words in errors[0] and "internal error" not in err, err


def test_net2_weights_given_as_net1_and_corrupt_weights_in_batch(fields, tmp_path, capsys):
    if not (_weights_dir() / "net2.pt").is_file():
        pytest.skip("no shipped Net2 weights")
    net2 = _weights_copy(tmp_path, "net2")
    assert main(_segment([fields / FIELDS[0]], tmp_path / "o", "--weights", str(net2))) == 2
    assert "are Net2 weights, not Net1 weights" in capsys.readouterr().err
    bad = _weights_copy(tmp_path)
    bad.write_bytes(b"corrupt" * 10)
    out = tmp_path / "b"
    assert main(_batch(fields, out, "--weights", str(bad))) == 2  # one error up front, not N failures
    err = capsys.readouterr().err
    assert err.count("cannot load weights") == 1 and "failed:" not in err
    assert not (out / "failures.json").exists() and not list(out.rglob("*_done.json"))


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    import torch

    from napari_grainseg.models.weights import load_checkpoint

    cases = {"list.pt": [1, 2, 3], "nokeys.pt": {"model": {}}, "badconfig.pt": {"config": 3, "model": {}, "step": 1}}
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(InputError, match=f"checkpoint {tmp_path / name}"):
            load_checkpoint(tmp_path / name)
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(InputError, match="cannot load checkpoint"):
        load_checkpoint(tmp_path / "trunc.pt")


# --------------------------------------------------------------------------- limits


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels (a few dozen bytes: a decompression bomb's header)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decoded_size_is_limited_from_the_header(tmp_path, capsys):
    from napari_grainseg.io.readers import read_micrograph

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(16000, 16000))
    t0 = time.monotonic()
    with pytest.raises(InputError, match="16000x16000 = 2.56e\\+08 pixels, more than the limit of 2.5e\\+08"):
        read_micrograph(bomb)
    big_tif = tmp_path / "big.tif"
    tifffile.imwrite(big_tif, shape=(20000, 20000), dtype=np.uint8)  # header + sparse data
    with pytest.raises(InputError, match="--max-pixels"):
        read_micrograph(big_tif)
    assert time.monotonic() - t0 < 2  # refused before decoding
    with pytest.raises(InputError, match="more than the limit of 1e\\+06"):
        read_micrograph(big_tif, max_pixels=10**6)
    with pytest.raises(InputError, match="cannot read"):  # no limit: decoded, and found truncated
        read_micrograph(bomb, max_pixels=0)
    assert main(["edges", str(bomb), "--out", str(tmp_path / "e.tif")]) == 2
    assert main(["edges", str(bomb), "--out", str(tmp_path / "e.tif"), "--max-pixels", "5e8"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "more than the limit" in err[0] and "cannot read" in err[1]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--grain-size", "0.05"], "would enlarge f0.tif"),
        (["--grain-size", "1e-9"], "would enlarge"),
        (["--grain-size", "4", "--max-pixels", "20000"], "would resample f0.tif to"),
        # a grain larger than the image: it ran for minutes (a smoothing wider than the image) or
        # gave 1-3 grains without a word
        (["--grain-size", "1e7"], "f0.tif: a mean grain diameter of 1e+07 px does not fit in the"),
        (["--grain-size-nm", "1e5"], "a mean grain diameter of 5e+04 px does not fit"),
        (["--min-grain-area", "100000000"], "--min-grain-area 100000000 px is larger than"),
    ],
)
def test_absurd_resampling_is_refused_before_computing(extra, words, fields, tmp_path, capsys):
    assert main(_segment([fields / FIELDS[0]], tmp_path / "o", *extra)) == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["segment", "--sample", "--out", "o", "--pixel-size", "1e308"],
        ["segment", "--sample", "--out", "o", "--pixel-size", "1e-320"],
        ["segment", "--sample", "--out", "o", "--device", ""],
        ["batch", "in", "--out", "o", "--threads-per-worker", "1000"],
        ["edges", "--sample", "--out", "o.tif", "--log-sigma", "1e6"],
        ["edges", "--sample", "--out", "o.tif", "--canny-sigma", "nan"],
        ["segment", "--sample", "--out", "o", "--max-pixels", "-5"],
    ],
)
def test_absurd_arguments_exit_2_naming_the_option(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    option = next(a for a in argv if a.startswith("--") and a not in ("--out", "--sample"))
    assert f"argument {option}" in capsys.readouterr().err


def test_measure_refuses_an_absurd_pixel_size(tmp_path, capsys):
    labels = np.kron(np.arange(1, 5, dtype=np.uint16).reshape(2, 2), np.ones((16, 16), np.uint16))
    tifffile.imwrite(tmp_path / "l.tif", labels)
    for value in ("1e9", "1e-320"):
        assert main(["measure", str(tmp_path / "l.tif"), "--out", str(tmp_path / "m"), "--pixel-size", value]) == 2
        assert "outside the plausible range" in capsys.readouterr().err


def test_absurd_file_calibration_is_ignored_with_a_warning(tmp_path):
    from napari_grainseg.io.readers import ImplausibleCalibrationWarning, read_micrograph

    path = tmp_path / "cal.tif"
    image = generate(0, SHAPE, "tem").image.astype(np.float32)
    tifffile.imwrite(path, image, resolution=(1 / 429.0, 1 / 429.0), resolutionunit="CENTIMETER")  # 4.29e9 nm/px
    with pytest.warns(ImplausibleCalibrationWarning, match="outside the plausible range"):
        m = read_micrograph(path)
    assert m.pixel_size_nm is None and m.metadata["ignored_calibration_yx_nm"][0] == pytest.approx(4.29e9)


# --------------------------------------------------------------------------- inputs never overwritten


def test_inputs_are_never_overwritten(fields, tmp_path, capsys):
    src = tmp_path / "v.tif"
    src.write_bytes((fields / FIELDS[0]).read_bytes())
    before = src.read_bytes()
    link = tmp_path / "link.tif"
    os.link(src, link)
    for out in (src, tmp_path / "." / "v.tif", link):
        assert main(["edges", str(src), "--out", str(out)]) == 2
        assert "is the input file" in capsys.readouterr().err
    assert main(["edges", str(src), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert src.read_bytes() == before
    assert main(_batch(fields, fields)) == 2
    assert f"--out {fields} is the input folder" in capsys.readouterr().err
    assert main(["measure", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    assert f"{tmp_path} is a directory" in capsys.readouterr().err


# --------------------------------------------------------------------------- extreme values


def test_extreme_pixel_values_are_rescaled_not_misreported(capsys):
    from napari_grainseg.io.validate import ExtremeValuesWarning, validate_image
    from napari_grainseg.segmentation.edges import fuse_edges

    base = generate(1, SHAPE, "tem").image.astype(np.float64)
    unit = (base - base.min()) / (base.max() - base.min())
    for scaled in (unit * 1e300, unit * 1e-50 + 1e-50, (unit * 2 - 1) * 3e38):
        with pytest.warns(ExtremeValuesWarning):
            v = validate_image(scaled)
        assert np.isfinite(v).all() and v.min() == 0 and v.max() == 1
        assert np.allclose(v, unit, atol=1e-6)
    with pytest.warns(ExtremeValuesWarning):
        edges = fuse_edges(((unit * 2 - 1) * 3e38).astype(np.float32))
    assert np.array_equal(edges, fuse_edges(unit.astype(np.float32)))  # not garbage
    nan = unit.copy()
    nan[3, 4] = np.nan
    with pytest.raises(InputError, match="1 NaN or infinite"):
        validate_image(nan)
    with pytest.raises(InputError, match="constant"):
        validate_image(np.full(SHAPE, 1e-50))


def test_one_bit_tiffs_are_read(tmp_path):
    from PIL import Image

    from napari_grainseg.io.readers import read_micrograph

    bits = generate(2, SHAPE, "tem").image > 0.5
    tifffile.imwrite(tmp_path / "miniswhite.tif", bits)  # tifffile: 1-bit MINISWHITE
    Image.fromarray(bits).save(tmp_path / "pil.tif")
    assert np.array_equal(read_micrograph(tmp_path / "miniswhite.tif").data > 0.5, ~bits)
    assert np.array_equal(read_micrograph(tmp_path / "pil.tif").data > 0.5, bits)


def test_one_label_id_in_two_regions_is_split_with_a_warning(tmp_path, capsys):
    labels = np.zeros((32, 32), np.uint16)
    labels[2:10, 2:10] = 7
    labels[20:30, 20:30] = 7  # the same id, elsewhere
    labels[2:10, 20:30] = 3
    tifffile.imwrite(tmp_path / "l.tif", labels)
    assert main(["measure", str(tmp_path / "l.tif"), "--out", str(tmp_path / "m")]) == 0
    err = capsys.readouterr().err
    assert "label id 7 covers separate regions" in err
    rows = (tmp_path / "m" / "l_grains.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3


# --------------------------------------------------------------------------- small things


def test_synth_names_by_seed_and_batch_skips_targets(tmp_path, capsys):
    out = tmp_path / "s"
    for seed in ("0", "5"):
        assert main(["synth", "--n", "2", "--out", str(out), "--shape", "48x64", "--seed", seed, "--quiet"]) == 0
    stems = sorted({p.name.rsplit("_", 1)[0] for p in out.iterdir()})
    assert stems == ["synth_000000", "synth_000001", "synth_000005", "synth_000006"]
    from napari_grainseg.batch import discover_inputs

    names = sorted(i.source.name for i in discover_inputs(out, tmp_path / "o"))
    assert names == [f"{s}_image.tif" for s in stems]  # no *_labels / *_boundaries


def test_svgs_are_deterministic(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from napari_grainseg.measure.report import save_figure

    data = []
    for i in range(2):
        fig, ax = plt.subplots()
        ax.hist(np.arange(50) % 7)
        ax.set_title("x")
        data.append(save_figure(fig, tmp_path / f"{i}.svg").read_bytes())
        plt.close(fig)
    assert data[0] == data[1] and b"<dc:date>" not in data[0]


def _rendered(value) -> set[str]:
    if isinstance(value, (list, tuple)):
        parts = [min(_rendered(v)) for v in value]
        return {" ".join(parts), ", ".join(parts)}
    if isinstance(value, (int, float)):
        return {f"{value:g}", f"{value:.3g}", f"{value:.4g}", str(value)}
    return {str(value)}


def test_help_defaults_match_the_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for name, p in sub.choices.items():
        for action in p._actions:
            if (
                action.default is None
                or action.default is argparse.SUPPRESS
                or action.nargs == 0
                or isinstance(action.default, bool)
                or action.required
            ):
                continue
            shown = (action.help or "").split("default", 1)
            assert len(shown) == 2, f"grainseg {name} {action.option_strings}: no default in the help"
            assert any(r in shown[1] for r in _rendered(action.default)), (
                f"grainseg {name} {action.option_strings}: help says {shown[1]!r}, default is {action.default!r}"
            )
            checked += 1
    assert checked > 20
    usage = sub.choices["segment"].format_usage()
    assert "(INPUT [INPUT ...] | --sample)" in usage and "--out DIR" in usage
    assert "--out DIR" in sub.choices["batch"].format_usage()
    assert "``" not in sub.choices["synth"].format_help()


def test_shared_data_lookup_does_not_depend_on_the_working_folder(tmp_path, monkeypatch):
    from napari_grainseg.evaluation.real_sets import find_tbm_dir
    from napari_grainseg.io import shared_data
    from napari_grainseg.models.paper import paper_nets_path

    monkeypatch.delenv("GRAINSEG_PAPER_NETS", raising=False)
    monkeypatch.delenv("GRAINSEG_TBM_DIR", raising=False)
    here = paper_nets_path()
    monkeypatch.chdir(tmp_path)
    assert paper_nets_path() == here and (here is None or here.is_absolute())
    # a checkout whose shared data sit beside it: found from the package's folders, not the working folder
    (tmp_path / "shared" / "data" / "seed_nets").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "seed_nets" / "seed_nets.npz").write_bytes(b"x")
    for sub in ("images", "masks"):
        (tmp_path / "shared" / "data" / "tbm_train" / sub).mkdir(parents=True)
    monkeypatch.setattr(shared_data, "search_roots", lambda: [tmp_path / "repo", tmp_path])
    assert paper_nets_path() == tmp_path / "shared" / "data" / "seed_nets" / "seed_nets.npz"
    assert find_tbm_dir() == tmp_path / "shared" / "data" / "tbm_train"
    monkeypatch.setattr(shared_data, "search_roots", lambda: [tmp_path / "repo"])
    assert paper_nets_path() is None
    with pytest.raises(InputError, match="TBM crops were not found: set GRAINSEG_TBM_DIR"):
        find_tbm_dir()
    # a variable wins, and a wrong one is said, not passed over
    monkeypatch.setenv("GRAINSEG_PAPER_NETS", str(tmp_path / "n.npz"))
    assert paper_nets_path() == tmp_path / "n.npz"
    monkeypatch.setenv("GRAINSEG_TBM_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="not found in .*nowhere"):
        find_tbm_dir()


def test_max_pixels_type():
    from napari_grainseg.cli._limits import max_pixels

    assert max_pixels("2.5e8") == 250_000_000 and max_pixels("0") == 0
    for bad in ("-1", "1.5", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            max_pixels(bad)
    assert math.isfinite(float(max_pixels("1e12")))
    assert sys.maxsize > 0


def test_comparable_outputs_ignore_run_facts_and_see_every_other_difference(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, seconds in ((a, 1.5), (b, 9.0)):
        (folder / "x").mkdir(parents=True)
        (folder / "x" / "f_summary.json").write_text(json.dumps({"seconds": seconds, "n_grains": 7}))
        (folder / "x" / "f_grains.csv").write_text("id,ecd\n1,2.5\n")
        (folder / "x" / "f_done.json").write_text(
            json.dumps({"files": {"f_grains.csv": "abc", "f_summary.json": str(seconds)}})
        )
    assert comparable_outputs(a) == comparable_outputs(b) and len(comparable_outputs(a)) == 3
    (b / "x" / "f_grains.csv").write_text("id,ecd\n1,2.6\n")
    (b / "x" / "f_summary.json").write_text(json.dumps({"seconds": 9.0, "n_grains": 8}))
    assert {k for k in comparable_outputs(a) if comparable_outputs(a)[k] != comparable_outputs(b)[k]} == {
        "x/f_grains.csv",
        "x/f_summary.json",
    }
    (b / ".stage").mkdir()
    assert leftover_files(a) == [] and leftover_files(b) == [".stage"] and ".stage" not in comparable_outputs(b)


@pytest.mark.parametrize(
    "command",
    [
        ["synth", "--n", "1", "--shape", "64x64", "--out", "{file}/under"],
        ["measure", "{labels}", "--out", "{file}/under"],
        ["measure", "{labels}", "--out", "{labels}/under"],
        ["eval", "--sets", "id-tem", "--limit", "0"],
        ["eval", "--sets", "id-tem", "--limit", "1", "--markdown", "{tmp}"],
        ["eval", "--sets", "id-tem", "--limit", "1", "--json", "{tmp}/missing/results.json"],
    ],
)
def test_bad_output_paths_fail_at_once_in_one_line(tmp_path, capsys, command):
    """Before any work, and never as an "internal error"."""
    (tmp_path / "file").write_text("x")
    labels = np.zeros((32, 32), np.uint16)
    labels[:, 16:] = 2
    labels[:, :15] = 1
    tifffile.imwrite(tmp_path / "l.tif", labels)
    paths = {"file": tmp_path / "file", "labels": tmp_path / "l.tif", "tmp": tmp_path}
    args = [part.format(**paths) for part in command]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own refusal (exit 2)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and "internal error" not in err and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(("grainseg: error", "grainseg eval: error")), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "l.tif"]


def test_measure_reads_a_boundary_mask_as_the_grains_its_lines_enclose(tmp_path, capsys):
    """The tool's own <stem>_boundaries.tif given by mistake: not "1 grain" (the line network)."""
    mask = np.zeros((60, 80), np.uint8)
    mask[:, 40] = 1
    mask[30, :40] = 1
    tifffile.imwrite(tmp_path / "x_boundaries.tif", mask * 255)
    assert (
        main(["measure", str(tmp_path / "x_boundaries.tif"), "--out", str(tmp_path / "m"), "--include-edge-grains"])
        == 0
    )
    err = capsys.readouterr().err
    assert "looks like a boundary mask" in err and err.strip().splitlines()[-1].startswith("3 grains"), err
    rows = (tmp_path / "m" / "x_boundaries_grains.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3


def test_measure_takes_the_pixel_size_from_a_calibrated_label_tiff(tmp_path, capsys):
    """The label TIFFs this tool writes carry their calibration; measure uses it (and says so)."""
    from napari_grainseg.measure.report import write_tiff

    labels = np.zeros((60, 80), np.uint32)
    labels[:, :39] = 1
    labels[:, 41:] = 2
    write_tiff(tmp_path / "c_grains.tif", labels, 2.5)
    assert main(["measure", str(tmp_path / "c_grains.tif"), "--out", str(tmp_path / "m"), "--include-edge-grains"]) == 0
    err = capsys.readouterr().err
    assert "pixel size 2.5 nm, from c_grains.tif's calibration" in err
    summary = json.loads((tmp_path / "m" / "c_grains_summary.json").read_text())
    assert summary["pixel_size_nm"] == pytest.approx(2.5)
    assert summary["mean_ecd_nm"] == pytest.approx(summary["mean_ecd_px"] * 2.5)
    assert summary["calibration"]["source"] == "the calibration of c_grains.tif"  # was always "user"
    # an explicit --pixel-size wins, and says what it replaces
    assert main(["measure", str(tmp_path / "c_grains.tif"), "--out", str(tmp_path / "n"), "--pixel-size", "4"]) == 0
    assert "--pixel-size 4 nm replaces the calibration of c_grains.tif, 2.5 nm" in capsys.readouterr().err
    summary = json.loads((tmp_path / "n" / "c_grains_summary.json").read_text())
    assert summary["pixel_size_nm"] == pytest.approx(4) and summary["calibration"]["source"] == "set by user"


def test_segment_records_where_the_pixel_size_came_from(fields, tmp_path):
    import tifffile

    image = tifffile.imread(fields / FIELDS[0])
    calibrated = tmp_path / "cal.tif"
    tifffile.imwrite(calibrated, image, imagej=True, resolution=(0.5, 0.5), metadata={"unit": "nm"})
    argv = ["segment", str(calibrated), "--net2-steps", "0"]
    _weights_dir()
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    calibration = json.loads((tmp_path / "a" / "cal_summary.json").read_text())["calibration"]
    assert calibration["pixel_size_nm"] == pytest.approx(2.0) and "ImageJ" in calibration["source"], calibration
    assert main([*argv, "--out", str(tmp_path / "b"), "--pixel-size", "3"]) == 0
    calibration = json.loads((tmp_path / "b" / "cal_summary.json").read_text())["calibration"]
    assert calibration == {"pixel_size_nm": 3.0, "source": "set by user", "units": "nm"}


@pytest.mark.parametrize("offset, scale", [(1e10, 1.0), (1.0, 1e-10), (1e9, 10.0), (-3e12, 5e3)])
def test_a_small_range_on_a_large_offset_survives_float32(offset, scale):
    """float64 pixels such as 1e9 + noise: the float32 cast alone would round them to a few levels."""
    from napari_grainseg.io.validate import ExtremeValuesWarning, validate_image

    unit = generate(1, SHAPE, "tem").image.astype(np.float64)
    unit = (unit - unit.min()) / (unit.max() - unit.min())
    with pytest.warns(ExtremeValuesWarning, match="offset"):
        v = validate_image(offset + scale * unit)
    assert np.allclose(v, unit, atol=1e-5)


@pytest.mark.parametrize(
    "image",
    [
        np.arange(64 * 64, dtype=np.float64).reshape(64, 64) / 4096 + 1000,
        np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) + 60000,
    ],
)
def test_ordinary_offsets_are_kept_without_a_warning(image):
    import warnings

    from napari_grainseg.io.validate import validate_image

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = validate_image(image)
    assert np.array_equal(v, image.astype(np.float32))


def test_a_pixel_size_that_overrides_a_calibration_is_named(tmp_path, capsys):
    """--pixel-size 2.5 given for a 2.5 um (2500 nm) calibration: said, with the ratio."""
    from napari_grainseg.cli._common import load_micrograph
    from napari_grainseg.measure.report import write_tiff

    write_tiff(tmp_path / "cal.tif", (generate(1, SHAPE, "tem").image * 60000).astype(np.uint16), 2.5)
    assert load_micrograph(tmp_path / "cal.tif", pixel_size_nm=2.6).pixel_size_nm == 2.6  # within 10 %: quiet
    assert capsys.readouterr().err == ""
    assert load_micrograph(tmp_path / "cal.tif", pixel_size_nm=2500).pixel_size_nm == 2500
    err = capsys.readouterr().err
    assert "--pixel-size 2500 nm replaces the calibration of cal.tif, 2.5 nm (1e+03x)" in err, err


def test_measure_of_the_tools_own_boundaries_file_counts_its_grains(tmp_path, capsys):
    from napari_grainseg.measure.report import write_tiff
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    labels = boundaries_to_labels(generate(3, (256, 256), "tem").boundaries)
    write_tiff(tmp_path / "f_boundaries.tif", (labels == 0).astype(np.uint8))
    out = tmp_path / "m"
    assert main(["measure", str(tmp_path / "f_boundaries.tif"), "--out", str(out), "--include-edge-grains"]) == 0
    assert "looks like a boundary mask" in capsys.readouterr().err
    summary = json.loads((out / "f_boundaries_summary.json").read_text())
    assert summary["n_grains"] == int(labels.max())


def test_whole_numbers_beyond_float32s_exact_range_are_rescaled_with_their_own_reason():
    import warnings

    from napari_grainseg.io.validate import ExtremeValuesWarning, validate_image

    image = (np.arange(64 * 64, dtype=np.int64).reshape(64, 64) * 7919) % 30_000_001
    with pytest.warns(ExtremeValuesWarning, match="too large to be exact"):
        v = validate_image(image)
    assert v.min() == 0 and v.max() == 1
    with warnings.catch_warnings():  # 1e300-scale data: a rescale, and no overflow warning from the check
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.warns(ExtremeValuesWarning, match="too large"):
            validate_image(np.linspace(0, 1e300, 64 * 64).reshape(64, 64))


def test_a_grain_larger_than_the_image_is_refused_by_the_library_and_each_batch_field(fields, tmp_path, capsys):
    from napari_grainseg.errors import InputError
    from napari_grainseg.segmentation.inference import predict_boundaries

    image = np.random.default_rng(0).random((64, 80)).astype(np.float32)
    with pytest.raises(InputError, match="does not fit in the 64x80 px image"):
        predict_boundaries(image, device="cpu", grain_size_px=81.0)
    assert main(_batch(fields, tmp_path / "b", "--grain-size", "5000")) == 1  # every field fails, each says why
    err = capsys.readouterr().err
    assert err.count("does not fit in the") == len(FIELDS)


def test_segment_does_not_replace_another_files_results_of_the_same_name(fields, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_segment([fields / FIELDS[0]], out)) == 0
    table = out / f"{Path(FIELDS[0]).stem}_grains.csv"
    before = table.read_bytes()
    other = tmp_path / "other" / Path(FIELDS[0]).name  # another micrograph under the first one's file name
    other.parent.mkdir()
    shutil.copy(fields / FIELDS[1], other)
    argv = _segment([other], out)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds the results of" in err[0] and "--overwrite" in err[0], err
    assert table.read_bytes() == before
    assert main([*argv, "--overwrite"]) == 0 and table.read_bytes() != before
    assert main(_segment([fields / FIELDS[0]], out)) == 2  # and back again: refused the same way
    # the project moved elsewhere (input and results together): the same input by content, re-run allowed
    moved = tmp_path / "moved"
    shutil.copytree(out, moved / "out")
    shutil.copy(other, moved / other.name)
    assert main(_segment([moved / other.name], moved / "out")) == 0


def test_segment_of_one_large_image_shows_its_tiles(tmp_path, capsys):
    """One 8192² field was 140 s without a line of progress (the per-image bar is off for one image)."""
    import tifffile

    image = generate(3, (1200, 1200), "tem").image  # more than one 1024² tile
    tifffile.imwrite(tmp_path / "big.tif", image)
    _weights_dir()
    argv = ["segment", str(tmp_path / "big.tif"), "--out", str(tmp_path / "o"), "--grain-size", "30"]
    assert main([*argv, "--net2-steps", "0"]) == 0
    err = capsys.readouterr().err
    assert "big: Net1: 100%" in err and "tile" in err and "building grains" in err
