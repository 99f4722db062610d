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
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, PushButton
from napari.utils.notifications import show_error, show_info, show_warning

from napari_grainseg.errors import GrainsegError, InputError
from napari_grainseg.plugin._boundaries import ROLE_KEY, layer_key, links
from napari_grainseg.plugin._layers import pixel_size_of
from napari_grainseg.plugin._threading import Debouncer, create_worker
from napari_grainseg.measure.report import write_tiff
from napari_grainseg.plugin._writer import grain_labels

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
    from napari_grainseg.measure.report import histogram_figure
    from napari_grainseg.measure.statistics import measure_field

    table, summary = measure_field(labels, pixel_size_nm, exclude_edge_grains=exclude_edge_grains)
    # Stacked panels: the dock is narrow. Exports redraw the report's side-by-side layout.
    return GrainStats(labels, table, summary, histogram_figure(table, summary, vertical=True), pixel_size_nm)


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
        self.folder = FileEdit(label="folder", mode="d", value=Path.home())
        self.stem = LineEdit(label="file stem", value="")
        self.csv_button = PushButton(text="CSV")
        self.json_button = PushButton(text="JSON")
        self.hist_button = PushButton(text="Histogram")
        self.tiff_button = PushButton(text="Label TIFF")
        self.all_button = PushButton(text="All")
        row = Container(widgets=[self.csv_button, self.json_button, self.hist_button, self.tiff_button,
                                 self.all_button], layout="horizontal", labels=False, label="export")
        super().__init__(widgets=[self.grains, self.include_edge, self.summary, self.folder, self.stem, row])
        self._canvas = None
        self._debouncer = Debouncer(self.update, STATS_DELAY_MS)
        self.grains.changed.connect(self._watch)
        self.include_edge.changed.connect(self._debouncer.trigger)
        self.csv_button.changed.connect(lambda: self.export(("csv",)))
        self.json_button.changed.connect(lambda: self.export(("json",)))
        self.hist_button.changed.connect(lambda: self.export(("histogram",)))
        self.tiff_button.changed.connect(lambda: self.export(("tiff",)))
        self.all_button.changed.connect(lambda: self.export())
        viewer.layers.events.inserted.connect(self.grains.reset_choices)
        viewer.layers.events.removed.connect(self.grains.reset_choices)
        self._watch(self.grains.value)

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
            if not self.stem.value or self.stem.value.endswith(" grains"):
                self.stem.value = layer.metadata.get("grainseg_source", layer.name).replace(" ", "_")
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
        canvas = FigureCanvasQTAgg(stats.figure)
        canvas.setMinimumHeight(520)
        layout = self.native.layout()
        if self._canvas is not None:
            layout.removeWidget(self._canvas)
            self._canvas.setParent(None)
            self._canvas.deleteLater()
        layout.insertWidget(3, canvas)
        self._canvas = canvas

    # ------------------------------------------------------------------ export

    def _extra(self) -> dict:
        layer = self.grains.value
        for link in links():
            if layer_key(layer) in (layer_key(link.grains), layer_key(link.boundaries)):
                return dict(link.boundaries.metadata.get("grainseg_info", {}))
        return {}

    def export(self, what: tuple[str, ...] = ("csv", "json", "histogram", "tiff")) -> dict[str, Path] | None:
        """Write the chosen exports of the current statistics into the folder; returns the paths."""
        from napari_grainseg.measure.report import write_field_exports

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
            # the report's exports and layout, as the CLI writes them
            paths = write_field_exports(folder, stem, stats.table, stats.summary, extra=self._extra(),
                                        svg=True, what=what)
            if "tiff" in what:
                paths["grains_tif"] = write_tiff(folder / f"{stem}_grains.tif", labels.astype(np.uint32))
                paths["boundaries_tif"] = write_tiff(folder / f"{stem}_boundaries.tif",
                                                     (labels == 0).astype(np.uint8))
        except (GrainsegError, OSError) as exc:
            self._fail(exc)
            return None
        show_info(f"napari-grainseg: wrote {len(paths)} files to {folder}")
        return paths
