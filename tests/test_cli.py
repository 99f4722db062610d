"""The ``grainseg`` CLI: outputs, help texts, and clear one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_grainseg.cli import SUBCOMMANDS, main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "napari_grainseg.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_edges_writes_fused_rgb_at_native_size(tmp_path, sample_path):
    out = tmp_path / "edges.tif"
    assert main(["edges", str(sample_path), "--out", str(out)]) == 0
    rgb = tifffile.imread(out)
    assert rgb.shape == (154, 1166, 3) and rgb.dtype == np.uint8
    assert set(np.unique(rgb).tolist()) <= {0, 255}
    assert not list(tmp_path.glob(".*part*"))  # no temporary file left behind


def test_edges_sample_flag_and_parameters(tmp_path):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    assert main(["edges", "--sample", "--out", str(a)]) == 0
    assert main(["edges", "--sample", "--out", str(b), "--log-sigma", "4"]) == 0
    ga, gb = tifffile.imread(a)[..., 1], tifffile.imread(b)[..., 1]
    assert not np.array_equal(ga, gb)  # the LoG sigma reached the detector


@pytest.mark.parametrize("command", ("",) + SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main(([command] if command else []) + ["--help"])
    assert exc.value.code == 0
    assert "usage: grainseg" in capsys.readouterr().out


def test_a_command_registers_only_its_own_parser():
    """``grainseg segment`` does not import what other commands' options need (the evaluation sets,
    and through them the synthetic generator); ``grainseg --help`` still lists every command."""
    probe = (
        "import sys; from napari_grainseg.cli import build_parser; "
        "listed = lambda p: [ln.split()[0] for ln in p.format_help().splitlines() if ln.startswith(' ' * 4)]; "
        "from napari_grainseg.cli import SUBCOMMANDS; names = lambda p: sorted(set(listed(p)) & set(SUBCOMMANDS)); "
        "one = build_parser('segment'); print(names(one), 'napari_grainseg.evaluation.suite' in sys.modules); "
        "print(len(names(build_parser())), 'napari_grainseg.evaluation.suite' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split("\n")[:2] == ["['segment'] False", f"{len(SUBCOMMANDS)} True"]
    assert run_cli("--debug", "segment").stderr.strip().endswith("required: --out (see grainseg segment --help)")


def _write(path, array):
    tifffile.imwrite(path, array)
    return str(path)


@pytest.fixture
def bad_inputs(tmp_path):
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"\x00" * 40)
    truncated_png = tmp_path / "truncated.png"
    truncated_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    nan = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    nan[3, 3] = np.nan
    return {
        "missing": (str(tmp_path / "nope.tif"), "not found"),
        "corrupt": (str(corrupt), "cannot read"),
        "truncated": (str(truncated_png), "cannot read"),
        "stack": (_write(tmp_path / "stack.tif", np.random.default_rng(0).random((5, 64, 64))), "stack"),
        "constant": (_write(tmp_path / "constant.tif", np.ones((64, 64), np.uint8)), "constant"),
        "nan": (_write(tmp_path / "nan.tif", nan), "NaN"),
        "tiny": (_write(tmp_path / "tiny.tif", np.arange(100, dtype=np.uint8).reshape(10, 10)), "16x16"),
        "unknown": (str(tmp_path / "notes.txt"), ""),
    }


@pytest.mark.parametrize("case", ["missing", "corrupt", "truncated", "stack", "constant", "nan", "tiny", "unknown"])
def test_bad_input_gives_one_line_error_and_exit_2(case, bad_inputs, tmp_path):
    path, words = bad_inputs[case]
    if case == "unknown":
        (tmp_path / "notes.txt").write_text("hello")
    result = run_cli("edges", path, "--out", str(tmp_path / "out.tif"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("grainseg: error:"), result.stderr
    assert "Traceback" not in result.stderr
    assert words.lower() in lines[0].lower()
    assert not (tmp_path / "out.tif").exists()


class _ClosedPipe:
    """A stdout whose reader has gone (``grainseg ... | head`` after head exits)."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        pass


def test_output_into_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    """Not an 'internal error': the reader stopped early, the command stops too (exit 141)."""
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["train", "net2", "--print-config"]) == 141
    assert capsys.readouterr().err == ""


def test_output_into_a_closed_pipe_from_a_real_process():
    """The same through a real pipe whose reader has closed: nothing on stderr."""
    code = (
        "import os, sys; from napari_grainseg.cli import main; r, w = os.pipe(); os.close(r); os.dup2(w, 1); "
        "sys.exit(main(['train', 'net2', '--print-config']))"
    )  # stdout: a pipe that nobody reads
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 141 and done.stderr == ""


def test_bad_arguments_exit_2(tmp_path, sample_path):
    result = run_cli("edges", str(sample_path), "--out", str(tmp_path / "x.png"))
    assert result.returncode == 2 and ".tif" in result.stderr
    result = run_cli("edges", "--out", str(tmp_path / "x.tif"))
    assert result.returncode == 2 and "--sample" in result.stderr
    result = run_cli("edges", "--sample", "--out", str(tmp_path / "x.tif"), "--median-size", "4")
    assert result.returncode == 2 and "odd" in result.stderr


