"""From a boundary map to closed grains, and back.

Conventions used throughout the package (a *label image*):

* ``uint32``, ``0`` = grain boundary, grains numbered ``1..N`` consecutively;
* every grain is 4-connected; boundaries are 1 px thin and 8-connected, so an
  8-connected line of boundary pixels is exactly what separates 4-connected grains;
* no boundary pixel is redundant: each touches (4-neighbourhood) at least two
  different grains, or none at all (e.g. the centre of a four-grain junction).

The workhorse is :func:`grow_into_boundaries`: starting from grain *seeds*, a
boundary pixel whose 4-neighbours belong to exactly one grain joins that grain,
pass after pass, until no pixel can join. This thins thick boundary bands to a
1-px line half-way between the seeds (like a watershed of the distance map),
removes dangling boundary branches (spurs: both of their sides are one grain),
and shares out the pixels of deleted small grains among their neighbours.
When two adjacent pixels would join different grains in the same pass, the
smaller label wins and the other pixel stays boundary, so grains never touch.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_grainseg.errors import InputError
from napari_grainseg.segmentation.tiling import blocks, row_slices, with_halo

#: Default smallest grain area kept by :func:`boundaries_to_labels`, in pixels.
DEFAULT_MIN_GRAIN_AREA = 10
#: Maps with more pixels than this are thinned tile by tile even without ``tile_size``
#: (identical result, memory of a tile instead of the image's).
AUTO_TILE_MIN_PX = 2048 * 2048
AUTO_TILE_SIZE = 1024

__all__ = [
    "DEFAULT_GRAIN_BUILDER",
    "DEFAULT_MIN_GRAIN_AREA",
    "DEFAULT_WATERSHED_H",
    "MAX_WATERSHED_H",
    "GRAIN_BUILDERS",
    "WATERSHED_SIGMA",
    "boundaries_to_labels",
    "border_grains",
    "builder_words",
    "check_grain_builder",
    "grow_into_boundaries",
    "h_minima_markers",
    "classical_boundaries",
    "label_convention_problems",
    "labels_to_boundaries",
    "normalize_labels",
    "probability_to_labels",
    "probability_watershed",
    "relabel_in_order",
    "validate_labels",
    "watershed_lines",
]

_FOUR = ndi.generate_binary_structure(2, 1)


# --------------------------------------------------------------------------- checks


def validate_labels(labels: np.ndarray, *, require_grain: bool = True) -> np.ndarray:
    """Check a label image and return it as a C-contiguous ``uint32`` array.

    Raises
    ------
    InputError
        If ``labels`` is not 2-D, is not of an integer dtype (float or bool
        labels are almost always a probability or boundary map given by
        mistake), has negative values, or (with ``require_grain``) contains no grain.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"expected a 2-D label image, got shape {labels.shape}")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            f"label image must have an integer dtype, got {labels.dtype}; "
            "a float or boolean image is a probability or boundary map, not grain labels"
        )
    if labels.size and labels.min() < 0:
        raise InputError("label image has negative values; grain labels must be >= 0")
    if labels.size and labels.max() > np.iinfo(np.uint32).max:
        raise InputError("label image has values above the uint32 range")
    if require_grain and not np.any(labels):
        raise InputError("label image contains no grain (every pixel is 0 = boundary)")
    return np.ascontiguousarray(labels, dtype=np.uint32)


def is_two_valued(image: np.ndarray) -> bool:
    """Whether every pixel of ``image`` is 0 or its one other value (0/1, 0/255... masks).

    Examples
    --------
    >>> is_two_valued(np.array([[0, 255], [255, 0]])), is_two_valued(np.array([[0, 1], [2, 0]]))
    (True, False)
    """
    image = np.asarray(image)
    return not np.any((image != 0) & (image != image.max(initial=0)))


def looks_like_boundary_mask(image: np.ndarray) -> bool:
    """Whether a two-valued image is a boundary mask (non-zero = boundary), not grain labels.

    Both conventions are two-valued when every grain of a label image shares one id (a grain
    mask: grains non-zero, boundaries 0). Boundaries are thin: they are the minority of the
    pixels, and they form one 8-connected network that splits the rest into many regions. So
    a mask is a boundary mask when its non-zero pixels are under half and the zero pixels
    (4-connected, as grains are) form more regions than the non-zero ones (8-connected, as
    1-px lines are).

    Examples
    --------
    >>> lines = np.zeros((20, 20), np.uint8)
    >>> lines[:, 10] = lines[10, :] = 255
    >>> looks_like_boundary_mask(lines), looks_like_boundary_mask((lines == 0).astype(np.uint8))
    (True, False)
    """
    from skimage.measure import label as label_regions

    image = np.asarray(image)
    if image.ndim != 2 or not image.any() or not is_two_valued(image):
        return False
    lines = image != 0
    if lines.mean() >= 0.5:
        return False
    zero_regions = int(label_regions(~lines, connectivity=1).max())
    return zero_regions > 1 and zero_regions > int(label_regions(lines, connectivity=2).max())


