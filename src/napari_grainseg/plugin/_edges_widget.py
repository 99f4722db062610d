"""The "Edge detectors" dock widget: Sobel, LoG and Canny layers plus the fused RGB layer."""

from __future__ import annotations

import math
import warnings

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox
from napari.utils.notifications import show_error, show_warning

from napari_grainseg.errors import GrainsegError
from napari_grainseg.plugin._boundaries import ROLE_KEY
from napari_grainseg.plugin._dock import (
    column,
    derived_layer,
    follow_active,
    follow_image_renames,
    is_micrograph,
    join_other_docks,
    scroll_body,
    source_image,
    suggest_reader_for_calibrated_tiffs,
)
from napari_grainseg.plugin._layers import adding_layers, derived_layer_kwargs
from napari_grainseg.plugin._notify import read_image
from napari_grainseg.segmentation.edges import EdgeParams, detect_edges

#: Colour of each single-detector layer (they are shown additively over the micrograph).
EDGE_COLORMAPS = {"Sobel": "red", "LoG": "green", "Canny": "blue"}


class _AutoFloat(Container):
    """A float field with an "auto" tick box: ticked means the value is computed from the image."""

    def __init__(self, label: str, step: float, maximum: float, tooltip: str = ""):
        self.auto = CheckBox(
            value=True,
            text="auto",
            tooltip="Ticked: the threshold is computed from the image at each run (shown in the box, as "
            "MATLAB's edge() does); untick to type your own.",
        )
        self.value_box = FloatSpinBox(value=0.0, min=0.0, max=maximum, step=step, enabled=False, tooltip=tooltip)
        super().__init__(
            widgets=[self.value_box, self.auto], layout="horizontal", label=label, labels=False, tooltip=tooltip
        )
        self.auto.changed.connect(lambda ticked: setattr(self.value_box, "enabled", not ticked))

    def get(self) -> float | None:
        return None if self.auto.value else float(self.value_box.value)

    def show_resolved(self, value: float) -> None:
        """Display the automatic value without turning auto off."""
        if self.auto.value:
            self.value_box.value = float(value)


