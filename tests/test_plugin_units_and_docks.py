"""A calibrated and an uncalibrated image in one viewer, and the docks opened from the Plugins menu.

napari notifies "Inconsistent units across layers" when an image in nm and an
image in pixels are open together, and again for every layer added after
that: the layers the docks add must not repeat it. The four docks, stacked
by napari in one column, become tabs so each one shows its whole contents.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

napari = pytest.importorskip("napari")
from magicgui.widgets import Container  # noqa: E402
from magicgui.widgets.bases import ButtonWidget  # noqa: E402
from qtpy.QtCore import QPoint, Qt  # noqa: E402

pytestmark = pytest.mark.napari

DOCKS = ("Edge detectors", "Segment grains", "Correct grains", "Grain statistics")


def click(qtbot, button) -> None:
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


def tick(qtbot, checkbox) -> None:
    native = checkbox.native
    qtbot.mouseClick(native, Qt.MouseButton.LeftButton, pos=QPoint(8, native.height() // 2))


def units_warnings() -> list[str]:
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records if "Inconsistent units" in str(n.message)]


@pytest.fixture
def two_tiffs(tmp_path):
    """A 16-bit TIFF calibrated at 2 nm/px (ImageJ tags) and an uncalibrated one."""
    from napari_grainseg.synthetic import generate

    paths = []
    for name, seed, calibrated in (("cal", 1, True), ("uncal", 2, False)):
        image = generate(seed=seed, shape=(160, 160), preset="tem").image
        data = ((image - image.min()) / (np.ptp(image) or 1) * 60000).astype(np.uint16)
        path = tmp_path / f"{name}.tif"
        if calibrated:
            tifffile.imwrite(path, data, imagej=True, resolution=(0.5, 0.5), metadata={"unit": "nm"})
        else:
            tifffile.imwrite(path, data)
        paths.append(path)
    return paths


def test_layers_added_for_a_calibrated_and_an_uncalibrated_image_repeat_no_units_warning(
    make_napari_viewer, qtbot, two_tiffs, monkeypatch
):
    from napari_grainseg.models.weights import shipped_weights_dir
    from napari_grainseg.plugin import _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)
    viewer = make_napari_viewer()
    (cal,) = viewer.open(str(two_tiffs[0]), plugin="napari-grainseg")
    before = len(units_warnings())
    (uncal,) = viewer.open(str(two_tiffs[1]), plugin="napari-grainseg")
    assert [str(u) for u in cal.units] == ["nanometer"] * 2 and [str(u) for u in uncal.units] == ["pixel"] * 2
    opened = len(units_warnings())
    assert opened == before + 1  # napari's own, once: the user opened nm and px images together
    edges, seg, fix, stats = (viewer.window.add_plugin_dock_widget("napari-grainseg", name)[1] for name in DOCKS)
    seg.device.value = "cpu"
    net1 = (shipped_weights_dir() / "net1.pt").is_file()
    for image in (cal, uncal):
        viewer.layers.selection.active = image
        click(qtbot, edges.run_button)
        if net1:
            click(qtbot, seg.run_net1_button)
        else:  # no weights: the boundary layers the Net1 result would get
            from napari_grainseg.plugin._boundaries import BoundaryLink

            b = np.zeros(image.data.shape, np.uint8)
            b[:, 80] = 1
            BoundaryLink.create(viewer, image, b)
        viewer.layers.selection.active = viewer.layers[f"{image.name} boundaries"]
        click(qtbot, fix.picks_button)
        click(qtbot, fix.lines_button)
        viewer.layers.selection.active = viewer.layers[f"{image.name} grains"]
        stats.update()
        if not stats.colour_by_ecd.value:
            tick(qtbot, stats.colour_by_ecd)
        stats._show_ecd()
    qtbot.wait(50)
    added = [layer for layer in viewer.layers if layer not in (cal, uncal)]
    assert len(added) >= 2 * 8  # 4 edge layers, boundaries, grains, picks, split lines (+ probability, ECD)
    for layer in added:  # every layer carries its image's units
        image = cal if layer.name.startswith("cal ") else uncal
        assert tuple(layer.units) == tuple(image.units), layer.name
        np.testing.assert_allclose(layer.scale, image.scale)
    assert len(units_warnings()) == opened, units_warnings()[opened:]


def test_a_new_units_disagreement_still_warns(make_napari_viewer):
    """Muting is only for layers added while units already disagree."""
    from napari_grainseg.plugin._layers import adding_layers

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8)), scale=(2, 2), units=("nm", "nm"))
    before = len(units_warnings())
    with adding_layers(viewer):
        viewer.add_image(np.zeros((8, 8)))  # pixels next to nm: news
    assert len(units_warnings()) == before + 1


def plus_minus_drawn(box) -> bool:
    """Whether a number box shows its + button: the right 20 px of its rendering are not one flat colour."""
    image = box.native.grab().toImage()
    w, h = image.width(), image.height()
    lightness = {image.pixelColor(x, y).lightness() for x in range(w - 20, w) for y in range(h)}
    return len(lightness) > 1


def test_the_docks_opened_from_the_plugins_menu_become_tabs_each_showing_its_contents(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1366, 768)
    docks = []
    for name in (*DOCKS[:3], "Learn from corrections", DOCKS[3]):  # the Plugins menu's order
        dock, widget = viewer.window.add_plugin_dock_widget("napari-grainseg", name)
        docks.append((dock, widget))
        qtbot.wait(20)  # the user opens one dock after the other
    qtbot.wait(50)
    first = docks[0][0]
    tabbed = window.tabifiedDockWidgets(first)
    assert all(dock in tabbed for dock, _ in docks[1:]), [d.windowTitle() for d in tabbed]
    assert [dock.windowTitle() for dock, _ in docks] == ["Edges", "Segment", "Correct", "Learn", "Statistics"]
    # the last one opened is in front; each tab, raised, shows its controls down to the status line
    for dock, _ in reversed(docks):
        dock.raise_()
        qtbot.wait(20)
        assert dock.widget().height() >= 400, (dock.windowTitle(), dock.widget().height())
    dock, seg = docks[1]
    dock.raise_()
    qtbot.wait(20)
    status = seg.status.native
    bottom = status.mapTo(dock, QPoint(0, status.height())).y()
    assert seg.run_net1_button.native.isVisible() and bottom <= dock.height(), (bottom, dock.height())
    # in every dock the input boxes of the labelled rows start at one x, under one another
    checked = {}

    def first_of(row):
        return row[0] if isinstance(row, Container) else row

    for dock, widget in docks:
        dock.raise_()
        qtbot.wait(20)
        lefts = {  # a row of several widgets (a box and its "auto" tick, the Net2 buttons): its first one
            row.label: first_of(row).native.mapTo(widget.body.native, QPoint(0, 0)).x()
            for row in widget.body
            if not isinstance(row, ButtonWidget) and row.label and row.native.isVisible()
        }
        assert len(set(lefts.values())) == 1, (dock.windowTitle(), lefts)
        checked[dock.windowTitle()] = len(lefts)
    assert checked["Segment"] >= 10 and checked["Edges"] >= 8 and checked["Statistics"] >= 2, checked

    # a greyed-out number box shows no + / − (napari's theme drew them as if they still worked)
    dock, learn = docks[3]
    dock.raise_()
    learn.steps.native.setFocus()
    learn.steps.native.selectAll()
    qtbot.keyClicks(learn.steps.native, "2")  # a step count set: the time budget is greyed out
    qtbot.wait(20)
    assert not learn.minutes.enabled and learn.steps.enabled
    assert not plus_minus_drawn(learn.minutes) and plus_minus_drawn(learn.steps)


def test_a_flipped_axis_scale_still_gives_the_pixel_size():
    """napari accepts a negative scale (a flipped axis); its pixel size is the size, not a crash."""
    from napari_grainseg.plugin._layers import pixel_size_from

    assert pixel_size_from((-2.0, 2.0), ("nm", "nm")) == pytest.approx(2.0)
    assert pixel_size_from((2.0, 8.0), ("nm", "nm")) == pytest.approx(4.0)  # the same pixel area


def test_a_pixel_size_set_on_the_synthetic_sample_applies_to_its_true_grains(make_napari_viewer, qtbot):
    """The truth layer stayed at 1 px while its micrograph went to nm: misaligned 1.5x, units warned."""
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "synthetic_micrograph")
    image, truth = viewer.layers["synthetic micrograph"], viewer.layers["synthetic true grains"]
    _, seg = viewer.window.add_plugin_dock_widget("napari-grainseg", "Segment grains")
    assert seg.image.value is image  # the truth is not offered as a micrograph
    viewer.layers.selection.active = image
    before = len(units_warnings())
    seg.pixel_size.value = 1.5
    click(qtbot, seg.apply_pixel_size)
    np.testing.assert_allclose(image.scale, (1.5, 1.5))
    np.testing.assert_allclose(truth.scale, image.scale)
    assert tuple(map(str, truth.units)) == tuple(map(str, image.units))
    assert len(units_warnings()) == before
    # the whole image in view, centred, in nm (it was left zoomed into its top-left quarter)
    np.testing.assert_allclose(viewer.camera.center[-2:], (np.array(image.data.shape) - 1) * 1.5 / 2, atol=1.0)


@pytest.mark.parametrize("typed", ["0.125", "0.004", "1.333333"])
def test_a_typed_pixel_size_keeps_its_digits(make_napari_viewer, qtbot, typed):
    """The box kept 2 decimals: 0.125 nm (HRTEM) became 0.12, a 4 % error in every size, and 0.004 became 0."""
    from qtpy.QtTest import QTest

    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((64, 64), dtype=np.float32), name="hrtem")
    _, seg = viewer.window.add_plugin_dock_widget("napari-grainseg", "Segment grains")
    viewer.layers.selection.active = image
    box = seg.pixel_size.native.lineEdit()
    box.selectAll()
    QTest.keyClicks(box, typed)
    QTest.keyClick(box, Qt.Key.Key_Return)
    click(qtbot, seg.apply_pixel_size)
    np.testing.assert_allclose(image.scale, (float(typed), float(typed)), rtol=1e-9)
