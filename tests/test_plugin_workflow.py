"""The whole napari workflow in a real viewer: edges → Net1 → Net2 steps → corrections with undo → export.

Needs trained Net1 weights: the shipped ``net1.pt`` or, until it lands, the
development snapshot (tests skip without either). Net2 uses the shipped
``net2.pt`` when present, else a freshly initialised Net2 saved to a temporary
file (the real :func:`napari_grainseg.segmentation.refine.refine` code runs either way).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

napari = pytest.importorskip("napari")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.napari


def n_grains(labels) -> int:
    """Grains in a label image (after edits its ids need not run 1..n)."""
    return int(np.count_nonzero(np.unique(labels)))


@pytest.fixture(scope="module")
def net1_weights() -> str:
    from napari_grainseg.models.weights import shipped_weights_dir

    for path in (shipped_weights_dir() / "net1.pt",):
        if path.is_file():
            return str(path)
    pytest.fail("the shipped Net1 weights are missing from the package")


@pytest.fixture(scope="module")
def net2_weights(tmp_path_factory) -> str:
    from napari_grainseg.models.weights import shipped_weights_dir

    shipped = shipped_weights_dir() / "net2.pt"
    if shipped.is_file():
        return str(shipped)
    pytest.importorskip("napari_grainseg.segmentation.refine")
    from napari_grainseg.models.net2 import Net2, Net2Config
    from napari_grainseg.models.weights import save_weights

    torch.manual_seed(0)
    config = Net2Config()
    path, _ = save_weights(
        Net2(config), tmp_path_factory.mktemp("net2") / "net2.pt", {"architecture": config.to_dict()}
    )
    return str(path)


@pytest.fixture(autouse=True)
def synchronous(monkeypatch):
    from napari_grainseg.plugin import _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)


@pytest.fixture
def notes(monkeypatch):
    """Collect the errors / warnings the widgets show."""
    from napari_grainseg.plugin import _correct_widget, _notify, _segment_widget, _stats_widget

    got = {"error": [], "warning": []}
    for module in (_segment_widget, _correct_widget, _stats_widget, _notify):  # _notify: the image's warnings
        if hasattr(module, "show_error"):
            monkeypatch.setattr(module, "show_error", got["error"].append)
        if hasattr(module, "show_warning"):
            monkeypatch.setattr(module, "show_warning", got["warning"].append)
    return got


def _segment(viewer, net1_weights, **kw):
    from napari_grainseg.plugin._segment_widget import SegmentWidget

    widget = SegmentWidget(viewer)
    widget.net1_weights = net1_weights
    widget.device.value = "cpu"
    for key, value in kw.items():
        setattr(widget, key, value)
    return widget


def _inner_pixel(labels: np.ndarray, gid: int) -> tuple[int, int]:
    dist = ndi.distance_transform_edt(labels == gid)
    return tuple(int(v) for v in np.unravel_index(np.argmax(dist), dist.shape))


def _split_line(labels: np.ndarray) -> list[tuple[int, int]]:
    """A straight line that cuts one of the large grains in two (checked with the core op)."""
    from napari_grainseg.errors import InputError
    from napari_grainseg.segmentation.editing import split_grain

    areas = np.bincount(labels.ravel())
    areas[0] = 0
    for gid in np.argsort(areas)[::-1][:10]:
        y, x = _inner_pixel(labels, int(gid))
        rows, cols = np.nonzero(labels == gid)
        for line in ([(y, cols.min() - 2), (y, cols.max() + 2)], [(rows.min() - 2, x), (rows.max() + 2, x)]):
            try:
                split_grain(labels, line)
            except InputError:
                continue
            return line
    raise AssertionError("no grain to split")


def _touching_pair(labels: np.ndarray) -> tuple[int, int]:
    """Two large grains separated by a boundary pixel."""
    areas = np.bincount(labels.ravel())
    ys, xs = np.nonzero(labels[1:-1, 1:-1] == 0)
    best = None
    for y, x in zip(ys + 1, xs + 1):
        a, b = labels[y, x - 1], labels[y, x + 1]
        if a and b and a != b:
            score = min(areas[a], areas[b])
            if best is None or score > best[0]:
                best = (score, int(a), int(b))
    assert best is not None
    return best[1], best[2]


def test_whole_workflow_edges_net1_net2_edit_undo_export(
    make_napari_viewer_proxy, net1_weights, net2_weights, tmp_path, notes
):
    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.plugin._edges_widget import EdgeDetectorsWidget
    from napari_grainseg.plugin._stats_widget import StatsWidget

    viewer = make_napari_viewer_proxy()
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    image = viewer.layers["interconnect_tem"]
    assert len(EdgeDetectorsWidget(viewer).run()) == 4

    # --- Net1: probability + boundary layer (uint8, 1 = boundary) + derived grains
    seg = _segment(viewer, net1_weights, net2_weights=net2_weights)
    assert seg.device_label.value.startswith("nothing run on this image yet: it would run on cpu")
    seg.image.value = image
    assert seg.pixel_size.value == 0.0  # the bundled PNG carries no calibration: enter one
    seg.pixel_size.value = 2.0
    assert seg.set_pixel_size() and str(image.units[0]) == "nanometer"
    seg.run_net1()
    assert notes["error"] == []
    prob = viewer.layers["interconnect_tem boundary probability"]
    bnd = viewer.layers["interconnect_tem boundaries"]
    grains = viewer.layers["interconnect_tem grains"]
    assert prob.data.shape == bnd.data.shape == grains.data.shape == image.data.shape
    assert bnd.data.dtype == np.uint8 and set(np.unique(bnd.data)) == {0, 1}
    assert grains.data.max() > 10
    np.testing.assert_array_equal(grains.data == 0, bnd.data == 1)
    net1_prob = prob.data.copy()

    # --- Net2: single steps advance the step count and change the state, live in the layers
    seg.net2_step()
    assert seg.net2_label.value.startswith("step 1:")
    step1 = prob.data.copy()
    assert not np.array_equal(step1, net1_prob)
    seg.net2_step()
    assert seg.net2_label.value.startswith("step 2:")
    assert not np.array_equal(prob.data, step1)
    assert seg._refinement is not None and seg._refinement.worker.is_paused
    # paused: the status line gives the count after the step, not Net1's any more
    assert seg.status.value == f"Net2: 'interconnect_tem' after step 2, {int(grains.data.max())} grains"
    seg.stop()
    assert seg._refinement is None
    assert bnd.metadata["grainseg_info"]["net2_steps"] == 2
    assert bnd.metadata["grainseg_info"]["net2_device"].startswith("cpu (")  # Net2 ran in PyTorch, not OpenCV
    assert bnd.metadata["grainseg_info"]["net2_device"].endswith(", PyTorch")
    assert bnd in viewer.layers and "interconnect_tem boundaries [2]" not in viewer.layers  # no hand edits yet

    # --- merge two touching grains through picked points; Ctrl-Z restores exactly
    fix = CorrectWidget(viewer)
    assert fix.boundaries.value.name == bnd.name
    before_b, before_g = bnd.data.copy(), grains.data.copy()
    a, b = _touching_pair(grains.data)
    picks = fix.picks_layer()
    picks.data = np.array([_inner_pixel(grains.data, a), _inner_pixel(grains.data, b)], float)
    assert fix.merge() > 0
    assert n_grains(grains.data) == before_g.max() - 1
    assert len(picks.data) == 0  # picks are consumed
    assert not np.array_equal(bnd.data, before_b)
    fix.undo()
    np.testing.assert_array_equal(bnd.data, before_b)
    np.testing.assert_array_equal(grains.data, before_g)

    # --- split the largest grain along a line across it; undo restores exactly
    assert fix.split([_split_line(grains.data)]) > 0
    assert n_grains(grains.data) == before_g.max() + 1
    fix.undo()
    np.testing.assert_array_equal(bnd.data, before_b)
    np.testing.assert_array_equal(grains.data, before_g)

    # --- a hand edit (paint) is never overwritten by a new model result
    with bnd.block_history():
        bnd.data_setitem((np.array([5]), np.array([5])), 1 - bnd.data[5, 5])
    edited = bnd.data.copy()
    seg.run_net1()
    np.testing.assert_array_equal(bnd.data, edited)
    new = viewer.layers["interconnect_tem boundaries [2]"]
    assert seg.link_for(image).boundaries.name == new.name

    # --- statistics and exports of the hand-corrected layer
    stats = StatsWidget(viewer)
    stats.grains.value = grains
    stats.update()
    assert stats.stats is not None and "grains:" in stats.summary.value
    stats.folder.value = tmp_path
    stats.stem.value = "tem"
    paths = stats.export()
    assert {p.name for p in paths.values()} == {
        "tem_grains.csv",
        "tem_summary.json",
        "tem_histogram.png",
        "tem_histogram.svg",
        "tem_grains.tif",
        "tem_boundaries.tif",
    }
    with open(paths["csv"]) as fh:
        header = next(csv.reader(fh))
        rows = list(csv.reader(fh))
    for column in ("label", "area_px", "ecd_px", "perimeter_px", "touches_border", "area_nm2", "ecd_nm"):
        assert any(h.split(" [")[0] == column for h in header), (column, header)
    assert len(rows) == int(stats.stats.labels.max())
    summary = json.loads(paths["json"].read_text())
    assert summary["n_grains"] == len(rows) and summary["pixel_size_nm"] > 0
    assert summary["calibration"]["source"] == "set by user in napari"  # the dock's pixel size, not a file's
    assert summary["astm_g_planimetric"] is not None
    np.testing.assert_array_equal(
        tifffile.imread(paths["grains_tif"]) == 0, tifffile.imread(paths["boundaries_tif"]) == 1
    )
    assert notes["error"] == []


def test_net2_run_stops_by_itself(make_napari_viewer, net1_weights, net2_weights):
    from napari_grainseg.plugin._segment_widget import MAX_NET2_STEPS

    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    seg = _segment(viewer, net1_weights, net2_weights=net2_weights)
    seg.run_net1()
    seg.net2_run()  # runs until converged or the step limit, then ends the refinement
    assert seg._refinement is None
    steps = viewer.layers["interconnect_tem boundaries"].metadata["grainseg_info"]["net2_steps"]
    assert 1 <= steps <= MAX_NET2_STEPS
    n = int(viewer.layers["interconnect_tem grains"].data.max())
    assert seg.status.value == f"Net2: {steps} steps on 'interconnect_tem', {n} grains"
    assert seg.net2_label.value.startswith(f"step {steps}:")


def test_rerun_replaces_unedited_layer_and_clears_its_history(make_napari_viewer, net1_weights):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    seg = _segment(viewer, net1_weights)
    seg.run_net1()
    bnd = viewer.layers["interconnect_tem boundaries"]
    with bnd.block_history():  # paint a pixel, then undo it: unedited again, with a redo step
        bnd.data_setitem((np.array([5]), np.array([5])), 1 - bnd.data[5, 5])
    bnd.undo()
    seg.grain_size.value = 100.0  # another hint: another result into the SAME layer
    seg.run_net1()
    assert "interconnect_tem boundaries [2]" not in viewer.layers
    data = bnd.data.copy()
    bnd.redo()  # the replaced data left no stale history
    bnd.undo()
    np.testing.assert_array_equal(bnd.data, data)


def test_split_with_drawn_shapes_and_delete_with_points(make_napari_viewer, net1_weights):
    from napari_grainseg.plugin._correct_widget import CorrectWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    _segment(viewer, net1_weights).run_net1()
    grains = viewer.layers["interconnect_tem grains"]
    fix = CorrectWidget(viewer)
    n0 = n_grains(grains.data)
    lines = fix.lines_layer()
    lines.add_paths([np.array(_split_line(grains.data), float)])
    assert fix.split() > 0 and n_grains(grains.data) == n0 + 1
    assert len(lines.data) == 0
    fix.picks_layer().data = np.array([_inner_pixel(grains.data, 1)], float)
    assert fix.delete() > 0 and n_grains(grains.data) == n0
    # painting with napari's own tools rebuilds the grains (debounce is immediate in sync mode)
    bnd = viewer.layers["interconnect_tem boundaries"]
    before = grains.data.copy()
    bnd.undo()
    bnd.undo()
    assert not np.array_equal(grains.data, before) and n_grains(grains.data) == n0


def test_writer_saves_grain_labels_as_tif_and_csv(make_napari_viewer, net1_weights, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    seg = _segment(viewer, net1_weights)
    seg.pixel_size.value = 2.0
    seg.set_pixel_size()
    seg.run_net1()
    grains = viewer.layers["interconnect_tem grains"]
    grains.save(str(tmp_path / "g.tif"), plugin="napari-grainseg")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "g.tif"), grains.data)
    viewer.layers["interconnect_tem boundaries"].save(str(tmp_path / "b.csv"), plugin="napari-grainseg")
    header = (tmp_path / "b.csv").read_text().splitlines()[0]
    assert header.startswith("label,") and "ecd_nm [nm]" in header


def test_net1_in_a_thread_lands_on_its_own_image(make_napari_viewer_proxy, net1_weights, qtbot, monkeypatch):
    """Threaded run: the user switches to another image meanwhile; the result goes to the first one."""
    from napari_grainseg.plugin import _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", False)
    viewer = make_napari_viewer_proxy()
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="other")
    seg = _segment(viewer, net1_weights)
    seg.image.value = viewer.layers["interconnect_tem"]
    worker = seg.run_net1()
    seg.image.value = viewer.layers["other"]
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: "interconnect_tem boundaries" in viewer.layers, timeout=5000)
    assert "other boundaries" not in viewer.layers
    assert viewer.layers["interconnect_tem boundaries"].data.shape == (154, 1166)


@pytest.mark.parametrize("case", ["no image", "stack", "rgb", "nm hint without pixel size"])
def test_bad_input_notifies_and_viewer_keeps_working(make_napari_viewer, net1_weights, notes, case):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    if case == "stack":
        viewer.add_image(rng.random((3, 64, 64)), name="bad")
    elif case == "rgb":
        rgb = rng.random((64, 64, 3)).astype(np.float32)
        viewer.add_image(rgb, name="bad", rgb=True)
    elif case == "nm hint without pixel size":
        viewer.add_image(rng.random((64, 64)), name="bad")
    seg = _segment(viewer, net1_weights)
    if case == "nm hint without pixel size":
        seg.grain_size.value, seg.grain_size_unit.value = 20.0, "nm"
    seg.run_net1()
    if case == "rgb":  # converted to luminance with a warning, then segmented
        assert any("luminance" in w or "RGB" in w or "colour" in w for w in notes["warning"]), notes
        assert "bad boundaries" in viewer.layers
    else:
        expected = {"no image": "no image layer", "stack": "stack", "nm hint without pixel size": "pixel size"}
        assert len(notes["error"]) == 1 and expected[case] in notes["error"][0]
        assert not [layer for layer in viewer.layers if "boundaries" in layer.name]
    # Net2 before Net1, the tools without a boundary layer: messages, no crash
    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.plugin._stats_widget import StatsWidget

    if case != "rgb":
        assert seg.net2_step() is None
        assert CorrectWidget(viewer).merge() is None
        StatsWidget(viewer).update()
        assert any(
            "no grains layer" in e or "Net1 first" in e or "not available" in e
            for e in notes["error"] + notes["warning"]
        )
    viewer.add_image(rng.random((64, 64)).astype(np.float32), name="good")
    seg.image.value = viewer.layers["good"]
    seg.grain_size.value = 0.0
    seg.run_net1()
    assert "good boundaries" in viewer.layers


def test_missing_pixel_size_warns_and_measures_in_px(make_napari_viewer, net1_weights, notes, tmp_path):
    from napari_grainseg.plugin._stats_widget import StatsWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "interconnect_tem")  # a PNG without calibration
    viewer.layers[0].name = "uncalibrated"
    seg = _segment(viewer, net1_weights)
    assert seg.pixel_size.value == 0.0
    seg.run_net1()
    stats = StatsWidget(viewer)
    stats.grains.value = viewer.layers["uncalibrated grains"]
    stats.update()
    assert any("no pixel size" in w for w in notes["warning"])
    assert "pixel size: not set" in stats.summary.value
    # entering it calibrates the image and its derived layers
    seg.pixel_size.value = 2.5
    assert seg.set_pixel_size()
    assert tuple(viewer.layers["uncalibrated grains"].scale) == (2.5, 2.5)
    stats.update()
    assert "pixel size: 2.5 nm" in stats.summary.value