class EdgeDetectorsWidget(Container):
    """Detect edges of the selected micrograph and add Sobel, LoG, Canny and fused RGB layers.

    Re-running replaces the data of the layers made for the same image, so
    parameters can be tuned interactively.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        self._viewer = viewer
        self.image = ComboBox(
            label="image", choices=self._image_layers, tooltip="The micrograph to detect edges on (2-D, grey or RGB)."
        )
        self.median_size = SpinBox(
            label="median size",
            value=7,
            min=1,
            max=31,
            step=2,
            tooltip="Side of the median filter applied first, in px (odd; 1: none). Larger removes more noise "
            "and speckle but rounds corners and drops boundaries narrower than about half of it.",
        )
        self.low_pct = FloatSpinBox(
            label="stretch low %",
            value=1.0,
            min=0.0,
            max=49.0,
            step=0.5,
            tooltip="Percentile of the intensities mapped to black by the contrast stretch; darker pixels clip.",
        )
        self.high_pct = FloatSpinBox(
            label="stretch high %",
            value=99.0,
            min=51.0,
            max=100.0,
            step=0.5,
            tooltip="Percentile mapped to white; brighter pixels clip. Lower it if a few bright spots (holes, "
            "the beam) flatten the contrast of the grains.",
        )
        self.sobel_threshold = _AutoFloat(
            "Sobel threshold",
            0.005,
            10.0,
            tooltip="Gradient magnitude an edge needs (red layer). Lower: fainter boundaries, and more noise.",
        )
        self.log_sigma = FloatSpinBox(
            label="LoG sigma",
            value=2.0,
            min=0.5,
            max=20.0,
            step=0.25,
            tooltip="Width of the Laplacian-of-Gaussian in px (green layer). Larger finds broad, soft boundaries "
            "and ignores fine texture, but loses the boundaries of grains only a few sigma across.",
        )
        self.log_threshold = _AutoFloat(
            "LoG threshold",
            0.001,
            10.0,
            tooltip="Contrast a LoG zero crossing needs to count as an edge. Lower: fainter boundaries, more noise.",
        )
        self.canny_sigma = FloatSpinBox(
            label="Canny sigma",
            value=round(math.sqrt(2), 3),
            min=0.5,
            max=20.0,
            step=0.25,
            tooltip="Smoothing before the Canny detector in px (blue layer). Larger: fewer noise edges, and "
            "boundaries placed less precisely.",
        )
        self.canny_high = _AutoFloat(
            "Canny high",
            0.005,
            10.0,
            tooltip="Gradient an edge must reach somewhere to be kept (Canny hysteresis). Lower: more and "
            "fainter boundaries, more noise.",
        )
        self.canny_low_ratio = FloatSpinBox(
            label="Canny low/high",
            value=0.4,
            min=0.05,
            max=1.0,
            step=0.05,
            tooltip="An edge started above the high threshold continues while above this fraction of it. "
            "Lower: longer, better closed boundaries, and more spurs.",
        )
        self.run_button = PushButton(
            text="Detect edges",
            tooltip="Adds (or updates) the Sobel, LoG and Canny layers and their RGB fusion for the image. These "
            "settings change only these layers: Net1 always builds its input from the defaults.",
        )
        self.status = Label(value="")
        self.body = column(
            [
                self.image,
                self.median_size,
                self.low_pct,
                self.high_pct,
                self.sobel_threshold,
                self.log_sigma,
                self.log_threshold,
                self.canny_sigma,
                self.canny_high,
                self.canny_low_ratio,
                self.run_button,
                self.status,
            ]
        )
        super().__init__(widgets=[], labels=False)
        scroll_body(self, self.body)
        join_other_docks(self, "Edges")
        self.run_button.clicked.connect(lambda: self.run())
        viewer.layers.events.inserted.connect(self.image.reset_choices)
        viewer.layers.events.removed.connect(self.image.reset_choices)
        follow_active(viewer, self.image, lambda layer: source_image(viewer, layer))
        suggest_reader_for_calibrated_tiffs(viewer)
        follow_image_renames(viewer)

    def _image_layers(self, _widget=None) -> list:
        return [layer for layer in self._viewer.layers if is_micrograph(layer)]

    def params(self) -> EdgeParams:
        """The edge parameters currently set in the widget."""
        return EdgeParams(
            stretch_percentiles=(self.low_pct.value, self.high_pct.value),
            median_size=self.median_size.value,
            sobel_threshold=self.sobel_threshold.get(),
            log_sigma=self.log_sigma.value,
            log_threshold=self.log_threshold.get(),
            canny_sigma=self.canny_sigma.value,
            canny_high=self.canny_high.get(),
            canny_low_ratio=self.canny_low_ratio.value,
        )

    def run(self) -> list | None:
        """Detect edges on the selected image; add or update the four layers. Returns them."""
        source = self.image.value
        try:
            data = read_image(source)  # its warnings (a colour image...) once per layer and data
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                maps = detect_edges(data, self.params())
            for w in caught:
                show_warning(str(w.message))
        except GrainsegError as exc:
            show_error(str(exc))
            self.status.value = f"error: {exc}"
            return None
        resolved = maps.params
        self.sobel_threshold.show_resolved(resolved.sobel_threshold)
        self.log_threshold.show_resolved(resolved.log_threshold)
        self.canny_high.show_resolved(resolved.canny_high)
        layers = [
            self._put_layer(
                source,
                name,
                getattr(maps, attr).astype(np.uint8),
                colormap=EDGE_COLORMAPS[name],
                blending="additive",
                contrast_limits=(0, 1),
            )
            for name, attr in (("Sobel", "sobel"), ("LoG", "log"), ("Canny", "canny"))
        ]
        layers.append(self._put_layer(source, "edges RGB", maps.fused(), rgb=True, visible=False))
        self.status.value = (
            f"Sobel {int(maps.sobel.sum())} px, LoG {int(maps.log.sum())} px, Canny {int(maps.canny.sum())} px"
        )
        self._viewer.layers.selection.active = source  # not the hidden RGB layer added last
        return layers

    def _put_layer(self, source, what: str, data: np.ndarray, **kwargs):
        """Update the ``what`` edge layer of ``source`` (found by its record, so also after the image
        was renamed), or add it as '<image> <what>'."""
        role = f"edges {what.removeprefix('edges ')}"  # edges Sobel, LoG, Canny, RGB
        layer = derived_layer(self._viewer, source.name, role)
        name = f"{source.name} {what}"
        if layer is not None:
            layer.data = data
            return layer
        metadata = {"grainseg_derived": True, "grainseg_source": source.name, ROLE_KEY: role}
        kwargs.update(derived_layer_kwargs(source, name), metadata=metadata)
        with adding_layers(self._viewer):
            return self._viewer.add_image(data, **kwargs)