def test_demo_runs_on_bundled_sample(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "interconnect_tem_edges.tif").exists()


@pytest.mark.parametrize(
    "typed, grains, net2_steps",
    [
        ([], "threshold", "auto"),  # nothing typed: the model directory's recommendations
        (["--grains", "watershed", "--net2-steps", "0"], "watershed", "0"),
        (["--grains", "watershed", "--net2-s", "0"], "watershed", "0"),  # abbreviated: still the user's
        (["--grains=watershed", "--net2-steps=2"], "watershed", "2"),
    ],
)
def test_a_model_directorys_recommendations_yield_to_what_the_user_typed(tmp_path, typed, grains, net2_steps):
    import json

    from napari_grainseg.cli import build_parser
    from napari_grainseg.cli._common import segment_options_from_args
    from napari_grainseg.models.features import NET1_CHANNELS
    from napari_grainseg.models.model_dir import MODEL_FORMAT, MODEL_FORMAT_VERSION
    from napari_grainseg.models.net1_config import Net1Config

    model = tmp_path / "lab"
    model.mkdir()
    info = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "architecture": {"net1": Net1Config(in_channels=len(NET1_CHANNELS)).to_dict()},
        "recommended": {"grains": "threshold", "threshold": 0.4, "net2_steps": "auto"},
    }
    (model / "model.json").write_text(json.dumps(info))
    (model / "net2.pt").write_bytes(b"")  # an adapted Net2 (read only when segmenting)
    args = build_parser("segment").parse_args(
        ["segment", "x.tif", "--out", str(tmp_path), "--model", str(model), *typed]
    )
    options = segment_options_from_args(args)
    assert (options.grains, str(options.net2_steps)) == (grains, net2_steps)
    assert options.threshold == (0.4 if grains == "threshold" else 0.5)


@pytest.mark.parametrize("model", ["net1", "net2"])
def test_train_out_that_is_a_file_is_a_one_line_error(model, tmp_path, capsys):
    afile = tmp_path / "image.tif"
    afile.write_bytes(b"precious")
    assert main(["train", model, "--out", str(afile), "--steps", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"grainseg: error: --out {afile} is a file, not a folder"]
    assert afile.read_bytes() == b"precious"


def test_an_image_refused_among_several_inputs_is_named(bad_inputs, sample_path, tmp_path):
    """`segment good.png constant.tif` reads everything first: the refusal says which file."""
    for case in ("constant", "tiny"):
        path, words = bad_inputs[case]
        result = run_cli("segment", str(sample_path), path, "--out", str(tmp_path / "out"))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"grainseg: error: {case}.tif: ") and words in line, line


def test_argument_errors_are_one_line_pointing_to_the_commands_help(tmp_path):
    for args, words in (
        (
            ["batch", "x", "--out", str(tmp_path), "--bogus"],
            "unrecognized arguments: --bogus (see grainseg batch --help)",
        ),
        (["segment", "x.tif", "--out", str(tmp_path), "--pixel-size", "2nm"], "without a unit (e.g. 2), got '2nm'"),
    ):
        result = run_cli(*args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and words in result.stderr, result.stderr
        assert "usage:" not in result.stderr


@pytest.mark.parametrize(
    "typed, note",
    [("0.002", "if it was in µm, give 2 (nm)"), ("50000", "if it was in pm, give 50 (nm); if in Å, 5000")],
)
def test_a_pixel_size_typed_in_another_unit_is_noted_in_one_line(tmp_path, capsys, typed, note):
    from test_report import grid_labels

    path = tmp_path / "lab.tif"
    tifffile.imwrite(path, grid_labels())
    assert main(["measure", str(path), "--out", str(tmp_path / "out"), "--pixel-size", typed]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if note in line]
    assert len(warned) == 1 and warned[0].startswith("grainseg: warning: pixel size "), warned


def test_segment_says_the_measurement_warnings_the_summary_records(tmp_path, sample_path, capsys):
    """`measure` printed them; `segment` wrote them only into the JSON (no pixel size, few grains...)."""
    import json

    assert main(["segment", str(sample_path), "--out", str(tmp_path / "out"), "--net2-steps", "0"]) == 0
    err = capsys.readouterr().err
    warnings = json.loads((tmp_path / "out" / f"{sample_path.stem}_summary.json").read_text())["warnings"]
    assert warnings and any("no pixel size" in w for w in warnings)
    for warning in warnings:
        assert f"grainseg: warning: {sample_path.stem}: {warning}" in err


def test_an_option_s_warning_is_one_line_even_while_the_arguments_are_parsed(tmp_path):
    """`segment --pixel-size 0.002` warns in the argparse type, before the command runs."""
    result = run_cli("segment", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "out"), "--pixel-size", "0.002")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 2, result.stderr
    assert (
        lines[0]
        == "grainseg: warning: pixel size 0.002 nm is finer than atomic resolution: if it was in µm, give 2 (nm)"
    )
    assert lines[1].startswith("grainseg: error: file not found")
