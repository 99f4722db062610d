"""The whole segmentation of one micrograph: Net1 → closed grains → files.

This is the one place that chains the stages, used by ``grainseg segment``,
``grainseg demo`` and (later) batch processing, so every entry point produces
the same result and the same files.

Output files (a public contract; later stages add files but keep these):
``<stem>_boundaries.tif`` (uint8, 1 = boundary, 1 px wide, 8-connected, the
input's size), ``<stem>_grains.tif`` (uint32 labels, 0 = boundary, every closed
4-connected grain its own id), and the measurement report of
:func:`napari_grainseg.report.write_report` (CSV, summary JSON, histogram, overlay).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .grains import DEFAULT_MIN_GRAIN_AREA, boundaries_to_labels
from .inference import BoundaryPrediction, predict_boundaries


@dataclass(frozen=True)
class Segmentation:
    """Result of :func:`segment`: the probability, the 1-px boundaries and the grain labels."""

    prediction: BoundaryPrediction
    boundaries: np.ndarray
    labels: np.ndarray

    def info(self) -> dict:
        """JSON-ready facts about how the result was made (goes into the summary JSON)."""
        p = self.prediction
        return {"device": p.device, "method": "net1", "net2_steps": 0, "net1_scale": p.scale,
                "grain_size_hint_px" if p.grain_size_source == "hint" else "grain_size_estimate_px":
                    p.grain_size_px,
                "seconds": round(p.seconds, 3), "tiles": p.n_tiles}


def segment(image: np.ndarray, *, model=None, device="auto", grain_size_px: float | None = None,
            threshold: float = 0.5, min_grain_area: int = DEFAULT_MIN_GRAIN_AREA,
            progress: Callable[[int, int], None] | None = None) -> Segmentation:
    """Segment a micrograph into grains with Net1.

    Parameters
    ----------
    image
        2-D micrograph.
    model, device, grain_size_px, progress
        See :func:`napari_grainseg.inference.predict_boundaries`.
    threshold
        Boundary probability threshold.
    min_grain_area
        Smallest grain kept (px); smaller ones are merged into neighbours.
    """
    prediction = predict_boundaries(image, model, device=device, grain_size_px=grain_size_px,
                                    progress=progress)
    labels = boundaries_to_labels(prediction.probability, threshold=threshold, min_grain_area=min_grain_area)
    return Segmentation(prediction=prediction, boundaries=labels == 0, labels=labels)


def write_segmentation(out_dir: str | Path, stem: str, image: np.ndarray, result: Segmentation,
                       pixel_size_nm: float | None = None, extra: dict | None = None) -> dict[str, Path]:
    """Write the boundary and label TIFFs plus the measurement report, atomically. Returns the paths."""
    import tifffile

    from .atomic import atomic_path
    from .report import write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for key, array in (("boundaries", result.boundaries.astype(np.uint8)),
                       ("grains", result.labels.astype(np.uint32))):
        path = out_dir / f"{stem}_{key}.tif"
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, array, compression="zlib")
        paths[key] = path
    paths.update(write_report(out_dir, stem, image=image, labels=result.labels, boundaries=result.boundaries,
                              pixel_size_nm=pixel_size_nm, extra={**result.info(), **(extra or {})}))
    return paths
