"""Per-grain measurements, size statistics, ASTM E112 grain size numbers and reports.

- :mod:`~napari_grainseg.measure.table`: preparing a label image once (ids renumbered,
  ``min_area``, exclusion mask, boundaries shared out) and the per-grain table;
- :mod:`~napari_grainseg.measure.astm`: ASTM E112 G from N_A, the planimetric count,
  the mean lineal intercept;
- :mod:`~napari_grainseg.measure.statistics`: edge weights, weighted quantiles, the
  lognormal fit, histograms, the summary of a field, statistics over fields and pooled;
- :mod:`~napari_grainseg.measure.report`: the CSV, summary JSON, histogram and overlay of one field;
- :mod:`~napari_grainseg.measure.display`: per-grain values arranged for display (napari features,
  an image coloured by ECD).
"""

from napari_grainseg._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "GrainTable": ".table",
        "MeasuredField": ".table",
        "prepare_labels": ".table",
        "measure_grains": ".table",
        "fill_boundaries": ".table",
        "grain_ecds": ".table",
        "astm_g_from_na": ".astm",
        "planimetric_count": ".astm",
        "mean_intercept": ".astm",
        "summarize": ".statistics",
        "measure_field": ".statistics",
        "lognormal_fit": ".statistics",
        "field_statistics": ".statistics",
        "pooled_statistics": ".statistics",
        "write_report": ".report",
        "write_field_exports": ".report",
    },
)
