"""The "Grain statistics" dock widget: live summary, embedded histogram, exports.

Measurements (:func:`napari_grainseg.measure.summary.measure_grains` and
:func:`~napari_grainseg.measure.summary.summarize`) and the figure
(:func:`napari_grainseg.measure.report.histogram_figure`) are computed in a worker after
each change of the grains layer (debounced); the main thread only shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, PushButton
from napari.utils.notifications import show_error, show_info, show_warning

from napari_grainseg.errors import GrainsegError, InputError
from napari_grainseg.plugin._boundaries import PENDING_KEY, ROLE_KEY, layer_key
from napari_grainseg.plugin._dock import (
    follow_active, link_of, newest_link_of_image, scroll_body, source_image, suggest_reader_for_calibrated_tiffs,
)
from napari_grainseg.plugin._layers import image_folder, pixel_size_of
from napari_grainseg.plugin._threading import Debouncer, create_worker
from napari_grainseg.plugin._writer import grain_labels, write_calibrated_tiff

#: Delay between an edit and the statistics update (ms).
STATS_DELAY_MS = 300


@dataclass
class GrainStats:
    """Measurements of one grains layer, as shown and exported."""

    labels: np.ndarray
    table: object  # measure.GrainTable
    summary: dict
    figure: object  # matplotlib Figure (Agg)
    pixel_size_nm: float | None


def compute_stats(labels: np.ndarray, pixel_size_nm: float | None, exclude_edge_grains: bool = True) -> GrainStats:
    """Measure a label image and draw its histogram figure (thread-safe, no Qt)."""
    from napari_grainseg.measure.summary import measure_grains, summarize
    from napari_grainseg.measure.report import histogram_figure

    table = measure_grains(labels, pixel_size_nm)
    summary = summarize(labels, pixel_size_nm, table=table, exclude_edge_grains=exclude_edge_grains)
    # Stacked panels: the dock is narrow. Exports redraw the report's side-by-side layout.
    return GrainStats(labels, table, summary, histogram_figure(table, summary, vertical=True), pixel_size_nm)


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

    lines = [
        f"grains: {summary['n_grains']} ({summary['n_grains_included']} complete, "
        f"{summary['n_grains_edge']} at the border)",
        f"mean ECD {size('mean_ecd')}, D10/D50/D90 {size('d10')} / {size('d50')} / {size('d90')}",
        f"mean intercept {size('mean_intercept')}",
        f"ASTM G planimetric {g('astm_g_planimetric')}, intercept {g('astm_g_intercept')}",
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
        self._watched = None
        self._warned_uncalibrated: set = set()
        self._worker = None
        self._again = False
        self.grains = ComboBox(label="grains", choices=self._grain_layers)
        self.include_edge = CheckBox(text="include grains cut by the border", value=False)
        self.summary = Label(value="")
        self.caveats = Label(value="")
        self.caveats.native.setWordWrap(True)
        self.caveats.native.setStyleSheet("color: #ffb347")
        self.folder = FileEdit(label="folder", mode="d", value=Path.cwd())
        self._auto_folder: Path | None = Path.cwd()
        self.stem = LineEdit(label="file stem", value="")
        self.csv_button = PushButton(text="CSV")
        self.json_button = PushButton(text="JSON")
        self.hist_button = PushButton(text="Histogram")
        self.tiff_button = PushButton(text="Label TIFF")
        self.all_button = PushButton(text="All")
        row = Container(widgets=[self.csv_button, self.json_button, self.hist_button], layout="horizontal",
                        labels=False, label="export")
        row2 = Container(widgets=[self.tiff_button, self.all_button], layout="horizontal", labels=False, label="")
        self.body = Container(widgets=[self.grains, self.include_edge, self.summary, self.caveats, self.folder,
                                       self.stem, row, row2])
        super().__init__(widgets=[], labels=False)
        scroll_body(self, self.body)
        self._canvas = None
        self._debouncer = Debouncer(self.update, STATS_DELAY_MS)
        self.grains.changed.connect(self._watch)
        self.include_edge.changed.connect(self._debouncer.trigger)
        self.csv_button.clicked.connect(lambda: self.export(("csv",)))
        self.json_button.clicked.connect(lambda: self.export(("json",)))
        self.hist_button.clicked.connect(lambda: self.export(("histogram",)))
        self.tiff_button.clicked.connect(lambda: self.export(("tiff",)))
        self.all_button.clicked.connect(lambda: self.export())
        viewer.layers.events.inserted.connect(self.grains.reset_choices)
        viewer.layers.events.removed.connect(self.grains.reset_choices)
        follow_active(viewer, self.grains, self._grains_for)
        suggest_reader_for_calibrated_tiffs(viewer)
        self._watch(self.grains.value)

    def _grains_for(self, layer):
        """The grains layer to measure when ``layer`` becomes active (None: keep the current one)."""
        if layer is None:
            return None
        if layer.metadata.get(ROLE_KEY) == "grains":
            return layer
        link = link_of(layer)
        if link is not None:
            return link.grains
        if layer.metadata.get(ROLE_KEY) == "boundaries":  # being created: its grains layer came first
            return None
        image = source_image(self._viewer, layer)
        link = newest_link_of_image(self._viewer, image) if image is not None else None
        return link.grains if link is not None else None

    def _grain_layers(self, _widget=None) -> list:
        return [layer for layer in self._viewer.layers if isinstance(layer, napari.layers.Labels)
                and layer.metadata.get(ROLE_KEY) in ("grains", "boundaries")]

    def _watch(self, layer) -> None:
        if self._watched is not None:
            try:
                self._watched.events.data.disconnect(self._debouncer.trigger)
                self._watched.events.scale.disconnect(self._debouncer.trigger)
            except (TypeError, ValueError, RuntimeError):
                pass
        self._watched = layer
        if layer is not None:
            layer.events.data.connect(self._debouncer.trigger)
            layer.events.scale.connect(self._debouncer.trigger)
            # the exports are named after, and by default saved beside, the image measured
            self.stem.value = layer.metadata.get("grainseg_source", layer.name).replace(" ", "_")
            image = source_image(self._viewer, layer)
            if self._auto_folder is None or Path(self.folder.value) == self._auto_folder:
                self._auto_folder = image_folder(image)
                self.folder.value = self._auto_folder
            self._debouncer.trigger()

    def _fail(self, exc) -> None:
        show_error(str(exc))
        self.summary.value = f"error: {exc}"

    # ------------------------------------------------------------------ update

    def _inputs(self):
        layer = self.grains.value
        if layer is None:
            raise InputError("no grains layer: run Net1 first (Segment grains widget)")
        nm = pixel_size_of(layer)
        if nm is None and layer_key(layer) not in self._warned_uncalibrated:
            self._warned_uncalibrated.add(layer_key(layer))
            show_warning(f"'{layer.name}' has no pixel size: sizes are in px and ASTM G is not computed; "
                         "set the pixel size in the Segment grains widget")
        labels = grain_labels(np.array(layer.data, copy=True), layer.metadata.get(ROLE_KEY))
        return labels, nm

    def update(self):
        """Recompute the statistics of the selected layer (in a worker). Returns the worker."""
        if self._worker is not None:  # one at a time; recompute once it is done
            self._again = True
            return self._worker
        layer = self.grains.value
        if layer is not None and layer.metadata.get(PENDING_KEY):
            self.summary.value = "waiting for the result..."  # measured when its data arrives
            return None
        try:
            labels, nm = self._inputs()
        except GrainsegError as exc:
            self._fail(exc)
            return None
        self.summary.value = "measuring..."
        worker = create_worker(compute_stats, labels, nm, not self.include_edge.value)
        worker.returned.connect(self._show)
        worker.errored.connect(self._fail)
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()
        return worker

    def _finished(self) -> None:
        self._worker = None
        if self._again:
            self._again = False
            self._debouncer.trigger()

    def _show(self, stats: GrainStats) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg

        self.stats = stats
        self.summary.value = summary_text(stats.summary)
        self.caveats.value = caveats_text(stats.summary)
        canvas = FigureCanvasQTAgg(stats.figure)
        canvas.setMinimumHeight(520)
        layout = self.body.native.layout()
        if self._canvas is not None:
            layout.removeWidget(self._canvas)
            self._canvas.setParent(None)
            self._canvas.deleteLater()
        layout.insertWidget(4, canvas)
        self._canvas = canvas

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
            done = ", ".join(f"{n} {k.replace('_px', ' px').replace('painted', 'painted')}"
                             for k, n in edits.items() if n)
            extra["method"] = f"{extra.get('method', 'boundary layer')} + hand edits ({done})"
        return extra

    def export(self, what: tuple[str, ...] = ("csv", "json", "histogram", "tiff")) -> dict[str, Path] | None:
        """Write the chosen exports of the current statistics into the folder; returns the paths."""
        from napari_grainseg.measure.report import histogram_figure, save_figure, write_grains_csv, write_summary_json

        try:
            stem = self.stem.value.strip()
            if not stem:
                raise InputError("enter a file stem for the exports")
            folder = Path(self.folder.value)
            if not folder.is_dir():
                raise InputError(f"export folder does not exist: {folder}")
            labels, nm = self._inputs()
            stats = self.stats
            if stats is None or stats.pixel_size_nm != nm or not np.array_equal(stats.labels, labels):
                stats = compute_stats(labels, nm, not self.include_edge.value)  # exports what is shown now
            paths: dict[str, Path] = {}
            if "csv" in what:
                paths["csv"] = write_grains_csv(folder / f"{stem}_grains.csv", stats.table)
            if "json" in what:
                paths["json"] = write_summary_json(folder / f"{stem}_summary.json", stats.summary, self._extra())
            if "histogram" in what:
                figure = histogram_figure(stats.table, stats.summary)  # the report's layout, as the CLI writes
                paths["histogram_png"] = save_figure(figure, folder / f"{stem}_histogram.png")
                paths["histogram_svg"] = save_figure(figure, folder / f"{stem}_histogram.svg")
            if "tiff" in what:
                paths["grains_tif"] = write_calibrated_tiff(folder / f"{stem}_grains.tif",
                                                            labels.astype(np.uint32), nm)
                paths["boundaries_tif"] = write_calibrated_tiff(folder / f"{stem}_boundaries.tif",
                                                                (labels == 0).astype(np.uint8), nm)
        except (GrainsegError, OSError) as exc:
            self._fail(exc)
            return None
        show_info(f"napari-grainseg: wrote {len(paths)} files to {folder}")
        return paths
