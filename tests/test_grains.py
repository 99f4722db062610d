"""Boundary map -> grain labels, conventions, tiling, classical baseline."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from napari_grainseg.errors import InputError
from napari_grainseg.segmentation.grains import (
    border_grains,
    boundaries_to_labels,
    classical_boundaries,
    h_minima_markers,
    label_convention_problems,
    labels_to_boundaries,
    normalize_labels,
    probability_to_labels,
    probability_watershed,
    watershed_lines,
)


def voronoi_tiling(shape, n, seed=0):
    """Random Voronoi tiling without boundary pixels (labels 1..n)."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 1, (n, 2)) * shape
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    _, idx = cKDTree(pts).query(np.c_[yy.ravel(), xx.ravel()])
    return (idx.reshape(shape) + 1).astype(np.uint32)


def thick_noisy_boundary_map(shape=(150, 170), n=40, seed=1):
    """Probability-like map: 3-px boundaries, spurs, speckle, a small closed loop."""
    rng = np.random.default_rng(seed)
    tiling = voronoi_tiling(shape, n, seed)
    b = ndi.binary_dilation(normalize_labels(tiling) == 0, iterations=1)
    prob = np.where(b, 0.9, 0.1) + rng.normal(0, 0.05, shape)
    for y, x in rng.integers(10, min(shape) - 10, (8, 2)):  # dangling spurs
        prob[y, x : x + 6] = 0.8
    prob[rng.random(shape) < 0.002] = 0.95  # isolated speckles
    prob[20:25, 20:25] = 0.9  # a tiny closed loop (3x3 hole)
    prob[21:24, 21:24] = 0.1
    return prob.astype(np.float32), tiling


def test_thick_band_becomes_one_pixel_line():
    bmap = np.zeros((30, 40), bool)
    bmap[:, 18:23] = True  # 5 px band
    lab = boundaries_to_labels(bmap)
    assert lab.dtype == np.uint32
    assert lab.max() == 2
    assert np.all((lab == 0).sum(axis=1) == 1)  # exactly 1 boundary px per row
    assert np.all(np.abs(np.argmax(lab == 0, axis=1) - 20) <= 1)  # in the middle
    assert label_convention_problems(lab) == []


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_probability_and_0_255_maps(scale):
    x = np.arange(40)
    ridge = np.exp(-((x - 20) ** 2) / 8.0)  # probability ridge, 1 at x=20
    bmap = np.tile(ridge, (25, 1)) * scale
    if scale > 1:
        bmap = bmap.astype(np.uint8)
    lab = boundaries_to_labels(bmap, threshold=0.5)
    assert lab.max() == 2
    assert np.array_equal(np.flatnonzero(lab[0] == 0), [20])


def test_realistic_map_obeys_convention_and_recovers_grains():
    prob, tiling = thick_noisy_boundary_map()
    lab = boundaries_to_labels(prob)
    assert label_convention_problems(lab) == []
    # spurs, speckles and the 9-px loop are gone: about as many grains as the tiling
    n_true = len(np.unique(normalize_labels(tiling)))
    assert abs(int(lab.max()) - (n_true - 1)) <= 2
    assert lab.max() == len(np.unique(lab)) - 1  # consecutive
    # no boundary pixel touching a single grain (spurs removed)
    from napari_grainseg.segmentation.grains import grow_into_boundaries

    assert np.array_equal(grow_into_boundaries(lab)[0], lab)


@pytest.mark.parametrize("tile", [32, 50])
def test_tiled_result_is_identical(tile):
    prob, _ = thick_noisy_boundary_map((140, 190), 35, seed=3)
    whole = boundaries_to_labels(prob)
    tiled = boundaries_to_labels(prob, tile_size=tile)
    assert np.array_equal(whole, tiled)


def test_tiled_identical_with_very_thick_band():
    bmap = np.zeros((64, 64), bool)
    bmap[:, 10:54] = True  # 44-px band, wider than the default halo
    bmap[:, 0] = bmap[:, -1] = False
    assert np.array_equal(boundaries_to_labels(bmap), boundaries_to_labels(bmap, tile_size=8))


def test_spurs_removed_or_kept():
    bmap = np.zeros((30, 30), bool)
    bmap[:, 15] = True
    bmap[10, 3:12] = True  # spur attached to nothing that closes
    lab = boundaries_to_labels(bmap)
    assert lab.max() == 2 and (lab == 0).sum() == 30
    kept = boundaries_to_labels(bmap, remove_spurs=False)
    assert kept.max() == 2
    assert np.all(kept[10, 3:12] == 0)
    assert (kept == 0).sum() == 30 + 9


