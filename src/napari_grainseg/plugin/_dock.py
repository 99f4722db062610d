"""What every dock widget shares: a scroll area around its contents, and following the active layer.

napari puts a magicgui widget's ``native`` into its dock, so a magicgui
``scrollable`` container would lose its scroll area; instead each dock is an
outer :class:`magicgui.widgets.Container` holding one ``QScrollArea`` around an
inner container (``body``) with the controls. The docks' minimum height is
then small and they fit a 1366×768 screen together (scrolling where needed).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable

from magicgui.widgets import ComboBox, Container

from napari_grainseg.plugin._boundaries import ROLE_KEY, layer_key, links

#: Smallest height of a dock's scroll area (px): a few rows stay visible.
MIN_DOCK_HEIGHT = 100
#: Qt object name prefix of this plugin's dock contents (how the docks find each other).
DOCK_OBJECT_PREFIX = "napari-grainseg dock: "


def qt_alive(widget) -> bool:
    """Whether a magicgui widget's Qt widget still exists (napari deletes a closed viewer's docks)."""
    try:
        widget.native.objectName()  # any call raises once the C++ object is gone
    except RuntimeError:
        return False
    return True


def unless_closed(method: Callable) -> Callable:
    """Skip a dock's callback once its widgets are deleted.

    A worker's result, a timer or a layer event can arrive after the viewer was closed: the
    callback would then write into deleted Qt widgets and raise.
    """

    @functools.wraps(method)
    def callback(self, *args, **kwargs):
        return method(self, *args, **kwargs) if qt_alive(self) else None

    return callback


#: A greyed-out number box shows no + / − (napari's theme draws them as if they still worked).
GREYED_BOX_STYLE = "QAbstractSpinBox::up-arrow:disabled, QAbstractSpinBox::down-arrow:disabled { image: none; }"


def column(widgets) -> Container:
    """A labelled vertical container of ``widgets`` whose input boxes all start at the same x.

    Each row's label is as wide as its own text, so the boxes started at different x (magicgui
    evens them out only with the application font, narrower than napari's style sheet font).
    The labels are evened out each time the body is shown, once the style sheet applies.
    """
    from qtpy.QtCore import QEvent, QObject

    class LabelAligner(QObject):
        def eventFilter(self, watched, event):  # noqa: N802 (Qt's name)
            if event.type() == QEvent.Type.Show:
                align_row_labels(body)
            return False

    widgets = list(widgets)
    for widget in widgets:
        if isinstance(widget, Container):  # a row of several widgets: no inset, so it starts with the rest
            widget.margins = (0, 0, 0, 0)
    body = Container(widgets=widgets)
    body.native.installEventFilter(LabelAligner(body.native))
    body.native.setStyleSheet(GREYED_BOX_STYLE)
    return body


def align_row_labels(body: Container) -> int:
    """Give every row label of ``body`` the width of the widest, measured in its own font; returns it."""
    from qtpy.QtWidgets import QLabel

    labels = []
    for row in body:
        holder = row.native.parentWidget()
        if not row.label or holder is None or holder is body.native or holder.layout() is None:
            continue  # a row without a label (buttons, check boxes, status lines: those keep the full width)
        item = holder.layout().itemAt(0)
        if item is not None and isinstance(item.widget(), QLabel) and item.widget() is not row.native:
            labels.append(item.widget())
    for label in labels:
        label.ensurePolished()
    width = max((label.sizeHint().width() for label in labels), default=0)
    for label in labels:
        label.setMinimumWidth(width)
    return width


def scroll_body(outer: Container, body: Container, min_height: int = MIN_DOCK_HEIGHT):
    """Put ``body`` into a vertical ``QScrollArea`` that is ``outer``'s only child. Returns the area."""
    from magicgui.widgets import Label
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QComboBox, QFrame, QScrollArea, QSizePolicy

    for widget in body:
        if isinstance(widget, Label):  # long status lines wrap instead of widening the dock
            widget.native.setWordWrap(True)
            widget.native.setMinimumWidth(120)
            policy = widget.native.sizePolicy()
            policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
            widget.native.setSizePolicy(policy)
    for combo in body.native.findChildren(QComboBox):
        # a long layer name present when the dock opens must not widen it past its area
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(12)
        show_whole_choices(combo)
    body.native.layout().addStretch(1)  # rows packed at the top, not spread over a tall dock
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    # a scroll bar rather than cut-off controls, should the rows ever need more than the area
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    area.setWidget(body.native)
    area.setMinimumHeight(min_height)
    fit_width_to_body(area, body)
    layout = outer.native.layout()
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(area)
    return area


