"""The Segment dock's status after Net1 made one grain says why, from the core's reason."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")
from qtpy.QtCore import Qt  # noqa: E402

pytestmark = pytest.mark.napari


@pytest.fixture(autouse=True)
def synchronous(monkeypatch):
    from napari_grainseg.plugin import _threading

    monkeypatch.setattr(_threading, "SYNCHRONOUS", True)


def test_net1_on_noise_says_it_found_no_boundaries_not_lower_the_basin_depth(make_napari_viewer, qtbot):
    from napari_grainseg.plugin._segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    rgb = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    viewer.add_image(rgb @ np.array([0.299, 0.587, 0.114]), name="noise")
    seg = SegmentWidget(viewer)
    seg.device.value = "cpu"
    qtbot.mouseClick(seg.run_net1_button.native, Qt.MouseButton.LeftButton)
    assert "noise boundaries" in viewer.layers and int(viewer.layers["noise grains"].data.max()) == 1
    assert "one grain: Net1 found no closed grain boundaries" in seg.status.value, seg.status.value
    assert "basin" not in seg.status.value
