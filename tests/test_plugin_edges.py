"""napari integration: manifest, reader, sample data and the Edge detectors widget in a real viewer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

napari = pytest.importorskip("napari")

pytestmark = pytest.mark.napari


def test_manifest_validates_with_imports():
    npe2 = Path(sys.executable).with_name("npe2")
    result = subprocess.run(
        [str(npe2), "validate", "napari-grainseg", "--imports"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout.lower()


def test_reader_sets_scale_and_units_from_calibration(tmp_path):
    from napari_grainseg.plugin._reader import get_reader

    path = tmp_path / "calibrated.tif"
    data = np.random.default_rng(0).integers(0, 255, (64, 80), dtype=np.uint8)
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.5, 1 / 0.5), metadata={"unit": "nm"})
    reader = get_reader(str(path))
    assert reader is not None
    ((layer_data, kwargs, kind),) = reader(str(path))
    assert kind == "image" and layer_data.shape == (64, 80)
    assert kwargs["scale"] == pytest.approx((0.5, 0.5))
    assert kwargs["units"] == ("nm", "nm")
    assert get_reader(str(tmp_path / "notes.txt")) is None


def test_sample_and_edge_widget_add_four_layers(make_napari_viewer):
    from napari_grainseg.plugin._edges_widget import EdgeDetectorsWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    assert viewer.layers[0].data.shape == (154, 1166)
    widget = EdgeDetectorsWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.image.value is viewer.layers[0]
    layers = widget.run()
    assert len(viewer.layers) == 5 and len(layers) == 4
    names = [layer.name for layer in viewer.layers]
    assert names[1:] == [f"interconnect_tem {n}" for n in ("Sobel", "LoG", "Canny", "edges RGB")]
    rgb = viewer.layers["interconnect_tem edges RGB"]
    assert rgb.rgb and rgb.data.shape == (154, 1166, 3)
    for i, name in enumerate(("Sobel", "LoG", "Canny")):
        np.testing.assert_array_equal(viewer.layers[f"interconnect_tem {name}"].data, rgb.data[..., i] // 255)
    # The automatic thresholds are shown; the derived layers are not offered as inputs.
    assert widget.sobel_threshold.value_box.value > 0
    assert [c for c in widget.image.choices] == [viewer.layers[0]]
    # Re-running with another parameter updates the same layers instead of adding new ones.
    before = viewer.layers["interconnect_tem LoG"].data.copy()
    widget.log_sigma.value = 4.0
    widget.run()
    assert len(viewer.layers) == 5
    assert not np.array_equal(before, viewer.layers["interconnect_tem LoG"].data)


@pytest.mark.parametrize(
    "data, words", [(np.random.default_rng(0).random((3, 64, 64)), "stack"), (np.ones((64, 64)), "constant")]
)
def test_edge_widget_bad_input_notifies_and_viewer_survives(make_napari_viewer, data, words, monkeypatch):
    from napari_grainseg.plugin import _edges_widget

    errors = []
    monkeypatch.setattr(_edges_widget, "show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.add_image(data, name="bad")
    widget = _edges_widget.EdgeDetectorsWidget(viewer)
    assert widget.run() is None
    assert len(errors) == 1 and words in errors[0]
    assert len(viewer.layers) == 1
    viewer.add_image(np.random.default_rng(1).random((64, 64)), name="good")
    widget.image.value = viewer.layers["good"]
    assert widget.run() is not None


def test_edge_widget_without_image_layer_notifies(make_napari_viewer, monkeypatch):
    from napari_grainseg.plugin import _edges_widget

    errors = []
    monkeypatch.setattr(_edges_widget, "show_error", errors.append)
    viewer = make_napari_viewer()
    widget = _edges_widget.EdgeDetectorsWidget(viewer)
    assert widget.run() is None
    assert errors and "no image layer" in errors[0]


def test_synthetic_sample_opens_with_true_grains(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-grainseg", "synthetic_micrograph")
    image, labels = viewer.layers["synthetic micrograph"], viewer.layers["synthetic true grains"]
    assert image.data.shape == labels.data.shape == (512, 512)
    assert labels.data.max() > 20  # many grains
    # Boundary pixels (0) separate the grains of the generator's target.
    assert 0.01 < (labels.data == 0).mean() < 0.3
