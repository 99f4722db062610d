"""Editing operations on grain label images (for hand correction).

Every operation takes a label image in the package convention (0 = 1-px
boundary, grains 4-connected; see :mod:`napari_grainseg.segmentation.grains`), returns a NEW
label image and changes only the pixels it must, so an undo step can be built
from the difference (:func:`label_edit`). The napari tools keep the boundary
map as the source of truth: :func:`boundary_edit` gives exactly the boundary
pixels an operation switched on or off.

The operations change only pixels within one pixel of the grains they edit and read at most
two pixels further, so on a large image they run on a window around those grains
(:func:`grains_window`) and give there the same pixels as on the whole image.

Operations that cannot be done (unknown grain id, a line that does not cut a
grain in two, merging grains that do not touch) raise
:class:`~napari_grainseg.errors.InputError` with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from napari_grainseg.errors import InputError
from napari_grainseg.segmentation.grains import (
    DEFAULT_MIN_GRAIN_AREA,
    boundaries_to_labels,
    grow_into_boundaries,
    relabel_in_order,
    validate_labels,
)

__all__ = [
    "add_boundary",
    "bounding_box",
    "boundary_edit",
    "carry_ids",
    "delete_grain",
    "erase_boundary",
    "grains_on_lines",
    "grain_correspondence",
    "grains_window",
    "label_edit",
    "merge_grains",
    "polyline_mask",
    "relabel_consecutive",
    "rebuild_grains_near",
    "GrainsApart",
    "GrainsUpdate",
    "LineMissesGrains",
    "split_grain",
]

_FOUR = ndi.generate_binary_structure(2, 1)


class GrainsApart(InputError):
    """:func:`merge_grains` was given grains that do not all touch (a caller may reword it for its user)."""


class LineMissesGrains(InputError):
    """:func:`split_grain` was given a line that crosses no grain."""


#: Pixels around the edited grains' bounding box in :func:`grains_window`: the operations read
#: two pixels beyond the grains; the rest is room for thick hand-drawn boundaries.
EDIT_WINDOW_MARGIN_PX = 8


def grains_window(
    labels: np.ndarray,
    ids: Iterable[int],
    margin: int = EDIT_WINDOW_MARGIN_PX,
    around: tuple[slice, slice] | None = None,
) -> tuple[slice, slice]:
    """The bounding box of grains ``ids`` grown by ``margin`` px, clipped to the image.

    An editing operation on ``labels[window]`` changes the same pixels as on the whole image
    (on an 8192² image a merge takes milliseconds instead of seconds). ``around``: a box that
    meets every grain (e.g. around the picks); the search starts there and grows only until
    the grains lie inside it, instead of reading the whole image.

    Raises
    ------
    InputError
        If an id is not a grain of ``labels``.

    Examples
    --------
    >>> lab = np.zeros((20, 20), np.uint32); lab[5:8, 10:12] = 3
    >>> grains_window(lab, [3], margin=2)
    (slice(3, 10, None), slice(8, 14, None))
    >>> grains_window(lab, [3], margin=2, around=(slice(6, 7), slice(10, 11)))
    (slice(3, 10, None), slice(8, 14, None))
    """
    labels = np.asarray(labels)
    ids = np.unique(np.asarray(list(ids), dtype=np.int64))
    if ids.size == 0:
        raise InputError("no grain to edit")
    if ids.min() <= 0:
        raise InputError("grain ids must be positive (0 is the boundary)")
    whole = (slice(0, labels.shape[0]), slice(0, labels.shape[1]))
    box = whole if around is None else _grown(around, 1, labels.shape)
    while True:
        crop = labels[box]
        mask = np.isin(crop, ids)
        missing = np.setdiff1d(ids, crop[mask])
        found = bounding_box(mask, (box[0].start, box[1].start))
        if box == whole:
            if missing.size:
                raise InputError(f"no grain with id {', '.join(map(str, missing.tolist()))}")
            break
        # done when every grain is in the box and none reaches a side of it inside the image
        if not missing.size and found is not None and _inside(found, box, 1, labels.shape):
            break
        size = max(box[0].stop - box[0].start, box[1].stop - box[1].start)
        box = _grown(box, size, labels.shape)
    return _grown(found, margin, labels.shape)


def grains_on_lines(labels: np.ndarray, polylines: Iterable[Sequence[Sequence[float]]]) -> list[int]:
    """The grains the ``(y, x)`` polylines cross, in increasing id order (for :func:`grains_window`)."""
    labels = np.asarray(labels)
    ids: set[int] = set()
    for polyline in polylines:
        rr, cc = _polyline_pixels(labels.shape, polyline)
        ids.update(int(i) for i in np.unique(labels[rr, cc]) if i > 0)
    return sorted(ids)


def _check_ids(labels: np.ndarray, ids: Iterable[int]) -> np.ndarray:
    ids = np.unique(np.asarray(list(ids), dtype=np.int64))
    if ids.size and ids.min() <= 0:
        raise InputError("grain ids must be positive (0 is the boundary)")
    present = np.isin(ids, np.unique(labels))
    if not present.all():
        raise InputError(f"no grain with id {', '.join(map(str, ids[~present]))}")
    return ids


def merge_grains(labels: np.ndarray, ids: Iterable[int]) -> np.ndarray:
    """Merge grains ``ids`` into the one with the smallest id.

    The boundary pixels that separated only these grains become part of the
    merged grain; all other pixels are unchanged.

    Raises
    ------
    InputError
        If an id is missing or the grains do not form one connected grain.

    Examples
    --------
    >>> lab = np.array([[1, 0, 2], [1, 0, 2]], np.uint32)
    >>> merge_grains(lab, [1, 2])
    array([[1, 1, 1],
           [1, 1, 1]], dtype=uint32)
    """
    labels = validate_labels(labels)
    ids = _check_ids(labels, ids)
    if ids.size < 2:
        return labels.copy()
    target = np.uint32(ids[0])
    out = labels.copy()
    out[np.isin(labels, ids)] = target
    out, _ = grow_into_boundaries(out, allowed=np.array([target], np.uint32))
    if ndi.label(out == target, structure=_FOUR)[1] != 1:
        raise GrainsApart(f"grains {', '.join(map(str, ids))} do not touch: cannot merge them")
    return out


def erase_boundary(labels: np.ndarray, where) -> np.ndarray:
    """Erase a boundary segment: merge the grains on its two sides.

    Parameters
    ----------
    where
        Either a bool mask of the image's shape (e.g. an eraser stroke) or an
        ``(n, 2)`` array of ``(y, x)`` points; each point selects the boundary
        pixels of its 3×3 neighbourhood. The grains 4-adjacent to the selected
        boundary pixels are merged (:func:`merge_grains`); a selection with no
        boundary pixel, or touching one grain only, changes nothing.
    """
    labels = validate_labels(labels)
    where = np.asarray(where)
    if where.dtype == bool and where.shape == labels.shape:
        sel = where.copy()
    else:
        pts = np.atleast_2d(where).astype(float)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise InputError("erase_boundary needs a mask of the image's shape or (y, x) points")
        sel = np.zeros(labels.shape, bool)
        yx = np.rint(pts).astype(int)
        inside = ((yx >= 0) & (yx < labels.shape)).all(axis=1)
        sel[yx[inside, 0], yx[inside, 1]] = True
        sel = ndi.binary_dilation(sel, np.ones((3, 3), bool))
    sel &= labels == 0
    if not sel.any():
        return labels.copy()
    ids = np.unique(labels[ndi.binary_dilation(sel, _FOUR)])
    ids = ids[ids > 0]
    if ids.size < 2:
        return labels.copy()
    return merge_grains(labels, ids)


def polyline_mask(shape: tuple[int, int], polyline_yx: Sequence[Sequence[float]]) -> np.ndarray:
    """Rasterise a polyline of ``(y, x)`` vertices as a 1-px 8-connected line.

    Vertices are rounded to the nearest pixel; segments are Bresenham lines;
    the parts outside the image are dropped.
    """
    mask = np.zeros(shape, bool)
    mask[_polyline_pixels(shape, polyline_yx)] = True
    return mask


def _polyline_pixels(shape: tuple[int, ...], polyline_yx) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of :func:`polyline_mask`'s pixels (repeats possible)."""
    from skimage.draw import line

    pts = np.rint(np.asarray(polyline_yx, float)).astype(int)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
        raise InputError("a polyline needs at least two (y, x) vertices")
    rows, cols = [], []
    for (y0, x0), (y1, x1) in zip(pts[:-1], pts[1:]):
        rr, cc = line(y0, x0, y1, x1)
        ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        rows.append(rr[ok])
        cols.append(cc[ok])
    return np.concatenate(rows), np.concatenate(cols)


