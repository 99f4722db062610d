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


def tick(qtbot, checkbox) -> None:
    """Click a check box on its box (a click in the middle of a wide check box misses it)."""
    from qtpy.QtCore import QPoint

    native = checkbox.native
    qtbot.mouseClick(native, Qt.MouseButton.LeftButton, pos=QPoint(8, native.height() // 2))


def n_grains(labels) -> int:
    """Grains in a label image (after edits its ids need not run 1..n)."""
    return int(np.count_nonzero(np.unique(labels)))


def grain_at(link, y, x) -> int:
    return int(link.grains.data[y, x])


def test_merge_split_delete_undo_redo_buttons(scene, qtbot, errors):
    from napari_grainseg.plugin._correct_widget import CorrectWidget

    viewer, image, link = scene
    fix = CorrectWidget(viewer)
    assert fix.boundaries.value is link.boundaries
    bnd, grains = link.boundaries, link.grains
    start_b, start_g = bnd.data.copy(), grains.data.copy()
    assert n_grains(grains.data) == 3

    # merge A and B: one id, the line between them is gone, the line to C stays
    click(qtbot, fix.picks_button)
    picks = viewer.layers["img boundaries picks"]
    assert viewer.layers.selection.active is picks and picks.mode == "add"
    picks.data = np.array([[10, 10], [50, 10]], float)
    click(qtbot, fix.merge_button)
    assert errors == []
    assert n_grains(grains.data) == link.grain_count == 2 and grain_at(link, 10, 10) == grain_at(link, 50, 10)
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
    assert n_grains(grains.data) == link.grain_count == 4
    # the line starts inside A: it says that only one of the grains it crossed was split
    assert fix.status.value.startswith("split: 3 → 4 grains") and "the line crossed 2 grains, it splits one" in (
        fix.status.value
    ), fix.status.value
    assert grain_at(link, 5, 60) != grain_at(link, 40, 60)
    assert bnd.data[20, 42 : W - 1].all()
    assert len(lines.data) == 0
    click(qtbot, fix.undo_button)
    np.testing.assert_array_equal(bnd.data, start_b)
    np.testing.assert_array_equal(grains.data, start_g)

    # delete A: its pixels go to its neighbours, A's outline boundary pixels go with it
    picks.data = np.array([[10, 10]], float)
    click(qtbot, fix.delete_button)
    assert errors == []
    assert n_grains(grains.data) == link.grain_count == 2
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


def test_every_dock_follows_the_active_layer_and_exports_beside_the_image(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, errors
):
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
    (second,) = viewer.open(str(folder / "second.tif"), plugin="napari-grainseg")
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
    assert n_grains(link2.grains.data) == 2 and n_grains(link1.grains.data) == 3
    viewer.layers.selection.active = link2.boundaries
    click(qtbot, fix.undo_button)
    assert n_grains(link2.grains.data) == 3
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


def test_exports_reopen_as_calibrated_boundary_layers_ready_to_correct(make_napari_viewer, qtbot, tmp_path, errors):
    from napari_grainseg.measure.report import write_tiff
    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.plugin._reader import get_reader
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    labels = boundaries_to_labels(three_grains())
    write_tiff(tmp_path / "tem_grains.tif", labels.astype(np.uint32), 2.5)
    write_tiff(tmp_path / "tem_boundaries.tif", three_grains(), 2.5)
    for name, expected in (("tem_grains.tif", labels == 0), ("tem_boundaries.tif", three_grains())):
        ((data, kwargs, kind),) = get_reader(str(tmp_path / name))(str(tmp_path / name))
        assert kind == "labels" and data.dtype == np.uint8
        np.testing.assert_array_equal(data, expected)
        assert kwargs["scale"] == pytest.approx((2.5, 2.5)) and kwargs["units"] == ("nm", "nm")
        assert kwargs["name"] == "tem boundaries" and kwargs["metadata"]["grainseg_role"] == "boundaries"

    viewer = make_napari_viewer()
    fix = CorrectWidget(viewer)
    (layer,) = viewer.open(str(tmp_path / "tem_boundaries.tif"), plugin="napari-grainseg")
    assert isinstance(layer, napari.layers.Labels) and fix.boundaries.value is layer
    assert tuple(layer.scale) == pytest.approx((2.5, 2.5))
    click(qtbot, fix.picks_button)
    viewer.layers["tem boundaries picks"].data = np.array([[10, 10], [50, 10]], float)  # data = pixels
    click(qtbot, fix.merge_button)
    assert errors == []
    grains = viewer.layers["tem grains"]
    assert n_grains(grains.data) == 2 and tuple(grains.scale) == pytest.approx((2.5, 2.5))
    assert fix._boundaries_for(grains) is layer
    # the grains layer the first tool added did not take the selection: the picks keep it, so
    # Ctrl-Z on the canvas undoes the merge and the next clicks add picks
    picks = viewer.layers["tem boundaries picks"]
    assert viewer.layers.selection.active is picks
    picks.data = np.array([[10, 10]], float)
    viewer.window._qt_viewer.canvas.native.setFocus()
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert n_grains(grains.data) == 3 and layer.data[30, 2:38].all()


def test_builtin_reader_on_a_calibrated_tiff_suggests_this_plugin(make_napari_viewer, tmp_path, monkeypatch):
    import tifffile

    from napari_grainseg.plugin import _dock
    from napari_grainseg.plugin._segment_widget import SegmentWidget
    from napari_grainseg.plugin._stats_widget import StatsWidget

    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", shown.append)
    path = tmp_path / "cal.tif"
    tifffile.imwrite(
        path,
        (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8),
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"unit": "nm"},
    )
    viewer = make_napari_viewer()
    SegmentWidget(viewer)
    StatsWidget(viewer)  # two docks: still one notification
    (layer,) = viewer.open(str(path), plugin="napari")
    assert tuple(layer.scale) == (1.0, 1.0)  # the builtin reader ignores the calibration
    assert len([m for m in shown if "0.5 nm per pixel" in m and "napari-grainseg" in m]) == 1, shown
    assert _dock.check_reader(viewer.add_image(np.zeros((4, 4)))) is None  # not from a file: nothing


def test_statistics_dock_features_ecd_colours_caveats_and_hand_edits(scene, qtbot, errors, tmp_path):
    import json

    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.plugin._stats_widget import StatsWidget

    viewer, image, link = scene
    for layer in (image, link.boundaries, link.grains):
        layer.scale, layer.units = (2.0, 2.0), ("nm", "nm")
    stats = StatsWidget(viewer)
    assert stats.grains.value is link.grains
    stats.update()
    features = link.grains.features
    assert list(features["index"]) == [1, 2, 3]
    areas = np.bincount(link.grains.data.ravel())[1:]
    # the boundary pixels are shared out before measuring: a few px more than the grains' own pixels
    assert np.all(features["area (px)"].to_numpy() >= areas)
    assert np.allclose(features["ECD (nm)"], 2 * features["ECD (px)"], atol=0.02)
    assert features["touches border"].all()
    status = link.grains.get_status((20.0, 120.0), world=True)  # world = nm: pixel (10, 60), grain C
    text = status["coordinates"] if isinstance(status, dict) else str(status)
    assert "ECD (nm)" in text and "touches border" in text, text
    assert "⚠" in stats.caveats.value and "border" in stats.caveats.value  # caveats in the dock, not only JSON
    tick(qtbot, stats.colour_by_ecd)
    assert stats.colour_by_ecd.value
    ecd = viewer.layers["img ECD"]
    big = features.set_index("index")["ECD (nm)"]
    assert ecd.data[10, 60] == pytest.approx(big[link.grains.data[10, 60]], abs=0.01)
    assert np.isnan(ecd.data[30, 10])  # a boundary pixel

    # a hand edit is recorded in the summary JSON
    fix = CorrectWidget(viewer)
    fix.picks_layer().data = np.array([[10, 10], [50, 10]], float)
    click(qtbot, fix.merge_button)
    stats.folder.value, stats.stem.value = tmp_path, "cal"
    click(qtbot, stats.json_button)
    summary = json.loads((tmp_path / "cal_summary.json").read_text())
    assert summary["hand_edits"] == {"merges": 1, "splits": 0, "deletions": 0, "painted_px": 0}
    assert "hand edits (1 merges)" in summary["method"]
    assert errors == []


def test_minimum_grain_size_and_exclusion_mask_reach_the_measurement(scene, qtbot, errors):
    pytest.importorskip("napari_grainseg.measure.statistics")
    from napari_grainseg.plugin._stats_widget import StatsWidget

    viewer, image, link = scene
    stats = StatsWidget(viewer)
    stats.update()
    assert stats.stats.summary["n_grains"] == 3
    strip = np.zeros((H, W), np.uint8)
    strip[55:, 45:] = 1  # a scale-bar strip in grain C
    mask = viewer.add_labels(strip, name="scale bar strip")
    viewer.layers.selection.active = link.grains
    stats.exclude.value = mask
    stats.update()
    assert stats.stats.summary["n_grains"] == 2
    stats.exclude.value = None
    stats.min_area.value = 1000  # A and B (about 1170 px) stay, C (about 2400 px) too
    stats.update()
    assert stats.stats.summary["n_grains"] == 3
    stats.min_area.value = 1500
    stats.update()
    assert stats.stats.summary["n_grains"] == 1
    assert errors == []


def test_set_scale_from_a_line_drawn_along_the_scale_bar(scene, qtbot, errors):
    from napari_grainseg.plugin._segment_widget import SegmentWidget

    viewer, image, link = scene
    seg = SegmentWidget(viewer)
    click(qtbot, seg.scale_line_button)  # first press: the line layer, in line mode
    line_layer = viewer.layers["img scale line"]
    assert viewer.layers.selection.active is line_layer and line_layer.mode == "add_line"
    line_layer.add_lines(np.array([[50, 10], [50, 50]], float))  # 40 px
    seg.line_length.value = 100.0  # nm
    click(qtbot, seg.scale_line_button)
    assert errors == []
    assert tuple(image.scale) == pytest.approx((2.5, 2.5)) and str(image.units[0]) == "nanometer"
    assert tuple(link.grains.scale) == pytest.approx((2.5, 2.5))
    assert seg.pixel_size.value == pytest.approx(2.5)


def test_an_export_needs_a_full_folder_path_and_says_why_a_write_fails(scene, qtbot, tmp_path, errors, monkeypatch):
    """An emptied or relative folder field would export into napari's launch folder, unseen; a file
    name taken by a folder is named as such; a failed write names the folder, not a temporary file."""
    from napari_grainseg.plugin._stats_widget import StatsWidget

    viewer, image, link = scene
    stats = StatsWidget(viewer)
    monkeypatch.chdir(tmp_path)
    for typed, words in (("", "choose the export folder (a full path)"), ("exports", "not 'exports'")):
        stats.folder.line_edit.value = typed
        click(qtbot, stats.csv_button)
        assert errors and words in errors[-1] and words in stats.export_status.value
        assert list(tmp_path.iterdir()) == []
    stats.folder.value = tmp_path
    stats.stem.value = "../up"  # a path, not a name: it would write beside the folder
    click(qtbot, stats.csv_button)
    assert "a file stem may not contain '/': '../up'" in errors[-1] and not (tmp_path.parent / "up_grains.csv").exists()
    stats.stem.value = "img"
    (tmp_path / "img_grains.csv").mkdir()
    click(qtbot, stats.csv_button)
    assert "img_grains.csv in" in errors[-1] and "is a folder" in errors[-1]
    (tmp_path / "img_grains.csv").rmdir()

    def refuse(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / ".img_grains.csv.x97l0be7.part.csv"))

    import napari_grainseg.measure.report as report

    monkeypatch.setattr(report, "write_field_exports", refuse)  # the export reads it from there when it runs
    click(qtbot, stats.csv_button)
    assert errors[-1] == f"cannot write in {tmp_path}: no such file or directory"
    assert ".part" not in stats.export_status.value


