"""Defects of the Segment grains dock and its neighbours found in a user walkthrough (session 23).

Each test acts as the user does: real buttons clicked in real docks of a real viewer, layers
renamed and deleted as napari's layer list does it.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

napari = pytest.importorskip("napari")
from qtpy.QtCore import Qt  # noqa: E402

pytestmark = pytest.mark.napari


def click(qtbot, button) -> None:
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


@pytest.fixture(scope="module")
def weights():
    from napari_grainseg.models.weights import shipped_weights_dir

    net1, net2 = shipped_weights_dir() / "net1.pt", shipped_weights_dir() / "net2.pt"
    if not (net1.is_file() and net2.is_file()):
        pytest.skip("no shipped Net1 / Net2 weights")
    return str(net1), str(net2)


@pytest.fixture
def errors(monkeypatch):
    from napari_grainseg.plugin import _correct_widget, _segment_widget, _stats_widget

    got = []
    for module in (_correct_widget, _segment_widget, _stats_widget):
        monkeypatch.setattr(module, "show_error", got.append)
    return got


def segment_dock(viewer, weights):
    """The Segment grains dock as the Plugins menu opens it, on the CPU with the shipped weights."""
    _, seg = viewer.window.add_plugin_dock_widget("napari-grainseg", "Segment grains")
    seg.net1_weights, seg.net2_weights = weights
    seg.device.value = "cpu"
    return seg


@pytest.mark.parametrize("name", ["Edge detectors", "Correct grains"])
def test_a_dock_opened_first_is_as_wide_as_its_controls(make_napari_viewer, qtbot, name):
    """Opened alone, the dock was measured before napari's style sheet applied: 30 px too narrow,
    the 'auto' ticks cut to 'a', number boxes without their buttons, a horizontal scroll bar."""
    from qtpy.QtWidgets import QScrollArea

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 1000)
    viewer.open_sample("napari-grainseg", "synthetic_micrograph")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-grainseg", name)
    area = widget.native.findChild(QScrollArea)
    bar = area.horizontalScrollBar()

    def fits() -> bool:  # once the window has laid its docks out again
        needed = widget.body.native.minimumSizeHint().width()
        return area.isVisible() and area.viewport().width() >= needed and dock.width() >= needed and not bar.isVisible()

    qtbot.waitUntil(fits, timeout=3000)
    qtbot.wait(100)  # and it stays so
    assert fits(), (area.viewport().width(), widget.body.native.minimumSizeHint().width(), bar.isVisible())


@pytest.mark.parametrize("when", ["during a tile", "while the grains are built"])
def test_the_stopping_message_stays_until_net1_has_stopped(
    make_napari_viewer, qtbot, weights, monkeypatch, errors, when
):
    """The tile count's timer wrote 'tile 1 of 4' / '1 tile done, building grains...' over
    'stopping Net1 ...' within 150 ms of the Stop click."""
    from napari_grainseg.plugin import _segment_widget, _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", False)  # in its thread, as in a user's session
    report_tile = _segment_widget._Net1Progress.__call__

    def slow_tile(self, done, total):  # each tile (the last: the work after it) holds the worker 2 s
        report_tile(self, done, total)
        time.sleep(2.0)

    monkeypatch.setattr(_segment_widget._Net1Progress, "__call__", slow_tile)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    seg = segment_dock(viewer, weights)
    click(qtbot, seg.run_net1_button)
    shown = "tile 1 of" if when == "during a tile" else "done, building grains..."
    qtbot.waitUntil(lambda: shown in seg.status.value, timeout=60_000)
    click(qtbot, seg.stop_button)
    assert seg.status.value.startswith("stopping Net1")
    qtbot.wait(3 * _segment_widget._Net1Progress.POLL_MS)
    assert seg._net1_worker is not None  # still stopping: the message is the Stop's
    assert seg.status.value.startswith("stopping Net1"), seg.status.value
    qtbot.waitUntil(lambda: seg._net1_worker is None, timeout=60_000)
    qtbot.waitUntil(lambda: "cancelled" in seg.status.value, timeout=5000)
    assert "interconnect_tem boundaries" not in viewer.layers
    assert errors == []


def test_every_button_of_the_segment_dock_says_what_it_does(make_napari_viewer):
    """Run Net1, Pause, Stop, Release model memory and Apply pixel size had no tooltip."""
    from qtpy.QtWidgets import QPushButton

    viewer = make_napari_viewer()
    _, seg = viewer.window.add_plugin_dock_widget("napari-grainseg", "Segment grains")
    buttons = seg.native.findChildren(QPushButton)
    assert len(buttons) >= 8  # Apply pixel size, Set scale, Run Net1, Step, Run, Pause, Stop, Release
    untipped = [button.text() for button in buttons if not button.toolTip().strip()]
    assert untipped == []
    # and every drop-down (the image, device and hint unit had none), in the Statistics dock too
    from qtpy.QtWidgets import QComboBox

    _, stats = viewer.window.add_plugin_dock_widget("napari-grainseg", "Grain statistics")
    for dock in (seg, stats):
        combos = dock.native.findChildren(QComboBox)
        assert combos and [c.objectName() or c.currentText() for c in combos if not c.toolTip().strip()] == []


def test_the_in_use_line_tells_how_the_chosen_images_result_was_made(
    make_napari_viewer, qtbot, weights, monkeypatch, errors
):
    """The line kept the last run of any image ('Net2: cpu ..., PyTorch' beside an image without
    results) and said 'cpu (1 thread)' while Net1 ran, 'cpu (OpenCV DNN, 1 thread)' after."""
    from napari_grainseg.plugin import _segment_widget, _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", False)
    report_tile = _segment_widget._Net1Progress.__call__

    def slow_tile(self, done, total):  # time to read the line while Net1 runs
        report_tile(self, done, total)
        time.sleep(1.0)

    monkeypatch.setattr(_segment_widget._Net1Progress, "__call__", slow_tile)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "synthetic_micrograph")
    image = viewer.layers["synthetic micrograph"]
    other = viewer.add_image(np.random.default_rng(0).random((64, 64), dtype=np.float32), name="other")
    seg = segment_dock(viewer, weights)
    viewer.layers.selection.active = image
    assert seg.device_label.value.startswith("nothing run on this image yet: it would run on cpu")

    click(qtbot, seg.run_net1_button)
    qtbot.waitUntil(lambda: "OpenCV" in seg.device_label.value, timeout=60_000)  # the model is loaded
    running = seg.device_label.value
    assert running.startswith("Net1 running: cpu (OpenCV DNN, ")
    assert running.removeprefix("Net1 running: ") in seg.status.value  # the status says the same
    viewer.layers.selection.active = other  # another image while Net1 runs: not its line
    assert seg.device_label.value.startswith("nothing run on this image yet")
    viewer.layers.selection.active = image
    assert seg.device_label.value == running
    qtbot.waitUntil(lambda: seg._net1_worker is None and seg.status.value.startswith("Net1:"), timeout=60_000)
    net1 = seg.device_label.value
    assert net1 == "Net1: " + running.removeprefix("Net1 running: ")  # as it said while running

    qtbot.waitUntil(lambda: seg.link_for(image) is not None, timeout=10_000)  # its layers are drawn
    qtbot.waitUntil(lambda: seg.link_for(image).grains.data.shape == image.data.shape, timeout=10_000)
    click(qtbot, seg.step_button)
    qtbot.waitUntil(lambda: seg.net2_label.value.startswith("step 1:"), timeout=60_000)
    qtbot.waitUntil(lambda: "Net2" in seg.device_label.value, timeout=10_000)
    line = seg.device_label.value
    assert line.startswith(net1 + "; Net2: cpu (") and line.endswith(", PyTorch")

    viewer.layers.selection.active = other  # an image without results: nothing of the other's runs
    assert seg.image.value is other
    assert seg.device_label.value.startswith("nothing run on this image yet: it would run on cpu")
    viewer.layers.selection.active = viewer.layers["synthetic micrograph grains"]  # back, through its grains
    assert seg.device_label.value == line
    click(qtbot, seg.stop_button)
    assert errors == []


def test_deleting_the_boundary_layer_of_a_paused_net2_drops_it(make_napari_viewer, qtbot, weights, monkeypatch, errors):
    """Step after deleting 'X boundaries' made a new 'X boundaries' and 'X grains [2]' beside the
    orphaned 'X grains', with the deleted layer's hand edits still clamped ('296 hand-edited px kept fixed')."""
    from napari_grainseg.plugin import _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "synthetic_micrograph")
    seg = segment_dock(viewer, weights)
    viewer.layers.selection.active = viewer.layers["synthetic micrograph"]
    click(qtbot, seg.run_net1_button)
    bnd = viewer.layers["synthetic micrograph boundaries"]
    line = (np.full(200, 100), np.arange(150, 350))
    with bnd.block_history():  # what the paint brush does
        bnd.data_setitem(line, np.ones(200, np.uint8))
    click(qtbot, seg.step_button)
    assert "kept fixed" in seg.status.value and seg._refinement_paused()

    viewer.layers.selection.active = bnd  # deleted with the layer list's delete button
    qtbot.mouseClick(viewer.window._qt_viewer.layerButtons.deleteButton, Qt.MouseButton.LeftButton)
    # the grains stay until the user deletes them too (removing them from the plugin crashed napari's
    # OpenGL drawing under software rendering in a walkthrough)
    assert "synthetic micrograph grains" in viewer.layers
    viewer.layers.selection.active = viewer.layers["synthetic micrograph grains"]
    qtbot.mouseClick(viewer.window._qt_viewer.layerButtons.deleteButton, Qt.MouseButton.LeftButton)
    viewer.layers.selection.active = viewer.layers["synthetic micrograph"]
    assert seg.device_label.value.startswith("its result was deleted: it would run on")  # not the old run's
    names = [layer.name for layer in viewer.layers]
    click(qtbot, seg.step_button)
    assert [layer.name for layer in viewer.layers] == names  # the deleted result is not made again
    assert seg._refinement is None  # the paused refinement (and its clamp) is dropped
    assert len(errors) == 1 and "'synthetic micrograph boundaries' was deleted" in errors[0]
    assert "run Net1 on 'synthetic micrograph' again" in seg.status.value

    click(qtbot, seg.run_net1_button)  # starting again: the usual names, and no stale hand edits
    assert "synthetic micrograph boundaries" in viewer.layers and "synthetic micrograph grains" in viewer.layers
    assert not any("[2]" in layer.name for layer in viewer.layers)
    click(qtbot, seg.step_button)
    assert seg.net2_label.value.startswith("step 1:")
    assert "kept fixed" not in seg.status.value
    assert len(errors) == 1


