"""From a micrograph to closed grains.

- :mod:`~napari_grainseg.segmentation.edges`: Sobel, LoG and Canny with automatic thresholds, fused as RGB;
- :mod:`~napari_grainseg.segmentation.tiling`: the one tiler (blended tiles, padding, blocks with halos, row bands);
- :mod:`~napari_grainseg.segmentation.inference`: Net1 on any image size (scale choice, tiled);
- :mod:`~napari_grainseg.segmentation.refine`: Net2's step-by-step refinement;
- :mod:`~napari_grainseg.segmentation.grains`: boundary maps to closed grains (threshold, watershed);
- :mod:`~napari_grainseg.segmentation.editing`: merge, split and delete grains;
- :mod:`~napari_grainseg.segmentation.options`: the options of a segmentation and the model cache;
- :mod:`~napari_grainseg.segmentation.pipeline`: the whole chain for one micrograph and its files.
"""

from napari_grainseg._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "fuse_edges": ".edges",
        "detect_edges": ".edges",
        "EdgeParams": ".edges",
        "predict_boundaries": ".inference",
        "refine": ".refine",
        "boundaries_to_labels": ".grains",
        "probability_to_labels": ".grains",
        "merge_grains": ".editing",
        "split_grain": ".editing",
        "delete_grain": ".editing",
        "segment": ".pipeline",
        "write_segmentation": ".pipeline",
        "Segmentation": ".pipeline",
        "SegmentOptions": ".options",
    },
)