def test_small_grains_are_merged_into_neighbours():
    bmap = np.zeros((40, 40), bool)
    bmap[:, 20] = True
    bmap[5:10, 5:10] = True
    bmap[6:9, 6:9] = False  # 9-px closed grain inside the left grain
    assert boundaries_to_labels(bmap, min_grain_area=0).max() == 3
    lab = boundaries_to_labels(bmap, min_grain_area=10)
    assert lab.max() == 2
    assert np.all(lab[5:10, 5:10] == lab[0, 0])  # loop and its interior absorbed


def test_no_boundary_is_one_grain_and_all_boundary_is_an_error():
    assert np.array_equal(boundaries_to_labels(np.zeros((20, 20))), np.ones((20, 20)))
    with pytest.raises(InputError, match="no closed grain"):
        boundaries_to_labels(np.ones((20, 20)))


@pytest.mark.parametrize("bad", [np.zeros((3, 20, 20)), np.full((20, 20), np.nan)])
def test_bad_boundary_maps(bad):
    with pytest.raises(InputError):
        boundaries_to_labels(bad)


def test_normalize_labels_tiling_and_idempotence():
    tiling = voronoi_tiling((60, 80), 15, seed=5)
    lab = normalize_labels(tiling)
    assert label_convention_problems(lab) == []
    assert np.array_equal(normalize_labels(lab), lab)
    assert np.array_equal(labels_to_boundaries(tiling), lab == 0)
    assert np.array_equal(labels_to_boundaries(lab), lab == 0)
    # each grain is one tiling cell (a sliver cell with no interior may be absorbed)
    for g in range(1, int(lab.max()) + 1):
        counts = np.bincount(tiling[lab == g])
        assert counts.max() >= 0.9 * counts.sum()
    assert int(lab.max()) >= 14


def test_normalize_diagonal_boundary_stays_one_pixel():
    yy, xx = np.mgrid[:20, :20]
    tiling = np.where(xx > yy, 2, 1).astype(np.uint32)
    lab = normalize_labels(tiling)
    assert np.all((lab == 0).sum(axis=1) == 1)  # one boundary pixel per row
    assert label_convention_problems(lab) == []


def test_border_grains():
    lab = np.zeros((9, 9), np.uint32)
    lab[:] = 1
    lab[3:6, 3:6] = 2
    lab[2, 2:7] = lab[6, 2:7] = lab[2:7, 2] = lab[2:7, 6] = 0
    assert border_grains(lab).tolist() == [1]


def test_classical_boundaries_on_flat_shaded_grains():
    rng = np.random.default_rng(0)
    tiling = voronoi_tiling((128, 128), 12, seed=2)
    levels = rng.uniform(0.2, 0.9, tiling.max() + 1)
    image = ndi.gaussian_filter(levels[tiling], 1.0) + rng.normal(0, 0.02, tiling.shape)
    lab = boundaries_to_labels(classical_boundaries(image, sigma=1.5, h=0.01, merge_threshold=0.02), min_grain_area=30)
    truth = normalize_labels(tiling)
    from skimage.metrics import adapted_rand_error

    from napari_grainseg.measure.table import fill_boundaries

    err = adapted_rand_error(fill_boundaries(truth), fill_boundaries(lab))[0]
    assert err < 0.15
    assert abs(int(lab.max()) - int(truth.max())) <= 4


def test_boundary_map_round_trip_is_stable():
    """napari keeps the boundary map as the source of truth: labels -> map -> labels."""
    prob, _ = thick_noisy_boundary_map((120, 130), 30, seed=7)
    lab = boundaries_to_labels(prob)
    again = boundaries_to_labels((lab == 0).astype(np.uint8))
    assert np.array_equal(again == 0, lab == 0)
    assert again.max() == lab.max()
    # same partition: every grain maps to exactly one grain
    pairs = np.unique(np.stack([lab[lab > 0], again[lab > 0]]), axis=1)
    assert pairs.shape[1] == lab.max()