def test_deleting_the_boundary_layer_while_net2_runs_stops_it(make_napari_viewer, qtbot, weights, monkeypatch, errors):
    """The next step drawn made the deleted layer again (with a 'grains [2]' beside the old grains)."""
    from napari_grainseg.plugin import _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", False)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "synthetic_micrograph")
    image = viewer.layers["synthetic micrograph"]
    seg = segment_dock(viewer, weights)
    viewer.layers.selection.active = image
    click(qtbot, seg.run_net1_button)
    qtbot.waitUntil(lambda: seg.link_for(image) is not None, timeout=60_000)
    qtbot.waitUntil(lambda: seg.link_for(image).grains.data.shape == image.data.shape, timeout=10_000)
    click(qtbot, seg.run_button)
    qtbot.waitUntil(lambda: seg.net2_label.value.startswith("step 1:"), timeout=60_000)
    viewer.layers.remove(viewer.layers["synthetic micrograph boundaries"])
    qtbot.waitUntil(lambda: seg._refinement is None, timeout=60_000)
    qtbot.wait(100)
    assert "synthetic micrograph boundaries" not in viewer.layers
    assert [layer.name for layer in viewer.layers if "micrograph grains" in layer.name] == [
        "synthetic micrograph grains"
    ]
    assert "was deleted" in seg.status.value, seg.status.value
    assert errors == []


