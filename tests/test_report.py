"""Exports (CSV, JSON, histogram PNG/SVG, overlay PNG) and ``grainseg measure``."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_grainseg.cli import main
from napari_grainseg.errors import InputError
from napari_grainseg.measure import report
from napari_grainseg.measure.statistics import summarize
from napari_grainseg.measure.table import measure_grains
from napari_grainseg.segmentation.grains import normalize_labels


def grid_labels(shape=(96, 160), p=16):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return normalize_labels(((yy + 3) // p * 100 + (xx + 5) // p + 1).astype(np.uint32))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep")
    lab = grid_labels()
    image = np.where(lab == 0, 50, 200).astype(np.uint8) + np.arange(lab.shape[1], dtype=np.uint8)[None] // 8
    paths = report.write_report(
        out, "field1", image=image, labels=lab, pixel_size_nm=2.5, extra={"device": "cpu"}, svg=True
    )
    return paths, lab, image


def test_all_files_written(written):
    paths, _, _ = written
    assert set(paths) == {"csv", "json", "histogram_png", "histogram_svg", "overlay"}
    for key, name in (
        ("csv", "field1_grains.csv"),
        ("json", "field1_summary.json"),
        ("histogram_png", "field1_histogram.png"),
        ("histogram_svg", "field1_histogram.svg"),
        ("overlay", "field1_overlay.png"),
    ):
        assert paths[key].name == name and paths[key].stat().st_size > 0
    assert not list(paths["csv"].parent.glob(".*part*"))  # no temporary file left


def test_csv_matches_table(written):
    paths, lab, _ = written
    with open(paths["csv"], newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    assert header[:3] == ["label", "area_px [px²]", "ecd_px [px]"]
    assert "ecd_nm [nm]" in header and "touches_border" in header
    table = measure_grains(lab, 2.5)
    assert len(rows) - 1 == len(table) == int(lab.max())
    i = header.index("area_nm2 [nm²]")
    assert float(rows[1][i]) == pytest.approx(table["area_nm2"][0], rel=1e-5)
    assert rows[1][header.index("touches_border")] in ("true", "false")


def test_summary_json_fields(written):
    paths, lab, _ = written
    data = json.loads(paths["json"].read_text())
    for key in (
        "n_grains",
        "mean_ecd_px",
        "mean_ecd_nm",
        "astm_g_planimetric",
        "astm_g_intercept",
        "pixel_size_nm",
        "warnings",
        "histograms",
        "lognormal",
    ):
        assert key in data
    assert data["device"] == "cpu" and data["pixel_size_nm"] == 2.5
    assert data["n_grains"] == int(lab.max())
    assert data["mean_ecd_nm"] == pytest.approx(2.5 * data["mean_ecd_px"])
    assert data["astm_g_planimetric"] == pytest.approx(summarize(lab, 2.5)["astm_g_planimetric"])


def test_overlay_and_histogram_images(written):
    paths, lab, image = written
    ov = np.asarray(Image.open(paths["overlay"]))
    assert ov.shape == lab.shape + (3,)
    assert np.all(ov[lab == 0] == report.BOUNDARY_COLOUR)
    assert np.all(ov[lab > 0][:, 0] == ov[lab > 0][:, 1])  # gray elsewhere
    png = Image.open(paths["histogram_png"])
    assert png.size[0] > 800
    svg = paths["histogram_svg"].read_text()
    assert "<svg" in svg and "ECD (nm)" in svg and "number-weighted" in svg


def test_histogram_draws_lognormal_fit():
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 200, (120, 2))
    yy, xx = np.mgrid[:200, :200]
    lab = cKDTree(pts).query(np.c_[yy.ravel(), xx.ravel()])[1].reshape(200, 200) + 1
    lab = normalize_labels(lab.astype(np.uint32))
    table = measure_grains(lab, 1.5)
    sm = summarize(lab, 1.5, table=table)
    fig = report.histogram_figure(table, sm)
    ax_n, ax_a, ax_c = fig.axes
    assert ax_n.get_xlabel() == "ECD (nm)" and "1/nm" in ax_n.get_ylabel()
    assert any("lognormal" in t.get_text() for t in ax_n.get_legend().get_texts())
    assert any("KS D=" in t.get_text() for t in ax_c.get_legend().get_texts())
    # the drawn density integrates the number histogram: bars sum to 1 over bin widths
    heights = np.array([p.get_height() for p in ax_n.patches])
    widths = np.array([p.get_width() for p in ax_n.patches])
    assert np.sum(heights * widths) == pytest.approx(1.0)
    # the legends cover no bar (they sat on the tallest ones), for both layouts
    for figure in (fig, report.histogram_figure(table, sm, vertical=True)):
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        for ax in figure.axes[:2]:
            legend = ax.get_legend().get_window_extent(renderer)
            assert not any(legend.overlaps(bar.get_window_extent(renderer)) for bar in ax.patches)
        for ax in figure.axes:  # the axis labels lie whole inside the figure (they were clipped at the left)
            for label in (ax.xaxis.label, ax.yaxis.label):
                box = label.get_window_extent(renderer)
                assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= figure.bbox.width and box.y1 <= figure.bbox.height
    # which grains the title counts, said in words (not "corrected (miles)")
    assert fig._suptitle.get_text().endswith(f"{sm['n_grains_included']} complete grains, Miles–Lantuéjoul weights")


def test_axis_labels_fit_tick_labels_of_four_decimals():
    """At 6 nm/px the density ticks read 0.0025...: the y labels were clipped by the fixed margins."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 200, (120, 2))
    yy, xx = np.mgrid[:200, :200]
    lab = normalize_labels(
        (cKDTree(pts).query(np.c_[yy.ravel(), xx.ravel()])[1].reshape(200, 200) + 1).astype(np.uint32)
    )
    table = measure_grains(lab, 6.0)
    fig = report.histogram_figure(table, summarize(lab, 6.0, table=table))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert len(fig.axes[0].get_yticklabels()[1].get_text()) == 6  # e.g. "0.0025"
    for ax in fig.axes:
        box = ax.yaxis.label.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= fig.bbox.width


