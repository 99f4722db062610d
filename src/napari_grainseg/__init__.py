"""napari-grainseg: grain boundaries and grain-size statistics for TEM micrographs.

The core library (everything outside :mod:`napari_grainseg.plugin`) has no Qt or
napari imports. The public names below are imported on first use, so ``import
napari_grainseg`` is fast and torch loads only when a network runs.

Examples
--------
>>> import napari_grainseg as gs
>>> m = gs.read_micrograph(gs.interconnect_tem_path())          # doctest: +SKIP
>>> result = gs.segment(m.data)                                 # doctest: +SKIP
>>> gs.summarize(result.labels, m.pixel_size_nm)["n_grains"]    # doctest: +SKIP
"""

from napari_grainseg._lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__, _public = lazy_exports(
    __name__,
    {
        "read_micrograph": ".io.readers",
        "Micrograph": ".io.readers",
        "interconnect_tem_path": ".io.samples",
        "fuse_edges": ".segmentation.edges",
        "segment": ".segmentation.pipeline",
        "write_segmentation": ".segmentation.pipeline",
        "Segmentation": ".segmentation.pipeline",
        "measure_grains": ".measure.table",
        "summarize": ".measure.statistics",
        "write_report": ".measure.report",
        "generate": ".synthetic",
    },
)
__all__ = ["__version__", *_public]
