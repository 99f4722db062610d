"""Per-grain values arranged for display: a feature table keyed by grain id and a size-coloured image."""

from __future__ import annotations

import numpy as np

#: Feature columns shown for the grain under the cursor: (table column, shown name).
FEATURE_COLUMNS = (
    ("ecd_nm", "ECD (nm)"),
    ("area_nm2", "area (nm²)"),
    ("ecd_px", "ECD (px)"),
    ("area_px", "area (px)"),
    ("aspect_ratio", "aspect ratio"),
    ("touches_border", "touches border"),
)


def grain_features(table) -> dict[str, np.ndarray]:
    """Columns for a napari Labels layer's ``features``: ``index`` (the grain id), ECD, area, aspect
    ratio and border contact, in nm where the table is calibrated and always in px."""
    out = {"index": np.asarray(table["label"], np.int64)}
    for column, name in FEATURE_COLUMNS:
        if column in table:
            values = np.asarray(table[column])
            out[name] = values if values.dtype == bool else np.round(values.astype(float), 2)
    return out


def ecd_image(labels: np.ndarray, table, unit: str = "nm") -> np.ndarray:
    """A float32 image holding each grain's ECD (``unit`` nm when calibrated, else px) on its pixels;
    boundary pixels and grains missing from ``table`` are NaN."""
    labels = np.asarray(labels)
    column = "ecd_nm" if unit == "nm" and "ecd_nm" in table else "ecd_px"
    ids = np.asarray(table["label"], np.int64)
    values = np.asarray(table[column], np.float32)
    top = int(max(labels.max(initial=0), ids.max(initial=0)))
    if top <= 2 * labels.size + 1024:  # a lookup table no larger than the image
        lut = np.full(top + 1, np.nan, np.float32)
        lut[ids] = values
        lut[0] = np.nan
        return lut[labels]
    # ids near 2**32: memory of the image, not of the largest id
    order = np.argsort(ids)
    ids, values = ids[order], values[order]
    pos = np.clip(np.searchsorted(ids, labels), 0, max(ids.size - 1, 0))
    found = (ids[pos] == labels) & (labels > 0) if ids.size else np.zeros(labels.shape, bool)
    return np.where(found, values[pos] if ids.size else np.nan, np.nan).astype(np.float32)
