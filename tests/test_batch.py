"""grainseg batch: mirrored outputs, failures, resume, sample statistics, and Dask == serial.

Needs trained Net1 weights (a random network finds no closed grains): the
shipped ``net1.pt``, else the development snapshot of the running training.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_grainseg.batch import BatchItem, BatchOptions, discover_inputs, is_done, process_item, run_batch
from napari_grainseg.cli import main
from napari_grainseg.errors import InputError
from napari_grainseg.io.outputs import file_record
from napari_grainseg.measure.astm import astm_g_from_na
from napari_grainseg.measure.statistics import pooled_statistics
from napari_grainseg.synthetic import generate

FIELDS = {"a/f0.tif": 0, "a/f1.tif": 1, "b/f0.tif": 2}  # two folders, one repeated name


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """A private copy (the snapshot may be refreshed mid-run, which rightly invalidates 'done' fields)."""
    from napari_grainseg.models.weights import shipped_weights_dir

    for path in (shipped_weights_dir() / "net1.pt",):
        if path.is_file():
            copy = tmp_path_factory.mktemp("weights") / "net1.pt"
            shutil.copy(path, copy)
            shutil.copy(path.with_suffix(".json"), copy.with_suffix(".json"))
            return str(copy)
    pytest.fail("the shipped Net1 weights are missing from the package")


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    """Three synthetic 96x160 fields in two folders, plus a corrupt TIFF."""
    root = tmp_path_factory.mktemp("fields")
    for rel, seed in FIELDS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / rel, generate(seed, (96, 160), "tem").image.astype(np.float32))
    (root / "b" / "corrupt.tif").write_bytes(b"II*\x00" + b"\x00" * 40)
    return root


def _args(sample_dir, out, weights, *extra):
    return [
        "batch",
        str(sample_dir),
        "--out",
        str(out),
        "--weights",
        weights,
        "--pixel-size",
        "2",
        "--net2-steps",
        "0",
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="module")
def serial_run(sample_dir, weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    code = main(_args(sample_dir, out, weights, "--workers", "1"))
    return code, out


def _labels(out: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(out)): tifffile.imread(p) for p in sorted(out.rglob("*_grains.tif"))}


# --------------------------------------------------------------------------- inputs


def test_discover_mirrors_folders_and_never_collides(tmp_path):
    src = tmp_path / "in"
    for rel in ("x.tif", "x.png", "sub/x.tif", "sample.tif", ".hidden.tif", "notes.txt", "out/old.tif"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"")
    items = discover_inputs(src, src / "out")  # the output folder inside the input is ignored
    got = {(str(i.source.relative_to(src)), str(i.out_dir.relative_to(src / "out")), i.stem) for i in items}
    assert got == {
        ("x.tif", ".", "x_tif"),
        ("x.png", ".", "x_png"),
        ("sub/x.tif", "sub", "x"),
        ("sample.tif", ".", "sample_tif"),
    }  # 'sample' is reserved for sample_summary.json
    by_glob = discover_inputs(str(src / "**" / "x.tif"), tmp_path / "o")
    assert {(str(i.out_dir.relative_to(tmp_path / "o")), i.stem) for i in by_glob} == {(".", "x"), ("sub", "x")}


@pytest.mark.parametrize(
    "spec, words",
    [
        ("missing_dir", "not found"),
        ("empty", "no micrographs"),
        ("empty/*.tif", "no micrographs"),
        ("file.tif", "is a file"),
    ],
)
def test_discover_bad_specs_are_input_errors(tmp_path, spec, words):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.tif").write_bytes(b"")
    with pytest.raises(InputError, match=words):
        discover_inputs(str(tmp_path / spec), tmp_path / "out")


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--grain-size", "20", "--grain-size-nm", "40"], None),  # argparse: mutually exclusive
        (["--workers", "0"], None),  # argparse: must be >= 1
        (["--grains", "threshold", "--threshold", "1.5"], "threshold"),
        (["--threshold", "0.4"], "grains are built by watershed here; add --grains threshold"),
        (["--grains", "threshold", "--watershed-h", "0.4"], "--watershed-h sets the watershed"),
        (["--net2-steps", "many"], "--net2-steps"),
        (["--net2-weights", "/nonexistent/net2.pt"], "--net2-weights"),
        (["--scheduler", "tcp://127.0.0.1:9", "--workers", "2"], "--scheduler"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, sample_dir, weights, capsys, extra, words):
    try:
        code = main(_args(sample_dir, tmp_path / "out", weights, *extra))
    except SystemExit as exc:  # argparse
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    if words:
        assert words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unreachable_scheduler_is_exit_2(tmp_path, sample_dir, weights, capsys):
    assert main(_args(sample_dir, tmp_path / "out", weights, "--scheduler", "tcp://127.0.0.1:9")) == 2
    assert "cannot connect to the Dask scheduler" in capsys.readouterr().err


# --------------------------------------------------------------------------- serial batch


def test_corrupt_file_is_reported_and_the_rest_processed(serial_run, sample_dir):
    code, out = serial_run
    assert code == 1
    failures = json.loads((out / "failures.json").read_text())
    assert failures["n_failed"] == 1
    (f,) = failures["failures"]
    assert f["input"].endswith("corrupt.tif") and f["kind"] == "input" and "cannot read" in f["error"]
    assert set(_labels(out)) == {"a/f0_grains.tif", "a/f1_grains.tif", "b/f0_grains.tif"}
    for stem in ("a/f0", "a/f1", "b/f0"):
        marker = json.loads((out / f"{stem}_done.json").read_text())
        assert all((out / stem).parent.joinpath(n).is_file() for n in marker["files"])
        assert f"{Path(stem).name}_summary.json" in marker["files"]
    assert not list(out.rglob(".*partial*")) and not list(out.rglob("*.part*"))
    assert not (out / "b" / "corrupt_done.json").exists()


def test_sample_summary_pools_fields(serial_run):
    _, out = serial_run
    sample = json.loads((out / "sample_summary.json").read_text())
    fields = [json.loads(p.read_text()) for p in sorted(out.rglob("f*_summary.json"))]
    assert sample["n_inputs"] == 4 and sample["n_processed"] == 3 and sample["n_failed"] == 1
    fs = sample["field_statistics"]
    g = np.array([f["astm_g_planimetric"] for f in fields])
    assert fs["n_fields"] == 3 and fs["astm_g_planimetric"]["mean"] == pytest.approx(g.mean())
    from scipy import stats

    ci = stats.t.ppf(0.975, 2) * g.std(ddof=1) / np.sqrt(3)
    assert fs["astm_g_planimetric"]["ci95"] == pytest.approx(ci)
    assert fs["astm_g_planimetric"]["ra_percent"] == pytest.approx(100 * ci / g.mean())
    pooled = sample["pooled"]
    n_eq = sum(f["planimetric"]["n_equivalent"] for f in fields)
    area_mm2 = sum(f["planimetric"]["field_area_mm2"] for f in fields)
    assert pooled["unit"] == "nm"
    assert pooled["astm_g_planimetric"] == pytest.approx(astm_g_from_na(n_eq / area_mm2))
    assert pooled["n_grains"] == sum(f["n_grains"] for f in fields)
    assert pooled["n_grains_included"] == sum(f["n_grains"] - f["n_grains_edge"] for f in fields)
    assert sum(pooled["histograms"]["number"]) == pooled["n_grains_included"]
    assert (out / "sample_histogram.png").stat().st_size > 0 and (out / "sample_histogram.svg").exists()


def test_pooled_statistics_known_answer():
    """Two fields of 1 µm² at 1 nm/px: N_A pooled over both, intercept pooled per orientation."""

    def field(n_eq, ecd, inter):
        summary = {
            "pixel_size_nm": 1.0,
            "planimetric": {"n_equivalent": n_eq, "field_area_px": 1e6},
            "intercept": {"by_orientation": [{"angle_deg": 0.0, "intersections": inter, "length_px": 1e5}]},
        }
        return {
            "summary": summary,
            "grains": {"ecd_px": np.asarray(ecd, float), "touches_border": np.array([False] * (len(ecd) - 1) + [True])},
        }

    pooled = pooled_statistics([field(100, [10, 20, 99], 1000), field(300, [30, 40, 99], 3000)])
    assert pooled["n_a_per_mm2"] == pytest.approx(400 / 2e-6)  # 2 µm² = 2e-6 mm²
    assert pooled["mean_intercept_nm"] == pytest.approx(2e5 / 4000)
    assert pooled["mean_ecd_nm"] == pytest.approx(25.0) and pooled["n_grains_edge"] == 2
    uncalibrated = pooled_statistics(
        [{**f, "summary": {**f["summary"], "pixel_size_nm": None}} for f in [field(1, [5, 6, 7], 1)]]
    )
    assert uncalibrated["unit"] == "px" and uncalibrated["astm_g_planimetric"] is None


# --------------------------------------------------------------------------- resume


def test_resume_after_interruption_gives_identical_results(serial_run, sample_dir, weights, tmp_path):
    _, reference = serial_run
    items = discover_inputs(sample_dir, tmp_path / "out")
    options = BatchOptions(weights=weights, pixel_size_nm=2.0, threads=1, net2_steps=0)

    def interrupt(record):  # Ctrl-C after the first field
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(items, options, progress=False, on_record=interrupt)
    done = [i for i in items if is_done(i, options)]
    assert len(done) == 1
    # a kill in the middle of committing the second field: its journal written, one output moved,
    # no marker, and the staging folder of the dead run (PID 999999999) left
    second = next(i for i in items if not is_done(i, options) and "corrupt" not in i.stem)
    second.out_dir.mkdir(parents=True, exist_ok=True)
    csv = shutil.copy(
        reference / second.out_dir.relative_to(tmp_path / "out") / f"{second.stem}_grains.csv", second.out_dir
    )
    (second.out_dir / f".{second.stem}.commit.json").write_text(
        json.dumps({"files": {f"{second.stem}_grains.csv": file_record(csv)}})
    )
    stage = second.out_dir / f".{second.stem}.staging-20260101T000000-999999999-abcd"
    stage.mkdir()
    (stage / f"{second.stem}_grains.tif").write_bytes(b"half")
    mtime = done[0].marker.stat().st_mtime_ns

    code = main(_args(sample_dir, tmp_path / "out", weights, "--workers", "1"))
    assert code == 1  # the corrupt file still fails
    assert done[0].marker.stat().st_mtime_ns == mtime  # completed field skipped, not recomputed
    assert not list((tmp_path / "out").rglob(".*staging*")) and not list((tmp_path / "out").rglob(".*.commit.json"))
    a, b = _labels(reference), _labels(tmp_path / "out")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    for csv in reference.rglob("*_grains.csv"):
        assert csv.read_bytes() == (tmp_path / "out" / csv.relative_to(reference)).read_bytes()
    s_ref = json.loads((reference / "sample_summary.json").read_text())
    s_new = json.loads((tmp_path / "out" / "sample_summary.json").read_text())
    for key in ("field_statistics", "pooled"):
        assert s_ref[key] == s_new[key]
    assert s_new["n_skipped"] == 1 and s_new["n_processed"] == 2


def test_changed_options_or_input_are_not_skipped(serial_run, sample_dir, weights, tmp_path):
    _, out = serial_run
    items = [i for i in discover_inputs(sample_dir, out) if "corrupt" not in i.stem]
    same = BatchOptions(weights=weights, pixel_size_nm=2.0, net2_steps=0)
    assert all(is_done(i, same) for i in items)
    # the threshold is not used by the default builder (the watershed): changing it redoes nothing
    assert all(is_done(i, BatchOptions(weights=weights, pixel_size_nm=2.0, net2_steps=0, threshold=0.6)) for i in items)
    deeper = BatchOptions(weights=weights, pixel_size_nm=2.0, net2_steps=0, watershed_h=0.3)
    assert not any(is_done(i, deeper) for i in items)
    by_threshold = BatchOptions(weights=weights, pixel_size_nm=2.0, net2_steps=0, grains="threshold")
    assert not any(is_done(i, by_threshold) for i in items)  # another grain builder: redo
    # a threshold marker keeps the format of the markers written before session 13 (no "grains"
    # key), so those fields are not redone; a marker of the old default lacks the watershed keys
    old_threshold = by_threshold.fingerprint()
    assert "grains" not in old_threshold and old_threshold["threshold"] == 0.5
    default = BatchOptions(weights=weights, net2_steps=0).fingerprint()
    assert (default["grains"], default["watershed_h"]) == ("watershed", 0.2) and "threshold" not in default
    with pytest.raises(InputError, match="grains must be one of"):
        BatchOptions(grains="closing")
    assert not is_done(BatchItem(sample_dir / "a" / "f1.tif", out / "a", "f0"), same)  # other input


# --------------------------------------------------------------------------- Dask


def test_dask_local_cluster_equals_serial(serial_run, sample_dir, weights, tmp_path):
    from distributed import Client, LocalCluster

    _, reference = serial_run
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        code = main(_args(sample_dir, tmp_path / "dask", weights, "--scheduler", cluster.scheduler_address))
        assert code == 1
        with Client(cluster.scheduler_address) as client:

            def worker_state():
                import torch

                from napari_grainseg.segmentation.options import cached_models

                return sum(key[0] == "net1" for key in cached_models()), torch.get_num_threads()

            state = client.run(worker_state)
    assert len(state) == 2
    # every worker that ran a field loaded Net1 once and uses its 1 thread
    assert all(models <= 1 and threads == 1 for models, threads in state.values())
    assert sum(models for models, _ in state.values()) >= 1
    a, b = _labels(reference), _labels(tmp_path / "dask")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    failures = json.loads((tmp_path / "dask" / "failures.json").read_text())
    assert [f["stem"] for f in failures["failures"]] == ["corrupt"]
    s_ref = json.loads((reference / "sample_summary.json").read_text())
    s_new = json.loads((tmp_path / "dask" / "sample_summary.json").read_text())
    assert s_ref["pooled"] == s_new["pooled"] and s_ref["field_statistics"] == s_new["field_statistics"]


@pytest.mark.slow
def test_local_workers_option_runs_on_dask(serial_run, sample_dir, weights, tmp_path, capsys):
    _, reference = serial_run
    assert main(_args(sample_dir, tmp_path / "local", weights, "--workers", "2")) == 1
    assert "2 local Dask workers" in capsys.readouterr().err
    a, b = _labels(reference), _labels(tmp_path / "local")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_ctrl_c_while_a_field_is_written_leaves_no_staging_folder(sample_dir, weights, tmp_path, monkeypatch):
    """A Ctrl-C in the middle of writing a field's files left its staging folder with half the files."""
    from napari_grainseg.segmentation import pipeline

    def half_written(stage, stem, *args, **kwargs):
        (Path(stage) / f"{stem}_boundaries.tif").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "write_segmentation", half_written)
    items = discover_inputs(sample_dir, tmp_path / "out")
    options = BatchOptions(weights=weights, pixel_size_nm=2.0, threads=1, net2_steps=0)
    from napari_grainseg.models.device import restored_cpu_threads

    with restored_cpu_threads(), pytest.raises(KeyboardInterrupt):  # a worker's thread count: not for later tests
        process_item(next(i for i in items if "corrupt" not in i.stem), options)
    assert not list((tmp_path / "out").rglob(".*staging*"))