#: Most pixels an anti-aliased boundary mask has between black and white (its lines' soft edges: a
#: quarter of the image for 3 px lines blurred by an editor); a label image has about half or more
#: (every grain but the brightest), and one that slips through fails the line test after.
MAX_ANTIALIASED_GREY_FRACTION = 0.45


def read_as_boundary_mask(image: np.ndarray) -> np.ndarray | None:
    """The boundary mask (bool) of an integer image meant as one, or None when it does not look like one.

    For a file that should hold boundaries (``<stem>_boundaries.tif``) but may have been
    edited: a boundary mask (non-zero lines, 0/1 or 0/255), a grain mask (grains non-zero,
    boundaries 0: inverted), or lines drawn with an editor's anti-aliasing (grey edges,
    many values), bright on dark or dark on bright, cut at half the brightest value.

    Examples
    --------
    >>> lines = np.zeros((20, 20), np.uint8)
    >>> lines[:, 9] = 90  # an anti-aliased edge
    >>> lines[:, 10] = lines[10, :] = 255
    >>> bool((read_as_boundary_mask(lines) == (lines == 255)).all())
    True
    >>> grain_mask = (lines < 255).astype(np.uint8)  # grains 1, boundaries 0
    >>> bool((read_as_boundary_mask(grain_mask) == (lines == 255)).all())
    True
    >>> bool((read_as_boundary_mask(255 - lines) == (lines == 255)).all())  # inverted, anti-aliased
    True
    """
    image = np.asarray(image)
    if image.ndim != 2 or not np.issubdtype(image.dtype, np.integer):
        return None
    if not image.any():  # an empty mask: no boundary drawn (not "everything is a boundary")
        return np.zeros(image.shape, bool)
    if is_two_valued(image):  # inverted only on evidence: its zeros, not its lines, form the network
        inverted = not looks_like_boundary_mask(image) and looks_like_boundary_mask((image == 0).astype(np.uint8))
        return image == 0 if inverted else image != 0
    grey = (image != 0) & (image != image.max())
    if grey.mean() > MAX_ANTIALIASED_GREY_FRACTION:  # many in-between values: a label image, not soft lines
        return None
    bright = image >= image.max() / 2
    for lines in (bright, ~bright):  # bright lines on black, else black lines on white
        if looks_like_boundary_mask(lines) and _thin(lines):
            return lines
    return None


#: Widest line (px) a boundary mask read from an edited file may have; a grain is wider.
MAX_BOUNDARY_WIDTH_PX = 9


def _thin(lines: np.ndarray) -> bool:
    """Whether every line of a mask is at most :data:`MAX_BOUNDARY_WIDTH_PX` wide (a grain taken
    for lines is not)."""
    from scipy import ndimage as ndi

    return float(ndi.distance_transform_edt(lines).max(initial=0)) <= MAX_BOUNDARY_WIDTH_PX / 2


def _binarize(boundary_map: np.ndarray, threshold: float) -> np.ndarray:
    """Boundary mask from a bool, 0/1, 0/255 or probability map."""
    bmap = np.asarray(boundary_map)
    if bmap.ndim != 2:
        raise InputError(f"expected a 2-D boundary map, got shape {bmap.shape}")
    if bmap.dtype == bool:
        return bmap.copy()
    if not (np.issubdtype(bmap.dtype, np.integer) or np.issubdtype(bmap.dtype, np.floating)):
        raise InputError(f"unsupported boundary-map dtype {bmap.dtype}")
    if np.issubdtype(bmap.dtype, np.floating) and not np.all(np.isfinite(bmap)):
        raise InputError("boundary map contains NaN or infinite values")
    if not 0 < threshold < 1:
        raise InputError(f"threshold must be between 0 and 1, got {threshold}")
    if np.issubdtype(bmap.dtype, np.integer) and bmap.size and bmap.max() > 1:
        # 0/255 maps and 8- or 16-bit probability images
        full = 255.0 if bmap.max() <= 255 else float(np.iinfo(bmap.dtype).max)
        return bmap.astype(np.float32) / full >= threshold
    return bmap >= threshold


# --------------------------------------------------------------------------- core