def _cut(labels: np.ndarray, cut: np.ndarray) -> tuple[np.ndarray, int]:
    """Set ``cut`` pixels to boundary and give each new piece its own id.

    The largest piece of a grain keeps the grain's id, the others get new ids
    after the current maximum. Cut pixels that separate nothing go back to
    their grain, as does an old boundary pixel beside the cut that no longer
    separates anything. Returns the new labels and the number of new grains.
    """
    out = labels.copy()
    out[cut] = 0
    next_id = int(labels.max()) + 1
    n_new = 0
    for gid in np.unique(labels[cut]):
        if gid == 0:
            continue
        pieces, n = ndi.label(out == gid, structure=_FOUR)
        if n < 2:
            continue
        sizes = np.bincount(pieces.ravel())[1:]
        keep = int(np.argmax(sizes)) + 1
        for p in range(1, n + 1):
            if p != keep:
                out[pieces == p] = next_id
                next_id += 1
                n_new += 1
    # cut pixels that split nothing rejoin their grain; so does an old boundary
    # pixel next to the cut that now touches a single grain (the cut took over
    # its job), which keeps every boundary pixel necessary
    near = ndi.binary_dilation(cut, np.ones((3, 3), bool)) & (labels == 0)
    out, _ = grow_into_boundaries(out, claimable=cut | near)
    return out, n_new


