"""The "Grain statistics" dock widget: live summary, embedded histogram, exports.

Measurements (:func:`napari_grainseg.measure.statistics.measure_field`: the per-grain
table and the summary) and the figure
(:func:`napari_grainseg.measure.report.histogram_figure`) are computed in a worker after
each change of the grains layer (debounced); the main thread only shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, PushButton, SpinBox
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QRect, QSize
from qtpy.QtGui import QImage, QPainter
from qtpy.QtWidgets import QSizePolicy, QWidget

from napari_grainseg.errors import GrainsegError, InputError
from napari_grainseg.plugin._boundaries import PENDING_KEY, ROLE_KEY, checksum, layer_key
from napari_grainseg.plugin._dock import (
    column,
    derived_layer,
    follow_active,
    follow_image_renames,
    join_other_docks,
    link_for,
    link_of,
    same_layer,
    scroll_body,
    source_image,
    suggest_reader_for_calibrated_tiffs,
    unless_closed,
)
from napari_grainseg.plugin._layers import calibration_source_of, image_folder, pixel_size_of
from napari_grainseg.plugin._threading import Debouncer, create_worker
from napari_grainseg.plugin._writer import grain_labels

#: Delay between an edit and the statistics update (ms).
STATS_DELAY_MS = 300
#: What the summary says while no grains layer is there to measure.
NO_GRAINS_TEXT = "no grains layer: run Net1 in 'Segment grains', or open a *_boundaries.tif"
#: Layer events after which the statistics are measured again ("paint": the grains rebuilt
#: around an edit, written pixel by pixel).
_REMEASURE_EVENTS = ("data", "paint", "scale", "units")


@dataclass
class GrainStats:
    """Measurements of one grains layer, as shown and exported."""

    labels: np.ndarray
    table: object  # measure.GrainTable
    summary: dict
    figure: object  # matplotlib Figure (Agg)
    pixel_size_nm: float | None
    image: np.ndarray | None = None  # the figure drawn (RGBA), as the dock shows it


def compute_stats(
    labels: np.ndarray,
    pixel_size_nm: float | None,
    exclude_edge_grains: bool = True,
    min_area: int | None = None,
    exclude: np.ndarray | None = None,
    calibration_source: str | None = None,
) -> GrainStats:
    """Measure a label image and draw its histogram figure (thread-safe, no Qt).

    ``min_area`` (px), ``exclude`` (mask, non-zero = left out) and ``calibration_source``
    (where the pixel size came from) go to the core measurement.
    """
    from napari_grainseg.measure.report import histogram_figure
    from napari_grainseg.measure.statistics import measure_field

    table, summary = measure_field(
        labels,
        pixel_size_nm,
        min_area=min_area,
        exclude=exclude,
        exclude_edge_grains=exclude_edge_grains,
        calibration_source=calibration_source,
    )
    # Stacked panels: the dock is narrow. Exports redraw the report's side-by-side layout.
    figure = histogram_figure(table, summary, vertical=True)
    title = figure.get_suptitle()
    if title:  # the dock is narrow: a smaller, wrapped title, never clipped
        figure.suptitle(title.replace(" — ", "\n", 1), fontsize=9)
    # drawn here, in the worker: the constrained layout and drawing took 0.15-0.2 s of the
    # viewer's thread when a Qt canvas drew it there
    figure.canvas.draw()
    image = np.array(figure.canvas.buffer_rgba(), copy=True)
    return GrainStats(labels, table, summary, figure, pixel_size_nm, image)


class FigureImage(QWidget):
    """A drawn figure (an RGBA array) shown at the dock's width, keeping its aspect ratio."""

    def __init__(self, rgba: np.ndarray):
        super().__init__()
        self._rgba = np.ascontiguousarray(rgba[..., :4], dtype=np.uint8)
        h, w = self._rgba.shape[:2]
        self._image = QImage(self._rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self.setMinimumWidth(220)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return round(width * self._image.height() / max(self._image.width(), 1))

    def sizeHint(self) -> QSize:
        return QSize(self._image.width(), self._image.height())

    def resizeEvent(self, event) -> None:
        height = self.heightForWidth(self.width())
        if self.height() != height:
            self.setFixedHeight(height)
        super().resizeEvent(event)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawImage(QRect(0, 0, self.width(), self.heightForWidth(self.width())), self._image)
        painter.end()


def _options_key(options: dict) -> tuple:
    mask = options.get("exclude")
    return (
        options.get("exclude_edge_grains"),
        options.get("min_area"),
        None if mask is None else checksum(np.asarray(mask, np.uint8)),
        options.get("calibration_source"),
    )


def caveats_text(summary: dict) -> str:
    """The summary's warnings as the dock shows them (one line each), '' when there are none."""
    return "\n".join(f"⚠ {w}" for w in summary.get("warnings") or [])


def summary_text(summary: dict) -> str:
    """A few lines of the most used figures, in nm when calibrated."""
    nm = summary.get("pixel_size_nm")
    unit = "nm" if nm else "px"

    def size(key):
        value = summary.get(f"{key}_{unit}")
        return "–" if value is None else f"{value:.3g} {unit}"

    def g(key):
        value = summary.get(key)
        return "– (no pixel size)" if value is None else f"{value:.2f}"

    n_inc, n_edge = summary["n_grains_included"], summary["n_grains_edge"]
    if str(summary.get("edge_grains", "")).startswith("included"):
        counted = f"grains: {n_inc} measured" + (f", {n_edge} of them cut by the border" if n_edge else "")
    else:
        counted = f"grains: {n_inc} measured" + (f" ({n_edge} cut by the border left out)" if n_edge else "")
    dropped = ((summary.get("measurement") or {}).get("exclude") or {}).get("n_grains_dropped")
    if dropped:
        counted += f"; {dropped} in the excluded region left out"
    lines = [
        counted,
        f"mean ECD {size('mean_ecd')}, D10/D50/D90 {size('d10')} / {size('d50')} / {size('d90')}",
        f"mean intercept {size('mean_intercept')}",
        (
            f"ASTM G planimetric {g('astm_g_planimetric')}, intercept {g('astm_g_intercept')}"
            if nm
            else "ASTM G: – (no pixel size)"
        ),
        f"pixel size: {nm:g} nm" if nm else "pixel size: not set (sizes in px)",
    ]
    fit = summary.get("lognormal")
    if fit:
        lines.insert(2, f"lognormal σ {fit['sigma']:.2f}, KS D {fit['ks_statistic']:.3f}")
    return "\n".join(lines)


class StatsWidget(Container):
    """Summary figures and histogram of a grains layer, kept current, with export buttons."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self._viewer = viewer
        self.stats: GrainStats | None = None
        self._stats_key = None
        self._stats_layer = None  # the layer key of the grains layer ``stats`` measured
        self._watched = None
        self._exclusions: dict = {}  # grains layer key -> its exclusion layer
        self._warned_uncalibrated: set = set()
        self._worker = None
        self._again = False
        self.grains = ComboBox(
            label="grains",
            choices=self._grain_layers,
            tooltip="the grains layer to measure (follows the layer selected in the layer list); sizes are in nm "
            "when its micrograph has a pixel size",
        )
        self.include_edge = CheckBox(
            text="include grains cut by the border",
            value=False,
            tooltip="Off (recommended): the size statistics use the complete grains only, weighted for their "
            "chance of being cut (Miles–Lantuéjoul), since a cut grain measures too small. On: every grain "
            "counts as measured, which biases the sizes low.",
        )
        self.min_area = SpinBox(
            label="min grain (px)",
            value=1,
            min=1,
            max=10**7,
            tooltip="grains of fewer pixels are shared out to their neighbours",
        )
        self.exclude = ComboBox(
            label="exclude",
            choices=self._mask_layers,
            nullable=True,
            value=None,
            tooltip="a Labels or Shapes layer: grains touching it are not measured "
            "(scale-bar strip, hole, carbon film)",
        )
        self.colour_by_ecd = CheckBox(
            text="colour grains by ECD",
            value=False,
            tooltip="Adds an image colouring each grain by its equivalent circle diameter (viridis): big or "
            "small outliers, often segmentation errors, stand out. Display only; the exports do not change.",
        )
        self.summary = Label(value="")
        self.caveats = Label(value="")
        self.caveats.native.setWordWrap(True)
        self.caveats.native.setStyleSheet("color: #ffb347")
        self.folder = FileEdit(
            label="folder",
            mode="d",
            value=Path.cwd(),
            tooltip="The folder the exports go to (a full path): by default the micrograph's own folder.",
        )
        self.folder.choose_btn.tooltip = "Choose the export folder in a file dialog."
        self._auto_folder: Path | None = Path.cwd()
        self.stem = LineEdit(
            label="file stem",
            value="",
            tooltip="The exports are named <stem>_grains.csv, <stem>_summary.json... (by default the image's name).",
        )
        # exports never replace a file silently: an earlier export may hold hand corrections
        self.replace = CheckBox(text="replace existing files", value=False)
        self.replace.tooltip = (
            "Off: an export that would replace a file already in the folder is refused (files this "
            "panel wrote from the same grains layer, unchanged since, are replaced). On: the next "
            "export replaces them; the box then clears itself."
        )
        #: resolved path -> (grains layer key, SHA-256) of each file this panel wrote
        self._written: dict[Path, tuple[object, str]] = {}
        self.csv_button = PushButton(
            text="CSV",
            tooltip="<stem>_grains.csv: one row per grain (area, ECD, perimeter, axes, Feret, solidity, "
            "centroid, touches border), in px and, when calibrated, nm.",
        )
        self.json_button = PushButton(
            text="JSON",
            tooltip="<stem>_summary.json: the summary statistics and ASTM E112 G, with how the result was made "
            "(model, device, Net2 steps, hand edits) for your records.",
        )
        self.hist_button = PushButton(
            text="Histogram",
            tooltip="<stem>_histogram.png and .svg: number- and area-weighted ECD histograms with the lognormal "
            "fit and its goodness of fit, for a report.",
        )
        self.tiff_button = PushButton(
            text="Label TIFF",
            tooltip="<stem>_grains.tif (labels) and <stem>_boundaries.tif, calibrated: reopen them in napari to "
            "go on correcting another day, or measure them with 'grainseg measure'.",
        )
        self.all_button = PushButton(
            text="All",
            tooltip="Every export above, written as one set: if one file cannot be written (a full disk), none "
            "is, and files already there stay as they were.",
        )
        row = Container(
            widgets=[self.csv_button, self.json_button, self.hist_button],
            layout="horizontal",
            labels=False,
            label="export",
        )
        row2 = Container(widgets=[self.tiff_button, self.all_button], layout="horizontal", labels=False, label=" ")
        self.export_status = Label(value="")
        self.body = column(
            [
                self.grains,
                self.include_edge,
                self.min_area,
                self.exclude,
                self.colour_by_ecd,
                self.summary,
                self.caveats,
                self.folder,
                self.stem,
                self.replace,
                row,
                row2,
                self.export_status,
            ]
        )
        super().__init__(widgets=[], labels=False)
        scroll_body(self, self.body)
        join_other_docks(self, "Statistics")
        self._canvas = None
        self._debouncer = Debouncer(self.update, STATS_DELAY_MS)
        self.grains.changed.connect(self._watch)
        self.include_edge.changed.connect(self._debouncer.trigger)
        self.min_area.changed.connect(self._debouncer.trigger)
        self.exclude.changed.connect(self._watch_mask)
        self.colour_by_ecd.changed.connect(self._show_ecd)
        self._watched_mask = None
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.exclude.reset_choices)
        self.csv_button.clicked.connect(lambda: self.export(("csv",)))
        self.json_button.clicked.connect(lambda: self.export(("json",)))
        self.hist_button.clicked.connect(lambda: self.export(("histogram",)))
        self.tiff_button.clicked.connect(lambda: self.export(("tiff",)))
        self.all_button.clicked.connect(lambda: self.export())
        viewer.layers.events.inserted.connect(self.grains.reset_choices)
        viewer.layers.events.removed.connect(self._layer_removed)
        follow_active(viewer, self.grains, self._grains_for)
        suggest_reader_for_calibrated_tiffs(viewer)
        follow_image_renames(viewer, self._on_image_renamed)
        self._watch(self.grains.value)

    def _layer_removed(self, _event=None) -> None:
        self.grains.reset_choices()
        if self.grains.value is None and self._watched is not None:  # the combo box does not say so
            self._watch(None)

    def _mask_layers(self, _widget=None) -> list:
        return [
            layer
            for layer in self._viewer.layers
            if isinstance(layer, (napari.layers.Labels, napari.layers.Shapes))
            and layer.metadata.get(ROLE_KEY) not in ("grains", "boundaries", "picks", "split lines")
        ]

    def _watch_mask(self, layer) -> None:
        if self._watched_mask is not None:
            try:
                self._watched_mask.events.data.disconnect(self._debouncer.trigger)
            except (TypeError, ValueError, RuntimeError):
                pass
        self._watched_mask = layer
        if layer is not None:
            layer.events.data.connect(self._debouncer.trigger)
        self._debouncer.trigger()

    def exclusion_mask(self, shape: tuple[int, int]) -> np.ndarray | None:
        """The chosen exclusion layer as a boolean mask of ``shape`` (None when none is chosen)."""
        layer = self.exclude.value
        if layer is None:
            return None
        if isinstance(layer, napari.layers.Shapes):
            if len(layer.data) == 0:
                return None
            mask = self._shapes_mask(layer, shape)
        else:
            mask = np.asarray(layer.data) > 0
        if mask.shape != tuple(shape):
            raise InputError(f"exclusion layer '{layer.name}' is {mask.shape}, the grains are {tuple(shape)}")
        return mask

    def _shapes_mask(self, layer, shape: tuple[int, int]) -> np.ndarray:
        """The shapes drawn on ``layer`` rasterised on the grains layer's pixels (through world
        coordinates: a Shapes layer made with napari's button is in pixels at scale 1 while a
        calibrated grains layer is in nm)."""
        grains = self.grains.value
        if grains is None:
            return layer.to_labels(labels_shape=shape) > 0

        def to_pixels(vertices):
            return np.array([grains.world_to_data(layer.data_to_world(v))[-2:] for v in np.asarray(vertices)])

        pixels = napari.layers.Shapes([to_pixels(v) for v in layer.data], shape_type=list(layer.shape_type), ndim=2)
        return pixels.to_labels(labels_shape=shape) > 0

    def _grains_for(self, layer):
        """The grains layer to measure when ``layer`` becomes active (None: keep the current one)."""
        if layer is None:
            return None
        if layer.metadata.get(ROLE_KEY) == "grains":
            return layer
        if link_of(layer) is None and layer.metadata.get(ROLE_KEY) == "boundaries":
            if layer.metadata.get("grainseg_file"):  # reopened from a *_boundaries.tif: measure it
                return layer
            return None  # being created: its grains layer came first
        link = link_for(self._viewer, layer)
        return link.grains if link is not None else None

    def _grain_layers(self, _widget=None) -> list:
        return [
            layer
            for layer in self._viewer.layers
            if isinstance(layer, napari.layers.Labels) and layer.metadata.get(ROLE_KEY) in ("grains", "boundaries")
        ]

    @staticmethod
    def _default_stem(layer, image_name: str | None = None) -> str:
        """The exports' file stem for grains layer ``layer``: its micrograph's name, spaces as '_'."""
        return (image_name or layer.metadata.get("grainseg_source") or layer.name).replace(" ", "_")

    @unless_closed
    def _on_image_renamed(self, old: str, new: str) -> None:
        """The measured grains' micrograph was renamed: the exports take its new name (a stem the
        user typed stays)."""
        layer = self._watched
        if layer is not None and layer.metadata.get("grainseg_source") == new:
            if self.stem.value == self._default_stem(layer, old):
                self.stem.value = self._default_stem(layer)

    def _watch(self, layer) -> None:
        if self._watched is not None:
            try:
                for event in _REMEASURE_EVENTS:
                    getattr(self._watched.events, event).disconnect(self._debouncer.trigger)
            except (TypeError, ValueError, RuntimeError):
                pass
        previous = self._watched
        if previous is not None:
            self._exclusions[layer_key(previous)] = self.exclude.value
        self._watched = layer
        self.export_status.value = ""  # it named the files of the layer measured before
        if layer is None:  # the last grains layer was deleted: nothing is measured any more
            self._clear()
        else:
            # each grains layer keeps its own exclusion region: one drawn for another image never applies
            chosen = self._exclusions.get(layer_key(layer))
            self.exclude.reset_choices()
            match = next((c for c in self.exclude.choices if chosen is not None and same_layer(c, chosen)), None)
            current = self.exclude.value
            if not (current is None and match is None) and not same_layer(current, match):
                self.exclude.value = match
            for event in _REMEASURE_EVENTS:  # the pixels, or their size in nm (scale and unit)
                getattr(layer.events, event).connect(self._debouncer.trigger)
            # the exports are named after, and by default saved beside, the image measured
            self.stem.value = self._default_stem(layer)
            if self._auto_folder is None or Path(self.folder.value) == self._auto_folder:
                # beside the micrograph; for boundaries reopened from an export, beside their file
                self._auto_folder = image_folder(next(lay for lay in self._layers_behind(layer) if lay is not None))
                self.folder.value = self._auto_folder
            self._debouncer.trigger()

    @unless_closed
    def _clear(self) -> None:
        """Show that there is nothing to measure: no summary, no figure of a layer that is gone."""
        self.stats = self._stats_key = self._stats_layer = None
        self.summary.value = NO_GRAINS_TEXT
        self.caveats.value = ""
        self.export_status.value = ""
        self._remove_canvas()

    def _remove_canvas(self) -> None:
        """Take the figure out of the dock (a new one replaces it, or there is nothing to show)."""
        if self._canvas is not None:
            self.body.native.layout().removeWidget(self._canvas)
            self._canvas.setParent(None)
            self._canvas.deleteLater()
            self._canvas = None

    @unless_closed
    def _fail(self, exc) -> None:
        show_error(str(exc))
        self.summary.value = f"error: {exc}"
        self.export_status.value = ""

    # ------------------------------------------------------------------ update

    def _inputs(self):
        layer = self.grains.value
        if layer is None:
            raise InputError("no grains layer: run Net1 first (Segment grains widget)")
        nm = pixel_size_of(layer)
        micrograph = source_image(self._viewer, layer)
        # once per micrograph: its grains, its boundaries and a second run's layers share the pixel size
        warned_key = layer_key(micrograph if micrograph is not None else layer)
        if nm is None and warned_key not in self._warned_uncalibrated:
            self._warned_uncalibrated.add(warned_key)
            source = layer.metadata.get("grainseg_source", layer.name)
            where = (
                "set the pixel size in the Segment grains widget"
                if micrograph is not None
                else f"open its micrograph ('{source}') and set the pixel size in the Segment grains "
                "widget: it applies to this layer too"
            )
            show_warning(f"'{layer.name}' has no pixel size: sizes are in px and ASTM G is not computed; {where}")
        labels = grain_labels(np.array(layer.data, copy=True), layer.metadata.get(ROLE_KEY))
        return labels, nm

    def _layers_behind(self, layer) -> tuple:
        """The layers a grains layer comes from, nearest first: its micrograph (None for an export
        reopened alone), its boundary layer (None without one), the layer itself."""
        link = link_of(layer)
        return source_image(self._viewer, layer), link.boundaries if link is not None else None, layer

    def _options(self, labels: np.ndarray) -> dict:
        layer = self.grains.value
        return {
            "exclude_edge_grains": not self.include_edge.value,
            "min_area": int(self.min_area.value),
            "exclude": self.exclusion_mask(labels.shape),
            "calibration_source": calibration_source_of(self._layers_behind(layer), pixel_size_of(layer)),
        }

    @unless_closed
    def update(self):
        """Recompute the statistics of the selected layer (in a worker). Returns the worker."""
        if self._worker is not None:  # one at a time; recompute once it is done
            self._again = True
            return self._worker
        layer = self.grains.value
        if layer is None:  # e.g. the layers were deleted: no error, nothing was asked for
            self._clear()
            return None
        if layer.metadata.get(PENDING_KEY):
            self.summary.value = "waiting for the result..."  # measured when its data arrives
            return None
        try:
            labels, nm = self._inputs()
            options = self._options(labels)
        except GrainsegError as exc:
            self._fail(exc)
            return None
        key = _options_key(options)
        if self._measured_as(layer, labels, nm, key):  # an event that changed nothing: seconds saved at 4096²
            self.summary.value = summary_text(self.stats.summary)  # (it may say an error since fixed)
            self.caveats.value = caveats_text(self.stats.summary)
            return None
        self.summary.value = "measuring..."
        worker = create_worker(compute_stats, labels, nm, **options)
        worker.returned.connect(lambda stats: self._show(stats, key, layer))
        worker.errored.connect(self._fail)
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()
        return worker

    def _measured_as(self, layer, labels: np.ndarray, nm: float | None, key: tuple) -> bool:
        """Whether the statistics shown are those of ``layer`` with these labels, pixel size and
        options (``key``: :func:`_options_key`), so need not be measured again."""
        stats = self.stats
        return (
            stats is not None
            and self._stats_layer == layer_key(layer)
            and self._stats_key == key
            and stats.pixel_size_nm == nm
            and np.array_equal(stats.labels, labels)
        )

    @unless_closed
    def _finished(self) -> None:
        self._worker = None
        if self._again:
            self._again = False
            self._debouncer.trigger()

    @unless_closed
    def _show(self, stats: GrainStats, key=None, measured=None) -> None:
        """Show ``stats`` of the layer ``measured``: dropped when another layer (or none) is chosen
        by now (its layers deleted, or the choice changed while it was measured)."""
        current = self.grains.value
        if current is None or (measured is not None and not same_layer(current, measured)):
            return
        self.stats = stats
        self._stats_key = key
        self._stats_layer = layer_key(current)
        self.summary.value = summary_text(stats.summary)
        self.caveats.value = caveats_text(stats.summary)
        layer = self.grains.value
        if layer is not None and layer.metadata.get(ROLE_KEY) == "grains" and layer.data.shape == stats.labels.shape:
            # napari shows these for the grain under the cursor (status bar)
            import pandas as pd

            from napari_grainseg.measure.display import grain_features

            layer.features = pd.DataFrame(grain_features(stats.table))
        self._show_ecd()
        if stats.image is None:  # measured by another caller: draw it here
            stats.figure.canvas.draw()
            stats.image = np.array(stats.figure.canvas.buffer_rgba(), copy=True)
        canvas = FigureImage(stats.image)
        self._remove_canvas()
        layout = self.body.native.layout()
        # below the exports: the buttons stay in view without scrolling past the figure
        layout.insertWidget(self.body.index(self.export_status) + 1, canvas)
        self._canvas = canvas

    def _show_ecd(self, _value=None):
        """Add (or update, or hide) the image colouring each grain by its ECD. Returns the layer."""
        from napari_grainseg.measure.display import ecd_image
        from napari_grainseg.plugin._layers import adding_layers, derived_layer_kwargs, move_below

        layer, stats = self.grains.value, self.stats
        if layer is None:
            return None
        name = f"{layer.metadata.get('grainseg_source') or layer.name} ECD"  # one per image
        existing = derived_layer(self._viewer, layer.metadata.get("grainseg_source"), "ecd")
        if existing is None and name in self._viewer.layers:  # a grains layer without its image's name:
            by_name = self._viewer.layers[name]  # its ECD layer by name, never another image's
            if by_name.metadata.get(ROLE_KEY) == "ecd" and not by_name.metadata.get("grainseg_source"):
                existing = by_name
        if not self.colour_by_ecd.value or stats is None or stats.labels.shape != layer.data.shape[-2:]:
            if existing is not None:
                existing.visible = False
            return existing
        unit = "nm" if stats.pixel_size_nm else "px"
        data = ecd_image(stats.labels, stats.table, unit)
        finite = data[np.isfinite(data)]
        limits = (float(finite.min()), float(finite.max()) + 1e-6) if finite.size else (0.0, 1.0)
        if existing is not None:
            existing.data = data
            existing.contrast_limits = limits
            existing.visible = True
            link = link_of(layer)
            ids = [lay.unique_id for lay in self._viewer.layers]
            if link is not None and ids.index(existing.unique_id) < ids.index(link.grains.unique_id):
                # made before this grains layer (a reopened boundary layer measured first): the
                # translucent grain fill would tint the ECD colours
                move_below(self._viewer, existing, link.boundaries)
            return existing
        active = self._viewer.layers.selection.active  # napari selects a new layer: give it back
        with adding_layers(self._viewer):
            ecd = self._viewer.add_image(
                data,
                colormap="viridis",
                contrast_limits=limits,
                opacity=0.6,
                metadata={
                    "grainseg_derived": True,
                    ROLE_KEY: "ecd",
                    "grainseg_source": layer.metadata.get("grainseg_source"),
                },
                **derived_layer_kwargs(layer, name),
            )
        # just under the boundary layer: the yellow lines stay on top of the colours
        link = link_of(layer)
        move_below(self._viewer, ecd, link.boundaries if link is not None else layer)
        if active is not None and any(lay.unique_id == active.unique_id for lay in self._viewer.layers):
            # the layer the user works on stays selected (a brush stroke must not land on the ECD view)
            self._viewer.layers.selection.active = active
        return ecd

    # ------------------------------------------------------------------ export

    def _extra(self) -> dict:
        """What the summary JSON records besides the statistics: the method, device, hand edits."""
        link = link_of(self.grains.value)
        if link is None:
            return {}
        extra = dict(link.boundaries.metadata.get("grainseg_info", {}))
        edits = link.edit_counts()
        extra["hand_edits"] = edits
        if any(edits.values()):
            done = ", ".join(
                f"{n} {k.replace('_px', ' px').replace('painted', 'painted')}" for k, n in edits.items() if n
            )
            extra["method"] = f"{extra.get('method', 'boundary layer')} + hand edits ({done})"
        return extra

    def _check_no_replacement(self, targets: list[Path], key) -> None:
        """Refuse an export that would replace a file this panel did not write from this layer."""
        from napari_grainseg.io.outputs import file_record

        blocked = []
        for path in targets:
            if not path.exists():
                continue
            ours = self._written.get(path.resolve())
            if ours is None or ours[0] != key or ours[1] != file_record(path)["sha256"]:
                blocked.append(path.name)
        if blocked:
            raise InputError(
                f"not exported: {', '.join(blocked)} already in {targets[0].parent} "
                "(perhaps an earlier, corrected export); change the file stem or tick 'replace existing files'"
            )

    def export(self, what: tuple[str, ...] = ("csv", "json", "histogram", "tiff")) -> dict[str, Path] | None:
        """Write the chosen exports of the current statistics into the folder; returns the paths.

        All or nothing: a write that fails (a full disk) leaves no new file and the files already
        there untouched. Refused, with nothing written, where a file would be replaced that this panel did not
        write from the same grains layer (unless "replace existing files" is ticked).
        """
        from napari_grainseg.io.outputs import file_record
        from napari_grainseg.measure.report import field_export_paths, write_field_exports

        try:
            stem = self.stem.value.strip()
            if not stem:
                raise InputError("enter a file stem for the exports")
            typed = str(self.folder.line_edit.value).strip()
            folder = Path(typed)
            if not typed or not folder.is_absolute():  # else napari's launch folder, wherever that is
                raise InputError(f"choose the export folder (a full path){f', not {typed!r}' if typed else ''}")
            if not folder.is_dir():
                raise InputError(f"export folder does not exist: {folder}")
            labels, nm = self._inputs()
            key = layer_key(self.grains.value)
            targets = field_export_paths(folder, stem, what, svg=True)
            folders = [path.name for path in targets if path.is_dir()]
            if folders:
                raise InputError(f"not exported: {', '.join(folders)} in {folder} is a folder; change the file stem")
            if not self.replace.value:
                self._check_no_replacement(targets, key)
            stats, options = self.stats, self._options(labels)
            if not self._measured_as(self.grains.value, labels, nm, _options_key(options)):
                stats = compute_stats(labels, nm, **options)  # exports what is shown now
            # the report's exports and layout, as the CLI writes them; all or nothing: a full disk
            # leaves no partial set and the files already there as they were
            paths = write_field_exports(
                folder, stem, stats.table, stats.summary, extra=self._extra(), svg=True, what=what, labels=labels
            )
            for path in paths.values():
                self._written[path.resolve()] = (key, file_record(path)["sha256"])
            self.replace.value = False  # a permission for this export, not for every later one
        except (GrainsegError, OSError) as exc:
            # the statistics shown stay valid: the failure belongs under the export buttons
            text = str(exc)
            if not isinstance(exc, GrainsegError):  # the reason, without the temporary file's name
                text = f"cannot write in {folder}: {(exc.strerror or str(exc)).lower()}"
            show_error(text)
            self.export_status.value = text if text.startswith("not exported") else f"not exported: {text}"
            return None
        names = ", ".join(sorted(Path(p).name for p in paths.values()))
        self.export_status.value = f"wrote {names} to {folder}"
        show_info(f"napari-grainseg: wrote {len(paths)} file{'' if len(paths) == 1 else 's'} to {folder}")
        return paths
