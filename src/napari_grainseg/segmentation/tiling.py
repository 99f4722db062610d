"""One tiler for every step that works on large images piece by piece.

Two kinds of tiling are used in the package:

* **Blended tiles** (:class:`TileGrid`): overlapping tiles of a fixed size,
  each run through a network (Net1 inference, Net2 refinement); their outputs
  are blended with weights that are zero near each inner cut (where zero
  padding distorts a network) and ramp up smoothly across the overlap
  (:func:`blend_weights`), so there are no seams. Inputs are padded to the
  network's size multiple with :func:`pad_to_multiple`.
* **Blocks** (:func:`blocks`, :func:`with_halo`, :func:`halo_windows`): a
  partition of the image into non-overlapping tiles, optionally read with a
  halo of context around each so that a local operation (filters, boundary
  thinning) gives the untiled result on the block itself (edge statistics,
  grain building). :func:`row_slices` and :func:`row_blocks` cut an image into
  bands of whole rows for block-by-block reductions without image-sized
  temporaries.

A *window* is a pair of slices ``(rows, cols)``.

Examples
--------
>>> grid = TileGrid((300, 500), tile=256, overlap=64)
>>> grid.ys, grid.xs
([0, 44], [0, 192, 244])
>>> out = grid.blend(lambda window: np.ones((window[0].stop - window[0].start,
...                                          window[1].stop - window[1].start), np.float32))
>>> bool(np.allclose(out, 1.0))
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from napari_grainseg.errors import InputError

#: A 2-D window of an image: ``(row slice, column slice)``.
Window = tuple[slice, slice]

#: Pixels per band of :func:`row_slices` (about a megapixel).
ROW_BLOCK_PX = 1 << 20

__all__ = [
    "ROW_BLOCK_PX",
    "TileGrid",
    "Window",
    "blend_weights",
    "blocks",
    "halo_windows",
    "pad_to_multiple",
    "row_blocks",
    "row_slices",
    "tile_starts",
    "with_halo",
]


# --------------------------------------------------------------------------- blended tiles


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of overlapping tiles of size ``tile`` covering ``length`` pixels.

    Every tile is ``tile`` long (the last one is moved back to end at
    ``length``), neighbours overlap by at least ``overlap``; a length up to
    ``tile`` is one tile.

    Examples
    --------
    >>> tile_starts(100, 128, 32)
    [0]
    >>> tile_starts(300, 128, 32)
    [0, 96, 172]
    """
    if length <= tile:
        return [0]
    step = tile - overlap
    n = math.ceil((length - overlap) / step)
    return sorted({min(i * step, length - tile) for i in range(n)})


def blend_weights(length: int, start: int, total: int, overlap: int) -> np.ndarray:
    """1-D blending weights of a tile of ``length`` px starting at ``start`` on an axis of ``total`` px.

    At a cut inside the image the weight is zero in the outer ``overlap // 4``
    px, then rises along a cosine ramp to 1 over the rest of the overlap; at the
    image border it is 1. Over a :func:`tile_starts` grid the weights of all
    tiles sum to more than 0 everywhere (and to 1 where the ramps of two tiles meet
    exactly, e.g. with a step of ``tile - overlap``).

    Examples
    --------
    >>> blend_weights(8, 0, 8, 4).tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    >>> w = blend_weights(8, 4, 12, 4)           # a cut at 4: zero, ramp, then full weight
    >>> w[:3].round(3).tolist(), w[-1].item()
    ([0.0, 0.25, 0.75], 1.0)
    """
    w = np.ones(length, np.float32)
    margin = overlap // 4
    ramp = overlap - 2 * margin
    profile = np.concatenate([np.zeros(margin), 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp + 2)[1:-1])])
    if start > 0:
        w[: profile.size] = profile
    if start + length < total:
        w[length - profile.size :] = profile[::-1]
    return w


def pad_to_multiple(x: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad the last two axes of ``x`` up to a multiple of ``multiple``.

    Returns the padded array (``x`` itself when nothing is needed) and the
    original (H, W), to crop the network's output back with ``[..., :h, :w]``.

    Examples
    --------
    >>> padded, (h, w) = pad_to_multiple(np.zeros((3, 10, 13)), 8)
    >>> padded.shape, (h, w)
    ((3, 16, 16), (10, 13))
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)], mode="reflect")
    return x, (h, w)