def test_an_export_never_replaces_an_earlier_export_unasked(scene, qtbot, tmp_path, errors):
    """A second export under the same stem (say, after re-running Net1) would replace the first,
    corrected export: refused until the user ticks "replace existing files"."""
    from napari_grainseg.plugin._boundaries import BoundaryLink
    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.plugin._stats_widget import StatsWidget

    viewer, image, link = scene
    fix, stats = CorrectWidget(viewer), StatsWidget(viewer)
    stats.folder.value = tmp_path
    assert stats.stem.value == "img" and not stats.replace.value
    click(qtbot, stats.all_button)
    assert errors == [] and (tmp_path / "img_grains.tif").is_file()
    written = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(written) == {
        "img_grains.csv", "img_summary.json", "img_histogram.png", "img_histogram.svg",
        "img_grains.tif", "img_boundaries.tif",
    }  # fmt: skip

    # the same layer corrected by hand: its own files, unchanged since, are replaced
    fix.picks_layer().data = np.array([[10, 10], [50, 10]], float)
    click(qtbot, fix.merge_button)
    click(qtbot, stats.tiff_button)
    assert errors == []
    assert (tmp_path / "img_grains.tif").read_bytes() != written["img_grains.tif"]
    corrected = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    # a new segmentation of the same image: a different layer under the same stem
    rerun = BoundaryLink.create(viewer, image, three_grains())
    stats.grains.value = rerun.grains
    assert stats.stem.value == "img"
    summary = stats.summary.value
    click(qtbot, stats.all_button)
    assert len(errors) == 1 and "img_grains.tif" in errors[0] and "replace existing files" in errors[0]
    # the refusal is shown under the export buttons; the statistics above stay as they were
    assert stats.export_status.value.startswith("not exported: img_grains.csv") and stats.summary.value == summary
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == corrected  # nothing written
    # a file edited outside napari is not "ours" either, even from the first layer
    stats.grains.value = link.grains
    (tmp_path / "img_grains.csv").write_text("edited by hand\n")
    click(qtbot, stats.csv_button)
    assert len(errors) == 2 and "img_grains.csv" in errors[1]
    assert (tmp_path / "img_grains.csv").read_text() == "edited by hand\n"

    stats.grains.value = rerun.grains
    tick(qtbot, stats.replace)
    assert stats.replace.value
    click(qtbot, stats.all_button)
    assert len(errors) == 2
    assert (tmp_path / "img_grains.tif").read_bytes() == written["img_grains.tif"]  # the re-run's 3 grains
    assert not stats.replace.value  # the permission was for that export only
    assert stats.export_status.value.startswith("wrote ") and not stats.summary.value.startswith("error")