def test_uncalibrated_report_uses_pixels(tmp_path):
    lab = grid_labels()
    paths = report.write_report(tmp_path, "u", image=None, labels=lab, svg=True)
    data = json.loads(paths["json"].read_text())
    assert data["mean_ecd_nm"] is None and data["astm_g_planimetric"] is None
    assert any("no pixel size" in w for w in data["warnings"])
    assert "ECD (px)" in paths["histogram_svg"].read_text()
    assert "ecd_nm [nm]" not in paths["csv"].read_text().splitlines()[0]


def test_one_grain_report(tmp_path):
    paths = report.write_report(tmp_path, "one", image=None, labels=np.ones((32, 32), np.uint8), pixel_size_nm=1.0)
    data = json.loads(paths["json"].read_text())
    assert data["n_grains"] == 1 and data["lognormal"] is None
    assert data["astm_g_intercept"] is None
    assert len(paths["csv"].read_text().splitlines()) == 2


def test_svg_only_on_request_and_deterministic(tmp_path):
    lab = grid_labels()
    paths = report.write_report(tmp_path / "a", "f", image=None, labels=lab)
    assert "histogram_svg" not in paths and not (tmp_path / "a" / "f_histogram.svg").exists()
    assert paths["histogram_png"].stat().st_size > 0
    svgs = [
        report.write_report(tmp_path / d, "f", image=None, labels=lab, svg=True)["histogram_svg"] for d in ("b", "c")
    ]
    text = svgs[0].read_text()
    assert "<dc:date>" not in text and svgs[0].read_bytes() == svgs[1].read_bytes()


def test_json_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "s_summary.json"
    target.write_text('{"old": true}')

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report.json, "dump", boom)
    with pytest.raises(RuntimeError):
        report.write_summary_json(target, {"n_grains": 1})
    assert target.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["s_summary.json"]


def test_cli_measure(tmp_path, capsys):
    lab = grid_labels()
    tifffile.imwrite(tmp_path / "lab.tif", lab)
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, (lab > 0).astype(np.float32) + 0.1)
    code = main(
        ["measure", str(tmp_path / "lab.tif"), "--pixel-size", "3", "--image", str(img), "--out", str(tmp_path / "out")]
    )
    assert code == 0
    data = json.loads((tmp_path / "out" / "lab_summary.json").read_text())
    assert data["pixel_size_nm"] == 3.0 and data["n_grains"] == int(lab.max())
    assert (tmp_path / "out" / "lab_overlay.png").exists()
    np.save(tmp_path / "lab.npy", lab.astype(np.int32))
    assert main(["measure", str(tmp_path / "lab.npy"), "--out", str(tmp_path / "o2")]) == 0


