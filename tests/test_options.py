"""The options of a segmentation (checked and resolved once) and the model cache."""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import shutil

import numpy as np
import pytest

from napari_grainseg.errors import InputError
from napari_grainseg.segmentation import options as options_module
from napari_grainseg.segmentation.options import OptionError, SegmentOptions, cached_models, cached_net1, release_models


@pytest.fixture
def net1_copy(tmp_path):
    from napari_grainseg.models.weights import shipped_weights_dir

    src = shipped_weights_dir() / "net1.pt"
    if not src.is_file():
        pytest.skip("no shipped Net1 weights")
    dst = tmp_path / "net1.pt"
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


@pytest.mark.parametrize(
    "steps, shipped, given, budget",
    [
        ("auto", True, False, 30),
        ("auto", False, False, 0),
        ("auto", False, True, 30),
        (" Auto ", False, False, 0),
        ("4", False, False, 4),
        (4, True, False, 4),
        (0, True, True, 0),
    ],
)
def test_net2_budget_is_resolved_in_one_place(monkeypatch, steps, shipped, given, budget):
    monkeypatch.setattr(options_module, "net2_available", lambda: shipped)
    opts = SegmentOptions(net2_steps=steps)
    assert opts.net2_steps in ("auto", 0, 4)  # stored resolved: "auto" or an int
    assert opts.net2_budget(model_given=given) == budget
    # a Net2 weights file makes "auto" refine even without shipped weights
    assert SegmentOptions(net2_steps=steps, net2_weights="x.pt").net2_budget() == (30 if opts.net2_auto else budget)


def test_grain_size_in_nm_is_resolved_against_the_pixel_size():
    assert SegmentOptions(grain_size_nm=40.0).grain_size_for(2.0) == 20.0
    assert SegmentOptions(grain_size_px=12.0).grain_size_for(None) == 12.0
    assert SegmentOptions().grain_size_for(3.0) is None
    with pytest.raises(OptionError, match="f.tif is not calibrated: add --pixel-size") as info:
        SegmentOptions(grain_size_nm=40.0).grain_size_for(None, where="f.tif", fix="add --pixel-size NM")
    assert info.value.field == "grain_size_nm"


@pytest.mark.parametrize(
    "values, field",
    [
        ({"net2_steps": "lots"}, "net2_steps"),
        ({"net2_steps": -1}, "net2_steps"),
        ({"net2_steps": 2.5}, "net2_steps"),
        ({"grain_size_px": 10, "grain_size_nm": 5}, "grain_size_px"),
        ({"grain_size_px": 0}, "grain_size_px"),
        ({"grain_size_nm": float("nan")}, "grain_size_nm"),
        ({"grains": "blobs"}, "grains"),
        ({"threshold": 1.0}, "threshold"),
        ({"min_grain_area": 0}, "min_grain_area"),
        ({"min_grain_area": 2.5}, "min_grain_area"),
    ],
)
def test_bad_options_are_one_line_errors_naming_the_option(values, field):
    with pytest.raises(OptionError) as info:
        SegmentOptions(**values)
    assert info.value.field == field and isinstance(info.value, InputError) and "\n" not in str(info.value)


def test_cli_errors_name_the_flag():
    from napari_grainseg.cli._common import add_segmentation_arguments, segment_options_from_args

    parser = argparse.ArgumentParser()
    add_segmentation_arguments(parser)
    for argv, flag in (
        (["--grains", "threshold", "--threshold", "2"], "--threshold"),
        (["--net2-steps", "x"], "--net2-steps"),
        (["--min-grain-area", "0"], "--min-grain-area"),
    ):
        with pytest.raises(InputError, match=f"^{flag}: "):
            segment_options_from_args(parser.parse_args(argv))
    opts = segment_options_from_args(parser.parse_args(["--net2-steps", "3", "--grain-size-nm", "50"]))
    assert (opts.net2_steps, opts.grain_size_nm, opts.min_grain_area) == (3, 50.0, 10)


def test_batch_options_are_segment_options_and_pickle():
    from napari_grainseg.batch import BatchOptions

    opts = BatchOptions(net2_steps="0", grain_size_nm=30.0, pixel_size_nm=1.5, threads=2)
    assert isinstance(opts, SegmentOptions) and opts.net2_steps == 0
    assert pickle.loads(pickle.dumps(opts)) == opts
    assert dataclasses.replace(opts, threshold=0.6).threshold == 0.6
    with pytest.raises(OptionError, match="threads"):
        BatchOptions(threads=0)