@pytest.mark.parametrize("on", [1, 255, 65535])
def test_a_boundary_mask_saved_by_an_editor_reopens_as_the_same_boundaries(tmp_path, on):
    """ImageJ and GIMP save binary masks as 0/255: non-zero is the boundary, as for 0/1."""
    import tifffile

    from napari_grainseg.plugin._reader import get_reader

    mask = three_grains()
    dtype = np.uint16 if on > 255 else np.uint8
    tifffile.imwrite(tmp_path / "ed_boundaries.tif", mask.astype(dtype) * dtype(on))
    ((data, _, kind),) = get_reader(str(tmp_path / "ed_boundaries.tif"))(str(tmp_path / "ed_boundaries.tif"))
    assert kind == "labels"
    np.testing.assert_array_equal(data, mask)


@pytest.mark.parametrize(
    "edit", ["anti-aliased", "grain mask", "inverted anti-aliased", "rgb", "rgb inverted anti-aliased", "thick blurred"]
)
def test_an_edited_boundary_mask_reopens_as_the_same_boundaries(tmp_path, edit):
    """Lines drawn with an editor's anti-aliasing (grey edges beside them), a mask saved the other
    way round (grains white, boundaries black), both, or saved as RGB (most editors' default) are
    still the same boundaries, not a label image or a grey picture."""
    import tifffile
    from scipy import ndimage

    from napari_grainseg.plugin._reader import get_reader

    mask = three_grains().astype(bool)
    if "anti-aliased" in edit:
        image = np.where(ndimage.binary_dilation(mask) & ~mask, 100, 0).astype(np.uint8)
        image[mask] = 255
    else:
        image = np.where(mask, 0, 255).astype(np.uint8)
    if edit == "thick blurred":  # 3 px lines, then an editor's blur: a quarter of the pixels grey
        image = ndimage.gaussian_filter(ndimage.binary_dilation(mask, np.ones((3, 3))) * 255.0, 1.0).astype(np.uint8)
    if "inverted" in edit:
        image = 255 - image
    if "rgb" in edit:
        image = np.stack([image] * 3, axis=-1)
    tifffile.imwrite(tmp_path / "ed_boundaries.tif", image)
    ((data, _, kind),) = get_reader(str(tmp_path / "ed_boundaries.tif"))(str(tmp_path / "ed_boundaries.tif"))
    assert kind == "labels"
    if edit == "thick blurred":  # the thick lines themselves: the same three grains between them
        from napari_grainseg.segmentation.grains import boundaries_to_labels

        assert data[mask].all() and boundaries_to_labels(data).max() == 3
    else:
        np.testing.assert_array_equal(data, mask)


