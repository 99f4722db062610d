"""Per-grain measurements, size statistics, ASTM E112 grain size numbers and reports.

- :mod:`~napari_grainseg.measure.summary`: the per-grain table, statistics and ASTM E112;
- :mod:`~napari_grainseg.measure.report`: the CSV, summary JSON, histogram and overlay of one field.
"""

from napari_grainseg._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "measure_grains": ".summary", "summarize": ".summary", "GrainTable": ".summary",
    "field_statistics": ".summary", "write_report": ".report",
})
