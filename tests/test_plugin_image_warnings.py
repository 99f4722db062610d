"""A warning about an image's data (a colour micrograph converted to luminance) is shown once per
layer and data, however many buttons are clicked on it; the buttons are clicked for real."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")
from qtpy.QtCore import Qt  # noqa: E402

pytestmark = pytest.mark.napari

COLOUR = "colour image with unequal channels"


@pytest.fixture(autouse=True)
def synchronous(monkeypatch):
    from napari_grainseg.plugin import _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)


@pytest.fixture
def warned(monkeypatch):
    """Every warning notification of the plugin's docks, in order."""
    from napari_grainseg.plugin import _edges_widget, _notify, _segment_widget

    got: list[str] = []
    for module in (_edges_widget, _notify, _segment_widget):
        monkeypatch.setattr(module, "show_warning", lambda message: got.append(str(message)))
    return got


def colour_micrograph(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grey = rng.random((64, 64))
    return np.stack([grey, grey * 0.5, 1 - grey], axis=-1).astype(np.float32)  # unequal channels


def click(qtbot, button) -> None:
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


def test_the_colour_warning_shows_once_per_layer_and_data_on_the_edges_dock(make_napari_viewer, qtbot, warned):
    from napari_grainseg.plugin._edges_widget import EdgeDetectorsWidget

    viewer = make_napari_viewer()
    first = viewer.add_image(colour_micrograph(0), rgb=True, name="colour")
    edges = EdgeDetectorsWidget(viewer)
    assert edges.image.value is first
    for _ in range(3):
        click(qtbot, edges.run_button)
    assert [m for m in warned if COLOUR in m] == [warned[0]] and len(warned) == 1, warned
    assert edges.status.value.startswith("Sobel ")  # the edges were detected every time

    first.data = colour_micrograph(1)  # another image in the same layer: said again, once
    click(qtbot, edges.run_button)
    click(qtbot, edges.run_button)
    assert len([m for m in warned if COLOUR in m]) == 2

    second = viewer.add_image(colour_micrograph(2), rgb=True, name="colour 2")
    edges.image.value = second
    click(qtbot, edges.run_button)
    click(qtbot, edges.run_button)
    assert len([m for m in warned if COLOUR in m]) == 3


def test_the_colour_warning_is_not_repeated_by_net1_after_the_edges_dock(make_napari_viewer, qtbot, warned):
    from napari_grainseg.models.weights import shipped_weights_dir
    from napari_grainseg.plugin._edges_widget import EdgeDetectorsWidget
    from napari_grainseg.plugin._segment_widget import SegmentWidget

    if not (shipped_weights_dir() / "net1.pt").is_file():
        pytest.skip("no shipped Net1 weights")
    viewer = make_napari_viewer()
    viewer.add_image(colour_micrograph(0), rgb=True, name="colour")
    edges, seg = EdgeDetectorsWidget(viewer), SegmentWidget(viewer)
    seg.device.value = "cpu"
    click(qtbot, edges.run_button)
    click(qtbot, seg.run_net1_button)
    click(qtbot, seg.run_net1_button)
    assert "colour boundaries" in viewer.layers
    assert len([m for m in warned if COLOUR in m]) == 1, warned
