"""napari writer contribution: File ▸ Save for grain / boundary Labels layers (.tif, .csv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_grainseg.errors import InputError
from napari_grainseg.plugin._layers import pixel_size_from

#: File name endings the writer accepts.
LABEL_EXTENSIONS = (".tif", ".tiff", ".csv")


def grain_labels(data: np.ndarray, role: str | None = None) -> np.ndarray:
    """Grain labels of a Labels layer: a boundary map (role "boundaries", 0/1) is closed first."""
    from napari_grainseg.segmentation.grains import boundaries_to_labels, validate_labels

    data = np.asarray(data)
    if role == "boundaries":
        return boundaries_to_labels(data.astype(np.uint8))
    return validate_labels(data)


def write_labels(path: str, data, meta: dict) -> list[str]:
    """Save a Labels layer: ``.tif`` keeps the array; ``.csv`` is the per-grain table (nm when calibrated)."""
    from napari_grainseg.measure.report import write_tiff
    from napari_grainseg.measure.table import measure_grains

    path = Path(path)
    suffix = path.suffix.lower()
    data = np.asarray(data)
    if data.ndim != 2:
        raise InputError(f"only 2-D label layers can be saved, got shape {data.shape}")
    if suffix in (".tif", ".tiff"):
        return [str(write_tiff(path, data, pixel_size_from(meta.get("scale"), meta.get("units"))))]
    if suffix == ".csv":
        role = (meta.get("metadata") or {}).get("grainseg_role")
        table = measure_grains(grain_labels(data, role), pixel_size_from(meta.get("scale"), meta.get("units")))
        return [str(table.to_csv(path))]
    raise InputError(f"cannot save labels as '{suffix}': use {', '.join(LABEL_EXTENSIONS)}")