def split_grain(labels: np.ndarray, polyline_yx, gid: int | None = None) -> np.ndarray:
    """Split one grain along a drawn polyline.

    The line is drawn 1 px wide and 8-connected, only inside grain ``gid``
    (default: of the grains the line cuts in two, the one most of the line lies in), so an
    overshoot into a neighbour does nothing; parts of the line that split nothing are dropped.
    The larger piece keeps ``gid``; the others get new ids.

    Raises
    ------
    InputError
        If the line does not cut the grain in two (draw it from boundary to boundary).
    """
    labels = validate_labels(labels)
    line = polyline_mask(labels.shape, polyline_yx)
    under = labels[line]
    under = under[under > 0]
    if gid is not None:
        _check_ids(labels, [gid])
        candidates = [int(gid)]
    elif under.size == 0:
        raise LineMissesGrains("the line does not cross any grain")
    else:  # the grain most of the line lies in that the line cuts: an overshoot into a neighbour is ignored
        counts = np.bincount(under)
        candidates = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    for candidate in candidates:
        out, n_new = _cut(labels, line & (labels == candidate))
        if n_new:
            return out
    raise InputError(f"the line does not cut grain {candidates[0]} in two: draw it from boundary to boundary")


def add_boundary(labels: np.ndarray, polyline_yx) -> np.ndarray:
    """Draw a boundary line across every grain it crosses.

    Each grain cut in two or more pieces is split (largest piece keeps the id);
    parts of the line that split nothing are dropped, so a line that closes no
    new grain changes nothing.
    """
    labels = validate_labels(labels)
    line = polyline_mask(labels.shape, polyline_yx)
    out, _ = _cut(labels, line & (labels > 0))
    return out