def test_layers_made_from_an_image_stay_its_own_when_it_is_renamed(
    make_napari_viewer, qtbot, weights, monkeypatch, errors, tmp_path
):
    """Renamed after Net1, the image was cut off from its layers (they named it by its old name):
    Apply pixel size calibrated the image only ('Inconsistent units across layers', the overlay
    misaligned), the statistics said 'pixel size: not set' and asked to open 'synthetic micrograph',
    and the exports kept the old name."""
    from qtpy.QtTest import QTest

    from napari_grainseg.plugin import _stats_widget, _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)
    warned = []
    monkeypatch.setattr(_stats_widget, "show_warning", warned.append)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "synthetic_micrograph")
    viewer.layers.remove("synthetic true grains")
    image = viewer.layers["synthetic micrograph"]
    seg = segment_dock(viewer, weights)
    _, fix = viewer.window.add_plugin_dock_widget("napari-grainseg", "Correct grains")
    _, stats = viewer.window.add_plugin_dock_widget("napari-grainseg", "Grain statistics")
    _, edges = viewer.window.add_plugin_dock_widget("napari-grainseg", "Edge detectors")
    viewer.layers.selection.active = image
    click(qtbot, edges.run_button)
    click(qtbot, seg.run_net1_button)
    click(qtbot, fix.picks_button)  # the Correct dock's helper layers
    click(qtbot, fix.lines_button)
    made = [layer for layer in viewer.layers if layer is not image]
    assert len(made) == 9  # 4 edge layers, probability, grains, boundaries, picks, split lines

    image.name = "sample A"  # as typed into napari's layer list
    viewer.layers.selection.active = image
    box = seg.pixel_size.native.lineEdit()
    box.selectAll()
    QTest.keyClicks(box, "3")
    QTest.keyClick(box, Qt.Key.Key_Return)
    click(qtbot, seg.apply_pixel_size)
    assert seg.status.value == "sample A: 3 nm/px"
    for layer in made:
        assert tuple(layer.scale) == (3.0, 3.0) and str(layer.units[-1]) == "nanometer", layer.name
    assert viewer.layers.extent.units is not None  # one unit over all layers: no units warning

    grains = viewer.layers["synthetic micrograph grains"]
    viewer.layers.selection.active = grains
    assert stats.grains.value is grains
    qtbot.waitUntil(lambda: stats._worker is None and stats.stats is not None, timeout=20_000)
    qtbot.waitUntil(lambda: "pixel size: 3 nm" in stats.summary.value, timeout=20_000)
    assert not any("synthetic micrograph'" in message for message in warned), warned
    assert stats.stem.value == "sample_A"
    stats.folder.value = tmp_path
    click(qtbot, stats.csv_button)
    assert (tmp_path / "sample_A_grains.csv").is_file()
    # re-running Edges and colouring by ECD after the rename update the image's layers, not add more
    stats.colour_by_ecd.value = True
    qtbot.waitUntil(lambda: stats._worker is None, timeout=20_000)
    n_layers = len(viewer.layers)
    viewer.layers.selection.active = image
    click(qtbot, edges.run_button)
    stats.colour_by_ecd.value = False
    stats.colour_by_ecd.value = True
    assert len(viewer.layers) == n_layers, [layer.name for layer in viewer.layers]
    assert errors == []


