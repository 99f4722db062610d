"""What every dock widget shares: a scroll area around its contents, and following the active layer.

napari puts a magicgui widget's ``native`` into its dock, so a magicgui
``scrollable`` container would lose its scroll area; instead each dock is an
outer :class:`magicgui.widgets.Container` holding one ``QScrollArea`` around an
inner container (``body``) with the controls. The docks' minimum height is
then small and they fit a 1366×768 screen together (scrolling where needed).
"""

from __future__ import annotations

from collections.abc import Callable

from magicgui.widgets import ComboBox, Container

from napari_grainseg.plugin._boundaries import ROLE_KEY, links

#: Smallest height of a dock's scroll area (px): a few rows stay visible.
MIN_DOCK_HEIGHT = 100


def scroll_body(outer: Container, body: Container, min_height: int = MIN_DOCK_HEIGHT):
    """Put ``body`` into a vertical ``QScrollArea`` that is ``outer``'s only child. Returns the area."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFrame, QScrollArea

    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(body.native)
    area.setMinimumHeight(min_height)
    width = body.native.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width() + 4
    area.setMinimumWidth(width)
    layout = outer.native.layout()
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(area)
    return area


def source_image(viewer, layer):
    """The micrograph a layer belongs to: an Image itself, or the image named in ``grainseg_source``."""
    import napari

    if layer is None:
        return None
    if isinstance(layer, napari.layers.Image) and ROLE_KEY not in layer.metadata \
            and not layer.metadata.get("grainseg_derived"):
        return layer
    name = layer.metadata.get("grainseg_source")
    if name and name in viewer.layers:
        return source_image(viewer, viewer.layers[name])
    return None


def link_of(layer):
    """The :class:`BoundaryLink` whose boundary or grains layer ``layer`` is (None if none)."""
    for link in links():
        if layer is link.boundaries or layer is link.grains:
            return link
    return None


def newest_link_of_image(viewer, image):
    """The most recently added live link made over ``image`` (None if none)."""
    found = None
    for layer in viewer.layers:
        if layer.metadata.get(ROLE_KEY) == "boundaries" and layer.metadata.get("grainseg_source") == image.name:
            link = link_of(layer)
            if link is not None:
                found = link
    return found


def follow_active(viewer, combo: ComboBox, pick: Callable) -> None:
    """Keep ``combo`` on the layer ``pick(active_layer)`` gives whenever the selection changes."""

    def on_active(event=None):
        layer = viewer.layers.selection.active
        try:
            target = pick(layer)
        except (KeyError, ValueError):
            return
        if target is None:
            return
        combo.reset_choices()
        if target in combo.choices and combo.value is not target:
            combo.value = target

    viewer.layers.selection.events.active.connect(on_active)
    on_active()