@dataclass(frozen=True)
class TileGrid:
    """Overlapping tiles of an image of ``shape``, whose outputs are blended without seams.

    Attributes
    ----------
    shape : (H, W) of the image.
    tile : tile side (px); an image up to this size is one tile.
    overlap : overlap of neighbouring tiles (px), less than half the tile.
    ys, xs : tile start rows and columns (:func:`tile_starts`).

    Raises
    ------
    InputError
        If the overlap is not less than half the tile size.

    Examples
    --------
    >>> grid = TileGrid((100, 2000), tile=1024, overlap=128)
    >>> len(grid), grid.windows()[1]
    (3, (slice(0, 100, None), slice(896, 1920, None)))
    """

    shape: tuple[int, int]
    tile: int
    overlap: int
    ys: list[int] = field(init=False, repr=False)
    xs: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.overlap >= self.tile // 2:
            raise InputError(f"tile overlap ({self.overlap}) must be less than half the tile size ({self.tile})")
        h, w = self.shape
        object.__setattr__(self, "ys", tile_starts(h, self.tile, self.overlap))
        object.__setattr__(self, "xs", tile_starts(w, self.tile, self.overlap))

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def windows(self) -> list[Window]:
        """The tiles' windows, row by row (each clipped to the image)."""
        h, w = self.shape
        return [(slice(y, min(y + self.tile, h)), slice(x, min(x + self.tile, w))) for y in self.ys for x in self.xs]

    def axis_weights(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """The row and column blending weights of a tile (:func:`blend_weights` on each axis)."""
        (rows, cols), (h, w) = window, self.shape
        return (
            blend_weights(rows.stop - rows.start, rows.start, h, self.overlap),
            blend_weights(cols.stop - cols.start, cols.start, w, self.overlap),
        )

    def weights(self, window: Window) -> np.ndarray:
        """2-D blending weights of a tile: the outer product of :meth:`axis_weights`."""
        wy, wx = self.axis_weights(window)
        return wy[:, None] * wx[None, :]

    def normalise(self, acc: np.ndarray) -> np.ndarray:
        """Divide a weighted sum of the tiles by the sum of their weights, in place; returns ``acc``.

        The weights are separable and the tiles form a grid, so their sum is the
        outer product of two 1-D sums; it is applied band by band
        (:func:`row_slices`), without an image-sized temporary.
        """
        h, w = self.shape
        norm_y, norm_x = np.zeros(h, np.float32), np.zeros(w, np.float32)
        for y in self.ys:
            norm_y[y : y + self.tile] += blend_weights(min(self.tile, h - y), y, h, self.overlap)
        for x in self.xs:
            norm_x[x : x + self.tile] += blend_weights(min(self.tile, w - x), x, w, self.overlap)
        for rows in row_slices(acc.shape):
            acc[rows] /= np.maximum(norm_y[rows, None] * norm_x[None, :], 1e-6)
        return acc

    def blend(
        self, predict: Callable[[Window], np.ndarray], progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """Run ``predict(window)`` on every tile and blend the outputs into one float32 (H, W) map.

        ``predict`` returns the tile's (h, w) output (it may be changed in place).
        With one tile its output is returned as it is. ``progress(done, total)``
        is called after every tile (raise from it to cancel). Only the weighted
        sum is image-sized.
        """
        windows, total = self.windows(), len(self)
        if total == 1:
            out = predict(windows[0])
            if progress:
                progress(1, 1)
            return out
        acc = np.zeros(self.shape, np.float32)
        for done, window in enumerate(windows, 1):
            wy, wx = self.axis_weights(window)
            p = predict(window)
            p *= wy[:, None]
            p *= wx[None, :]
            acc[window] += p
            if progress:
                progress(done, total)
        return self.normalise(acc)


# --------------------------------------------------------------------------- blocks and halos


def blocks(shape: tuple[int, int], size: int) -> list[Window]:
    """Non-overlapping ``size`` x ``size`` windows that partition ``shape``, row by row.

    The last row and column of blocks are shorter when ``size`` does not divide the image.

    Examples
    --------
    >>> [(r.start, r.stop, c.start, c.stop) for r, c in blocks((5, 3), 4)]
    [(0, 4, 0, 3), (4, 5, 0, 3)]
    """
    h, w = shape
    return [
        (slice(y, min(y + size, h)), slice(x, min(x + size, w))) for y in range(0, h, size) for x in range(0, w, size)
    ]


def with_halo(window: Window, shape: tuple[int, int], halo: int) -> tuple[Window, Window]:
    """A window grown by ``halo`` px on every side (clipped to ``shape``), and the window inside it.

    Returns ``(outer, inner)``: ``image[outer]`` is the block with its context
    and ``result[inner]`` the part of a result on ``image[outer]`` that belongs
    to the block itself.

    Examples
    --------
    >>> outer, inner = with_halo((slice(0, 4), slice(4, 8)), (8, 8), 2)
    >>> outer, inner
    ((slice(0, 6, None), slice(2, 8, None)), (slice(0, 4, None), slice(2, 6, None)))
    """
    (rows, cols), (h, w) = window, shape
    ya, xa = max(rows.start - halo, 0), max(cols.start - halo, 0)
    yb, xb = min(rows.stop + halo, h), min(cols.stop + halo, w)
    return (
        (slice(ya, yb), slice(xa, xb)),
        (slice(rows.start - ya, rows.stop - ya), slice(cols.start - xa, cols.stop - xa)),
    )


def halo_windows(shape: tuple[int, int], size: int, halo: int) -> list[tuple[Window, Window]]:
    """:func:`with_halo` of every block of :func:`blocks`: ``(outer, inner)`` pairs."""
    return [with_halo(window, shape, halo) for window in blocks(shape, size)]


def row_slices(shape: tuple[int, ...], px: int | None = None, *, rows: int | None = None) -> list[slice]:
    """Bands of whole rows of about ``px`` pixels (default :data:`ROW_BLOCK_PX`), or of ``rows`` rows.

    For block-by-block passes over large arrays, so that no image-sized index
    or boolean temporary is made.

    Examples
    --------
    >>> row_slices((5, 4), px=8)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 6, None)]
    """
    h, w = shape[0], shape[1] if len(shape) > 1 else 1
    step = rows if rows is not None else max(1, (px or ROW_BLOCK_PX) // max(w, 1))
    return [slice(r0, r0 + step) for r0 in range(0, h, step)]


def row_blocks(image: np.ndarray, px: int | None = None) -> Iterator[np.ndarray]:
    """Flattened views of :func:`row_slices` bands of a 2-D ``image`` (no copy for C-contiguous arrays).

    Examples
    --------
    >>> [b.size for b in row_blocks(np.zeros((5, 4)), px=8)]
    [8, 8, 4]
    """
    for rows in row_slices(image.shape, px):
        yield image[rows].reshape(-1)
