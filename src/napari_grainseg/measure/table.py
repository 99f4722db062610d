"""The per-grain table: one row per grain, every column computed for all grains at once.

Conventions
-----------
* Input: a label image (0 = boundary, grains > 0) or a tiling without boundary
  pixels. Before measuring sizes, boundary pixels are shared out to the nearest
  grain (:func:`fill_boundaries`, like ``skimage.segmentation.expand_labels``
  with no distance limit), so the grain areas add up to the field area and the
  ECD of a grain is comparable with that of a boundary-free ground-truth tiling.
* Label ids are first renumbered 1..N (:func:`relabel_sequential`): memory and
  time follow the number of grains and pixels, not the largest id. The table's
  ``label`` column keeps the ids of the input.
* ``touches_border`` is decided on the grain's own pixels (not the shared-out
  boundary), so a grain closed by a boundary line along the image edge counts as
  complete.
* Options of every measurement (:func:`prepare_labels`): ``min_area`` drops
  grains of fewer pixels (their pixels go to their neighbours, like boundary
  pixels); ``exclude`` is a mask of pixels left out of the measurement: grains
  overlapping it are dropped and the field area is what remains.
* Physical units: ``pixel_size_nm`` (nm per pixel). Without a pixel size every
  physical column is absent; the pixel results are still computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from napari_grainseg.errors import InputError
from napari_grainseg.segmentation.grains import validate_labels
from napari_grainseg.segmentation.tiling import row_slices

__all__ = [
    "GrainTable",
    "MeasuredField",
    "clean_scalar",
    "fill_boundaries",
    "grain_ecds",
    "measure_grains",
    "optional_pixel_size",
    "prepare_labels",
    "relabel_sequential",
    "validate_exclude_mask",
]


# --------------------------------------------------------------------------- helpers


def optional_pixel_size(value) -> float | None:
    """``None`` stays None; anything else goes through
    :func:`napari_grainseg.io.readers.validate_pixel_size` (positive, finite, in nm)."""
    if value is None:
        return None
    from napari_grainseg.io.readers import validate_pixel_size

    return validate_pixel_size(value)


def relabel_sequential(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber the grains of ``labels`` 1..N in the order of their ids; 0 stays 0.

    Returns ``(relabelled uint32 image, ids)`` where ``ids[k - 1]`` is the input
    id of grain ``k``. Memory follows the image, not the largest id: ids near
    2**32 cost what small ids cost.

    >>> lab, ids = relabel_sequential(np.array([[0, 7], [4_000_000_000, 7]], np.uint32))
    >>> lab.tolist(), ids.tolist()
    ([[0, 1], [2, 1]], [7, 4000000000])
    """
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    if top <= 2 * labels.size + 1024:
        present = np.bincount(labels.ravel(), minlength=top + 1).astype(bool)
        present[0] = False
        ids = np.flatnonzero(present)
        if ids.size == top:  # already 1..N
            return np.ascontiguousarray(labels, dtype=np.uint32), ids.astype(np.int64)
        lut = np.zeros(top + 1, np.uint32)
        lut[ids] = np.arange(1, ids.size + 1, dtype=np.uint32)
        return lut[labels], ids.astype(np.int64)
    uniq, inverse = np.unique(labels.ravel(), return_inverse=True)
    inverse = inverse.astype(np.uint32).reshape(labels.shape)
    if uniq[0] == 0:
        return inverse, uniq[1:].astype(np.int64)
    return inverse + np.uint32(1), uniq.astype(np.int64)