def test_watershed_grain_builder_closes_a_faint_boundary_a_threshold_misses():
    prob = np.zeros((64, 96), np.float32)
    prob[:, 46:50] = 0.35  # a faint boundary (below the 0.5 threshold) between two grains
    prob[20:28, 46:50] = 0.25  # with a weaker stretch in it
    by_threshold = probability_to_labels(prob, "threshold")
    by_watershed = probability_to_labels(prob, "watershed")
    assert by_threshold.max() == 1  # the open line separates nothing
    assert by_watershed.max() == 2
    assert set(np.unique(by_watershed[:, :40])) == {1} and set(np.unique(by_watershed[:, 56:])) == {2}
    assert np.all(by_watershed[:, 44:52].min(axis=1) == 0)  # the boundary runs the full height
    np.testing.assert_array_equal(by_threshold, boundaries_to_labels(prob))
    np.testing.assert_array_equal(by_watershed, probability_watershed(prob))
    flat = np.full((32, 32), 0.01, np.float32)  # no boundary evidence at all: one grain, not an error
    assert probability_to_labels(flat, "watershed").max() == 1 and probability_to_labels(flat).max() == 1
    with pytest.raises(InputError, match="grain builder"):
        probability_to_labels(prob, "closing")


def test_h_minima_markers_find_every_basin_deeper_than_h_exactly():
    # skimage's float h_minima drops such basins at random ((x + h) - x rounds below h):
    # 9 of these 2000 two-basin reliefs lost a basin with it at h = 0.25
    rng = np.random.default_rng(1)
    for _ in range(2000):
        floor = rng.random() * 0.5
        relief = np.full((8, 12), 0.9)
        relief[2:6, 2:5] = floor
        relief[2:6, 7:10] = floor + rng.random() * 0.01
        markers, n = h_minima_markers(relief, 0.25)
        assert n == 2
        assert markers[3, 3] != markers[3, 8] and markers[3, 3] > 0 and markers[3, 8] > 0
    ridge = np.zeros((9, 9))
    ridge[:, 4] = 0.3  # two basins 0.3 deep: split below that depth, one basin at or above it
    assert [h_minima_markers(ridge, h)[1] for h in (0.1, 0.29, 0.3, 0.5, 7.0)] == [2, 2, 1, 1, 1]  # 7: past uint16
    assert h_minima_markers(np.full((5, 5), 0.4), 0.2)[1] == 1  # flat: one basin


def test_watershed_ignores_shallow_texture_lines_that_a_threshold_closes():
    prob = np.zeros((64, 96), np.float32)
    prob[:, 46:49] = 0.9  # a clear boundary between two grains
    prob[20, 10:30] = prob[40, 10:30] = prob[20:41, 10] = prob[20:41, 29] = 0.5  # a faint 1-px loop in one
    by_threshold = probability_to_labels(prob, "threshold")
    by_watershed = probability_to_labels(prob, "watershed")
    assert by_threshold.max() == 3  # the loop is closed at 0.5: a grain that is not there
    assert by_watershed.max() == 2  # smoothed, the loop rises less than h above the grain
    assert len(np.unique(by_watershed[:, :40])) == 1 and len(np.unique(by_watershed[:, 56:])) == 1


def test_watershed_smooths_in_the_pixels_net1_worked_at():
    prob = np.zeros((64, 64), np.float32)
    prob[:, 30:33] = prob[:, 39:42] = 1.0  # a 6-px wide grain between two lines
    at_native = probability_to_labels(prob, "watershed", min_grain_area=1)
    assert at_native.max() == 3
    # Net1 ran on the image shrunk 4x: sigma is 4 input px, and the thin grain (1.5 px at
    # Net1's scale, narrower than anything Net1 resolves) fills in
    shrunk = probability_to_labels(prob, "watershed", min_grain_area=1, net1_scale=0.25)
    assert shrunk.max() == 2
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="net1_scale"):
            probability_to_labels(prob, "watershed", net1_scale=bad)