def delete_grain(labels: np.ndarray, gid: int) -> np.ndarray:
    """Delete grain ``gid``: its neighbours grow into it at equal speed.

    Its pixels and the boundary around it are shared out among the adjacent
    grains, with a 1-px boundary where two neighbours meet.

    Raises
    ------
    InputError
        If ``gid`` is missing or is the only grain.
    """
    labels = validate_labels(labels)
    _check_ids(labels, [gid])
    region = labels == gid
    if not np.any(labels[~region]):
        raise InputError(f"grain {gid} is the only grain: there is nothing to give it to")
    around = ndi.binary_dilation(region, np.ones((3, 3), bool)) & (labels == 0)
    out = labels.copy()
    out[region] = 0
    out, _ = grow_into_boundaries(out, claimable=region | around)
    if np.any(out == gid):  # pragma: no cover - defensive
        raise AssertionError("deleted grain still present")
    if np.all(out[region] == 0):
        raise InputError(f"grain {gid} has no neighbouring grain to take its pixels")
    return out


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """Renumber grains 1..N keeping their order; 0 stays 0.

    Only pixels whose id changes are changed.
    """
    labels = validate_labels(labels, require_grain=False)
    return relabel_in_order(labels)


def label_edit(labels_before: np.ndarray, labels_after: np.ndarray):
    """The pixels an edit changed: ``(index, new_values)``.

    ``labels_before[index] = new_values`` turns ``before`` into ``after``;
    napari: ``layer.data_setitem(index, new_values)`` makes it one undo step.
    """
    before, after = np.asarray(labels_before), np.asarray(labels_after)
    if before.shape != after.shape:
        raise InputError(f"shapes differ: {before.shape} and {after.shape}")
    index = np.nonzero(before != after)
    return index, after[index]


def boundary_edit(boundaries_before: np.ndarray, labels_after: np.ndarray):
    """Boundary-map pixels to change so that it matches ``labels_after``.

    Returns ``(index, new_values)`` with ``new_values`` uint8 0/1: exactly
    the boundary pixels switched on (1) or off (0).

    Examples
    --------
    >>> b = np.array([[0, 1, 0]], np.uint8)
    >>> idx, val = boundary_edit(b, np.array([[1, 1, 1]], np.uint32))
    >>> idx, val
    ((array([0]), array([1])), array([0], dtype=uint8))
    """
    before = np.asarray(boundaries_before) > 0
    after = np.asarray(labels_after) == 0
    if before.shape != after.shape:
        raise InputError(f"shapes differ: {before.shape} and {after.shape}")
    index = np.nonzero(before != after)
    return index, after[index].astype(np.uint8)


# --------------------------------------------------------------------------- local rebuild

#: :func:`rebuild_grains_near` gives up (the caller rebuilds the whole image) when its window
#: would cover more than this share of the image.
MAX_LOCAL_SHARE = 0.25
#: An old grain with at least this share of its pixels in one new grain counts as kept whole there.
KEPT_WHOLE = 0.95
#: Removed grains larger than this (bounding box, px) are not remembered for an Undo.
MAX_KEPT_GRAIN_PX = 1_000_000


@dataclass(frozen=True)
class GrainsUpdate:
    """New grain labels in a window of the image (:func:`rebuild_grains_near`; the whole image:
    :func:`carry_ids`).

    Attributes
    ----------
    window : the (rows, columns) slices of the image the update covers.
    labels : the new labels of ``window``.
    next_id : the lowest id not used by the updated labels (for the next update).
    count_change : grains after the update minus grains before.
    """

    window: tuple[slice, slice]
    labels: np.ndarray
    next_id: int
    count_change: int
    #: grains the update removed, id → (top, left, mask): given back as ``earlier``, a later
    #: update that brings one back exactly (an Undo) gives it its id, and so its colour, again
    removed: dict[int, tuple[int, int, np.ndarray]] = field(default_factory=dict)
    #: ids of ``earlier`` grains the update brought back
    restored: tuple[int, ...] = ()