def fill_boundaries(
    labels: np.ndarray, distance: float | None = None, *, max_gap_px: float | None = None, threads: int = 1
) -> np.ndarray:
    """Assign every 0-pixel to the nearest grain.

    Equivalent to ``skimage.segmentation.expand_labels`` (``distance``: the
    largest distance a grain grows; ``None`` grows until no 0 pixel is left).
    Ties are broken by the Euclidean distance transform's scan order, the same
    everywhere, so a periodic tiling stays periodic. An image without any
    grain becomes a single grain (label 1).

    ``max_gap_px``: when the caller knows that every 0-pixel lies within this distance of a
    grain (thin boundary lines, no unlabelled area), the transform runs on ``threads`` bands
    of rows at once, each with a margin wider than the gap: the same result (scipy leaves the
    GIL during the transform), in about half the time on two threads.
    """
    labels = np.asarray(labels)
    zero = labels == 0
    if not zero.any():
        return labels.copy()
    if zero.all():
        return np.ones(labels.shape, labels.dtype)
    if distance is None and max_gap_px is not None and threads > 1 and labels.size >= BANDED_FILL_MIN_PX:
        return _fill_in_bands(labels, zero, margin=int(math.ceil(max_gap_px)) + 2, threads=threads)
    if distance is not None:
        dist, (iy, ix) = ndi.distance_transform_edt(zero, return_indices=True)
        zero &= dist <= distance
        del dist
    else:
        # Indices only (no distances), gathered row block by row block: about 13 bytes
        # per pixel at the peak instead of ~34 for ``labels[iy, ix]`` with distances.
        iy, ix = ndi.distance_transform_edt(zero, return_distances=False, return_indices=True)
    out = labels.copy()
    for band in row_slices(labels.shape, 1 << 20):
        z = zero[band]
        out[band][z] = labels[iy[band][z], ix[band][z]]
    return out


#: Images below this many pixels are filled in one piece (threads would not pay for themselves).
BANDED_FILL_MIN_PX = 1 << 21