def test_watershed_lines_equal_a_plain_skimage_reference_on_random_reliefs():
    # the fast path (OpenCV geodesic erosions, flooding only outside the basins) must give the
    # lines of the textbook construction: skimage's reconstruction, a watershed of every pixel
    from skimage.morphology import local_minima, reconstruction
    from skimage.segmentation import watershed

    def reference(prob, h, sigma):
        relief = ndi.gaussian_filter(prob.astype(np.float32), sigma)
        q = np.rint(np.clip(relief, 0, 1) * 10_000).astype(np.float32)
        flooded = reconstruction(q + round(h * 10_000), q, method="erosion")
        markers, n = ndi.label(local_minima(flooded, allow_borders=True), structure=np.ones((3, 3), bool))
        return watershed(q.astype(np.uint16), markers, watershed_line=True) == 0

    rng = np.random.default_rng(7)
    with_lines = 0
    for shape, smooth in (((96, 128), 3.0), ((64, 64), 1.5), ((40, 200), 6.0)):
        field = ndi.gaussian_filter(rng.random(shape), smooth)
        prob = ((field - field.min()) / np.ptp(field)).astype(np.float32)
        for h, sigma in ((0.05, 1.0), (0.1, 0.5), (0.2, 2.0)):
            lines = watershed_lines(prob, h=h, sigma=sigma)
            np.testing.assert_array_equal(lines, reference(prob, h, sigma))
            with_lines += bool(lines.any())
    assert with_lines >= 6


def test_boundary_masks_and_grain_masks_are_told_apart_on_real_lines():
    """The tool's own 1-px, 8-connected boundaries break into hundreds of 4-connected pieces:
    the test must count lines 8-connected, and a 0/1 grain mask must not pass for boundaries."""
    from skimage.segmentation import watershed

    from napari_grainseg.segmentation.grains import boundaries_to_labels, looks_like_boundary_mask
    from napari_grainseg.synthetic import generate

    s = generate(3, (256, 256), "tem")
    labels = boundaries_to_labels(s.boundaries)
    ours = (labels == 0).astype(np.uint8)  # what <stem>_boundaries.tif holds
    assert looks_like_boundary_mask(ours) and looks_like_boundary_mask(ours * 255)
    assert not looks_like_boundary_mask((labels > 0).astype(np.uint8))  # a grain mask
    ws = watershed(s.boundaries.astype(float), s.labels, watershed_line=True)
    assert not looks_like_boundary_mask((ws > 0).astype(np.uint8))
    assert not looks_like_boundary_mask(labels)  # many ids: labels
    assert not looks_like_boundary_mask(np.zeros((8, 8), np.uint8))


def test_read_as_boundary_mask_inverts_and_thresholds_only_on_evidence():
    from napari_grainseg.segmentation.grains import boundaries_to_labels, read_as_boundary_mask

    dangling = np.zeros((50, 50), np.uint8)
    dangling[10:40, 25] = 1  # a line that closes no region: still a boundary mask, not inverted
    np.testing.assert_array_equal(read_as_boundary_mask(dangling), dangling == 1)
    assert not read_as_boundary_mask(np.zeros((20, 20), np.uint8)).any()  # empty: no boundaries
    # a label image with a few grains (grain 3 large) under a boundaries name: not lines
    labels = np.ones((60, 60), np.uint16)
    labels[:, 20:40] = 2
    labels[:, 40:] = 3
    labels[:, 19] = labels[:, 39] = 0
    assert read_as_boundary_mask(labels) is None
    assert boundaries_to_labels(labels == 0).max() == 3  # what the reader then takes: its zeros


def test_one_grain_from_noise_says_net1_found_no_boundaries_not_lower_the_basin_depth():
    """Pure noise through Net1 and the watershed gives one grain: the reason given is that Net1 found
    no boundaries (a basin depth would not help); a real micrograph made one grain by a basin depth
    too deep is told to lower it."""
    from napari_grainseg.segmentation.grains import one_grain_reason
    from napari_grainseg.segmentation.pipeline import segment
    from napari_grainseg.synthetic import generate

    # the walkthrough's noise: an RGB of uniform noise, as the Segment dock reads it (luminance)
    rgb = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    result = segment(rgb @ np.array([0.299, 0.587, 0.114]))
    assert int(result.labels.max()) == 1
    reason = one_grain_reason(result.prediction.probability, result.grains, result.grain_parameter)
    assert reason.startswith("one grain: Net1 found no closed grain boundaries (")
    assert "grain-size hint" in reason and "basin depth" not in reason

    micrograph = generate(1, (256, 256), "tem").image
    result = segment(micrograph, watershed_h=0.9)
    assert int(result.labels.max()) == 1
    reason = one_grain_reason(result.prediction.probability, result.grains, result.grain_parameter)
    assert reason == "one grain: no basin is deeper than the basin depth 0.9, lower the basin depth"
    words = one_grain_reason(result.prediction.probability, "threshold", 0.99)
    assert words == "one grain: no boundary closes at the threshold 0.99, lower the threshold"