def test_a_label_image_under_a_boundaries_name_reopens_with_its_zeros_as_boundaries(tmp_path):
    import tifffile

    from napari_grainseg.plugin._reader import get_reader
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    labels = boundaries_to_labels(three_grains()).astype(np.uint16)
    assert labels.max() == 3
    tifffile.imwrite(tmp_path / "lab_boundaries.tif", labels)
    ((data, _, _),) = get_reader(str(tmp_path / "lab_boundaries.tif"))(str(tmp_path / "lab_boundaries.tif"))
    np.testing.assert_array_equal(data, labels == 0)


def test_an_export_reopened_alone_exports_beside_its_file_in_a_dock_that_shows_every_control(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, errors
):
    """Reopened without its micrograph (a long layer name in the dock from the start), a boundary
    export's statistics go to the export's folder, not napari's working folder, and the dock's
    rows fit its area."""
    from qtpy.QtWidgets import QScrollArea

    from napari_grainseg.measure.report import write_tiff

    data, elsewhere = tmp_path / "data", tmp_path / "cwd"
    data.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    write_tiff(data / "a_rather_long_sample_name_boundaries.tif", three_grains())
    viewer = make_napari_viewer()
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open(str(data / "a_rather_long_sample_name_boundaries.tif"), plugin="napari-grainseg")
    dock, stats = viewer.window.add_plugin_dock_widget("napari-grainseg", "Grain statistics")
    qtbot.waitUntil(lambda: stats.stats is not None, timeout=10_000)
    assert Path(stats.folder.value) == data
    area = stats.native.findChild(QScrollArea)
    qtbot.waitUntil(lambda: area.viewport().width() > 0)
    assert stats.body.native.minimumSizeHint().width() <= area.viewport().width()
    click(qtbot, stats.csv_button)
    assert errors == [] and (data / "a_rather_long_sample_name_grains.csv").is_file()
    assert list(elsewhere.iterdir()) == []
    # "All" would write over the very file that was opened: refused until asked
    click(qtbot, stats.all_button)
    assert len(errors) == 1 and "a_rather_long_sample_name_boundaries.tif" in errors[0]