def grow_into_boundaries(
    labels: np.ndarray,
    claimable: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
    max_passes: int | None = None,
) -> tuple[np.ndarray, int]:
    """Let grains absorb the boundary pixels that separate nothing.

    Parameters
    ----------
    labels
        Label image, 0 = boundary / unassigned. Not modified.
    claimable
        Optional bool mask: only these 0-pixels may change.
    allowed
        Optional sorted array of grain ids that may grow; others keep their pixels.
    max_passes
        Stop after this many passes (None: until nothing changes).

    Returns
    -------
    grown, n_passes
        New label image and the number of passes that changed something.

    Examples
    --------
    >>> lab = np.array([[1, 0, 0, 2]], np.uint32)    # a 2-px band between grains 1 and 2
    >>> grown, n = grow_into_boundaries(lab)
    >>> grown.tolist(), n
    ([[1, 1, 0, 2]], 1)
    """
    h, w = labels.shape
    lab = np.pad(labels, 1).ravel()  # zero frame: no bounds checks below
    wp = w + 2
    cand = lab == 0
    if claimable is not None:
        cand &= np.pad(claimable, 1).ravel()
    frame = np.zeros((h + 2, w + 2), bool)
    frame[0, :] = frame[-1, :] = frame[:, 0] = frame[:, -1] = True
    cand &= ~frame.ravel()
    active = np.flatnonzero(cand)
    offsets = np.array([-wp, wp, -1, 1])
    big = np.iinfo(np.uint32).max
    claim_img = np.zeros_like(lab)
    n_passes = 0
    while active.size and (max_passes is None or n_passes < max_passes):
        nb = lab[active[:, None] + offsets]  # (k, 4) neighbour labels
        hi = nb.max(axis=1)
        lo = np.where(nb > 0, nb, big).min(axis=1)
        single = (hi > 0) & (lo == hi)
        if allowed is not None:
            single &= np.isin(hi, allowed)
        idx = active[single]
        if idx.size == 0:
            break
        claim = hi[single]
        # conflicts: the pixel above or to the left claims a different label -> stay boundary. By
        # position, not by id: the result does not depend on how the grains are numbered, so a
        # window of the image gives the whole image's result there (editing.rebuild_grains_near)
        claim_img[idx] = claim
        nbc = claim_img[idx[:, None] + offsets[[0, 2]]]
        lose = ((nbc > 0) & (nbc != claim[:, None])).any(axis=1)
        claim_img[idx] = 0
        idx, claim = idx[~lose], claim[~lose]
        lab[idx] = claim
        n_passes += 1
        # pixels that can still change: still 0 and next to something that changed
        keep = lab[active] == 0
        active = active[keep]
    return lab.reshape(h + 2, w + 2)[1:-1, 1:-1].copy(), n_passes


def _present_ids(labels: np.ndarray) -> np.ndarray:
    """Sorted ids > 0 present in ``labels`` (as ``np.unique``, block by block)."""
    top = int(labels.max()) if labels.size else 0
    present = np.zeros(top + 1, bool)
    for rows in row_slices(labels.shape):
        present[np.unique(labels[rows])] = True
    present[0] = False
    return np.flatnonzero(present)


def _apply_lut(labels: np.ndarray, lut: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``lut[labels]`` block by block (``out`` may be ``labels`` itself)."""
    if out is None:
        out = np.empty(labels.shape, lut.dtype)
    for rows in row_slices(labels.shape):
        out[rows] = lut[labels[rows]]
    return out


def _areas(labels: np.ndarray) -> np.ndarray:
    """Pixel count of every id (``np.bincount(labels.ravel())``, block by block)."""
    top = int(labels.max()) if labels.size else 0
    areas = np.zeros(top + 1, np.int64)
    for rows in row_slices(labels.shape):
        areas += np.bincount(labels[rows].ravel(), minlength=top + 1)
    return areas


def relabel_in_order(labels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Renumber grains 1..N keeping the order of their current ids (0 stays 0).

    ``out`` may be ``labels`` itself (renumbered in place).

    Examples
    --------
    >>> relabel_in_order(np.array([[7, 0, 3]])).tolist()
    [[2, 0, 1]]
    """
    ids = _present_ids(labels)
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, np.uint32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.uint32)
    return _apply_lut(labels, lut, out=out)


