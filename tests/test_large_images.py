"""Very large micrographs: tiled steps give the untiled results, with memory that does not grow
with the image beyond the arrays themselves (image-wide statistics without full-size copies)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from napari_grainseg.measure.astm import mean_intercept
from napari_grainseg.measure.table import fill_boundaries, measure_grains
from napari_grainseg.segmentation import edges, grains, tiling
from napari_grainseg.synthetic import generate


def _peak_bytes_per_px(fn, *args, n_px: int, **kwargs):
    """Peak numpy memory allocated while ``fn`` runs, per image pixel, and its result."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        result = fn(*args, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / n_px, result


@pytest.fixture(scope="module")
def field():
    return generate(4, (320, 480), "tem")


@pytest.fixture(scope="module")
def big_image():
    """A 1536x1536 micrograph-like image: a synthetic field mirrored 3x3 plus mild noise."""
    base = generate(2, (512, 512), "tem").image.astype(np.float32)
    row = np.concatenate([base, base[:, ::-1], base], axis=1)
    img = np.concatenate([row, row[::-1], row], axis=0)
    return img + np.random.default_rng(0).normal(0, 0.01, img.shape).astype(np.float32)


# --------------------------------------------------------------------------- grains across tiles


def test_grain_crossing_tile_borders_has_one_id_and_same_measurements(field):
    prob = field.boundaries.astype(np.float32) * 0.9 + 0.05
    tile = 64
    untiled = grains.boundaries_to_labels(prob)
    tiled = grains.boundaries_to_labels(prob, tile_size=tile)
    np.testing.assert_array_equal(tiled, untiled)  # no seam anywhere in the label image
    # the largest grain that spans both a vertical and a horizontal tile border
    ids, area = np.unique(tiled[tiled > 0], return_counts=True)
    ys, xs = np.nonzero(tiled)
    crossing = [
        i
        for i in ids[np.argsort(-area)]
        if len(np.unique(ys[tiled[ys, xs] == i] // tile)) > 1 and len(np.unique(xs[tiled[ys, xs] == i] // tile)) > 1
    ]
    assert crossing, "the test field must have grains across tile corners"
    g = crossing[0]
    pixels = untiled == g
    assert np.unique(tiled[pixels]).tolist() == [g]  # one id on every tile it touches
    a, b = measure_grains(untiled, 2.0), measure_grains(tiled, 2.0)
    row = int(np.flatnonzero(a["label"] == g)[0])
    assert a.row(row) == b.row(row)


def test_large_maps_are_thinned_in_tiles_with_the_same_result(field, monkeypatch):
    prob = np.clip(field.boundaries + np.random.default_rng(1).normal(0, 0.25, field.boundaries.shape), 0, 1).astype(
        np.float32
    )
    expected = grains.boundaries_to_labels(prob)
    monkeypatch.setattr(grains, "AUTO_TILE_MIN_PX", 10_000)
    monkeypatch.setattr(grains, "AUTO_TILE_SIZE", 48)
    np.testing.assert_array_equal(grains.boundaries_to_labels(prob), expected)


def test_boundaries_to_labels_memory_is_a_few_bytes_per_pixel(big_image, monkeypatch):
    monkeypatch.setattr(grains, "AUTO_TILE_MIN_PX", 1 << 20)
    monkeypatch.setattr(grains, "AUTO_TILE_SIZE", 256)
    prob = (edges.detect_edges(big_image).canny).astype(np.float32)
    per_px, labels = _peak_bytes_per_px(grains.boundaries_to_labels, prob, n_px=prob.size)
    # output (4) + seeds (4) + a boolean mask and block temporaries; was ~32 untiled with int64 indices
    assert per_px < 12, per_px
    assert labels.dtype == np.uint32 and labels.max() > 20


def test_measurement_temporaries_are_bounded(field):
    big = np.tile(field.labels, (3, 3))
    big = grains.normalize_labels(big)
    per_px, filled = _peak_bytes_per_px(fill_boundaries, big, n_px=big.size)
    assert per_px < 16, per_px  # was ~34 with distances and a full fancy-index gather
    assert filled.min() > 0
    per_px, _ = _peak_bytes_per_px(mean_intercept, big, n_px=big.size)
    assert per_px < 30, per_px  # was ~74 (all test lines of an orientation at once)


# --------------------------------------------------------------------------- image-wide statistics


@pytest.mark.parametrize(
    "make",
    [
        lambda r: r.random((300, 701)).astype(np.float32),
        lambda r: np.round(r.random((400, 500)) * 7).astype(np.float32),  # heavy ties
        lambda r: (r.random((350, 350)) ** 12).astype(np.float32),  # skewed
        lambda r: np.where(r.random((300, 400)) < 0.6, 0, r.random((300, 400))).astype(np.float32),
        lambda r: r.integers(0, 65535, (256, 300)).astype(np.uint16),
    ],
)
def test_blockwise_percentiles_are_exact(make, monkeypatch):
    monkeypatch.setattr(edges, "_GATHER_MAX", 500)  # force several refinement passes
    monkeypatch.setattr(tiling, "ROW_BLOCK_PX", 10_000)
    a = make(np.random.default_rng(3))
    q = (0.0, 1.0, 12.5, 50.0, 99.0, 100.0)
    np.testing.assert_allclose(edges.blockwise_percentiles(a, q), np.percentile(a, q), rtol=1e-12, atol=0)


def test_tiled_edge_statistics_match_the_whole_image(big_image, monkeypatch):
    direct = edges.resolve_edge_params(big_image)
    monkeypatch.setattr(edges, "TILED_STATS_MIN_PX", 1 << 20)
    monkeypatch.setattr(edges, "STATS_TILE_SIZE", 256)
    monkeypatch.setattr(tiling, "ROW_BLOCK_PX", 1 << 16)
    per_px, tiled = _peak_bytes_per_px(edges.resolve_edge_params, big_image, n_px=big_image.size)
    assert per_px < 4, per_px  # the direct computation needs ~28 bytes per pixel
    assert tiled.stretch_limits == direct.stretch_limits  # exact percentiles
    assert tiled.canny_high == pytest.approx(direct.canny_high, rel=1e-6)
    assert tiled.sobel_threshold == pytest.approx(direct.sobel_threshold, rel=1e-5)
    assert tiled.log_threshold == pytest.approx(direct.log_threshold, rel=1e-5)
    maps_direct, maps_tiled = edges.detect_edges(big_image, direct), edges.detect_edges(big_image, tiled)
    for name in edges.CHANNELS:
        differ = np.mean(getattr(maps_direct, name) != getattr(maps_tiled, name))
        assert differ < 1e-4, (name, differ)