def test_a_new_image_named_like_a_renamed_one_gets_its_own_edge_and_ecd_layers(make_napari_viewer, qtbot):
    """After 'A' is renamed 'B', its layers keep their names ('A Sobel', 'A ECD') but belong to B: a
    new image named 'A' must get layers of its own, not overwrite B's (a review found the name
    fallback doing so)."""
    from napari_grainseg.plugin._boundaries import ROLE_KEY

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    a = viewer.add_image(rng.random((64, 64), dtype=np.float32), name="A")
    grid = np.ones((64, 64), np.uint32)
    grid[:, 32:] = 2
    grains_a = viewer.add_labels(grid, name="A grains", metadata={ROLE_KEY: "grains", "grainseg_source": "A"})
    _, edges = viewer.window.add_plugin_dock_widget("napari-grainseg", "Edge detectors")
    _, stats = viewer.window.add_plugin_dock_widget("napari-grainseg", "Grain statistics")
    edges.image.value = a
    click(qtbot, edges.run_button)
    stats.grains.value = grains_a
    qtbot.waitUntil(lambda: stats._worker is None and stats.stats is not None, timeout=20_000)
    stats.colour_by_ecd.value = True
    qtbot.waitUntil(lambda: "A ECD" in viewer.layers, timeout=20_000)
    of_b = {name: viewer.layers[name] for name in ("A Sobel", "A LoG", "A Canny", "A edges RGB", "A ECD")}
    a.name = "B"

    new = viewer.add_image(rng.random((48, 48), dtype=np.float32), name="A")
    edges.image.value = new
    click(qtbot, edges.run_button)
    g2 = np.ones((48, 48), np.uint32)
    g2[:24] = 3
    grains_new = viewer.add_labels(g2, name="A grains [1]", metadata={ROLE_KEY: "grains", "grainseg_source": "A"})
    stats.grains.value = grains_new
    qtbot.waitUntil(lambda: stats._worker is None and stats.stats is not None and stats.stats.labels.shape == (48, 48))
    stats.colour_by_ecd.value = False
    stats.colour_by_ecd.value = True
    for layer in of_b.values():  # B's layers are untouched
        assert layer.metadata["grainseg_source"] == "B" and layer.data.shape[:2] == (64, 64), layer.name
    own = [layer for layer in viewer.layers if layer.metadata.get("grainseg_source") == "A"]
    assert sorted(layer.metadata.get(ROLE_KEY) for layer in own) == sorted(
        ["grains", "ecd", "edges Sobel", "edges LoG", "edges Canny", "edges RGB"]
    )
    assert all(layer.data.shape[:2] == (48, 48) for layer in own)
