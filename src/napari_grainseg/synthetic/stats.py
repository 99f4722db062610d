"""Measurements that define the generator's size parameters and check its geometry.

The requested ``mean_diameter`` and ``log_sigma`` are defined on the output by
:func:`grain_size_stats`: arithmetic mean equivalent-circle diameter and standard
deviation of ln ECD over interior grains (not touching the image border) of at
least 15 px, with areas counted on the label image as it is (boundary pixels
belong to no grain).
"""

from __future__ import annotations

import numpy as np

from napari_grainseg.measure.table import fill_boundaries, grain_ecds

__all__ = ["grain_size_stats", "triple_junction_angles"]


def grain_size_stats(labels: np.ndarray, min_area: int = 15) -> dict[str, float]:
    """Mean ECD, SD of ln ECD and count of interior grains >= ``min_area`` px.

    Examples
    --------
    >>> lab = np.zeros((40, 40), int); lab[5:15, 5:15] = 1; lab[20:30, 20:35] = 2
    >>> stats = grain_size_stats(lab)
    >>> stats["n"], round(stats["mean_ecd"], 2)
    (2, 12.59)
    """
    d = grain_ecds(labels, fill=False, min_area=min_area, interior=True)
    if d.size == 0:
        return {"n": 0, "mean_ecd": float("nan"), "log_sigma": float("nan")}
    return {
        "n": int(d.size),
        "mean_ecd": float(d.mean()),
        "log_sigma": float(np.log(d).std(ddof=1)) if d.size > 1 else 0.0,
    }


def triple_junction_angles(labels: np.ndarray, radius: float) -> np.ndarray:
    """Angles (degrees) at triple junctions, measured by area inside a disc.

    Boundary pixels (0) are first given to the nearest grain. A triple junction is
    a 2x2 window holding three grains; the angle a grain makes at the junction is
    360° times its share of a disc of ``radius`` px centred there. Junctions whose
    disc leaves the image or meets a fourth grain are skipped. Returns an (m, 3)
    array (each row sums to 360°).
    """
    lab = fill_boundaries(np.asarray(labels))
    a, b, c, d = lab[:-1, :-1], lab[:-1, 1:], lab[1:, :-1], lab[1:, 1:]
    distinct = 1 + (b != a).astype(int) + ((c != a) & (c != b)) + ((d != a) & (d != b) & (d != c))
    jy, jx = np.nonzero(distinct == 3)
    h, w = lab.shape
    r = int(np.ceil(radius))
    oy, ox = np.mgrid[-r : r + 2, -r : r + 2]
    disc = (oy - 0.5) ** 2 + (ox - 0.5) ** 2 <= radius**2  # centred on the window corner
    out, seen = [], set()
    for y, x in zip(jy, jx):
        if y - r < 0 or x - r < 0 or y + r + 2 > h or x + r + 2 > w:
            continue
        win = lab[y - r : y + r + 2, x - r : x + r + 2][disc]
        ids, counts = np.unique(win, return_counts=True)
        if ids.size != 3:
            continue
        key = tuple(ids)
        if key in seen:  # one junction can light up two adjacent windows
            continue
        seen.add(key)
        out.append(360.0 * counts / counts.sum())
    return np.array(out).reshape(-1, 3)