def fit_width_to_body(area, body: Container) -> None:
    """Keep the scroll ``area`` at least as wide as ``body``'s narrowest layout, so no control is cut off.

    Measured again whenever the body is shown, restyled or laid out anew: napari's style sheet
    (larger font, wider number boxes) applies only once the dock is in its window, so a width
    measured when the dock is made was 30 px short and the dock opened clipped, with a
    horizontal scroll bar, until a wider dock widened the column.
    """
    from qtpy.QtCore import QEvent, QObject

    def fit() -> None:
        width = body.native.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width() + 4
        if width != area.minimumWidth():
            area.setMinimumWidth(width)

    events = {QEvent.Type.Show, QEvent.Type.StyleChange, QEvent.Type.FontChange, QEvent.Type.LayoutRequest}

    class WidthFitter(QObject):
        def eventFilter(self, watched, event):  # noqa: N802 (Qt's name)
            if event.type() in events:
                fit()
            return False

    body.native.installEventFilter(WidthFitter(body.native))
    fit()


def join_other_docks(outer: Container, tab_title: str) -> None:
    """Make this dock a tab of the plugin's other docks in the same dock area, with a short tab title.

    napari stacks the docks opened from the Plugins menu in one column and gives
    the first one every spare pixel: the Segment grains dock then showed three rows
    and no status line on a 1920×1080 screen, and the statistics none of their
    figures. As tabs each dock gets the whole column (drag a tab out to see two at
    once). Done in the next event-loop turn, once napari has docked the widget.
    """
    from qtpy.QtCore import QTimer

    outer.native.setObjectName(DOCK_OBJECT_PREFIX + tab_title)
    QTimer.singleShot(0, lambda: tabify_plugin_docks(outer.native, tab_title))


def _dock_of(widget):
    from qtpy.QtWidgets import QDockWidget

    while widget is not None and not isinstance(widget, QDockWidget):
        widget = widget.parentWidget()
    return widget


def tabify_plugin_docks(native, tab_title: str | None = None):
    """Tab ``native``'s dock onto the other docks of this plugin in its dock area, and raise it.

    Returns the dock (None when ``native`` is not docked in a main window).
    """
    from qtpy.QtWidgets import QMainWindow, QWidget

    try:
        dock = _dock_of(native)
    except RuntimeError:  # the Qt object was deleted (viewer closed)
        return None
    window = dock.parentWidget() if dock is not None else None
    if dock is None or not isinstance(window, QMainWindow) or dock.isFloating():
        return None
    if tab_title:
        dock.setWindowTitle(tab_title)  # the tab's text: the long napari name is elided to "Segment grai..."
    area = window.dockWidgetArea(dock)
    others = [
        other
        for other in window.findChildren(type(dock))
        if other is not dock
        and not other.isFloating()
        and not other.isHidden()
        and window.dockWidgetArea(other) == area
        and any(w.objectName().startswith(DOCK_OBJECT_PREFIX) for w in other.findChildren(QWidget))
    ]
    if others and dock not in window.tabifiedDockWidgets(others[0]):
        window.tabifyDockWidget(others[0], dock)
    dock.raise_()
    return dock


def show_whole_choices(combo) -> None:
    """Let a combo box (a ``QComboBox``) in a narrow dock show long choices whole: its list opens as
    wide as the longest entry, and its tooltip gives the chosen one in full (the box clips it)."""
    static_tip = combo.toolTip()

    def fit(*_args) -> None:
        view = combo.view()  # (its own size hint counts only the rows laid out: none while closed)
        metrics = view.fontMetrics()
        widest = max((metrics.horizontalAdvance(combo.itemText(i)) for i in range(combo.count())), default=0)
        view.setMinimumWidth(widest + 2 * view.frameWidth() + 24)
        chosen = combo.currentText()
        combo.setToolTip(f"{chosen}\n\n{static_tip}" if static_tip and chosen else static_tip or chosen)

    combo.model().rowsInserted.connect(fit)
    combo.model().rowsRemoved.connect(fit)
    combo.currentTextChanged.connect(fit)
    fit()


def source_image(viewer, layer):
    """The micrograph a layer belongs to: an Image itself, or the image named in ``grainseg_source``
    (kept on the image's current name: :func:`follow_image_renames`)."""
    if layer is None:
        return None
    if is_micrograph(layer):
        return layer
    name = layer.metadata.get("grainseg_source")
    if name and name in viewer.layers:
        return source_image(viewer, viewer.layers[name])
    return None


def derived_layer(viewer, source_name: str | None, role: str):
    """The layer made from the micrograph named ``source_name`` in ``role`` (an edge map, the ECD
    colouring), or None. Found by what the layer records, not by its name, so a renamed micrograph
    keeps its layers (:func:`follow_image_renames`) and a re-run updates them instead of adding more."""
    if source_name is None:
        return None
    for layer in viewer.layers:
        if layer.metadata.get("grainseg_source") == source_name and layer.metadata.get(ROLE_KEY) == role:
            return layer
    return None


#: A micrograph's layer key -> the name the layers made from it record in ``grainseg_source``.
_SOURCE_NAMES: dict = {}
#: The layer lists whose insertions and removals are followed (weak: a closed viewer's drops out).
_WATCHED_LISTS: weakref.WeakSet = weakref.WeakSet()
#: Bound methods called as ``method(old, new)`` after a micrograph is renamed (weak: a closed dock drops out).
_RENAME_LISTENERS: list[weakref.WeakMethod] = []


