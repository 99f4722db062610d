"""The docks' buttons, clicked for real (``qtbot.mouseClick`` on the Qt widget) in a real viewer.

A known geometry — three grains: A (top left), B (bottom left), C (right) —
is put into a boundary layer directly (no network), so every button's effect
on the label and boundary arrays is known exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
from qtpy.QtCore import Qt  # noqa: E402

pytestmark = pytest.mark.napari

H, W = 60, 80


def three_grains() -> np.ndarray:
    b = np.zeros((H, W), np.uint8)
    b[:, 40] = 1  # A | C and B | C
    b[30, :40] = 1  # A over B
    return b


@pytest.fixture(autouse=True)
def synchronous(monkeypatch):
    from napari_grainseg.plugin import _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)


@pytest.fixture
def errors(monkeypatch):
    from napari_grainseg.plugin import _correct_widget, _segment_widget, _stats_widget

    got = []
    for module in (_correct_widget, _segment_widget, _stats_widget):
        monkeypatch.setattr(module, "show_error", got.append)
    return got


@pytest.fixture
def scene(make_napari_viewer):
    from napari_grainseg.plugin._boundaries import BoundaryLink

    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((H, W)).astype(np.float32), name="img")
    link = BoundaryLink.create(viewer, image, three_grains())
    return viewer, image, link


def click(qtbot, button) -> None:
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


def grain_at(link, y, x) -> int:
    return int(link.grains.data[y, x])


def test_merge_split_delete_undo_redo_buttons(scene, qtbot, errors):
    from napari_grainseg.plugin._correct_widget import CorrectWidget

    viewer, image, link = scene
    fix = CorrectWidget(viewer)
    assert fix.boundaries.value is link.boundaries
    bnd, grains = link.boundaries, link.grains
    start_b, start_g = bnd.data.copy(), grains.data.copy()
    assert grains.data.max() == 3

    # merge A and B: one id, the line between them is gone, the line to C stays
    click(qtbot, fix.picks_button)
    picks = viewer.layers["img boundaries picks"]
    assert viewer.layers.selection.active is picks and picks.mode == "add"
    picks.data = np.array([[10, 10], [50, 10]], float)
    click(qtbot, fix.merge_button)
    assert errors == []
    assert grains.data.max() == 2 and grain_at(link, 10, 10) == grain_at(link, 50, 10)
    assert bnd.data[30, 2:38].sum() == 0 and bnd.data[:, 40].sum() >= H - 1
    assert grain_at(link, 10, 60) != grain_at(link, 10, 10)
    assert len(picks.data) == 0
    merged_b = bnd.data.copy()
    click(qtbot, fix.undo_button)
    np.testing.assert_array_equal(bnd.data, start_b)
    np.testing.assert_array_equal(grains.data, start_g)
    click(qtbot, fix.redo_button)
    np.testing.assert_array_equal(bnd.data, merged_b)
    click(qtbot, fix.undo_button)
    np.testing.assert_array_equal(bnd.data, start_b)

    # split C along a horizontal line: two grains where there was one
    click(qtbot, fix.lines_button)
    lines = viewer.layers["img boundaries split lines"]
    lines.add_paths([np.array([[20, 38], [20, W + 2]], float)])
    click(qtbot, fix.split_button)
    assert errors == []
    assert grains.data.max() == 4
    assert grain_at(link, 5, 60) != grain_at(link, 40, 60)
    assert bnd.data[20, 42:W - 1].all()
    assert len(lines.data) == 0
    click(qtbot, fix.undo_button)
    np.testing.assert_array_equal(bnd.data, start_b)
    np.testing.assert_array_equal(grains.data, start_g)

    # delete A: its pixels go to its neighbours, A's outline boundary pixels go with it
    picks.data = np.array([[10, 10]], float)
    click(qtbot, fix.delete_button)
    assert errors == []
    assert grains.data.max() == 2
    assert grain_at(link, 10, 10) in (grain_at(link, 50, 10), grain_at(link, 10, 60))
    assert bnd.data.sum() < start_b.sum()
    counts = link.edit_counts()
    assert counts["deletions"] == 1 and counts["merges"] == 0 and counts["splits"] == 0
    click(qtbot, fix.undo_button)
    np.testing.assert_array_equal(bnd.data, start_b)
    np.testing.assert_array_equal(grains.data, start_g)
    assert link.edit_counts() == {"merges": 0, "splits": 0, "deletions": 0, "painted_px": 0}


def test_buttons_without_picks_say_what_to_do(scene, qtbot, errors):
    from napari_grainseg.plugin._correct_widget import CorrectWidget

    viewer, image, link = scene
    fix = CorrectWidget(viewer)
    before = link.boundaries.data.copy()
    for button in (fix.merge_button, fix.delete_button, fix.split_button):
        click(qtbot, button)
    assert len(errors) == 3 and "pick" in errors[0] and "split line" in errors[2]
    np.testing.assert_array_equal(link.boundaries.data, before)


def test_every_dock_follows_the_active_layer_and_exports_beside_the_image(make_napari_viewer, qtbot, tmp_path,
                                                                          monkeypatch, errors):
    import tifffile

    from napari_grainseg.plugin._boundaries import BoundaryLink
    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.plugin._edges_widget import EdgeDetectorsWidget
    from napari_grainseg.plugin._segment_widget import SegmentWidget
    from napari_grainseg.plugin._stats_widget import StatsWidget

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(1)
    tifffile.imwrite(folder / "second.tif", (rng.random((H, W)) * 255).astype(np.uint8))
    viewer = make_napari_viewer()
    first = viewer.add_image(rng.random((H, W)).astype(np.float32), name="first")
    link1 = BoundaryLink.create(viewer, first, three_grains())
    second, = viewer.open(str(folder / "second.tif"), plugin="napari-grainseg")
    link2 = BoundaryLink.create(viewer, second, three_grains())
    docks = [EdgeDetectorsWidget(viewer), SegmentWidget(viewer), CorrectWidget(viewer), StatsWidget(viewer)]
    edges, seg, fix, stats = docks

    viewer.layers.selection.active = first
    assert edges.image.value is first and seg.image.value is first
    assert fix.boundaries.value is link1.boundaries and stats.grains.value is link1.grains
    assert stats.stem.value == "first" and Path(stats.folder.value) == tmp_path  # no file: the cwd
    viewer.layers.selection.active = link2.grains
    assert edges.image.value is second and seg.image.value is second
    assert fix.boundaries.value is link2.boundaries and stats.grains.value is link2.grains
    assert stats.stem.value == "second" and Path(stats.folder.value) == folder

    # Undo acts on the active image's boundaries only
    picks = fix.picks_layer()
    picks.data = np.array([[10, 10], [50, 10]], float)
    click(qtbot, fix.merge_button)
    assert link2.grains.data.max() == 2 and link1.grains.data.max() == 3
    viewer.layers.selection.active = link2.boundaries
    click(qtbot, fix.undo_button)
    assert link2.grains.data.max() == 3
    click(qtbot, stats.csv_button)
    assert (folder / "second_grains.csv").is_file() and errors == []


def test_docks_fit_a_small_screen(make_napari_viewer):
    viewer = make_napari_viewer()
    names = ["Edge detectors", "Segment grains", "Correct grains", "Grain statistics"]
    docks = [viewer.window.add_plugin_dock_widget("napari-grainseg", name)[0] for name in names]
    heights = [dock.minimumSizeHint().height() for dock in docks]
    widths = [dock.minimumSizeHint().width() for dock in docks]
    # stacked in one column, the four docks need less than a 1366x768 screen's height
    assert sum(heights) < 768 - 150, heights
    assert max(widths) < 480, widths
    window = viewer.window._qt_window
    assert window.minimumSizeHint().height() <= 768, window.minimumSizeHint()
    window.resize(1366, 768)
    assert window.height() <= 768
    # every dock still shows its controls (a scroll area, not a squeezed layout)
    assert all(dock.widget().height() >= 80 for dock in docks)


def test_exports_reopen_as_calibrated_boundary_layers_ready_to_correct(make_napari_viewer, qtbot, tmp_path,
                                                                       errors):
    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.plugin._reader import get_reader
    from napari_grainseg.plugin._writer import write_calibrated_tiff
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    labels = boundaries_to_labels(three_grains())
    write_calibrated_tiff(tmp_path / "tem_grains.tif", labels.astype(np.uint32), 2.5)
    write_calibrated_tiff(tmp_path / "tem_boundaries.tif", three_grains(), 2.5)
    for name, expected in (("tem_grains.tif", labels == 0), ("tem_boundaries.tif", three_grains())):
        (data, kwargs, kind), = get_reader(str(tmp_path / name))(str(tmp_path / name))
        assert kind == "labels" and data.dtype == np.uint8
        np.testing.assert_array_equal(data, expected)
        assert kwargs["scale"] == pytest.approx((2.5, 2.5)) and kwargs["units"] == ("nm", "nm")
        assert kwargs["name"] == "tem boundaries" and kwargs["metadata"]["grainseg_role"] == "boundaries"

    viewer = make_napari_viewer()
    fix = CorrectWidget(viewer)
    layer, = viewer.open(str(tmp_path / "tem_boundaries.tif"), plugin="napari-grainseg")
    assert isinstance(layer, napari.layers.Labels) and fix.boundaries.value is layer
    assert tuple(layer.scale) == pytest.approx((2.5, 2.5))
    click(qtbot, fix.picks_button)
    viewer.layers["tem boundaries picks"].data = np.array([[10, 10], [50, 10]], float)  # data = pixels
    click(qtbot, fix.merge_button)
    assert errors == []
    grains = viewer.layers["tem boundaries grains"]
    assert grains.data.max() == 2 and tuple(grains.scale) == pytest.approx((2.5, 2.5))
    assert fix._boundaries_for(grains) is layer


def test_builtin_reader_on_a_calibrated_tiff_suggests_this_plugin(make_napari_viewer, tmp_path, monkeypatch):
    import tifffile

    from napari_grainseg.plugin import _dock
    from napari_grainseg.plugin._segment_widget import SegmentWidget

    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", shown.append)
    path = tmp_path / "cal.tif"
    tifffile.imwrite(path, (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8), imagej=True,
                     resolution=(2.0, 2.0), metadata={"unit": "nm"})
    viewer = make_napari_viewer()
    SegmentWidget(viewer)
    layer, = viewer.open(str(path), plugin="napari")
    assert tuple(layer.scale) == (1.0, 1.0)  # the builtin reader ignores the calibration
    assert any("0.5 nm per pixel" in m and "napari-grainseg" in m for m in shown), shown
    assert _dock.check_reader(viewer.add_image(np.zeros((4, 4)))) is None  # not from a file: nothing
