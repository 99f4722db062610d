"""The tiler: tiles cover the image, blending weights sum to 1, tiled runs equal untiled ones, halos."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_grainseg.errors import InputError
from napari_grainseg.segmentation import tiling
from napari_grainseg.segmentation.tiling import (
    TileGrid,
    blend_weights,
    blocks,
    halo_windows,
    pad_to_multiple,
    row_blocks,
    row_slices,
    tile_starts,
    with_halo,
)

GRIDS = [
    ((300, 500), 128, 32),
    ((1024, 1024), 1024, 128),
    ((1025, 3000), 1024, 128),
    ((97, 1300), 256, 100),
    ((64, 64), 128, 16),
    ((2000, 130), 129, 63),
]


def test_examples_in_the_docstrings_hold():
    assert doctest.testmod(tiling).failed == 0


@pytest.mark.parametrize("shape, tile, overlap", GRIDS)
def test_tiles_cover_the_image_with_full_tiles_that_overlap_enough(shape, tile, overlap):
    grid = TileGrid(shape, tile, overlap)
    count = np.zeros(shape, int)
    for rows, cols in grid.windows():
        count[rows, cols] += 1
        # every tile is full-size unless the image is smaller than a tile on that axis
        assert rows.stop - rows.start == min(tile, shape[0])
        assert cols.stop - cols.start == min(tile, shape[1])
    assert count.min() >= 1
    assert len(grid) == len(grid.windows()) == len(grid.ys) * len(grid.xs)
    for starts, length in ((grid.ys, shape[0]), (grid.xs, shape[1])):
        assert starts[0] == 0 and starts[-1] + min(tile, length) == length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # overlap >= the asked one


@pytest.mark.parametrize("shape, tile, overlap", GRIDS)
def test_blending_weights_sum_to_one(shape, tile, overlap):
    grid = TileGrid(shape, tile, overlap)
    acc = np.zeros(shape, np.float32)
    for window in grid.windows():
        weights = grid.weights(window)
        assert weights.min() >= 0 and weights.max() <= 1
        acc[window] += weights
    assert acc.min() > 0  # every pixel has a tile with a non-zero weight
    np.testing.assert_allclose(grid.normalise(acc), 1.0, rtol=1e-5)
    ones = grid.blend(lambda w: np.ones((w[0].stop - w[0].start, w[1].stop - w[1].start), np.float32))
    np.testing.assert_allclose(ones, 1.0, rtol=1e-5)


def test_weights_are_zero_at_inner_cuts_and_one_at_image_borders():
    w = blend_weights(128, 100, 400, 32)  # a tile with cuts on both sides
    assert np.all(w[:8] == 0) and np.all(w[-8:] == 0)  # overlap // 4 = 8 px
    assert np.all(np.diff(w[:32]) >= 0) and w[32:96].min() == 1
    edge = blend_weights(128, 0, 400, 32)  # the left end is the image border
    assert edge[0] == 1 and edge[-1] == 0


@pytest.mark.parametrize("shape", [(300, 470), (129, 1000), (100, 100)])
def test_tiled_run_equals_untiled_for_a_translation_equivariant_function(shape):
    image = np.random.default_rng(1).random(shape).astype(np.float32)

    def smooth(x):  # local: reads 2 px around each pixel, less than the zero-weight margin
        return ndi.uniform_filter(x, size=5, mode="reflect")

    grid = TileGrid(shape, 96, 32)  # margin 8 px
    tiled = grid.blend(lambda w: smooth(image[w]))
    np.testing.assert_allclose(tiled, smooth(image), atol=1e-6)


def test_tiled_run_of_a_wider_function_shows_the_seams():
    """The equality above is not vacuous: a filter that reads past the zero-weight margin differs."""
    image = np.random.default_rng(1).random((300, 470)).astype(np.float32)

    def smooth(x):
        return ndi.uniform_filter(x, size=41, mode="constant")  # reads 20 px, margin is 8

    tiled = TileGrid(image.shape, 96, 32).blend(lambda w: smooth(image[w]))
    assert np.abs(tiled - smooth(image)).max() > 1e-3


def test_blend_reports_progress_and_passes_one_tile_through():
    calls = []
    grid = TileGrid((50, 300), 128, 32)
    grid.blend(lambda w: np.zeros((50, 128), np.float32), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, len(grid)) for i in range(1, len(grid) + 1)]
    out = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert TileGrid((3, 4), 128, 32).blend(lambda w: out) is out


def test_overlap_must_be_less_than_half_a_tile():
    with pytest.raises(InputError, match="less than half"):
        TileGrid((100, 100), 64, 32)


def test_tile_starts_of_a_short_axis_is_one_tile():
    assert tile_starts(10, 64, 16) == [0]
    assert tile_starts(64, 64, 16) == [0]


def test_pad_to_multiple_reflects_and_crops_back():
    x = np.random.default_rng(2).random((2, 13, 30))
    padded, (h, w) = pad_to_multiple(x, 8)
    assert padded.shape == (2, 16, 32) and (h, w) == (13, 30)
    np.testing.assert_array_equal(padded[..., :h, :w], x)
    np.testing.assert_array_equal(padded[..., 13, :30], x[..., 11, :])  # reflected, not zero
    same, _ = pad_to_multiple(x[:, :8, :16], 8)
    assert same.shape == (2, 8, 16)


@pytest.mark.parametrize("shape, size", [((10, 7), 4), ((64, 64), 64), ((5, 200), 16)])
def test_blocks_partition_the_image(shape, size):
    count = np.zeros(shape, int)
    for window in blocks(shape, size):
        count[window] += 1
    assert np.all(count == 1)


@pytest.mark.parametrize("halo", [0, 3, 50])
def test_halo_windows_hold_their_block_and_give_local_filters_exactly(halo):
    image = np.random.default_rng(4).random((70, 90))
    shape, radius = image.shape, 3
    whole = ndi.maximum_filter(image, size=2 * radius + 1, mode="nearest")
    out = np.full(shape, np.nan)
    for window, (outer, inner) in zip(blocks(shape, 32), halo_windows(shape, 32, halo)):
        np.testing.assert_array_equal(image[outer][inner], image[window])
        out[window] = ndi.maximum_filter(image[outer], size=2 * radius + 1, mode="nearest")[inner]
    if halo >= radius:
        np.testing.assert_array_equal(out, whole)  # a halo as wide as the filter's reach: exact
    else:
        assert not np.array_equal(out, whole)  # too small a halo shows at the cuts


def test_with_halo_is_clipped_to_the_image():
    outer, inner = with_halo((slice(0, 10), slice(20, 30)), (25, 30), 8)
    assert outer == (slice(0, 18), slice(12, 30))
    assert inner == (slice(0, 10), slice(8, 18))


def test_row_slices_and_blocks_cover_every_row_once(monkeypatch):
    image = np.arange(37 * 11, dtype=np.float32).reshape(37, 11)
    slices = row_slices(image.shape, px=50)
    assert all(s.stop - s.start == 4 for s in slices)  # 50 px // 11 columns
    np.testing.assert_array_equal(np.concatenate([image[s] for s in slices]), image)
    assert row_slices(image.shape, rows=10)[-1] == slice(30, 40)
    monkeypatch.setattr(tiling, "ROW_BLOCK_PX", 22)  # the default is read at call time
    assert [b.size for b in row_blocks(image)][:2] == [22, 22]
    np.testing.assert_array_equal(np.concatenate(list(row_blocks(image))), image.ravel())
