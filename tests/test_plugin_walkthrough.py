"""The microscopist's walkthrough of docs/user_guide.md, clicking only the real buttons of the real docks.

Load a calibrated 16-bit TIFF, edges, Net1, three Net2 steps with a hand correction in between,
merge / split / delete with undo and redo, exclusion of a scale-bar strip, statistics, exports,
then reopen the exported boundaries and go on correcting.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

napari = pytest.importorskip("napari")
torch = pytest.importorskip("torch")
from qtpy.QtCore import QPoint, Qt  # noqa: E402

pytestmark = pytest.mark.napari

try:
    import napari_grainseg.measure.statistics  # noqa: F401

    EXCLUSION = True
except ImportError:
    EXCLUSION = False

DOCKS = ("Edge detectors", "Segment grains", "Correct grains", "Grain statistics")


def click(qtbot, button) -> None:
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


def tick(qtbot, checkbox) -> None:
    native = checkbox.native
    qtbot.mouseClick(native, Qt.MouseButton.LeftButton, pos=QPoint(8, native.height() // 2))


def inner(labels: np.ndarray, gid: int) -> tuple[int, int]:
    dist = ndi.distance_transform_edt(labels == gid)
    return tuple(int(v) for v in np.unravel_index(np.argmax(dist), dist.shape))


def touching_pair(labels: np.ndarray) -> tuple[int, int]:
    """Two large grains side by side across a boundary pixel."""
    areas = np.bincount(labels.ravel())
    best = None
    for y, x in zip(*np.nonzero(labels[2:-2, 2:-2] == 0)):
        y, x = y + 2, x + 2
        a, b = labels[y, x - 1], labels[y, x + 1]
        if a and b and a != b and (best is None or min(areas[a], areas[b]) > best[0]):
            best = (min(areas[a], areas[b]), int(a), int(b))
    return best[1], best[2]


@pytest.fixture
def calibrated_tiff(tmp_path):
    from napari_grainseg.io.samples import interconnect_tem

    image = interconnect_tem().data
    data = (image - image.min()) / (np.ptp(image) or 1) * 60000
    path = tmp_path / "line42.tif"
    tifffile.imwrite(path, data.astype(np.uint16), imagej=True, resolution=(1 / 2.0, 1 / 2.0), metadata={"unit": "nm"})
    return path


def n_grains(labels) -> int:
    """Grains in a label image (an edited layer's ids need not be consecutive)."""
    ids = np.unique(labels)
    return int(np.count_nonzero(ids))


def test_walkthrough_with_the_real_buttons(make_napari_viewer, qtbot, calibrated_tiff, tmp_path, monkeypatch):
    from napari_grainseg.models.weights import shipped_weights_dir
    from napari_grainseg.plugin import _correct_widget, _segment_widget, _stats_widget, _threading

    if not (shipped_weights_dir() / "net1.pt").is_file() or not (shipped_weights_dir() / "net2.pt").is_file():
        pytest.skip("no shipped Net1 / Net2 weights")
    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)  # threads: see test_plugin_threads.py
    errors = []
    for module in (_correct_widget, _segment_widget, _stats_widget):
        monkeypatch.setattr(module, "show_error", errors.append)

    viewer = make_napari_viewer()
    (image,) = viewer.open(str(calibrated_tiff), plugin="napari-grainseg")
    assert tuple(image.scale) == pytest.approx((2.0, 2.0))
    edges, seg, fix, stats = (viewer.window.add_plugin_dock_widget("napari-grainseg", name)[1] for name in DOCKS)
    seg.device.value = "cpu"
    assert seg.pixel_size.value == pytest.approx(2.0)  # the file's calibration

    # edges, Net1
    click(qtbot, edges.run_button)
    assert "line42 Canny" in viewer.layers
    click(qtbot, seg.run_net1_button)
    assert errors == [] and seg.status.value.startswith("Net1:")
    bnd, grains = viewer.layers["line42 boundaries"], viewer.layers["line42 grains"]
    from napari_grainseg.plugin._boundaries import BoundaryLink

    link = BoundaryLink.for_layer(viewer, bnd, create=False)
    assert fix.boundaries.value is bnd and stats.grains.value is grains

    # three Net2 steps, with a hand-drawn boundary between the first and the second
    click(qtbot, seg.step_button)
    assert seg.net2_label.value.startswith("step 1:")
    row = 77
    line = (np.full(200, row), np.arange(400, 600))
    with bnd.block_history():  # what the paint brush does
        bnd.data_setitem(line, np.ones(200, np.uint8))
    click(qtbot, seg.step_button)
    assert "kept fixed" in seg.status.value
    assert f"after step 2, {int(grains.data.max())} grains" in seg.status.value  # not Net1's count
    click(qtbot, seg.step_button)
    assert seg.net2_label.value.startswith("step 3:") and bnd.data[line].all()
    click(qtbot, seg.stop_button)
    assert bnd.metadata["grainseg_info"]["net2_steps"] == 3

    # merge, undo, redo
    n0 = n_grains(grains.data)
    a, b = touching_pair(grains.data)
    click(qtbot, fix.picks_button)
    picks = viewer.layers.selection.active
    picks.data = np.array([inner(grains.data, a), inner(grains.data, b)], float)
    before = bnd.data.copy()
    click(qtbot, fix.merge_button)
    assert n_grains(grains.data) == link.grain_count == n0 - 1
    merged = bnd.data.copy()
    click(qtbot, fix.undo_button)
    np.testing.assert_array_equal(bnd.data, before)
    click(qtbot, fix.redo_button)
    np.testing.assert_array_equal(bnd.data, merged)
    # split the largest grain along a vertical line across it
    areas = np.bincount(grains.data.ravel())
    areas[0] = 0
    big = int(np.argmax(areas))
    rows, cols = np.nonzero(grains.data == big)
    x = int(np.median(cols))
    click(qtbot, fix.lines_button)
    viewer.layers.selection.active.add_paths([np.array([[rows.min() - 2, x], [rows.max() + 2, x]], float)])
    click(qtbot, fix.split_button)
    assert n_grains(grains.data) == link.grain_count == n0
    # delete a grain, then undo it
    picks.data = np.array([inner(grains.data, a)], float)
    click(qtbot, fix.delete_button)
    assert n_grains(grains.data) == link.grain_count == n0 - 1
    click(qtbot, fix.undo_button)
    assert n_grains(grains.data) == link.grain_count == n0
    assert errors == []

    # exclude a scale-bar strip (bottom right), statistics, exports
    strip = np.zeros(grains.data.shape, np.uint8)
    strip[-20:, -200:] = 1
    viewer.add_labels(strip, name="scale bar", scale=image.scale, units=("nm", "nm"))
    viewer.layers.selection.active = grains
    if EXCLUSION:  # the core measurement's exclusion mask (measure.statistics.measure_field)
        stats.exclude.value = viewer.layers["scale bar"]
    tick(qtbot, stats.include_edge)
    stats.update()
    assert "grains:" in stats.summary.value and stats.stem.value == "line42"
    stats.folder.value = tmp_path
    click(qtbot, stats.all_button)
    assert errors == []
    summary = json.loads((tmp_path / "line42_summary.json").read_text())
    assert summary["pixel_size_nm"] == pytest.approx(2.0)
    assert "ImageJ" in summary["calibration"]["source"], summary["calibration"]  # the file's own
    assert summary["hand_edits"]["merges"] == 1 and summary["hand_edits"]["splits"] == 1
    assert summary["hand_edits"]["deletions"] == 0 and summary["hand_edits"]["painted_px"] >= 150
    assert "hand edits" in summary["method"] and summary["net2_steps"] == 3
    if EXCLUSION:
        assert summary["measurement"]["exclude"], summary["measurement"]  # recorded in the summary
    for name in ("grains.csv", "histogram.png", "grains.tif", "boundaries.tif"):
        assert (tmp_path / f"line42_{name}").is_file()

    # another day: reopen the exported boundaries, calibrated, and go on correcting
    viewer.layers.clear()
    (reopened,) = viewer.open(str(tmp_path / "line42_boundaries.tif"), plugin="napari-grainseg")
    assert isinstance(reopened, napari.layers.Labels) and tuple(reopened.scale) == pytest.approx((2.0, 2.0))
    assert fix.boundaries.value is reopened
    labels = reopened.data == 0
    lab, _ = ndi.label(labels)
    a, b = touching_pair(lab)
    click(qtbot, fix.picks_button)
    viewer.layers.selection.active.data = np.array([inner(lab, a), inner(lab, b)], float)
    click(qtbot, fix.merge_button)
    assert errors == []
    assert n_grains(viewer.layers["line42 grains"].data) == lab.max() - 1