def test_a_reopened_export_is_calibrated_through_its_micrograph_as_the_warning_says(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    import tifffile

    from napari_grainseg.measure.report import write_tiff
    from napari_grainseg.plugin import _stats_widget

    warned = []
    monkeypatch.setattr(_stats_widget, "show_warning", warned.append)
    write_tiff(tmp_path / "cu_boundaries.tif", three_grains())  # no calibration
    tifffile.imwrite(tmp_path / "cu.tif", (np.random.default_rng(3).random((H, W)) * 255).astype(np.uint8))
    viewer = make_napari_viewer()
    (boundaries,) = viewer.open(str(tmp_path / "cu_boundaries.tif"), plugin="napari-grainseg")
    _, stats = viewer.window.add_plugin_dock_widget("napari-grainseg", "Grain statistics")
    qtbot.waitUntil(lambda: stats.stats is not None, timeout=10_000)
    assert len(warned) == 1 and "open its micrograph ('cu')" in warned[0], warned
    _, seg = viewer.window.add_plugin_dock_widget("napari-grainseg", "Segment grains")
    (image,) = viewer.open(str(tmp_path / "cu.tif"), plugin="napari-grainseg")
    viewer.layers.selection.active = image
    assert seg.image.value is image
    seg.pixel_size.value = 2.5
    click(qtbot, seg.apply_pixel_size)
    from napari_grainseg.plugin._layers import pixel_size_of

    assert pixel_size_of(boundaries) == pytest.approx(2.5)
    viewer.layers.selection.active = boundaries
    qtbot.waitUntil(lambda: stats.stats is not None and stats.stats.pixel_size_nm == pytest.approx(2.5), timeout=10_000)
    assert "nm" in stats.summary.value


def test_an_export_that_fills_the_disk_writes_nothing_and_can_be_retried_without_asking(
    scene, qtbot, tmp_path, errors, monkeypatch
):
    """ "All" on a disk that fills at the histogram (the third file): no CSV or JSON left behind, an
    earlier export left byte for byte, no temporary file; once there is room, a retry writes the set."""
    import errno

    from matplotlib.figure import Figure

    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.plugin._stats_widget import StatsWidget

    viewer, _, _ = scene
    fix, stats = CorrectWidget(viewer), StatsWidget(viewer)
    stats.folder.value = tmp_path
    real = Figure.savefig

    def disk_full(self, fname, *args, **kwargs):  # some bytes land, then the disk is full
        with open(fname, "wb") as fh:
            fh.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device", str(fname))

    def files():
        return {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    monkeypatch.setattr(Figure, "savefig", disk_full)
    click(qtbot, stats.all_button)
    message = f"no space left on device at {tmp_path} (writing img_histogram.png)"
    assert errors == [message] and stats.export_status.value == f"not exported: {message}"
    assert files() == {}

    monkeypatch.setattr(Figure, "savefig", real)
    click(qtbot, stats.all_button)
    assert len(errors) == 1 and len(files()) == 6
    earlier = files()

    # a corrected layer exported again onto a disk that fills: the earlier export stays whole
    fix.picks_layer().data = np.array([[10, 10], [50, 10]], float)
    click(qtbot, fix.merge_button)
    monkeypatch.setattr(Figure, "savefig", disk_full)
    click(qtbot, stats.all_button)
    assert errors[1:] == [message] and files() == earlier
    monkeypatch.setattr(Figure, "savefig", real)
    click(qtbot, stats.all_button)  # the panel's own files, unchanged since: replaced without asking
    assert len(errors) == 2 and stats.export_status.value.startswith("wrote ")
    now = files()
    assert set(now) == set(earlier) and now["img_grains.csv"] != earlier["img_grains.csv"]


def test_ctrl_z_after_a_merge_undoes_the_merge_not_the_picks(make_napari_viewer, qtbot, errors):
    """After Merge the picks layer is the active one: napari's Ctrl-Z then went to it and the merge
    stayed. Keys pressed on the real canvas, as a user does."""
    from napari_grainseg.plugin._boundaries import BoundaryLink
    from napari_grainseg.plugin._correct_widget import CorrectWidget

    viewer = make_napari_viewer(show=True)
    image = viewer.add_image(np.random.default_rng(0).random((H, W)).astype(np.float32), name="img")
    link = BoundaryLink.create(viewer, image, three_grains())
    fix = CorrectWidget(viewer)
    click(qtbot, fix.picks_button)
    viewer.layers.selection.active.data = np.array([[10, 10], [50, 10]], float)
    click(qtbot, fix.merge_button)
    assert grain_at(link, 10, 10) == grain_at(link, 50, 10)
    assert viewer.layers.selection.active.name == "img boundaries picks"
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert grain_at(link, 10, 10) != grain_at(link, 50, 10) and fix.status.value.startswith("undo on")
    qtbot.keyClick(canvas, Qt.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert grain_at(link, 10, 10) == grain_at(link, 50, 10) and fix.status.value.startswith("redo on")
    assert errors == []


def test_the_tools_on_many_grains_edit_only_around_the_picked_ones_as_on_the_whole_image(
    make_napari_viewer, qtbot, errors
):
    """The tools work in a window around the picked grains; the buttons' result is the
    whole-image operation's, pixel for pixel, and one Undo restores every pixel."""
    from scipy import ndimage as ndi

    from napari_grainseg.plugin._boundaries import BoundaryLink
    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.plugin._stats_widget import StatsWidget
    from napari_grainseg.segmentation.editing import delete_grain, grain_correspondence, merge_grains, split_grain
    from napari_grainseg.segmentation.grains import boundaries_to_labels
    from napari_grainseg.synthetic import generate

    boundaries = generate(seed=3, shape=(384, 384), preset="tem", mean_diameter=20.0).boundaries
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((384, 384), np.float32), name="img")
    reference = BoundaryLink.create(viewer, image, boundaries, name="whole-image edits")
    link = BoundaryLink.create(viewer, image, boundaries)
    fix = CorrectWidget(viewer)
    fix.boundaries.value = link.boundaries
    stats = StatsWidget(viewer)
    stats.grains.value = link.grains
    start, labels = link.boundaries.data.copy(), link.grains.data.copy()
    assert labels.max() > 300

    def centre(gid):
        ys, xs = np.nonzero(ndi.binary_erosion(labels == gid, np.ones((3, 3), bool)))
        k = len(ys) // 2
        return [ys[k], xs[k]]

    a = int(labels[192, 192]) or int(labels[193, 193])
    ring = ndi.binary_dilation(labels == a, np.ones((3, 3), bool))
    b = next(
        int(i)
        for i in np.unique(labels[ndi.binary_dilation(ring, ndi.generate_binary_structure(2, 1))])
        if i not in (0, a)
    )
    expected = {"merge": merge_grains(labels, [a, b]), "delete": delete_grain(labels, a)}
    cy, cx = np.nonzero(labels == a)
    line = np.array([[cy.min() - 3, np.floor(cx.mean()) + 0.5], [cy.max() + 3.5, np.floor(cx.mean()) + 0.5]])
    expected["split"] = split_grain(labels, line)
    click(qtbot, fix.picks_button)
    picks = viewer.layers["img boundaries picks"]
    for tool in ("merge", "delete", "split"):
        if tool == "split":
            click(qtbot, fix.lines_button)
            viewer.layers["img boundaries split lines"].add_paths([line])
        else:
            picks.data = np.array([centre(a)] + ([centre(b)] if tool == "merge" else []), float)
        click(qtbot, getattr(fix, f"{tool}_button"))
        assert errors == [], tool
        reference.apply_grain_edit(expected[tool])  # the whole-image edit
        assert not np.array_equal(link.boundaries.data, start), tool
        np.testing.assert_array_equal(link.boundaries.data, reference.boundaries.data, err_msg=tool)
        # the grains rebuilt around the edit: the whole image's grains; the far ones keep their ids
        whole = boundaries_to_labels(link.boundaries.data)
        grains = np.asarray(link.grains.data)
        assert grain_correspondence(grains, whole) is not None, tool
        assert link.grain_count == np.unique(whole[whole > 0]).size == int(whole.max()), tool
        assert grains[0, 0] == labels[0, 0] and grains[-1, -1] == labels[-1, -1], tool
        rows, cols = np.nonzero(link.boundaries.data != start)  # not renumbered 1..N as a whole-image
        far = np.ones(grains.shape, bool)  # rebuild would: away from the edit every grain keeps its id
        far[max(rows.min() - 60, 0) : rows.max() + 60, max(cols.min() - 60, 0) : cols.max() + 60] = False
        assert np.array_equal(grains[far], labels[far]) and np.array_equal(whole[far] == 0, labels[far] == 0), tool

        # the statistics follow the grains rebuilt around the edit
        def measured(now=grains):
            return stats.stats is not None and np.array_equal(stats.stats.labels, now)

        qtbot.waitUntil(measured, timeout=20_000)
        click(qtbot, fix.undo_button)
        np.testing.assert_array_equal(link.boundaries.data, start, err_msg=tool)
        # Undo gives every grain its id (colour) back, the removed ones too
        np.testing.assert_array_equal(link.grains.data, labels, err_msg=tool)
        assert link.grain_count == labels.max(), tool
        reference.boundaries.undo()


def test_an_edit_rebuilt_on_the_whole_image_keeps_the_other_grains_colours(scene, qtbot, errors, monkeypatch):
    """On a small image every edit's window is most of it, so the grains are built on the whole
    image; they keep their ids (colours) all the same, and Undo gives every id back."""
    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.segmentation import editing

    whole_builds = []
    carry = editing.carry_ids
    monkeypatch.setattr(editing, "carry_ids", lambda *a, **k: whole_builds.append(1) or carry(*a, **k))
    viewer, image, link = scene
    fix = CorrectWidget(viewer)
    start = np.asarray(link.grains.data).copy()
    a, b, c = grain_at(link, 10, 10), grain_at(link, 50, 10), grain_at(link, 10, 60)
    link.grains.data = np.where(start > 0, start + 40, 0).astype(np.uint32)  # ids 41..: not 1..n
    link.rebuild()
    labels = np.asarray(link.grains.data).copy()
    a, b, c = a + 40, b + 40, c + 40
    click(qtbot, fix.picks_button)
    picks = viewer.layers["img boundaries picks"]
    picks.data = np.array([[10, 10], [50, 10]], float)
    click(qtbot, fix.merge_button)
    assert errors == [] and whole_builds == [1]
    assert grain_at(link, 10, 10) == grain_at(link, 50, 10) in (a, b) and grain_at(link, 10, 60) == c
    assert link.grain_count == 2
    click(qtbot, fix.undo_button)
    np.testing.assert_array_equal(link.grains.data, labels)  # the merged-away grain's id is back too
    picks.data = np.array([[10, 60]], float)
    click(qtbot, fix.delete_button)
    assert errors == [] and len(whole_builds) == 3 and link.grain_count == 2
    assert grain_at(link, 10, 10) == a and grain_at(link, 50, 10) == b  # C shared out between A and B
    click(qtbot, fix.undo_button)
    np.testing.assert_array_equal(link.grains.data, labels)


def test_undo_of_an_erase_that_removed_hundreds_of_grains_gives_every_id_back(make_napari_viewer, qtbot, errors):
    """A wide eraser stroke removes hundreds of grains at once; Undo gives each its id (colour)
    back, and the status line says how the grain count changed."""
    from napari_grainseg.plugin._boundaries import BoundaryLink
    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.synthetic import generate

    boundaries = generate(seed=2, shape=(384, 384), preset="tem", mean_diameter=10.0).boundaries
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((384, 384), np.float32), name="img")
    link = BoundaryLink.create(viewer, image, boundaries)
    fix = CorrectWidget(viewer)
    labels = np.asarray(link.grains.data).copy()
    band = np.zeros(labels.shape, bool)
    band[60:300, 20:360] = True  # erased as by a wide brush: one undoable stroke
    index = np.nonzero(band & (link.boundaries.data > 0))
    with link.boundaries.block_history():
        link.boundaries.data_setitem(index, np.zeros(index[0].size, np.uint8))
    link.flush()
    removed = np.setdiff1d(np.unique(labels), np.unique(link.grains.data))
    assert removed.size > 300  # more than one grain of memory each used to hold (256)
    n_before, n_erased = n_grains(labels), link.grain_count
    click(qtbot, fix.undo_button)
    assert errors == []
    np.testing.assert_array_equal(link.grains.data, labels)
    assert fix.status.value == f"undo on 'img boundaries': {n_erased} → {n_before} grains"


def test_a_brush_stroke_on_the_boundary_layer_shows_in_the_correct_dock(scene, qtbot, errors):
    """A line painted with napari's brush (no dock button) splits C; the status line says so."""
    import gc

    from napari_grainseg.plugin._correct_widget import CorrectWidget

    viewer, image, link = scene
    fix = CorrectWidget(viewer)
    stroke = (np.full(W - 41, 20), np.arange(41, W))  # across C, as a brush paints it
    with link.boundaries.block_history():
        link.boundaries.data_setitem(stroke, np.ones(stroke[0].size, np.uint8))
    link.flush()
    assert link.grain_count == 4 and fix.status.value == "boundaries edited: 3 → 4 grains"
    click(qtbot, fix.undo_button)  # a dock action writes its own status, not the brush's
    assert fix.status.value == "undo on 'img boundaries': 4 → 3 grains" and errors == []
    del fix
    gc.collect()
    with link.boundaries.block_history():  # a closed dock no longer follows the edits
        link.boundaries.data_setitem(stroke, np.ones(stroke[0].size, np.uint8))
    link.flush()
    assert link.grain_count == 4 and errors == []


def test_a_merge_refused_for_one_grain_says_when_a_pick_lay_on_a_boundary(scene, qtbot, errors):
    from napari_grainseg.plugin._correct_widget import CorrectWidget

    viewer, image, link = scene
    fix = CorrectWidget(viewer)
    before = link.boundaries.data.copy()
    click(qtbot, fix.picks_button)
    # on the line between A and B (it counts for A beside it), and inside A: one grain
    viewer.layers["img boundaries picks"].data = np.array([[30, 10], [10, 10]], float)
    click(qtbot, fix.merge_button)
    assert len(errors) == 1 and "1 pick(s) on a boundary line" in errors[0] and "click inside" in errors[0]
    np.testing.assert_array_equal(link.boundaries.data, before)


def test_the_grains_layer_stays_read_only_through_every_rebuild(scene, qtbot, errors):
    """napari makes a Labels layer editable again when its data is replaced: paint on the grains
    layer would be lost at the next rebuild without being counted as a hand edit."""
    from napari_grainseg.plugin._correct_widget import CorrectWidget

    viewer, image, link = scene
    assert not link.grains.editable  # after the first build
    fix = CorrectWidget(viewer)
    click(qtbot, fix.picks_button)
    viewer.layers["img boundaries picks"].data = np.array([[10, 10], [10, 50]], float)  # A and B
    click(qtbot, fix.merge_button)
    assert link.grain_count == 2 and not link.grains.editable
    link.grains.data = link.grains.data.copy()  # any replacement of the data, e.g. a rebuild
    assert not link.grains.editable
    link.grains.editable = True  # a script or the layer controls
    assert not link.grains.editable and link.grains.mode == "pan_zoom"
    assert errors == []


def test_a_brush_stroke_shows_in_the_correct_dock_opened_from_the_plugins_menu(make_napari_viewer, qtbot):
    """Plugin docks get proxies of the viewer and its layers (the Segment dock makes the link through
    one, the Correct dock sees another): the dock must still know its boundary layer."""
    from napari.utils._proxies import PublicOnlyProxy

    from napari_grainseg.plugin._boundaries import BoundaryLink

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((H, W)).astype(np.float32), name="img")
    as_a_dock_sees_it = PublicOnlyProxy(viewer)  # what napari hands the Segment dock
    link = BoundaryLink.create(as_a_dock_sees_it, as_a_dock_sees_it.layers["img"], three_grains())
    _, fix = viewer.window.add_plugin_dock_widget("napari-grainseg", "Correct grains")
    stroke = (np.full(W - 41, 20), np.arange(41, W))  # across C
    with link.boundaries.block_history():
        link.boundaries.data_setitem(stroke, np.ones(stroke[0].size, np.uint8))
    link.flush()
    assert link.grain_count == 4 and fix.status.value == "boundaries edited: 3 → 4 grains"