def is_micrograph(layer) -> bool:
    """Whether ``layer`` is a micrograph (an Image this plugin did not make)."""
    import napari

    return (
        isinstance(layer, napari.layers.Image)
        and ROLE_KEY not in layer.metadata
        and not layer.metadata.get("grainseg_derived")
    )


def follow_image_renames(viewer, listener: Callable[[str, str], None] | None = None) -> None:
    """Keep every layer's ``grainseg_source`` on its micrograph's current name.

    The layers made from a micrograph (probability, boundaries, grains, edges, scale line,
    regions...) name it in ``grainseg_source``: how the docks find their micrograph
    (:func:`source_image`), calibrate them with it and name their exports. Renamed in napari's
    layer list, the image was cut off from them: Apply pixel size left them in pixels, and the
    statistics asked the user to open the image under its old name. Each dock calls this
    (once per micrograph is watched, however many docks are open); ``listener`` (a bound
    method) is called as ``listener(old, new)`` after each rename.
    """
    if listener is not None:
        _RENAME_LISTENERS.append(weakref.WeakMethod(listener))
    layers = viewer.layers

    def watch(layer) -> None:
        key = layer_key(layer)
        if key in _SOURCE_NAMES or not is_micrograph(layer):
            return
        _SOURCE_NAMES[key] = layer.name

        def renamed(_event=None) -> None:
            old, new = _SOURCE_NAMES.get(key), layer.name
            if old == new:
                return
            _SOURCE_NAMES[key] = new
            for other in layers:
                if other.metadata.get("grainseg_source") == old:
                    other.metadata["grainseg_source"] = new
            for ref in list(_RENAME_LISTENERS):
                method = ref()
                if method is None:
                    _RENAME_LISTENERS.remove(ref)
                else:
                    method(old, new)

        layer.events.name.connect(renamed)

    for layer in layers:
        watch(layer)
    if layers in _WATCHED_LISTS:  # one set of handlers per layer list, however many docks open
        return
    _WATCHED_LISTS.add(layers)
    layers.events.inserted.connect(lambda event: watch(event.value))
    # a removed image is forgotten (its rename handler goes with the layer)
    layers.events.removed.connect(lambda event: _SOURCE_NAMES.pop(layer_key(event.value), None))


def same_layer(a, b) -> bool:
    """True when ``a`` and ``b`` are the same layer (plugin docks get proxies: never compare with ``is``)."""
    return a is not None and b is not None and layer_key(a) == layer_key(b)


def link_of(layer):
    """The :class:`BoundaryLink` whose boundary or grains layer ``layer`` is (None if none)."""
    for link in links():
        if same_layer(layer, link.boundaries) or same_layer(layer, link.grains):
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


def link_for(viewer, layer):
    """The link a dock should act on when ``layer`` is active: its own, else its image's newest (or None)."""
    link = link_of(layer)
    if link is not None:
        return link
    image = source_image(viewer, layer)
    return newest_link_of_image(viewer, image) if image is not None else None


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
        choice = next((c for c in combo.choices if same_layer(c, target)), None)
        if choice is not None and not same_layer(combo.value, choice):
            combo.value = choice

    viewer.layers.selection.events.active.connect(on_active)
    on_active()


_CHECKED_LAYERS: set = set()


def suggest_reader_for_calibrated_tiffs(viewer) -> None:
    """When another reader opens a calibrated TIFF in pixels, say how to open it calibrated (once per layer,
    however many docks are open: each dock gets its own viewer proxy)."""

    def on_inserted(event):
        layer = event.value
        key = layer_key(layer)
        if key not in _CHECKED_LAYERS:
            _CHECKED_LAYERS.add(key)
            check_reader(layer)

    viewer.layers.events.inserted.connect(on_inserted)


def check_reader(layer) -> str | None:
    """The notification shown for ``layer`` (a TIFF opened uncalibrated by another reader), or None."""
    from pathlib import Path

    import napari
    from napari.utils.notifications import show_warning

    from napari_grainseg.errors import GrainsegError
    from napari_grainseg.io.readers import read_micrograph
    from napari_grainseg.plugin._layers import pixel_size_of

    source = getattr(layer, "source", None)
    path = getattr(source, "path", None)
    plugin = getattr(source, "reader_plugin", None)
    if not isinstance(layer, napari.layers.Image) or not path or plugin in (None, "napari-grainseg"):
        return None
    if Path(path).suffix.lower() not in (".tif", ".tiff") or pixel_size_of(layer) is not None:
        return None
    try:
        nm = read_micrograph(path).pixel_size_nm
    except (GrainsegError, OSError, ValueError):
        return None
    if not nm:
        return None
    message = (
        f"'{layer.name}' was opened by the '{plugin}' reader, in pixels; the file says {nm:g} nm per "
        "pixel. Open it with napari-grainseg (File > Open with Plugin) to measure in nm, or enter "
        "the pixel size in the Segment grains dock."
    )
    show_warning(message)
    return message