def _fill_in_bands(labels: np.ndarray, zero: np.ndarray, margin: int, threads: int) -> np.ndarray:
    """:func:`fill_boundaries` by bands of rows, each transformed with ``margin`` rows of its
    neighbours, on ``threads`` threads. Exact when every 0-pixel's nearest grain is closer than
    ``margin``: its nearest candidates, ties included, then all lie in its band's margin."""
    from concurrent.futures import ThreadPoolExecutor

    h = labels.shape[0]
    n = max(1, min(threads, h // (4 * margin)))
    bounds = np.linspace(0, h, n + 1).astype(int)
    crops = [(max(0, int(bounds[i]) - margin), min(h, int(bounds[i + 1]) + margin)) for i in range(n)]
    if any(zero[c0:c1].all() for c0, c1 in crops):  # a band without any grain: the gap was understated
        return fill_boundaries(labels)
    out = labels.copy()

    def fill(i: int) -> None:
        r0, r1 = int(bounds[i]), int(bounds[i + 1])
        c0, c1 = crops[i]
        crop = zero[c0:c1]
        iy, ix = ndi.distance_transform_edt(crop, return_distances=False, return_indices=True)
        core = slice(r0 - c0, r1 - c0)
        z = crop[core]
        out[r0:r1][z] = labels[c0:c1][iy[core][z], ix[core][z]]

    with ThreadPoolExecutor(n, thread_name_prefix="grainseg-fill") as pool:
        list(pool.map(fill, range(n)))
    return out


def grain_ecds(labels: np.ndarray, *, fill: bool = True, min_area: int = 0, interior: bool = False) -> np.ndarray:
    """Equivalent circle diameters ``sqrt(4 A / pi)`` in px of the grains (label > 0), by id.

    ``fill``: boundary pixels are first shared out to the nearest grain
    (:func:`fill_boundaries`, as :func:`measure_grains` does), so thick and thin
    boundaries give the same diameters; ``min_area``: grains of fewer pixels are
    left out; ``interior``: grains touching the image border are left out.
    An image without grains gives an empty array.
    """
    labels = validate_labels(labels, require_grain=False)
    if labels.size == 0 or not labels.any():
        return np.zeros(0)
    labels, _ = relabel_sequential(labels)
    area = np.bincount((fill_boundaries(labels) if fill else labels).ravel()).astype(float)
    keep = area >= max(min_area, 1)
    keep[0] = False
    if interior:
        keep[_border_ids(labels)] = False
    return np.sqrt(4 * area[keep] / np.pi)


def _border_ids(labels: np.ndarray) -> np.ndarray:
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    ids = np.unique(edge)
    return ids[ids > 0]


def clean_scalar(x):
    """JSON-ready scalar: Python float/int, None for NaN or infinity."""
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------------- preparation


def validate_exclude_mask(mask, shape: tuple[int, int]) -> np.ndarray | None:
    """A boolean mask of excluded pixels (non-zero = excluded) of ``shape``, or None."""
    if mask is None:
        return None
    mask = np.squeeze(np.asarray(mask))
    if mask.ndim != 2:
        raise InputError(f"exclusion mask must be a 2-D image, got shape {mask.shape}")
    if mask.shape != tuple(shape):
        raise InputError(
            f"exclusion mask is {mask.shape[0]}x{mask.shape[1]} px but the label image is {shape[0]}x{shape[1]}"
        )
    if not (mask.dtype == bool or np.issubdtype(mask.dtype, np.number)):
        raise InputError(f"exclusion mask must be boolean or numeric, got dtype {mask.dtype}")
    if np.issubdtype(mask.dtype, np.floating) and not np.all(np.isfinite(mask)):
        raise InputError("exclusion mask contains NaN or infinite values")
    mask = mask != 0 if mask.dtype != bool else mask
    if mask.all():
        raise InputError("the exclusion mask covers the whole image: nothing is left to measure (is it inverted?)")
    return mask


@dataclass
class MeasuredField:
    """A label image prepared for measurement (:func:`prepare_labels`), shared by every step.

    ``labels``: grains renumbered 1..N (0 = boundary, dropped or excluded);
    ``filled``: the same with boundary pixels shared out (0 only where excluded);
    ``ids``: the input id of each grain; ``excluded``: pixels left out (None = none);
    ``options``: what was applied, as recorded in the summary.
    """

    labels: np.ndarray
    filled: np.ndarray
    ids: np.ndarray
    excluded: np.ndarray | None
    options: dict

    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape

    @property
    def n_grains(self) -> int:
        return int(self.ids.size)

    @property
    def area_px(self) -> int:
        """Measured field area: the pixels not excluded."""
        h, w = self.labels.shape
        return h * w - (int(np.count_nonzero(self.excluded)) if self.excluded is not None else 0)


#: Label-0 pixels farther than this from every grain are not a boundary line (even one painted with
#: a 10 px brush) but an unlabelled area, e.g. a deleted grain: counted, and said in the warnings.
WIDE_GAP_PX = 5


def unlabelled_area_px(labels: np.ndarray, excluded: np.ndarray | None = None) -> int:
    """How many label-0 pixels lie more than :data:`WIDE_GAP_PX` px (chessboard) from every grain,
    outside the ``excluded`` pixels (an exclusion mask: left out, not shared out).

    Examples
    --------
    >>> lab = np.ones((20, 40), np.uint32)
    >>> lab[:, 19] = 0  # a boundary line
    >>> unlabelled_area_px(lab)
    0
    >>> lab[:, 20:] = 0  # and half the image unlabelled: all but its first 5 columns
    >>> unlabelled_area_px(lab)
    320
    """
    grains = np.asarray(labels) != 0
    if grains.all():
        return 0
    far = ~ndi.binary_dilation(grains, np.ones((2 * WIDE_GAP_PX + 1,) * 2, bool))  # beyond the gap of a grain
    if excluded is not None:
        far &= ~excluded
    return int(np.count_nonzero(far))


def prepare_labels(labels, *, min_area: int | None = None, exclude=None) -> MeasuredField:
    """Validate, renumber, drop and fill a label image once for every measurement.

    ``min_area``: grains of fewer pixels (own pixels, before filling) are dropped and
    their pixels shared out to their neighbours, like boundary pixels.
    ``exclude``: a 2-D mask (non-zero = excluded); grains overlapping it are
    dropped, and their (filled) area and the mask are left out of the field.
    """
    if isinstance(labels, MeasuredField):
        return labels
    lab = validate_labels(labels)
    min_area = 1 if min_area is None else int(min_area)
    if min_area < 1:
        raise InputError(f"min_area must be >= 1 px, got {min_area}")
    mask = validate_exclude_mask(exclude, lab.shape)
    lab, ids = relabel_sequential(lab)
    options: dict = {"min_area_px": min_area, "exclude": None, "unlabelled_px": unlabelled_area_px(lab, mask)}
    n_small = 0
    if min_area > 1:
        small = np.bincount(lab.ravel(), minlength=ids.size + 1) < min_area
        small[0] = False
        n_small = int(small.sum())
        if n_small:
            lab = np.where(small[lab], np.uint32(0), lab)
    excluded = None
    if mask is not None:
        hit = np.zeros(ids.size + 1, bool)
        hit[lab[mask]] = True
        hit[0] = False
        filled = fill_boundaries(lab)
        excluded = mask | hit[filled]
        filled[excluded] = 0
        lab = np.where(hit[lab] | mask, np.uint32(0), lab)
        options["exclude"] = {"excluded_px": int(np.count_nonzero(excluded)), "n_grains_dropped": int(hit.sum())}
    if n_small or mask is not None:
        keep = np.bincount(lab.ravel(), minlength=ids.size + 1) > 0
        keep[0] = False
        if not keep.any():
            raise InputError("no grain left to measure after min_area and the exclusion mask")
        lut = np.zeros(ids.size + 1, np.uint32)
        lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
        ids = ids[keep[1:]]
        lab = lut[lab]
        filled = lut[filled] if mask is not None else fill_boundaries(lab)
    else:
        from napari_grainseg.models.device import cpu_threads

        # no unlabelled area: every 0-pixel is within WIDE_GAP_PX (chessboard) of a grain
        gap = WIDE_GAP_PX * math.sqrt(2) if options["unlabelled_px"] == 0 else None
        filled = fill_boundaries(lab, max_gap_px=gap, threads=cpu_threads())
    options["n_grains_below_min_area"] = n_small
    return MeasuredField(lab, filled, ids, excluded, options)


# --------------------------------------------------------------------------- table


@dataclass
class GrainTable:
    """Per-grain measurements as a dict of equal-length numpy columns.

    ``len(table)`` is the number of grains; ``table["ecd_px"]`` a column;
    ``table.columns`` the column names in CSV order (hidden helper columns,
    named ``_...``, are left out); ``table.units`` the unit of each column.
    """

    data: dict[str, np.ndarray]
    units: dict[str, str] = field(default_factory=dict)
    pixel_size_nm: float | None = None

    @property
    def columns(self) -> list[str]:
        return [c for c in self.data if not c.startswith("_")]

    def __len__(self) -> int:
        return len(next(iter(self.data.values()))) if self.data else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def row(self, i: int) -> dict:
        """Row ``i`` as a dict of Python scalars."""
        return {k: self.data[k][i].item() for k in self.columns}

    def select(self, mask: np.ndarray) -> GrainTable:
        """A new table with the rows where ``mask`` is True."""
        return GrainTable({k: v[mask] for k, v in self.data.items()}, dict(self.units), self.pixel_size_nm)

    def to_csv(self, path) -> Path:
        """Write the table as CSV (header ``name [unit]``), atomically."""
        from napari_grainseg.io.atomic import atomic_open

        path = Path(path)
        header = [f"{c} [{self.units[c]}]" if self.units.get(c) else c for c in self.columns]
        with atomic_open(path, "w") as fh:
            fh.write(",".join(header) + "\n")
            for r0 in range(0, len(self), _CSV_ROWS):  # in blocks: memory of a block, not of the table
                cols = [_format_column(self.data[c][r0 : r0 + _CSV_ROWS]) for c in self.columns]
                fh.writelines(",".join(row) + "\n" for row in zip(*cols))
        return path


_CSV_ROWS = 1 << 16


def _format_column(col: np.ndarray) -> list[str]:
    """CSV cells of one column: integers as such, booleans true/false, floats %.6g, '' for NaN."""
    col = np.asarray(col)
    if col.dtype == bool:
        return ["true" if v else "false" for v in col.tolist()]
    if np.issubdtype(col.dtype, np.integer):
        return [str(v) for v in col.tolist()]
    return [f"{v:.6g}" if math.isfinite(v) else "" for v in col.astype(float).tolist()]


_PX_COLUMNS = (
    "area_px",
    "ecd_px",
    "perimeter_px",
    "major_axis_px",
    "minor_axis_px",
    "feret_max_px",
    "centroid_y_px",
    "centroid_x_px",
)

#: skimage's 4-connected perimeter weights by neighbourhood code (skimage.measure.perimeter).
_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + math.sqrt(2)) / 2


def measure_grains(
    labels, pixel_size_nm: float | None = None, *, min_area: int | None = None, exclude=None
) -> GrainTable:
    """Measure every grain of a label image.

    Boundary pixels are first shared out to the nearest grain
    (:func:`fill_boundaries`): areas then add up to the image area.
    ``min_area`` and ``exclude``: see :func:`prepare_labels` (``labels`` may be
    a :class:`MeasuredField` already prepared).

    Columns: ``label, area_px, ecd_px, perimeter_px, major_axis_px,
    minor_axis_px, aspect_ratio, feret_max_px, solidity, centroid_y_px,
    centroid_x_px, touches_border`` and, with ``pixel_size_nm``, ``area_nm2``
    and the lengths in nm (``ecd_nm`` ...). ECD = sqrt(4·area/π); perimeter is
    skimage's 4-connected contour estimate; axes are those of the ellipse with
    the same second moments; aspect ratio = major/minor (NaN for a 1-px-thin
    grain); Feret (largest caliper diameter) and solidity (area / convex area)
    as skimage's ``regionprops`` defines them. Every column gives skimage's value
    but is computed for all grains at once (the grains' row runs, convex hulls
    of all grains in step), so time and memory grow with pixels and grains,
    without a Python loop over grains.

    Examples
    --------
    >>> lab = np.zeros((10, 10), np.uint32); lab[:, :5] = 1; lab[:, 5:] = 2
    >>> t = measure_grains(lab, pixel_size_nm=2.0)
    >>> t["area_px"].tolist(), t["area_nm2"].tolist()
    ([50, 50], [200.0, 200.0])
    """
    fld = prepare_labels(labels, min_area=min_area, exclude=exclude)
    pixel_size_nm = optional_pixel_size(pixel_size_nm)
    n = fld.n_grains
    shape = _shape_columns(fld.filled, n)
    area = shape["area"]
    cols: dict[str, np.ndarray] = {"label": fld.ids.astype(np.int64), "area_px": area}
    cols["ecd_px"] = np.sqrt(4 * area / np.pi)
    cols["perimeter_px"] = _perimeters(fld.filled, n)
    major, minor = shape["major"], shape["minor"]
    cols["major_axis_px"], cols["minor_axis_px"] = major, minor
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["aspect_ratio"] = np.where(minor > 0, major / np.where(minor > 0, minor, 1), np.nan)
    cols["feret_max_px"], cols["solidity"] = shape["feret"], area / shape["convex_area"]
    cols["centroid_y_px"], cols["centroid_x_px"] = shape["cy"], shape["cx"]
    edge = np.zeros(n + 1, bool)
    edge[_border_ids(fld.labels)] = True
    cols["touches_border"] = edge[1:]
    cols["_bbox_h"], cols["_bbox_w"] = shape["bbox_h"], shape["bbox_w"]
    units = {c: ("px²" if c == "area_px" else "px") for c in _PX_COLUMNS}
    if pixel_size_nm is not None:
        s = pixel_size_nm
        cols["area_nm2"] = cols["area_px"] * s * s
        units["area_nm2"] = "nm²"
        for c in _PX_COLUMNS[1:]:
            cols[c.replace("_px", "_nm")] = cols[c] * s
            units[c.replace("_px", "_nm")] = "nm"
    return GrainTable(cols, units, pixel_size_nm)


def _perimeters(filled: np.ndarray, n: int) -> np.ndarray:
    """skimage's ``perimeter(grain, 4)`` of every grain at once.

    A pixel of grain g is on its border when a 4-neighbour is not g (outside the
    image counts as not g); each border pixel adds the weight of its code
    1 + 2·(4-neighbours on g's border) + 10·(diagonal neighbours on g's border).
    """
    f = np.pad(filled, 1)
    core = f[1:-1, 1:-1]
    interior = core > 0
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        interior &= f[1 + dy : f.shape[0] - 1 + dy, 1 + dx : f.shape[1] - 1 + dx] == core
    border = np.pad((core > 0) & ~interior, 1)
    del interior
    code = np.ones(core.shape, np.uint8)
    for dy, dx, wgt in (
        (-1, 0, 2),
        (1, 0, 2),
        (0, -1, 2),
        (0, 1, 2),
        (-1, -1, 10),
        (-1, 1, 10),
        (1, -1, 10),
        (1, 1, 10),
    ):
        sl = (slice(1 + dy, f.shape[0] - 1 + dy), slice(1 + dx, f.shape[1] - 1 + dx))
        code += (wgt * ((f[sl] == core) & border[sl])).astype(np.uint8)
    b = border[1:-1, 1:-1]
    g, c = core[b], code[b]
    del code, border
    w = _PERIMETER_WEIGHTS[c]
    # counts per weight class times the weight, as skimage's histogram @ weights
    out = np.zeros(n + 1)
    for value in (1.0, math.sqrt(2), (1 + math.sqrt(2)) / 2):
        out += np.bincount(g, weights=(w == value), minlength=n + 1) * value
    return out[1:]


def _row_runs(filled: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every horizontal run of one grain's pixels: grain, row, first and last column, in raster order.

    A grain's sums, extremes and row ends follow from its runs, of which an image
    has far fewer than pixels; finding them needs one boolean per pixel. Pixels
    labelled 0 (no grain) are left out. Ids must be below 2**63
    (:func:`prepare_labels` gives 1..n).

    Examples
    --------
    >>> g, r, c0, c1 = _row_runs(np.array([[1, 1, 0, 2], [2, 2, 2, 2]]))
    >>> g.tolist(), r.tolist(), c0.tolist(), c1.tolist()
    ([1, 2, 2], [0, 0, 1], [0, 3, 0], [1, 3, 3])
    """
    h, w = filled.shape
    flat = filled.ravel()
    new = np.empty(flat.size, bool)
    new[:1] = True
    np.not_equal(flat[1:], flat[:-1], out=new[1:])
    new[::w] = True  # a run never crosses a row end
    starts = np.flatnonzero(new)
    del new
    ends = np.append(starts[1:], flat.size) - 1
    grain = flat[starts].astype(np.int64)
    keep = grain > 0
    starts, ends, grain = starts[keep], ends[keep], grain[keep]
    return grain, starts // w, starts % w, ends % w


def _shape_columns(filled: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Area, centroid, moment axes, bounding box, Feret and convex area of every grain.

    Everything comes from the grains' row runs (:func:`_row_runs`), sorted by
    grain (raster order within a grain), through ``reduceat``: the sums of the
    pixels' coordinates, their squares and products have closed forms over a
    run and stay exact in int64 (up to one grain of about 70 000² px), so the
    columns equal those of a sum over pixels. Memory grows with the number of
    runs: a few per grain and row on a real field (the worst case, 1-px stripes,
    has one per pixel and costs more than a sort of the pixels did).
    """
    g, r, c0, c1 = _row_runs(filled)
    order = np.argsort(g, kind="stable")
    g, r, c0, c1 = g[order], r[order], c0[order], c1[order]
    del order
    first = np.searchsorted(g, np.arange(1, n + 1))  # runs of grain k: first[k-1]:first[k]
    last = np.append(first[1:], g.size) - 1
    length = c1 - c0 + 1
    col_sum = (c0 + c1) * length // 2  # Σc over a run (exact: a sum of consecutive integers)

    def squares_to(k):
        """Σ_{0<=c<=k} c² (0 for k = -1)."""
        return k * (k + 1) * (2 * k + 1) // 6

    area = np.add.reduceat(length, first)
    sr = np.add.reduceat(r * length, first)
    sc = np.add.reduceat(col_sum, first)
    cy, cx = sr / area, sc / area
    rmin, rmax = r[first], r[last]  # raster order: first, last rows
    cmin, cmax = np.minimum.reduceat(c0, first), np.maximum.reduceat(c1, first)

    def central_moment(sab, sa, sb):
        """Σ(a - ā)(b - b̄) per grain from exact int64 sums of a·b."""
        return sab - sa.astype(float) * sb / area  # in float64: sa * sb can pass 2**63 for a huge grain

    mu20 = central_moment(np.add.reduceat(r * r * length, first), sr, sr)
    mu02 = central_moment(np.add.reduceat(squares_to(c1) - squares_to(c0 - 1), first), sc, sc)
    mu11 = central_moment(np.add.reduceat(r * col_sum, first), sr, sc)
    # inertia tensor [[mu02, -mu11], [-mu11, mu20]] / mu00, as skimage; its eigenvalues
    a, b, d = mu02 / area, -mu11 / area, mu20 / area
    half = np.sqrt(((a - d) / 2) ** 2 + b * b)
    l1 = np.clip((a + d) / 2 + half, 0, None)
    l2 = np.clip((a + d) / 2 - half, 0, None)
    # per-row end pixels: the convex hull of a grain's pixels uses only these
    row_change = np.flatnonzero((g[1:] != g[:-1]) | (r[1:] != r[:-1])) + 1
    row_first = np.concatenate([[0], row_change])
    row_last = np.concatenate([row_change - 1, [g.size - 1]])
    feret, convex_area = _hull_columns(
        g[row_first] - 1, r[row_first], c0[row_first], c1[row_last], rmin, rmax, cmin, cmax, n, filled.shape[0]
    )
    return {
        "area": area,
        "cy": cy,
        "cx": cx,
        "major": 4 * np.sqrt(l1),
        "minor": 4 * np.sqrt(l2),
        "bbox_h": (rmax - rmin + 1).astype(float),
        "bbox_w": (cmax - cmin + 1).astype(float),
        "feret": feret,
        "convex_area": convex_area,
    }


def _hull_columns(grain, row, left, right, rmin, rmax, cmin, cmax, n, h):
    """Feret diameter and convex area of every grain (:func:`_hull_columns_of`).

    Grains one pixel thick in either direction have closed forms, the same
    values: convex area = bounding box, Feret = its length.
    """
    bh, bw = rmax - rmin + 1, cmax - cmin + 1
    feret = np.maximum(bh, bw).astype(float)
    convex_area = (bh * bw).astype(float)
    sub = np.flatnonzero((bh > 1) & (bw > 1))
    if sub.size:
        index = np.full(n, -1, np.int64)
        index[sub] = np.arange(sub.size)
        g = index[grain]
        rows = g >= 0
        feret[sub], convex_area[sub] = _hull_columns_of(
            g[rows], row[rows], left[rows], right[rows], rmin[sub], rmax[sub], sub.size, h
        )
    return feret, convex_area


def _hull_columns_of(grain, row, left, right, rmin, rmax, n, h):
    """Feret diameter and convex area of every grain, as skimage's ``regionprops``, all at once.

    skimage rasterises the convex hull of the pixels' edge midpoints
    (``convex_hull_image``): ``area_convex`` counts its pixels and
    ``feret_diameter_max`` is the largest distance between the edge midpoints of
    its outline. Both follow from the hull's pixel interval [L_y, R_y] on each row
    y. The hull's left side is the lower convex chain of x against y of the
    row-start pixels' edge midpoints (right side: the upper chain of the row
    ends), built for every grain at once (:func:`_lower_chains`); its vertices lie
    on half pixels, so the test of a pixel centre on the outline is exact.

    ``grain`` (0-based), ``row``, ``left``, ``right``: the first and last pixel of
    each row of each grain, sorted by grain and row.
    """
    ys = _ranges(rmin, rmax)
    gy = np.repeat(np.arange(n), rmax - rmin + 1)
    lo = _chain_at(grain, row, left.astype(float), gy, ys, n, h, sign=1.0)
    hi = _chain_at(grain, row, right.astype(float), gy, ys, n, h, sign=-1.0)
    lo, hi = np.ceil(lo), np.floor(hi)
    convex_area = np.bincount(gy, weights=hi - lo + 1, minlength=n)
    # Feret: diameter of the edge midpoints of the rasterised hull's row ends
    t_l, v_l, g_l = _midpoint_candidates(gy, ys, lo, sign=1.0)
    t_r, v_r, g_r = _midpoint_candidates(gy, ys, hi, sign=-1.0)
    keep_l = _lower_chains(g_l, t_l, v_l, n)
    keep_r = _lower_chains(g_r, t_r, v_r, n)
    vg = np.concatenate([g_l[keep_l], g_r[keep_r]])
    vy = np.concatenate([t_l[keep_l], t_r[keep_r]])
    vx = np.concatenate([v_l[keep_l], -v_r[keep_r]])
    order = np.argsort(vg, kind="stable")
    return _group_diameters(vg[order], vy[order], vx[order], n), convex_area


def _ranges(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(a[i], b[i] + 1)`` for every i, without a Python loop."""
    lengths = b - a + 1
    out = np.ones(int(lengths.sum()), np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    out[0] = a[0]
    out[starts[1:]] = a[1:] - b[:-1]
    return np.cumsum(out)


def _midpoint_candidates(g, y, x, sign):
    """Edge midpoints of the row-end pixels (y, x) on the hull's outer side, one per (grain, t).

    ``sign`` 1: left ends, v = x (smallest kept); -1: right ends, v = -x.
    Points (y - ½, x), (y, x ∓ ½), (y + ½, x); at t = y + ½ shared by two rows the
    outer one is kept.
    """
    v = sign * x
    # interleaved per row: already sorted by grain, then t (rows ascend within a grain)
    t = (y.astype(float)[:, None] + np.array([-0.5, 0.0, 0.5])).ravel()
    vv = (v[:, None] - np.array([0.0, 0.5, 0.0])).ravel()
    gg = np.repeat(g, 3)
    dup = np.flatnonzero((gg[1:] == gg[:-1]) & (t[1:] == t[:-1]))  # y + ½ of a row = y' - ½ of the next
    vv[dup] = np.minimum(vv[dup], vv[dup + 1])
    first = np.ones(t.size, bool)
    first[dup + 1] = False
    return t[first], vv[first], gg[first]


def _chain_at(grain, row, x, gy, ys, n, h, sign):
    """The hull's side (left: ``sign`` 1, right: -1) of every grain at its integer rows."""
    t, v, g = _midpoint_candidates(grain, row, x, sign)
    keep = _lower_chains(g, t, v, n)
    t, v, g = t[keep], v[keep], g[keep]
    span = float(h + 4)
    key = g * span + t
    i = np.searchsorted(key, gy * span + ys, side="right") - 1
    j = np.minimum(i + 1, key.size - 1)
    t1, v1, t2, v2 = t[i], v[i], t[j], v[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(t1 == ys, v1, v1 + (ys - t1) * (v2 - v1) / (t2 - t1))
    return sign * out


def _lower_chains(g, t, v, n) -> np.ndarray:
    """Vertices of the lower convex chain of v against t of each group, for all groups at once.

    Points sorted by group, then t (strictly increasing in a group). A point on
    or above the segment between its two neighbours is no vertex of the chain
    (the test of Andrew's monotone chain, ``cross <= 0``); all such points are
    removed at once, pass after pass, until every remaining triple turns left:
    what remains is the convex chain. Returns a mask of its vertices.
    """
    alive = np.arange(t.size)
    while alive.size > 2:
        ga = g[alive]
        inner = np.flatnonzero((ga[1:-1] == ga[:-2]) & (ga[1:-1] == ga[2:])) + 1
        o, a, b = alive[inner - 1], alive[inner], alive[inner + 1]
        cross = (t[a] - t[o]) * (v[b] - v[o]) - (v[a] - v[o]) * (t[b] - t[o])
        drop = inner[cross <= 0]
        if not drop.size:
            break
        keep = np.ones(alive.size, bool)
        keep[drop] = False
        alive = alive[keep]
    mask = np.zeros(t.size, bool)
    mask[alive] = True
    return mask


def _group_diameters(g, y, x, n) -> np.ndarray:
    """Largest distance between two points of each group (points sorted by group)."""
    counts = np.bincount(g, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.zeros(n)
    size = 1
    while True:
        sel = np.flatnonzero((counts > size // 2) & (counts <= size)) if size > 1 else np.flatnonzero(counts == 1)
        step = max(1, (1 << 22) // (size * size))
        for c0 in range(0, sel.size, step):
            grp = sel[c0 : c0 + step]
            idx = starts[grp, None] + np.minimum(np.arange(size)[None, :], counts[grp, None] - 1)
            py, px = y[idx], x[idx]
            d2 = (py[:, :, None] - py[:, None, :]) ** 2 + (px[:, :, None] - px[:, None, :]) ** 2
            out[grp] = np.sqrt(d2.max(axis=(1, 2)))
        if size >= counts.max(initial=0):
            break
        size *= 2
    return out