def test_statistics_dock_after_its_layers_are_deleted_and_one_warning_per_micrograph(
    make_napari_viewer, qtbot, errors, monkeypatch
):
    """Deleting the result layers clears the figure and summary without an error popup; an
    uncalibrated micrograph is warned about once, not once per grains or boundary layer."""
    from napari_grainseg.plugin import _stats_widget
    from napari_grainseg.plugin._boundaries import BoundaryLink

    warned = []
    monkeypatch.setattr(_stats_widget, "show_warning", warned.append)
    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((H, W)).astype(np.float32), name="img")
    _, stats = viewer.window.add_plugin_dock_widget("napari-grainseg", "Grain statistics")
    assert stats.summary.value == _stats_widget.NO_GRAINS_TEXT and errors == []
    first = BoundaryLink.create(viewer, image, three_grains())
    qtbot.waitUntil(lambda: stats.stats is not None and stats._canvas is not None, timeout=10_000)
    viewer.layers.selection.active = first.boundaries
    second = BoundaryLink.create(viewer, image, three_grains())  # a second run on the same image
    viewer.layers.selection.active = second.grains
    qtbot.waitUntil(lambda: stats._worker is None and stats.grains.value is second.grains, timeout=10_000)
    qtbot.wait(2 * _stats_widget.STATS_DELAY_MS)
    assert len(warned) == 1 and "'img grains' has no pixel size" in warned[0], warned
    for layer in [first.grains, first.boundaries, second.grains, second.boundaries]:
        viewer.layers.remove(layer)
    qtbot.wait(2 * _stats_widget.STATS_DELAY_MS)
    qtbot.waitUntil(lambda: stats._worker is None, timeout=10_000)
    assert stats.grains.value is None and stats.stats is None and stats._canvas is None
    assert stats.summary.value == _stats_widget.NO_GRAINS_TEXT and stats.caveats.value == ""
    assert errors == []
    click(qtbot, stats.csv_button)  # an export asked for now says why it cannot
    assert len(errors) == 1 and "no grains layer" in errors[0]


