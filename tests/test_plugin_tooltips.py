"""Every button and check box of the Correct and Statistics docks, and every parameter of the Edges
dock, says what it does when the mouse rests on it."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")

pytestmark = pytest.mark.napari


def _without_tooltip(widget, kinds) -> list[str]:
    """The widgets of ``kinds`` inside ``widget`` (a magicgui dock) with no tooltip, by their text or name."""
    missing = []
    for kind in kinds:
        for child in widget.native.findChildren(kind):
            if not child.isVisibleTo(widget.native) and not child.isVisible():
                continue  # hidden parts of a widget (e.g. a combo box's popup) are never pointed at
            if not child.toolTip().strip():
                text = child.text() if hasattr(child, "text") else ""
                missing.append(f"{type(child).__name__} {text or child.objectName()!r}")
    return missing


@pytest.fixture
def viewer_with_grains(make_napari_viewer):
    from napari_grainseg.plugin import _threading
    from napari_grainseg.plugin._boundaries import BoundaryLink

    _threading.SYNCHRONOUS, old = True, _threading.SYNCHRONOUS
    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((60, 80)).astype(np.float32), name="img")
    b = np.zeros((60, 80), np.uint8)
    b[:, 40] = 1
    BoundaryLink.create(viewer, image, b)
    yield viewer
    _threading.SYNCHRONOUS = old


def test_every_button_and_check_box_of_the_correct_and_statistics_docks_has_a_tooltip(viewer_with_grains):
    from qtpy.QtWidgets import QCheckBox, QPushButton

    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.plugin._stats_widget import StatsWidget

    for dock in (CorrectWidget(viewer_with_grains), StatsWidget(viewer_with_grains)):
        buttons = dock.native.findChildren(QPushButton) + dock.native.findChildren(QCheckBox)
        assert len(buttons) >= 7
        assert _without_tooltip(dock, (QPushButton, QCheckBox)) == [], type(dock).__name__


def test_every_parameter_and_button_of_the_edges_dock_has_a_tooltip(viewer_with_grains):
    from qtpy.QtWidgets import QAbstractSpinBox, QCheckBox, QComboBox, QPushButton

    from napari_grainseg.plugin._edges_widget import EdgeDetectorsWidget

    edges = EdgeDetectorsWidget(viewer_with_grains)
    assert len(edges.native.findChildren(QAbstractSpinBox)) == 9
    assert _without_tooltip(edges, (QAbstractSpinBox, QCheckBox, QComboBox, QPushButton)) == []
