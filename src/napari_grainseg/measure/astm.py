"""ASTM E112 grain size numbers: planimetric count, mean area and Heyn lineal intercept.

REFERENCE §5:

* planimetric: ``G = 3.321928·log10(N_A) − 2.954``, N_A grains per mm² counted
  over the whole field (Saltikov: inside 1, cut by an edge ½, corner ¼; or
  Jeffries: inside 1, cut ½);
* mean area: ``G = −3.321928·log10(Ā) − 2.954`` (Ā in mm², complete grains);
* Heyn lineal intercept: ``G = −6.643856·log10(ℓ̄) − 3.288`` (ℓ̄ in mm); test
  lines at ``n`` evenly spaced orientations, one intersection per change of grain
  id along a line; ℓ̄ = 1 / mean over orientations of P_L (an isotropic estimate).

G is never clamped to E112's chart range (nanocrystalline films reach G ≈ 18–28).
Physical units: 1 nm = 1e-6 mm.
"""

from __future__ import annotations

import math

import numpy as np

from napari_grainseg.errors import InputError
from napari_grainseg.measure.table import MeasuredField, prepare_labels

__all__ = [
    "NM_TO_MM",
    "astm_g_from_intercept_mm",
    "astm_g_from_mean_area_mm2",
    "astm_g_from_na",
    "mean_intercept",
    "planimetric_count",
]

#: mm per nm.
NM_TO_MM = 1e-6

_LOG2_10 = 3.321928  # 1/log10(2), as printed in E112


def astm_g_from_na(n_a_per_mm2: float) -> float:
    """ASTM E112 planimetric grain size number from grains per mm².

    >>> round(astm_g_from_na(15.5), 2)   # E112 table: G = 1 at 15.50 grains/mm²
    1.0
    """
    return _LOG2_10 * math.log10(n_a_per_mm2) - 2.954


def astm_g_from_mean_area_mm2(mean_area_mm2: float) -> float:
    """ASTM E112 grain size number from the mean grain area in mm²."""
    return -_LOG2_10 * math.log10(mean_area_mm2) - 2.954


def astm_g_from_intercept_mm(mean_intercept_mm: float) -> float:
    """ASTM E112 grain size number from the mean lineal intercept in mm.

    >>> round(astm_g_from_intercept_mm(0.226), 1)   # E112 table: G = 1 at 0.226 mm
    1.0
    """
    return -6.643856 * math.log10(mean_intercept_mm) - 3.288


def planimetric_count(labels, rule: str = "saltikov") -> dict:
    """Equivalent grain count of the whole field for the planimetric method.

    ``rule="saltikov"``: grains inside count 1, grains cut by one or two
    opposite edges ½, grains holding an image corner ¼ (E112's rectangle rule);
    ``rule="jeffries"``: inside 1, every grain cut by the edge ½. ``labels``: a
    label image or a :class:`~napari_grainseg.measure.table.MeasuredField`
    (grains dropped by its options are not counted).
    """
    if rule not in ("saltikov", "jeffries"):
        raise InputError(f"planimetric rule must be 'saltikov' or 'jeffries', got {rule!r}")
    lab = labels.labels if isinstance(labels, MeasuredField) else np.asarray(labels)
    n_grains = labels.n_grains if isinstance(labels, MeasuredField) else int(np.count_nonzero(np.unique(lab)))
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    n_edge_all = int(np.count_nonzero(edge))
    corners = {int(v) for v in (lab[0, 0], lab[0, -1], lab[-1, 0], lab[-1, -1]) if v}
    n_inside = n_grains - n_edge_all
    if rule == "saltikov":
        n_corner = len(corners)
        n_edge = n_edge_all - n_corner
        n_eq = n_inside + 0.5 * n_edge + 0.25 * n_corner
    else:
        n_corner = 0
        n_edge = n_edge_all
        n_eq = n_inside + 0.5 * n_edge
    return {"rule": rule, "n_inside": n_inside, "n_edge": n_edge, "n_corner": n_corner, "n_equivalent": n_eq}


#: Most test-line orientations of the intercept method: one per degree (E112 uses 4 to 8; more only
#: costs time, each orientation scans the whole field).
MAX_INTERCEPT_ORIENTATIONS = 180