def test_a_measurement_finished_after_the_choice_changed_is_not_shown_for_the_new_layer(
    make_napari_viewer, qtbot, errors, monkeypatch
):
    """A's statistics arriving once B is chosen were shown as B's (and written into B's features)."""
    import threading

    from napari_grainseg.plugin import _stats_widget, _threading
    from napari_grainseg.plugin._boundaries import BoundaryLink

    monkeypatch.setattr(_threading, "SYNCHRONOUS", False)  # a real worker thread, as in napari
    viewer = make_napari_viewer()
    small = viewer.add_image(np.random.default_rng(0).random((H, W)).astype(np.float32), name="a")
    big = viewer.add_image(np.random.default_rng(1).random((2 * H, W)).astype(np.float32), name="b")
    link_a = BoundaryLink.create(viewer, small, three_grains())
    link_b = BoundaryLink.create(viewer, big, np.vstack([three_grains(), three_grains()]))
    release, real = threading.Event(), _stats_widget.compute_stats

    def held(labels, *args, **kwargs):
        if labels.shape == (H, W):  # A's measurement waits until the choice has moved on
            release.wait(10)
        return real(labels, *args, **kwargs)

    monkeypatch.setattr(_stats_widget, "compute_stats", held)
    stats = _stats_widget.StatsWidget(viewer)
    stats.grains.value = link_b.grains
    qtbot.waitUntil(lambda: stats.stats is not None and stats._worker is None, timeout=10_000)
    stats.grains.value = link_a.grains
    qtbot.waitUntil(lambda: stats._worker is not None, timeout=5000)  # A's measurement, held
    stats.stats = None
    stats.grains.value = link_b.grains  # chosen while A is being measured
    shown = []
    real_show = _stats_widget.StatsWidget._show

    def show(self, result, *args):
        real_show(self, result, *args)
        shown.append(self.stats)

    monkeypatch.setattr(_stats_widget.StatsWidget, "_show", show)
    release.set()
    qtbot.waitUntil(lambda: len(shown) == 2 and stats._worker is None, timeout=10_000)
    assert shown[0] is None  # A's result, dropped
    assert stats.stats.labels.shape == (2 * H, W)  # then B's own measurement
    assert len(link_b.grains.features) == int(link_b.grains.data.max()) and errors == []