def test_model_cache_loads_once_per_weights_and_device(net1_copy):
    release_models()
    a = cached_net1(net1_copy, "cpu")
    assert cached_net1(str(net1_copy), "cpu") is a  # the same file, as a str or a Path
    assert SegmentOptions(weights=net1_copy).net1("cpu") is a
    assert cached_models() == [("net1", str(net1_copy.resolve()), "cpu")]
    assert release_models() == {"cpu"} and cached_models() == []
    assert cached_net1(net1_copy, "cpu") is not a  # loaded again after a release
    release_models()


def test_segment_takes_options_or_their_keywords(net1_copy):
    from napari_grainseg.segmentation.pipeline import segment
    from napari_grainseg.synthetic import generate

    image = generate(seed=3, shape=(96, 96)).image
    opts = SegmentOptions(net2_steps=0, grain_size_px=20.0, device="cpu", weights=net1_copy)
    by_options = segment(image, opts)
    by_keywords = segment(image, net2_steps=0, grain_size_px=20.0, device="cpu", weights=net1_copy)
    np.testing.assert_array_equal(by_options.labels, by_keywords.labels)
    nm = segment(image, dataclasses.replace(opts, grain_size_px=None, grain_size_nm=40.0), pixel_size_nm=2.0)
    np.testing.assert_array_equal(nm.labels, by_options.labels)  # 40 nm at 2 nm/px is the 20 px hint
    assert nm.prediction.grain_size_px == 20.0 and nm.prediction.grain_size_source == "hint"
    with pytest.raises(TypeError, match="not both"):
        segment(image, opts, threshold=0.4)
    with pytest.raises(InputError, match="pixel size"):
        segment(image, dataclasses.replace(opts, grain_size_px=None, grain_size_nm=40.0))
    release_models()


def test_default_is_net1_with_grains_by_watershed_everywhere(tmp_path):
    """The defaults chosen on sets our generator did not tune (docs/generalisation.md): no Net2, watershed grains."""
    import json

    from napari_grainseg.cli import build_parser, main
    from napari_grainseg.cli._common import segment_options_from_args

    opts = SegmentOptions()
    assert opts.net2_budget() == 0 and (opts.grains, opts.watershed_h) == ("watershed", 0.2)
    for command in ("segment", "batch"):
        args = build_parser().parse_args([command, "x.tif", "--out", str(tmp_path)])
        options = segment_options_from_args(args)  # the flags' None means "not given": the defaults apply
        assert (options.net2_budget(), options.grains, options.watershed_h) == (0, "watershed", 0.2)
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    import tifffile

    tifffile.imwrite(tmp_path / "f.tif", image)
    assert main(["segment", str(tmp_path / "f.tif"), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    summary = json.loads((tmp_path / "out" / "f_summary.json").read_text())
    assert summary["method"] == "net1" and summary["net2_steps"] == 0


def test_watershed_depth_from_the_command_line(tmp_path, capsys):
    import json

    import tifffile

    from napari_grainseg.cli import main
    from napari_grainseg.synthetic import generate

    tifffile.imwrite(tmp_path / "f.tif", generate(seed=3, shape=(192, 192), preset="tem").image)
    counts = {}
    for depth in ("0.1", "0.5"):
        out = tmp_path / depth
        argv = ["segment", str(tmp_path / "f.tif"), "--out", str(out), "--device", "cpu", "--watershed-h", depth]
        assert main(argv) == 0
        summary = json.loads((out / "f_summary.json").read_text())
        assert summary["grains"] == "watershed" and summary["watershed_h"] == float(depth)
        counts[depth] = summary["n_grains"]
    assert counts["0.5"] < counts["0.1"]  # deeper basins: fewer grains
    capsys.readouterr()
    for bad in ("0", "1.5", "nan"):
        with pytest.raises(SystemExit) as exit_:
            main(["segment", str(tmp_path / "f.tif"), "--out", str(tmp_path / "x"), "--watershed-h", bad])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "watershed depth" in err and "Traceback" not in err
    # a builder's parameter given for the other builder would be ignored silently: refused, naming the fix
    for extra, fix in (
        (["--grains", "threshold", "--watershed-h", "0.4"], "add --grains watershed"),
        (["--threshold=0.3"], "add --grains threshold"),
        (["--grains", "threshold", "--watershed", "0.4"], "add --grains watershed"),  # argparse's abbreviation
    ):
        assert main(["segment", str(tmp_path / "f.tif"), "--out", str(tmp_path / "y"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert fix in err and len(err.splitlines()) == 1 and "Traceback" not in err
        assert not (tmp_path / "y").exists()
