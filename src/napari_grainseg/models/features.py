"""Network input features computed from a micrograph (numpy only, no torch).

Net1 sees four channels: the three fused edge maps of the paper (Sobel, LoG,
Canny as 0/1) and the contrast-stretched micrograph itself, so it can also use
intensity differences that none of the edge detectors marked.
"""

from __future__ import annotations

import numpy as np

from napari_grainseg.segmentation.edges import EdgeParams, detect_edges, resolve_edge_params

#: Names of Net1's input channels, in order.
NET1_CHANNELS: tuple[str, ...] = ("sobel", "log", "canny", "intensity")


def net1_features(image: np.ndarray, params: EdgeParams | None = None) -> np.ndarray:
    """Net1's input for a 2-D micrograph: a (4, H, W) float32 array in [0, 1].

    Parameters
    ----------
    image
        2-D micrograph.
    params
        Edge parameters. Pass parameters resolved on the whole image
        (:func:`~napari_grainseg.segmentation.edges.resolve_edge_params`) when ``image`` is a
        tile, so every tile uses the same thresholds and intensity scaling.
    """
    params = resolve_edge_params(image, params or EdgeParams())
    maps = detect_edges(image, params)
    lo, hi = params.stretch_limits
    intensity = np.clip((np.asarray(image, np.float32) - lo) / (hi - lo), 0.0, 1.0)
    return np.stack([maps.sobel, maps.log, maps.canny, intensity]).astype(np.float32)