def mean_intercept(
    labels,
    *,
    n_orientations: int = 8,
    spacing_px: float = 4.0,
    step_px: float = 0.5,
    angles_deg: np.ndarray | None = None,
) -> dict:
    """Heyn mean lineal intercept over evenly spaced test-line orientations.

    For each orientation θ (degrees from the image x axis towards +y), parallel
    test lines ``spacing_px`` apart cover the field; each line is sampled every
    ``step_px`` (nearest pixel). E112's raster rule counts one intersection per
    change of grain id, not per boundary pixel (boundary pixels are shared out
    first); here a line that meets k different grains crosses k − 1
    boundaries, i.e. a change back into a grain already met on that line is
    not counted again. This removes the raster artefact of a digital line
    running nearly parallel to a digital boundary, which otherwise zig-zags
    across it many times (tens of % too many crossings at some angles); it
    assumes grains are convex along a test line. P_L(θ) = intersections / line length;
    ℓ̄ = 1 / mean_θ P_L(θ). A line end inside a grain counts ½ intercept, so the
    number of intercepts equals the number of intersections. Excluded pixels
    (a :class:`~napari_grainseg.measure.table.MeasuredField`'s mask) cut a line
    into pieces, each counted as a line of its own, and add no length.

    Returns
    -------
    dict
        ``mean_intercept_px`` (inf when no line crosses a boundary),
        ``p_l_per_px``, ``by_orientation`` (angle, intersections, length, ℓ̄).
    """
    fld = prepare_labels(labels)
    filled = fld.filled
    h, w = filled.shape
    if angles_deg is None:
        if not 1 <= n_orientations <= MAX_INTERCEPT_ORIENTATIONS:
            raise InputError(
                f"the number of test-line orientations must be 1 to {MAX_INTERCEPT_ORIENTATIONS} "
                f"(one per degree), got {n_orientations}"
            )
        angles_deg = np.arange(n_orientations) * 180.0 / n_orientations
    cy, cx = (h - 1) / 2, (w - 1) / 2
    r = math.hypot(h, w) / 2 + 1
    t = np.arange(-r, r, step_px)
    n_ids = fld.n_grains + 1
    by = []
    for ang in np.asarray(angles_deg, float):
        th = math.radians(ang)
        uy, ux = math.sin(th), math.cos(th)
        vy, vx = ux, -uy
        # lines through the centre and every spacing_px on either side, in chunks
        # of lines (each line is counted on its own, so chunking changes nothing)
        n_side = int(r // spacing_px)
        s_all = np.arange(-n_side, n_side + 1) * spacing_px
        chunk = max(1, (1 << 18) // t.size)
        crossings, n_inside = 0, 0
        for c0 in range(0, s_all.size, chunk):
            s = s_all[c0 : c0 + chunk]
            y = cy + s[:, None] * vy + t[None, :] * uy
            x = cx + s[:, None] * vx + t[None, :] * ux
            iy, ix = np.rint(y).astype(np.int64), np.rint(x).astype(np.int64)
            valid = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
            ids = np.where(valid, filled[np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)], 0)
            if fld.excluded is not None:
                valid &= ids > 0
            both = valid[:, 1:] & valid[:, :-1]
            # grains met by each piece of line inside the field: distinct (piece, id)
            # pairs; a piece meeting k grains crosses k - 1 boundaries. Without an
            # exclusion mask each line has one piece (the field is convex).
            starts = valid.copy()
            starts[:, 1:] &= ~valid[:, :-1]
            # only where a piece starts or the grain changes: every (piece, grain) pair occurs at
            # one of those samples, and a sort of them is ~50x smaller than of every sample
            runs = valid.copy()
            runs[:, 1:] &= ~(valid[:, :-1] & (ids[:, 1:] == ids[:, :-1]))
            piece = (np.cumsum(starts.ravel()) - 1).reshape(valid.shape)[runs]
            key = piece.astype(np.int64) * n_ids + ids[runs]
            n_pieces = int(starts.sum())
            met = np.bincount(piece[np.unique(key, return_index=True)[1]], minlength=n_pieces)
            crossings += int(np.sum(np.clip(met - 1, 0, None)))
            n_inside += int(np.count_nonzero(both))
        length = float(n_inside) * step_px
        p_l = crossings / length if length else 0.0
        by.append(
            {
                "angle_deg": float(ang),
                "intersections": crossings,
                "length_px": length,
                "p_l_per_px": p_l,
                "mean_intercept_px": (1 / p_l) if p_l else math.inf,
            }
        )
    p_l_mean = float(np.mean([b["p_l_per_px"] for b in by]))
    return {
        "mean_intercept_px": (1 / p_l_mean) if p_l_mean else math.inf,
        "p_l_per_px": p_l_mean,
        "by_orientation": by,
        "n_orientations": len(by),
        "spacing_px": spacing_px,
        "step_px": step_px,
    }