def test_the_statistics_are_not_measured_again_when_nothing_changed(scene, qtbot, errors, monkeypatch):
    """A stroke undone at once leaves the grains as they were measured: no seconds-long re-measure."""
    from napari_grainseg.plugin import _stats_widget, _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", False)  # the delay and the worker, as in napari
    viewer, image, link = scene
    calls = []
    real = _stats_widget.compute_stats
    monkeypatch.setattr(_stats_widget, "compute_stats", lambda *a, **k: calls.append(1) or real(*a, **k))
    stats = _stats_widget.StatsWidget(viewer)
    qtbot.waitUntil(lambda: stats.stats is not None and stats._worker is None, timeout=10_000)
    shown, n, before = stats.summary.value, len(calls), link.grains.data.copy()
    stroke = (np.full(W - 41, 20), np.arange(41, W))  # across C: four grains for a moment
    link.boundaries.data_setitem(stroke, np.ones(stroke[0].size, np.uint8))
    link.flush()
    assert link.grain_count == 4
    link.boundaries.undo()  # Ctrl-Z before the statistics' delay is over
    link.flush()
    np.testing.assert_array_equal(link.grains.data, before)
    qtbot.wait(3 * _stats_widget.STATS_DELAY_MS)
    assert len(calls) == n and stats.summary.value == shown
    tick(qtbot, stats.include_edge)  # a real change of option: measured again
    qtbot.waitUntil(lambda: len(calls) == n + 1 and stats._worker is None, timeout=10_000)
    assert errors == []
