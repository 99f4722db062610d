"""Training targets derived from a tessellation: 1-px boundaries and closed grain labels.

Contract (checked by the tests over many seeds):

* ``boundaries`` is 1 px wide and 8-connected along every grain edge;
* labelling the non-boundary pixels with 4-connectivity gives back ``labels``
  exactly (every grain is closed; no two grains touch through a pixel edge);
* every boundary pixel has at least two different grains in its 3x3 neighbourhood;
* no grain is smaller than ``min_area`` pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_grainseg.synthetic.tessellation import compact_labels

__all__ = ["targets_from_tessellation", "boundary_pixels", "grains_from_boundaries"]

_CROSS = ndimage.generate_binary_structure(2, 1)


def boundary_pixels(cells: np.ndarray) -> np.ndarray:
    """Mark a pixel when a 4-neighbour belongs to a cell with a smaller id.

    Only one side of each edge is marked, so the line is one pixel wide, and no
    unmarked pixel of one cell 4-touches an unmarked pixel of another (the marked
    side is exactly the set of pixels that would touch), so the unmarked pixels
    fall apart into the cells; by digital duality the marked set is 8-connected.
    """
    b = np.zeros(cells.shape, bool)
    b[1:, :] |= cells[1:, :] > cells[:-1, :]
    b[:-1, :] |= cells[:-1, :] > cells[1:, :]
    b[:, 1:] |= cells[:, 1:] > cells[:, :-1]
    b[:, :-1] |= cells[:, :-1] > cells[:, 1:]
    return b


def grains_from_boundaries(boundaries: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected labelling of the non-boundary pixels (labels 1..n, 0 on boundaries)."""
    labels, n = ndimage.label(~boundaries, structure=_CROSS)
    return labels, n


def _prune(labels: np.ndarray, boundaries: np.ndarray) -> None:
    """Give back to a grain every boundary pixel that separates nothing (in place).

    A boundary pixel whose 4-neighbour grains are all one label ``g`` and whose 3x3
    neighbourhood holds no other grain is turned into ``g``. Updates alternate over
    the two checkerboard colours, so two pixels changed together are never
    4-adjacent and no two grains can merge. Only boundary pixels are visited.
    """
    h, w = labels.shape
    padded = np.pad(labels, 1)
    offsets = [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]
    for _ in range(4):
        changed = False
        for colour in (0, 1):
            ys, xs = np.nonzero(boundaries)
            sel = ((ys + xs) & 1) == colour
            ys, xs = ys[sel], xs[sel]
            nb = np.stack([padded[ys + 1 + dy, xs + 1 + dx] for dy, dx in offsets])
            big = nb.max(axis=0)
            small = np.where(nb > 0, nb, np.iinfo(nb.dtype).max).min(axis=0)
            lonely = (nb[:4] > 0).any(axis=0) & (big == small)
            if lonely.any():
                ly, lx, g = ys[lonely], xs[lonely], big[lonely]
                labels[ly, lx] = g
                padded[ly + 1, lx + 1] = g
                boundaries[ly, lx] = False
                changed = True
        if not changed:
            break


def targets_from_tessellation(cells: np.ndarray, min_area: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn a cell image (every pixel a cell id) into ``(cells, labels, boundaries)``.

    Cells that break into fragments smaller than ``min_area`` px once the boundary
    is drawn are merged into their neighbours and the boundaries redrawn, so the
    returned ``cells`` (int32, 0..n-1, full coverage; used for rendering) and the
    targets agree.

    Returns
    -------
    cells
        Cleaned cell image, int32.
    labels
        uint32 grain labels 1..n, 0 on boundary pixels.
    boundaries
        bool, 1 px wide.
    """
    cells, _ = compact_labels(cells)
    for _ in range(3):
        boundaries = boundary_pixels(cells)
        labels, n = grains_from_boundaries(boundaries)
        area = np.bincount(labels.ravel(), minlength=n + 1)
        tiny = area < min_area
        tiny[0] = True  # boundary pixels get refilled too
        if not tiny[1:].any():
            break
        # refill boundary and tiny fragments from the nearest kept grain, then
        # re-derive cells from the kept grains (ids follow the grain labels).
        keep = ~tiny[labels]
        idx = ndimage.distance_transform_edt(~keep, return_distances=False, return_indices=True)
        cells, _ = compact_labels(labels[idx[0], idx[1]])
    # crumbs that keep reappearing (a lone pixel boxed in at a junction) become
    # boundary; pruning then hands back every such pixel that separates nothing
    area = np.bincount(labels.ravel())
    crumbs = area < min_area
    crumbs[0] = False
    if crumbs.any():
        boundaries |= crumbs[labels]
        labels[boundaries] = 0
    _prune(labels, boundaries)
    labels, _ = grains_from_boundaries(boundaries)  # canonical (raster-order) numbering
    return cells.astype(np.int32), labels.astype(np.uint32), boundaries