@pytest.mark.parametrize(
    "case, match",
    [
        ("float", "integer dtype"),
        ("zero-size", "pixel size"),
        ("negative-size", "pixel size"),
        ("missing", "not found"),
        ("empty", "no grain"),
        ("shape", "micrograph is"),
    ],
)
def test_cli_measure_bad_input(tmp_path, capsys, case, match):
    lab = grid_labels()
    path = tmp_path / "lab.tif"
    args = []
    if case == "float":
        tifffile.imwrite(path, lab.astype(np.float32))
    elif case == "empty":
        tifffile.imwrite(path, np.zeros((20, 20), np.uint16))
    elif case != "missing":
        tifffile.imwrite(path, lab)
    if case == "zero-size":
        args = ["--pixel-size", "0"]
    elif case == "negative-size":
        args = ["--pixel-size", "-1"]
    elif case == "shape":
        tifffile.imwrite(tmp_path / "img.tif", np.random.default_rng(0).random((30, 30)))
        args = ["--image", str(tmp_path / "img.tif")]
    code = main(["measure", str(path), "--out", str(tmp_path / "out"), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("grainseg: error:") and match in err
    assert not (tmp_path / "out").exists()  # refused before the output folder is made: nothing left behind


def test_cli_measure_exclude_min_area_and_svg(tmp_path, capsys):
    lab = grid_labels()
    lab[40:43, 40:43] = lab.max() + 1  # a 9-px speck
    tifffile.imwrite(tmp_path / "lab.tif", lab)
    mask = np.zeros(lab.shape, np.uint8)
    mask[:, :40] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert main(["measure", str(tmp_path / "lab.tif"), "--out", str(tmp_path / "a")]) == 0
    assert (
        main(
            [
                "measure",
                str(tmp_path / "lab.tif"),
                "--out",
                str(tmp_path / "b"),
                "--exclude",
                str(tmp_path / "mask.png"),
                "--min-grain-area",
                "10",
                "--svg",
            ]
        )
        == 0
    )
    a = json.loads((tmp_path / "a" / "lab_summary.json").read_text())
    b = json.loads((tmp_path / "b" / "lab_summary.json").read_text())
    assert a["measurement"] == {
        "min_area_px": 1,
        "n_grains_below_min_area": 0,
        "exclude": None,
        "measured_area_px": lab.size,
    }
    assert b["measurement"]["min_area_px"] == 10 and b["measurement"]["n_grains_below_min_area"] == 1
    dropped = np.unique(lab[:, :40])
    assert b["measurement"]["exclude"]["n_grains_dropped"] == np.count_nonzero(dropped)
    assert b["n_grains"] == a["n_grains"] - 1 - np.count_nonzero(dropped)
    assert b["planimetric"]["field_area_px"] == b["measurement"]["measured_area_px"] < lab.size
    assert not (tmp_path / "a" / "lab_histogram.svg").exists() and (tmp_path / "b" / "lab_histogram.svg").exists()
    with open(tmp_path / "b" / "lab_grains.csv", newline="") as fh:
        assert len(list(csv.reader(fh))) - 1 == b["n_grains"]


@pytest.mark.parametrize(
    "args, match",
    [
        (["--exclude", "nomask.tif"], "mask file not found"),
        (["--exclude", "small.npy"], "exclusion mask is"),
        (["--min-grain-area", "0"], "--min-grain-area must be >= 1"),
        (["--orientations", "0"], "--orientations must be 1 to 180, got 0"),
        (["--orientations", "1000000"], "--orientations must be 1 to 180"),  # ran for minutes
        (["--stem", "../escaped"], "a file stem may not contain '/': '../escaped'"),  # wrote beside --out
        (["--stem", "/tmp/grainseg_abs"], "may not contain '/'"),
        (["--stem", "D:x"], "may not contain ':'"),  # a drive-relative path on Windows
    ],
)
def test_cli_measure_bad_measurement_options(tmp_path, capsys, args, match):
    lab = grid_labels()
    tifffile.imwrite(tmp_path / "lab.tif", lab)
    np.save(tmp_path / "small.npy", np.zeros((5, 5), bool))
    args = [str(tmp_path / a) if a.endswith((".tif", ".npy")) else a for a in args]
    assert main(["measure", str(tmp_path / "lab.tif"), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grainseg: error:") and match in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "escaped_summary.json").exists()
    assert not Path("/tmp/grainseg_abs_summary.json").exists()


def test_measurement_imports_no_plotting_library():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from napari_grainseg.measure.statistics import measure_field\n"
        "from napari_grainseg.measure.report import write_grains_csv, write_summary_json\n"
        "lab = np.zeros((40, 40), np.uint32); lab[:, :20] = 1; lab[:, 21:] = 2\n"
        "measure_field(lab, 1.0)\n"
        "print(sorted(m for m in ('matplotlib', 'torch', 'napari', 'skimage.measure') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_segment_checks_the_exclusion_mask_before_any_computation(tmp_path, capsys):
    img = tmp_path / "field.tif"
    tifffile.imwrite(img, np.random.default_rng(0).random((48, 64)).astype(np.float32))
    np.save(tmp_path / "mask.npy", np.zeros((48, 63), bool))
    code = main(["segment", str(img), "--out", str(tmp_path / "out"), "--exclude", str(tmp_path / "mask.npy")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--exclude" in err and "48x63" in err and "48x64" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_field_too_small_for_a_fit_says_so_in_the_goodness_of_fit_panel():
    lab = np.zeros((40, 60), np.uint32)
    lab[1:39, 1:29] = 1
    lab[1:39, 31:59] = 2  # two grains of one size: nothing to fit
    table = measure_grains(lab, None)
    sm = summarize(lab, None, table=table, exclude_edge_grains=False)
    assert sm["lognormal"] is None
    fig = report.histogram_figure(table, sm)
    ax_c = fig.axes[2]
    assert any("no lognormal fit" in t.get_text() for t in ax_c.texts)
    assert fig._suptitle.get_text() == "Equivalent circle diameter (ECD) — 2 grains, border grains included"


@pytest.mark.parametrize("nm", [0.001, 0.0023, 0.0024, 2.5, 2539.0, 1e6])
def test_label_tiffs_keep_their_calibration_over_the_whole_pixel_size_range(tmp_path, nm):
    from napari_grainseg.io.readers import read_micrograph

    lab = grid_labels()
    report.write_tiff(tmp_path / "g.tif", lab, nm)  # never a crash at the end of a long run
    back = read_micrograph(tmp_path / "g.tif").pixel_size_nm
    if nm < 0.0024:
        assert back is None  # finer than a TIFF rational can hold: left uncalibrated
    else:
        assert back == pytest.approx(nm, rel=1e-6)


def test_cli_measure_replaces_earlier_outputs_only_when_asked(tmp_path, capsys):
    lab = grid_labels()
    tifffile.imwrite(tmp_path / "lab.tif", lab)
    argv = ["measure", str(tmp_path / "lab.tif"), "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    table = tmp_path / "o" / "lab_grains.csv"
    table.write_text(table.read_text() + "# checked by hand\n")
    edited = table.read_bytes()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("grainseg: error:") and "lab_grains.csv" in err and "--overwrite" in err
    assert table.read_bytes() == edited
    assert main([*argv, "--overwrite"]) == 0
    assert table.read_bytes() != edited
    # an earlier run's svg belongs to the set: checked, and not left stale beside a new set without one
    assert main([*argv, "--overwrite", "--svg"]) == 0 and (tmp_path / "o" / "lab_histogram.svg").is_file()
    assert main(argv) == 2 and "lab_histogram.svg" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0 and not (tmp_path / "o" / "lab_histogram.svg").exists()


def test_cli_measure_warns_of_unlabelled_areas(tmp_path, capsys):
    """Grains set to 0 (deleted, say) were shared out among their neighbours without a word."""
    lab = grid_labels()
    tifffile.imwrite(tmp_path / "lab.tif", lab)
    assert main(["measure", str(tmp_path / "lab.tif"), "--out", str(tmp_path / "a")]) == 0
    assert "unlabelled area" not in capsys.readouterr().err  # 1-px boundaries are boundaries
    holes = lab.copy()
    holes[np.isin(holes, [6, 11])] = 0
    tifffile.imwrite(tmp_path / "holes.tif", holes)
    assert main(["measure", str(tmp_path / "holes.tif"), "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "lie more than 5 px from every grain: an unlabelled area" in err
    summary = json.loads((tmp_path / "b" / "holes_summary.json").read_text())
    assert any("unlabelled area" in w for w in summary["warnings"])


def test_an_exclusion_mask_over_the_whole_image_is_refused():
    from napari_grainseg.measure.table import validate_exclude_mask

    with pytest.raises(InputError, match="covers the whole image"):
        validate_exclude_mask(np.ones((8, 8), np.uint8), (8, 8))
    assert validate_exclude_mask(np.eye(8), (8, 8)).sum() == 8


def test_an_unlabelled_area_under_the_exclusion_mask_is_not_warned_of():
    from napari_grainseg.measure.statistics import measure_field

    lab = grid_labels()
    lab[40:60, 40:60] = 0
    mask = np.zeros(lab.shape, bool)
    _, warned = measure_field(lab, 1.0)
    assert any("unlabelled area" in w for w in warned["warnings"])
    mask[40:60, 40:60] = True  # what the warning asks for: left out, not shared out
    _, summary = measure_field(lab, 1.0, exclude=mask)
    assert not any("unlabelled area" in w for w in summary["warnings"])


def test_cli_measure_refuses_a_micrograph_given_as_labels(tmp_path, capsys):
    """Its grey levels recur in many tiny regions: 135 433 "grains" of ~1 px were measured, exit 0."""
    from napari_grainseg.synthetic import generate

    image = generate(seed=2, shape=(128, 128), preset="tem").image
    path = tmp_path / "micrograph.tif"
    tifffile.imwrite(path, (image * 255).astype(np.uint8))
    assert main(["measure", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grainseg: error: micrograph.tif looks like a micrograph, not a label image")
    assert "grainseg segment" in err and not (tmp_path / "out").exists()
    # labels whose ids recur in a few large regions are still measured, each region a grain
    lab = np.zeros((60, 60), np.uint16)
    lab[:, :29], lab[:, 31:] = 7, 7
    tifffile.imwrite(tmp_path / "split.tif", lab)
    assert main(["measure", str(tmp_path / "split.tif"), "--out", str(tmp_path / "out2")]) == 0
    assert "separate regions" in capsys.readouterr().err


def _disk_fills_at_the_histogram(monkeypatch):
    """The disk fills while the histogram PNG (the third file of a set) is written: some bytes land,
    then ENOSPC, as a real full disk does."""
    import errno

    from matplotlib.figure import Figure

    def savefig(self, fname, *args, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device", str(fname))

    monkeypatch.setattr(Figure, "savefig", savefig)


def test_a_field_export_that_fills_the_disk_leaves_no_partial_set(tmp_path, monkeypatch):
    """All or nothing: a full disk at the third file leaves neither the CSV and JSON written before
    it nor a temporary file, in an empty folder, and leaves an earlier export byte for byte."""
    lab = grid_labels()
    table = measure_grains(lab, 2.0)
    summary = summarize(lab, 2.0)
    what = ("csv", "json", "histogram", "tiff")
    earlier = tmp_path / "earlier"
    report.write_field_exports(earlier, "f", table, summary, svg=True, what=what, labels=lab)
    before = {p.name: p.read_bytes() for p in earlier.iterdir()}
    assert len(before) == 6

    _disk_fills_at_the_histogram(monkeypatch)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(InputError, match=r"no space left on device at .*fresh \(writing f_histogram\.png\)"):
        report.write_field_exports(fresh, "f", table, summary, svg=True, what=what, labels=lab)
    assert list(fresh.iterdir()) == []

    other = summarize(lab, 3.0)  # a new measurement over the earlier export: refused as a whole
    with pytest.raises(InputError, match="no space left on device"):
        report.write_field_exports(earlier, "f", table, other, svg=True, what=what, labels=lab)
    assert {p.name: p.read_bytes() for p in earlier.iterdir()} == before

    # the CLI's measure writes its report (overlay too) the same way: exit 2, nothing left
    tifffile.imwrite(tmp_path / "lab.tif", lab)
    out = tmp_path / "out"
    assert main(["measure", str(tmp_path / "lab.tif"), "--out", str(out)]) == 2
    assert [p.name for p in out.iterdir() if not p.name.startswith(".grainseg")] == []