def _label_components(mask: np.ndarray, tile_size: int | None) -> np.ndarray:
    """4-connected components of ``mask`` numbered in raster order of first pixel.

    With ``tile_size``, tiles are labelled separately and joined across tile
    seams with a union-find (scipy's connected components on the seam graph);
    the result is identical to the untiled labelling. Either way the only
    image-sized array is the uint32 result.
    """
    if tile_size is None:
        lab, _ = ndi.label(mask, structure=_FOUR, output=np.uint32)
        return lab
    h, w = mask.shape
    out = np.zeros((h, w), np.uint32)
    firsts = [np.zeros(1, np.int64)]  # raster index of each tile label's first pixel (id 0: unused)
    offset = 0
    for window in blocks(mask.shape, tile_size):
        tile, n = ndi.label(mask[window], structure=_FOUR, output=np.uint32)
        if n == 0:
            continue
        # a tile's raster order is the image's raster order restricted to the tile
        ids, first = np.unique(tile, return_index=True)
        first, tw = first[ids > 0], tile.shape[1]
        firsts.append((window[0].start + first // tw) * w + (window[1].start + first % tw))
        tile[tile > 0] += np.uint32(offset)
        out[window] = tile
        offset += n
    if offset == 0:
        return out
    pairs = []
    for y in range(tile_size, h, tile_size):  # horizontal seams
        a, b = out[y - 1], out[y]
        m = (a > 0) & (b > 0)
        pairs.append(np.stack([a[m], b[m]]))
    for x in range(tile_size, w, tile_size):  # vertical seams
        a, b = out[:, x - 1], out[:, x]
        m = (a > 0) & (b > 0)
        pairs.append(np.stack([a[m], b[m]]))
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = np.concatenate(pairs, axis=1).astype(np.int64) if pairs else np.zeros((2, 0), np.int64)
    graph = coo_matrix((np.ones(pairs.shape[1]), (pairs[0], pairs[1])), shape=(offset + 1, offset + 1))
    _, comp = connected_components(graph, directed=False)
    # number components by the raster index of their first pixel (as ndi.label does)
    first = np.concatenate(firsts)
    comp_first = np.full(int(comp.max()) + 1, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(comp_first, comp[1:], first[1:])
    rank = np.zeros(comp_first.size, np.uint32)
    seen = np.unique(comp[1:])
    rank[seen[np.argsort(comp_first[seen], kind="stable")]] = np.arange(1, seen.size + 1, dtype=np.uint32)
    lut = np.zeros(offset + 1, np.uint32)
    lut[1:] = rank[comp[1:]]
    return _apply_lut(out, lut, out=out)


def _grow_tiled(seeds: np.ndarray, tile_size: int | None) -> np.ndarray:
    """:func:`grow_into_boundaries` computed tile by tile with a halo.

    Information travels at most 2 px per pass, so a tile whose halo is wider
    than ``2 * passes + 2`` gives exactly the untiled result; otherwise the
    tile is recomputed with a doubled halo.
    """
    if tile_size is None:
        return grow_into_boundaries(seeds)[0]
    out = np.empty_like(seeds)
    for window in blocks(seeds.shape, tile_size):
        halo = 16
        while True:
            outer, inner = with_halo(window, seeds.shape, halo)
            grown, passes = grow_into_boundaries(seeds[outer])
            if grown.shape == seeds.shape or 2 * passes + 2 < halo:
                break
            halo *= 2
        out[window] = grown[inner]
    return out


def _drop_small(labels: np.ndarray, min_area: int, *, in_place: bool = False) -> tuple[np.ndarray, int]:
    """Set grains smaller than ``min_area`` pixels to 0; return the count dropped.

    Nothing is dropped when every grain is small (the caller decides what to keep then).
    """
    if min_area <= 1:
        return labels, 0
    areas = _areas(labels)
    small = areas < min_area
    small[0] = False
    n = int(small[1:].sum())
    if n == 0 or n == np.count_nonzero(areas[1:]):
        return labels, 0
    lut = np.arange(areas.size, dtype=np.uint32)
    lut[small] = 0
    return _apply_lut(labels, lut, out=labels if in_place else None), n


def boundaries_to_labels(
    boundary_map: np.ndarray,
    *,
    threshold: float = 0.5,
    min_grain_area: int = DEFAULT_MIN_GRAIN_AREA,
    remove_spurs: bool = True,
    tile_size: int | None = None,
) -> np.ndarray:
    """Turn a boundary map (binary or probability) into closed grain labels.

    Steps: threshold; the 4-connected regions between boundaries are the
    grain seeds; seeds smaller than ``min_grain_area`` are dropped; every
    boundary pixel that separates nothing joins its only neighbouring grain
    (thins thick bands to 1 px, removes spurs); grains still smaller than
    ``min_grain_area`` are then deleted and shared out to their neighbours.

    Parameters
    ----------
    boundary_map
        2-D bool, 0/1, 0/255 or probability image; boundary = high.
    threshold
        Probability at or above which a pixel is boundary, for non-bool maps.
        Integer maps with values above 1 are first divided by 255 (8-bit) or
        by their dtype's maximum (16/32-bit); float maps are used as they are.
    min_grain_area
        Grains smaller than this (pixels, boundary share included) are merged
        into their neighbours.
    remove_spurs
        If False, the dangling 1-px skeleton branches of the thresholded map
        are drawn back as boundary pixels inside the grains (they split nothing).
    tile_size
        Compute tile by tile (connected components joined across tile seams,
        boundary thinning with an adaptive halo); the result is identical.

    Returns
    -------
    labels : ndarray of uint32
        0 = boundary (1 px, 8-connected), grains 4-connected numbered 1..N.

    Raises
    ------
    InputError
        If the map is not 2-D or not numeric, or if it has no closed grain.

    Examples
    --------
    >>> bmap = np.zeros((20, 20), bool); bmap[:, 9:12] = True    # a 3-px band
    >>> lab = boundaries_to_labels(bmap)
    >>> int(lab.max()), int((lab == 0).sum(axis=1).max())
    (2, 1)
    """
    mask = _binarize(boundary_map, threshold)
    if tile_size is not None and tile_size < 8:
        raise InputError(f"tile_size must be at least 8 pixels, got {tile_size}")
    if min_grain_area < 0:
        raise InputError(f"min_grain_area must be >= 0, got {min_grain_area}")
    np.logical_not(mask, out=mask)  # grain pixels
    seeds = _label_components(mask, tile_size)
    del mask  # not needed any more (the spur option thresholds the map again)
    if not seeds.any():
        raise InputError("the boundary map has no closed grain: every pixel is boundary")
    areas = _areas(seeds)
    if min_grain_area > 1 and np.all(areas[1:][areas[1:] > 0] < min_grain_area):
        # every seed is small: keep the largest one rather than return nothing
        areas[0] = 0
        lut = np.zeros(areas.size, np.uint32)
        lut[np.argmax(areas)] = np.argmax(areas)
        kept = _apply_lut(seeds, lut, out=seeds)
    else:
        kept, _ = _drop_small(seeds, min_grain_area, in_place=True)
    del seeds
    # Thinning is exact tile by tile; large maps always use tiles, which keeps its
    # index temporaries tile-sized (the result is the same).
    grow_tile = tile_size if tile_size is not None or kept.size <= AUTO_TILE_MIN_PX else AUTO_TILE_SIZE
    labels = _grow_tiled(kept, grow_tile)
    del kept
    labels, n_dropped = _drop_small(labels, min_grain_area, in_place=True)
    if n_dropped:
        labels = _grow_tiled(labels, grow_tile)
    labels = relabel_in_order(labels, out=labels)
    if not remove_spurs:
        labels = _add_back_spurs(labels, _binarize(boundary_map, threshold))
    return labels


def _add_back_spurs(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Draw the skeleton of ``mask`` back inside grains where it splits nothing."""
    from skimage.morphology import skeletonize

    skel = skeletonize(mask) & (labels > 0)
    out = labels.copy()
    out[skel] = 0
    comps, n = ndi.label(out > 0, structure=_FOUR)
    if n != int(labels.max()):  # a drawn branch cut a grain: keep it, renumber
        return relabel_in_order(_split_components(out))
    return out


def _split_components(labels: np.ndarray) -> np.ndarray:
    """Give each 4-connected piece of every grain its own id (0 stays 0)."""
    comps, _ = ndi.label(labels > 0, structure=_FOUR)
    fg = labels > 0
    key = labels[fg].astype(np.uint64) * np.uint64(comps.max() + 1) + comps[fg].astype(np.uint64)
    _, inv = np.unique(key, return_inverse=True)
    out = np.zeros(labels.shape, np.uint32)
    out[fg] = inv.astype(np.uint32) + 1
    return out


# --------------------------------------------------------------------------- conversions


def labels_to_boundaries(labels: np.ndarray) -> np.ndarray:
    """Boundary mask of a label image.

    For a label image in this package's convention (0 = boundary) this is
    ``labels == 0``; for a tiling without boundary pixels it is the boundary
    that :func:`normalize_labels` would draw.
    """
    labels = validate_labels(labels, require_grain=False)
    if (labels == 0).any():
        return labels == 0
    return normalize_labels(labels) == 0


def normalize_labels(labels: np.ndarray) -> np.ndarray:
    """Bring any label image to the package convention (1-px boundaries, 1..N).

    Works for a tiling without boundary pixels (e.g. drawn by hand or from a
    watershed without lines), for labels with thick boundaries and for labels
    whose grains are not 4-connected. Where two different labels are
    4-adjacent, the pixel with the smaller label becomes boundary (a diagonal
    boundary thus stays 1 px thin); each 4-connected piece becomes a grain and
    redundant boundary pixels rejoin their grain.

    Examples
    --------
    >>> tiling = np.repeat([[1, 1, 2, 2]], 4, axis=0)
    >>> normalize_labels(tiling)[0]
    array([1, 0, 2, 2], dtype=uint32)
    """
    labels = validate_labels(labels)
    lab = labels.copy()
    mark = np.zeros(lab.shape, bool)
    a, b = labels[:, :-1], labels[:, 1:]
    diff = (a != b) & (a > 0) & (b > 0)
    mark[:, :-1] |= diff & (a < b)
    mark[:, 1:] |= diff & (b < a)
    a, b = labels[:-1, :], labels[1:, :]
    diff = (a != b) & (a > 0) & (b > 0)
    mark[:-1, :] |= diff & (a < b)
    mark[1:, :] |= diff & (b < a)
    lab[mark] = 0
    lab = _split_components(lab)
    lab, _ = grow_into_boundaries(lab)
    return relabel_in_order(lab)


def label_convention_problems(labels: np.ndarray) -> list[str]:
    """Ways in which ``labels`` breaks the package convention (empty list: none).

    Checks: integer, grains numbered 1..N, each grain 4-connected, no two
    different grains 4-adjacent, and no redundant boundary pixel (one whose
    4-neighbours belong to exactly one grain).
    """
    labels = validate_labels(labels)
    problems = []
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size and not np.array_equal(ids, np.arange(1, ids.size + 1)):
        problems.append("grain ids are not consecutive 1..N")
    n_pieces = int(_split_components(labels).max())
    if n_pieces != ids.size:
        problems.append(f"{n_pieces - ids.size} grains are not 4-connected")
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        if np.any((a != b) & (a > 0) & (b > 0)):
            problems.append("two different grains touch without a boundary pixel")
            break
    grown, _ = grow_into_boundaries(labels, max_passes=1)
    if np.any(grown != labels):
        problems.append("some boundary pixels separate nothing (touch a single grain)")
    return problems


def border_grains(labels: np.ndarray) -> np.ndarray:
    """Sorted ids of the grains that touch the image border."""
    labels = np.asarray(labels)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    ids = np.unique(edge)
    return ids[ids > 0]


# --------------------------------------------------------------------------- classical


def classical_boundaries(
    image: np.ndarray, *, sigma: float = 3.0, h: float = 0.003, merge_threshold: float | None = None
) -> np.ndarray:
    """Classical grain boundaries: watershed of a smoothed gradient.

    The baseline a learned model must beat (REFERENCE §3). The image is
    contrast-stretched (1st-99th percentile), smoothed with a Gaussian of
    ``sigma`` px; the Sobel gradient is flooded from its h-minima (regional
    minima deeper than ``h``, in units of the stretched intensity range), which
    suppresses the many shallow minima that noise creates. Optionally, adjacent
    regions whose shared boundary has a mean gradient below ``merge_threshold``
    are merged (region adjacency graph, ``skimage.graph``).

    Without merging, the defaults over-segment noisy micrographs; on the
    bundled interconnect image ``sigma=4, h=0.002, merge_threshold=0.01`` finds
    most strong boundaries but still splits the bright, textured grains and
    misses faint boundaries between grains of similar grey level.

    Returns
    -------
    boundaries : ndarray of bool
        1-px boundary map; feed it to :func:`boundaries_to_labels`.
    """
    from skimage import filters, graph, morphology, segmentation

    from napari_grainseg.io.validate import validate_image

    img = validate_image(image)
    lo, hi = np.percentile(img, [1, 99])
    if hi <= lo:
        lo, hi = float(img.min()), float(img.max())
    img = np.clip((img - lo) / (hi - lo), 0, 1)
    grad = filters.sobel(filters.gaussian(img, sigma=sigma)).astype(np.float32)
    markers = ndi.label(morphology.h_minima(grad, h), structure=_FOUR)[0]
    ws = segmentation.watershed(grad, markers, connectivity=1)
    if merge_threshold is not None:
        rag = graph.rag_boundary(ws, grad)
        ws = graph.cut_threshold(ws, rag, merge_threshold, in_place=False) + 1
    return normalize_labels(ws) == 0


#: Depth of the probability basins that become grains (the watershed builder's default). Chosen in
#: session 13 as the lowest mean VI over five tuning sets (docs/generalisation.md, "Grains from the map").
DEFAULT_WATERSHED_H = 0.2
#: The deepest basin depth offered (dock and ``--watershed-h``): above it nearly every map is one grain.
MAX_WATERSHED_H = 0.9
#: Smoothing of the probability before the watershed, in the pixels Net1 worked at.
WATERSHED_SIGMA = 1.0
#: Probability steps per unit in which basin depths are compared (exact integer arithmetic).
_LEVELS = 10_000


def _quantized(relief: np.ndarray) -> np.ndarray:
    """``relief`` (values in [0, 1]) in uint16 steps of 1 / :data:`_LEVELS` (one temporary, float32 or wider).

    Rounded in the input's own precision when it is wider than float32 (float64 half-steps
    round as they always did).
    """
    steps = np.clip(relief, 0.0, 1.0, dtype=np.result_type(relief, np.float32))
    steps *= _LEVELS
    np.rint(steps, out=steps)
    return steps.astype(np.uint16)


def _reconstruct_by_erosion(seed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Morphological reconstruction by erosion of ``seed`` above ``mask`` (8-connected; uint16 or float32).

    Repeated geodesic erosions (OpenCV), until nothing changes: the same result as
    ``skimage.morphology.reconstruction(seed, mask, method="erosion")``, about four
    times faster on probability maps, where values travel at most a grain's width.
    Besides ``seed`` and ``mask``, three images of their size are held (the
    result, the one 8 erosions before, the erosion being written).
    """
    import cv2

    kernel = np.ones((3, 3), np.uint8)
    rec = np.maximum(seed, mask)
    eroded = np.empty_like(rec)
    while True:
        before = rec.copy()
        for _ in range(8):  # compare every 8 erosions: the comparison costs as much as one
            cv2.erode(rec, kernel, dst=eroded, borderType=cv2.BORDER_REPLICATE)
            np.maximum(eroded, mask, out=rec)
        if np.array_equal(rec, before):
            return rec


def h_minima_markers(relief: np.ndarray, h: float) -> tuple[np.ndarray, int]:
    """One labelled marker per basin of ``relief`` (values in [0, 1]) deeper than ``h``; ``(markers, n)``.

    The relief is quantised to steps of 1e-4 and flooded ``h`` above every
    minimum (morphological reconstruction by erosion); each regional minimum
    of the flooded relief is one basin deeper than ``h``, however many pixels
    share its floor; a relief with no basin that deep is one basin. Integer
    steps keep the depth comparison exact: with floats (``skimage.morphology.h_minima``),
    ``(x + h) - x`` may round below ``h`` and drop deep basins at random.

    Examples
    --------
    >>> relief = np.zeros((9, 9)); relief[:, 4] = 0.3    # a ridge 0.3 high
    >>> [h_minima_markers(relief, h)[1] for h in (0.2, 0.29, 0.3, 0.4)]
    [2, 2, 1, 1]
    """
    from skimage.morphology import local_minima

    q = _quantized(relief)  # integer steps: exact comparisons, 2 B/px
    # deeper than the whole range is the same as just deeper (no basin is); q + depth fits in uint16
    depth = min(max(1, round(h * _LEVELS)), _LEVELS + 1)
    flooded = _reconstruct_by_erosion(q + np.uint16(depth), q)
    del q
    # 8-connected, as the flooding: a floor joined only at a corner is one basin
    markers, n = ndi.label(local_minima(flooded, allow_borders=True), structure=np.ones((3, 3), bool))
    if n == 0:  # flooded flat: the whole image is one basin
        return np.ones(flooded.shape, np.int32), 1
    return markers, n


def watershed_lines(
    probability: np.ndarray, h: float = DEFAULT_WATERSHED_H, sigma: float = WATERSHED_SIGMA
) -> np.ndarray:
    """Closed candidate boundaries of a boundary probability: its watershed lines.

    The probability is smoothed (Gaussian ``sigma`` px; 0: none), every basin
    deeper than ``h`` seeds a region (:func:`h_minima_markers`), and the regions
    are flooded until they meet; the 1-px lines where they meet close every gap
    that separates two basins. Returns a bool (H, W) mask; a map without any
    basin that deep (e.g. no boundary evidence at all) has no lines: one grain.
    """
    from skimage.segmentation import watershed

    relief = np.asarray(probability, np.float32)
    if sigma > 0:
        relief = ndi.gaussian_filter(relief, sigma)
    markers, n = h_minima_markers(relief, h)
    if n <= 1:
        return np.zeros(relief.shape, bool)
    # Flooded in the same integer steps as the markers. The markers are whole flooded basins,
    # never touching one another, so only the pixels outside them (and their rim) need flooding:
    # the same lines, in half the time.
    rest = ndi.binary_dilation(markers == 0, np.ones((3, 3), bool))
    # Only a marker's rim (inside ``rest``) can reach a pixel to flood: the interior marker pixels
    # are left out of the watershed's queue (which lists marker pixels at 8 B each), and the relief
    # goes on as integers and is dropped here (the watershed makes its own float64 copy). The same
    # lines, with a lower memory peak on large images.
    markers[~rest] = 0
    levels = _quantized(relief)
    del relief
    flooded = watershed(levels, markers, watershed_line=True, mask=rest)
    return (flooded == 0) & rest


#: How :func:`probability_to_labels` turns a boundary probability into grains.
GRAIN_BUILDERS: tuple[str, ...] = ("watershed", "threshold")
#: The default grain builder (since session 13; before: the threshold).
DEFAULT_GRAIN_BUILDER = "watershed"


def probability_watershed(
    probability: np.ndarray,
    h: float = DEFAULT_WATERSHED_H,
    sigma: float = WATERSHED_SIGMA,
    min_grain_area: int = DEFAULT_MIN_GRAIN_AREA,
) -> np.ndarray:
    """Closed grains from a boundary probability by watershed from its basins deeper than ``h``.

    Every basin of the smoothed probability deeper than ``h`` becomes a grain,
    so a boundary that a threshold would leave open (a faint stretch between
    two grains of nearly equal contrast) is still closed along its ridge, while
    a ridge less than ``h`` above the grains on both sides (texture, a line
    that is not a boundary) splits nothing.

    Examples
    --------
    >>> prob = np.zeros((64, 64), np.float32)
    >>> prob[:, 30:34] = 0.3                       # a faint line, below a 0.5 threshold
    >>> int(probability_watershed(prob).max())
    2
    >>> prob[:, 30:34] = 0.1                       # shallower than h: no boundary
    >>> int(probability_watershed(prob).max())
    1
    """
    return boundaries_to_labels(watershed_lines(probability, h=h, sigma=sigma), min_grain_area=min_grain_area)


def builder_words(method: str, parameter: float) -> str:
    """How grains are built, for a status line: the builder and its parameter.

    Examples
    --------
    >>> builder_words("watershed", 0.2), builder_words("threshold", 0.5)
    ('watershed, depth 0.2', 'threshold 0.5')
    """
    if method == "watershed":
        return f"watershed, depth {parameter:g}"
    return f"threshold {parameter:g}"


#: A boundary probability with fewer than this fraction of its pixels at 0.5 or above shows (almost)
#: no boundaries: Net1 gives about 0.2-0.5 % on pure noise, 4-15 % on micrographs of grains.
FEW_BOUNDARY_FRACTION = 0.01


def one_grain_reason(
    probability: np.ndarray, method: str = DEFAULT_GRAIN_BUILDER, parameter: float | None = None
) -> str:
    """Why grains built from ``probability`` came out as one grain, and what to do (a status line's words).

    Where under :data:`FEW_BOUNDARY_FRACTION` of the map is boundary (probability 0.5 or
    above: noise, an image without visible boundaries at the scale Net1 looked at), Net1
    found no boundaries to close and no builder setting would help; otherwise the builder's
    setting left every boundary open: a lower basin depth (watershed) or threshold.

    Examples
    --------
    >>> one_grain_reason(np.zeros((64, 64), np.float32)).split(" (")[0]
    'one grain: Net1 found no closed grain boundaries'
    >>> prob = np.zeros((64, 64), np.float32); prob[:, 30:34] = 0.6    # a boundary 0.6 high
    >>> one_grain_reason(prob, "watershed", 0.9)
    'one grain: no basin is deeper than the basin depth 0.9, lower the basin depth'
    """
    p = np.asarray(probability)
    fraction = float(np.count_nonzero(p >= 0.5)) / max(p.size, 1)
    if fraction < FEW_BOUNDARY_FRACTION:
        return (
            f"one grain: Net1 found no closed grain boundaries ({100 * fraction:.1f} % of the image looks like "
            "boundary): the image may show no boundaries at this scale; give a grain-size hint, or check that "
            "it is a micrograph of grains"
        )
    if method == "watershed":
        depth = "" if parameter is None else f" {parameter:g}"
        return f"one grain: no basin is deeper than the basin depth{depth}, lower the basin depth"
    threshold = "" if parameter is None else f" {parameter:g}"
    return f"one grain: no boundary closes at the threshold{threshold}, lower the threshold"


def check_grain_builder(method: str) -> str:
    """``method`` if it names a grain builder (:data:`GRAIN_BUILDERS`); otherwise an InputError."""
    if method not in GRAIN_BUILDERS:
        raise InputError(f"grain builder: grains must be one of {', '.join(GRAIN_BUILDERS)}, got {method!r}")
    return method


def probability_to_labels(
    probability: np.ndarray,
    method: str = DEFAULT_GRAIN_BUILDER,
    *,
    threshold: float = 0.5,
    min_grain_area: int = DEFAULT_MIN_GRAIN_AREA,
    watershed_h: float = DEFAULT_WATERSHED_H,
    net1_scale: float = 1.0,
) -> np.ndarray:
    """Closed grain labels from a boundary probability, by ``"watershed"`` (default) or ``"threshold"``.

    ``"watershed"`` closes every basin deeper than ``watershed_h`` (:func:`probability_watershed`;
    ``threshold`` is not used). The map is smoothed by :data:`WATERSHED_SIGMA` pixels of the image
    Net1 worked on: ``net1_scale`` is the factor the image was resampled by before Net1
    (:attr:`~napari_grainseg.segmentation.inference.BoundaryPrediction.scale`), so the smoothing
    follows the grains, not the input's pixels. ``"threshold"`` keeps the pixels at or above
    ``threshold`` (:func:`boundaries_to_labels`). The watershed is the default because it did
    better on every test set our generator did not tune, real hand-traced crops included
    (docs/generalisation.md).
    """
    if check_grain_builder(method) == "watershed":
        if not (np.isfinite(net1_scale) and net1_scale > 0):
            raise InputError(f"net1_scale must be a positive number, got {net1_scale}")
        return probability_watershed(
            probability, h=watershed_h, sigma=WATERSHED_SIGMA / net1_scale, min_grain_area=min_grain_area
        )
    return boundaries_to_labels(probability, threshold=threshold, min_grain_area=min_grain_area)