def _grown(box: tuple[slice, slice], by: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    return tuple(slice(max(s.start - by, 0), min(s.stop + by, n)) for s, n in zip(box, shape))  # type: ignore[return-value]


def bounding_box(mask: np.ndarray, origin: tuple[int, int] = (0, 0)) -> tuple[slice, slice] | None:
    """The (rows, columns) slices of the smallest box holding ``mask``'s True pixels, None if it
    has none; ``origin``: where ``mask`` starts in the image (the box is in image coordinates).

    >>> m = np.zeros((5, 6), bool); m[1:3, 2] = True
    >>> bounding_box(m, origin=(10, 20))
    (slice(11, 13, None), slice(22, 23, None))
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return (
        slice(origin[0] + int(rows[0]), origin[0] + int(rows[-1]) + 1),
        slice(origin[1] + int(cols[0]), origin[1] + int(cols[-1]) + 1),
    )


def _relative(box: tuple[slice, slice], origin: tuple[int, int]) -> tuple[slice, slice]:
    """``box`` (image coordinates) in a window that starts at ``origin``."""
    return tuple(slice(b.start - o, b.stop - o) for b, o in zip(box, origin))  # type: ignore[return-value]


def _inside(inner: tuple[slice, slice], outer: tuple[slice, slice], by: int, shape: tuple[int, ...]) -> bool:
    """Whether ``inner`` keeps ``by`` px from every side of ``outer`` that is not the image's edge."""
    for i, o, n in zip(inner, outer, shape):
        if o.start > 0 and i.start - o.start < by:
            return False
        if o.stop < n and o.stop - i.stop < by:
            return False
    return True


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct pairs ``(a[i], b[i])`` of two uint32 arrays, shape (2, n), and how often each occurs."""
    keys, counts = np.unique((a.astype(np.uint64) << np.uint64(32)) | b.astype(np.uint64), return_counts=True)
    return np.stack([keys >> np.uint64(32), keys & np.uint64(0xFFFFFFFF)]).astype(np.int64), counts


def grain_correspondence(a: np.ndarray, b: np.ndarray) -> dict[int, int] | None:
    """The ids of ``b``'s grains by the ids of ``a``'s, where two label arrays of one shape hold
    the same boundaries (0) and the same grains whatever their ids; None where they do not.

    >>> grain_correspondence(np.array([[1, 0, 2]]), np.array([[7, 0, 3]]))
    {1: 7, 2: 3}
    >>> grain_correspondence(np.array([[1, 0, 2]]), np.array([[7, 0, 7]])) is None
    True
    """
    a, b = np.asarray(a), np.asarray(b)
    if not np.array_equal(a == 0, b == 0):
        return None
    grain = a > 0
    pairs, _ = _pairs(a[grain], b[grain])
    if np.unique(pairs[0]).size != pairs.shape[1] or np.unique(pairs[1]).size != pairs.shape[1]:
        return None
    return dict(zip(pairs[0].tolist(), pairs[1].tolist()))


def _areas(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """How often each of ``ids`` (all present) occurs in ``values``; any ids, however large."""
    present, counts = np.unique(values, return_counts=True)
    return counts[np.searchsorted(present, ids)]


def _boxes(labels: np.ndarray, ids: Sequence[int]) -> dict[int, tuple[slice, slice]]:
    """The bounding boxes of the grains ``ids`` in ``labels`` (those present); any ids, however large."""
    wanted = np.unique(np.asarray(ids, np.int64))
    if wanted.size == 0:
        return {}
    where = np.isin(labels, wanted)
    compact = np.zeros(labels.shape, np.int32)
    compact[where] = np.searchsorted(wanted, labels[where]) + 1
    found = ndi.find_objects(compact, max_label=int(wanted.size))
    return {int(gid): box for gid, box in zip(wanted.tolist(), found) if box is not None}


def _ids_for_edited(
    *,
    after: np.ndarray,
    before: np.ndarray,
    edited: np.ndarray,
    region: np.ndarray,
    new_ids: np.ndarray,
    reusable: np.ndarray,
    next_id: int,
    earlier: dict[int, tuple[int, int, np.ndarray]] | None,
    origin: tuple[int, int],
) -> tuple[dict[int, int], int, dict[int, tuple[int, int, np.ndarray]], tuple[int, ...]]:
    """Ids for the new grains ``new_ids`` of ``after`` that an edit made, from the old grains
    ``reusable`` of ``before`` it replaced (all of whose pixels lie in ``region``).

    First a new grain with exactly the pixels of one of the ``earlier`` removed grains takes its id
    (an Undo); then an old grain kept whole in a new one gives its id (a neighbour grown into a
    deleted grain keeps its own id, a merge the larger part's), then the most alike (intersection
    over union over the ``edited`` pixels: a split's larger piece); the rest take ids from
    ``next_id`` on. Returns ``(ids, next_id, removed, restored)``: new id → id, the next free id,
    the reusable grains no new grain took (id → (top, left, mask), for a later Undo) and the
    ``earlier`` ids brought back. ``origin``: where the arrays start in the image.
    """
    pairs, counts = _pairs(after[edited], before[edited])
    new_area = _areas(after[edited], pairs[0])
    old_area = _areas(before[region], pairs[1])
    ids: dict[int, int] = {}
    restored: list[int] = []
    if earlier:  # first, a grain brought back exactly (an Undo) takes its old id again ...
        same_as_old = set(pairs[0][(counts == new_area) & (counts == old_area) & (pairs[1] > 0)].tolist())
        by_shape: dict[tuple, list[int]] = {}
        for gid, (top, left, mask) in earlier.items():
            by_shape.setdefault((top, left, mask.shape, int(mask.sum())), []).append(gid)
        candidates = [new for new in new_ids.tolist() if new not in same_as_old]  # ... unless an old grain is it
        for new, local in _boxes(np.where(region, after, 0), candidates).items():
            mask = after[local] == new
            key = (local[0].start + origin[0], local[1].start + origin[1], mask.shape, int(mask.sum()))
            for gid in by_shape.get(key, ()):
                if gid not in restored and np.array_equal(earlier[gid][2], mask):
                    ids[new] = gid
                    restored.append(gid)
                    break
    # then an old grain kept whole in a new one, then the most alike
    kept_whole = counts >= KEPT_WHOLE * old_area
    score = np.where(kept_whole, 1 + counts / (1 + counts.max(initial=0)), counts / (new_area + old_area - counts))
    order = np.argsort(-score, kind="stable")
    reusable_set = set(reusable.tolist())
    taken: set[int] = set()
    for new, old in pairs[:, order].T.tolist():
        if new not in ids and old > 0 and old not in taken and old in reusable_set:
            ids[new] = old
            taken.add(old)
    for new in new_ids.tolist():
        if new not in ids:
            ids[new], next_id = next_id, next_id + 1
    removed = {}
    gone = np.setdiff1d(reusable[reusable > 0], np.fromiter(ids.values(), np.int64, len(ids)))
    old_boxes = _boxes(np.where(region, before, 0), gone.tolist())
    for old, local in old_boxes.items():
        if (local[0].stop - local[0].start) * (local[1].stop - local[1].start) <= MAX_KEPT_GRAIN_PX:
            removed[old] = (local[0].start + origin[0], local[1].start + origin[1], before[local] == old)
    return ids, int(next_id), removed, tuple(restored)


def carry_ids(
    before: np.ndarray,
    after: np.ndarray,
    *,
    next_id: int,
    earlier: dict[int, tuple[int, int, np.ndarray]] | None = None,
    max_changed_px: int = 4_000_000,
) -> GrainsUpdate | None:
    """``after`` (a whole-image build, ids 1..n) renumbered so that its grains keep the ids of
    ``before``'s where they can: colours stay put when an edit needs the whole image rebuilt.

    A grain with exactly the pixels of an old one takes its id; the grains an edit made take
    ids as in :func:`rebuild_grains_near` (an ``earlier`` removed grain brought back exactly, then
    an old grain kept whole, then the most alike, then new ids from ``next_id`` on). Costs a
    few passes over the image plus a sort of the changed grains' pixels (and one of the image
    where ``before``'s ids are sparse: far above its pixel count).

    Parameters
    ----------
    before
        The grains before the edit (ids below 2**32, need not be consecutive).
    after
        The whole-image build after the edit, ids 1..n.
    next_id
        Lowest id not used in ``before`` or ``earlier`` (raised to ``before.max() + 1`` if lower).
    earlier
        Grains removed by earlier updates (:attr:`GrainsUpdate.removed`): a new grain with
        exactly the pixels of one takes its id (an Undo).
    max_changed_px
        Return None where the changed grains cover more pixels than this: matching them would
        cost more than the build (about a second at 4 M px on 2 cores), and most colours change
        then anyway; the caller keeps ``after`` as it is.

    Returns
    -------
    GrainsUpdate
        Its window is the whole image, its labels uint32.

    Examples
    --------
    >>> before = np.array([[5, 5, 0, 9, 9, 0, 2]])
    >>> after = np.array([[1, 1, 1, 1, 1, 0, 2]])   # 5 and 9 merged, 2 unchanged (now numbered 2)
    >>> carry_ids(before, after, next_id=10).labels.tolist()
    [[5, 5, 5, 5, 5, 0, 2]]
    """
    before, after = (np.asarray(a) for a in (before, after))
    if before.shape != after.shape:
        raise InputError(
            f"grain ids can only be carried between images of one shape, got {before.shape} and {after.shape}"
        )
    top = int(before.max(initial=0))
    n = int(after.max(initial=0))
    if top >= 2**32 or before.min(initial=0) < 0 or after.min(initial=0) < 0:
        raise InputError("grain ids must lie in 0 .. 2**32 - 1")
    if n > after.size:
        raise InputError(f"the build must number its grains 1..n, got ids up to {n} in {after.size} px")
    # count over the old ids present where they are sparse (bincount would allocate per id)
    known = np.unique(np.concatenate([[0], before.ravel()])) if top > 4 * before.size + 16 else None
    old = before.astype(np.int64) if known is None else np.searchsorted(known, before)
    after = after.astype(np.int64, copy=False) if after.dtype == np.uint64 else after
    # an old id under each new grain (whichever pixel wrote last: where they differ, so does the grain)
    representative = np.zeros(n + 1, np.int64)
    representative[after.ravel()] = old.ravel()
    representative[0] = 0
    old_area = np.bincount(old.ravel(), minlength=1)
    new_area = np.bincount(after.ravel(), minlength=n + 1)
    same = (representative > 0) & (new_area == old_area[representative])  # exactly an old grain's pixels ...
    same[np.unique(after[old != representative[after]])] = False  # ... and no other pixels
    same[0] = False
    changed_new = ~same & (new_area > 0)
    changed_new[0] = False
    changed_old = old_area > 0
    changed_old[representative[same]] = False
    changed_old[0] = False
    region = changed_new[after] | changed_old[old]
    if np.count_nonzero(region) > max_changed_px:
        return None
    real = (lambda ids: ids) if known is None else (lambda ids: known[ids])  # noqa: E731
    crop = bounding_box(region) or (slice(0, 0), slice(0, 0))  # every changed grain lies in it
    ids, next_id, removed, restored = _ids_for_edited(
        after=after[crop],
        before=before[crop],
        edited=region[crop] & (after[crop] > 0),
        region=region[crop],
        new_ids=np.flatnonzero(changed_new),
        reusable=real(np.flatnonzero(changed_old)),
        next_id=max(int(next_id), top + 1),
        earlier=earlier,
        origin=(crop[0].start, crop[1].start),
    )
    lut = np.zeros(n + 1, np.uint32)
    lut[same] = real(representative[same])
    if ids:
        lut[np.fromiter(ids, np.int64, len(ids))] = np.fromiter(ids.values(), np.int64, len(ids))
    count_change = int(np.count_nonzero(new_area[1:])) - int(np.count_nonzero(old_area[1:]))
    whole = tuple(slice(0, k) for k in after.shape)
    return GrainsUpdate(whole, lut[after], next_id, count_change, removed, restored)


def rebuild_grains_near(
    labels: np.ndarray,
    boundaries: np.ndarray,
    changed: tuple[slice, slice],
    *,
    next_id: int,
    min_grain_area: int = DEFAULT_MIN_GRAIN_AREA,
    earlier: dict[int, tuple[int, int, np.ndarray]] | None = None,
) -> GrainsUpdate | None:
    """The grains after the boundary pixels inside the box ``changed`` were edited, computed
    in a window around them.

    :func:`~napari_grainseg.segmentation.grains.boundaries_to_labels` of the whole image costs
    seconds at 8192²; an edit changes only the grains near it. The window holds every grain,
    old and new, within reach of the change (``min_grain_area`` + 2 px: a grain that small may
    be shared out to its neighbours) with a margin; the boundaries are built into grains there
    and spliced in. Grains away from the edit keep their ids, so their colours stay; a new
    grain with exactly the pixels of an ``earlier`` removed grain takes its id back (an Undo),
    else that of an old grain it holds whole (a neighbour grown into a deleted grain its own, a
    merge the larger part's), else of the old grain most like it (a split's larger piece); the
    others take ids from ``next_id`` on.

    Returns None where the result could differ from the whole-image build, and the caller
    must build the whole image: the window would exceed ``MAX_LOCAL_SHARE`` of it, or outside
    the edited grains the window's grains are not exactly the old ones.

    Parameters
    ----------
    labels
        The grains before the edit (ids need not be consecutive).
    boundaries
        The boundary map after the edit (non-zero = boundary).
    changed
        (rows, columns) slices holding every pixel the edit changed.
    next_id
        Lowest id not used in ``labels``.
    earlier
        Grains removed by earlier updates and not in ``labels`` (:attr:`GrainsUpdate.removed`):
        a new grain with exactly the pixels of one takes its id.
    """
    shape = labels.shape
    reach = int(min_grain_area) + 2
    limit = MAX_LOCAL_SHARE * labels.size
    near = _grown(changed, reach, shape)
    old_ids = np.unique(labels[near])
    old_ids = old_ids[old_ids > 0]
    window = _grown(near, 2 * reach, shape)
    for _ in range(8):  # grow the window until every grain it changes lies well inside it
        if (window[0].stop - window[0].start) * (window[1].stop - window[1].start) > limit:
            return None
        origin = (window[0].start, window[1].start)
        before = labels[window]
        lines = np.asarray(boundaries[window]) > 0
        # what the window's edge changes (a grain cut by it, dropped as too small) travels through
        # thick painted bands as they are thinned, up to two pixels a pass: keep clear by that too
        rim = reach + 2 * int(ndi.distance_transform_cdt(lines, metric="chessboard").max(initial=0))
        try:
            after = boundaries_to_labels(lines, min_grain_area=min_grain_area)
        except InputError:
            return None
        new_ids = np.unique(after[_relative(near, origin)])
        new_ids = new_ids[new_ids > 0]
        region = np.isin(before, old_ids) | np.isin(after, new_ids)
        box = bounding_box(region, origin)
        if box is None or _inside(box, window, rim, shape):
            break
        window = _grown(box, 2 * rim, shape)
    else:
        return None
    region = ndi.binary_dilation(region, np.ones((3, 3), bool))
    interior = np.zeros(region.shape, bool)
    interior[tuple(slice(0 if w.start == 0 else rim, None if w.stop == n else -rim) for w, n in zip(window, shape))] = (
        True
    )
    # outside the edited grains the build must give the old boundaries and the old grains, one to one
    rest = interior & ~region
    same = grain_correspondence(after[rest], before[rest])
    if same is None:
        return None
    edited = region & np.isin(after, new_ids)
    reusable = np.setdiff1d(before[region], before[~region])
    ids, next_id, removed, restored = _ids_for_edited(
        after=after,
        before=before,
        edited=edited,
        region=region,
        new_ids=new_ids,
        reusable=reusable,
        next_id=next_id,
        earlier=earlier,
        origin=origin,
    )
    out = before.copy()
    fill = region & (after > 0)
    values = after[fill]
    mapping = {**same, **ids}
    if not np.isin(values, np.fromiter(mapping, np.int64, len(mapping))).all():  # a grain the build left unmatched
        return None
    lut = np.zeros(int(after.max()) + 1, np.uint32)
    lut[list(mapping)] = list(mapping.values())
    out[fill] = lut[values]
    out[region & (after == 0)] = 0
    # every boundary pixel the splice wrote must separate two grains, as the whole-image build's do
    grown, _ = grow_into_boundaries(out, claimable=region & (out == 0), max_passes=1)
    if np.any(grown != out):
        return None
    count_change = int(np.unique(out).size) - int(np.unique(before).size)  # ids outside the window stay
    return GrainsUpdate(window, out, int(next_id), count_change, removed, restored)
