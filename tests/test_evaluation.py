"""Metrics of napari_grainseg.evaluation.metrics on geometries with known answers."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_grainseg.errors import InputError
from napari_grainseg.evaluation.metrics import (
    _max_matching_size,
    boundary_prf,
    ecd_ks_statistic,
    evaluate_prediction,
    fill_boundaries,
    grain_count_error,
    grain_ecds,
    mean_ecd_error,
    pixel_accuracy,
    segmentation_scores,
)


def grid_boundaries(shape=(64, 96), step=16) -> np.ndarray:
    """1-px boundary lines every ``step`` pixels (rows and columns)."""
    b = np.zeros(shape, bool)
    b[step::step, :] = True
    b[:, step::step] = True
    return b


def labels_of(boundaries: np.ndarray) -> np.ndarray:
    from skimage.measure import label

    return label(~boundaries, connectivity=1).astype(np.int32)


def vertical_lines(shape=(64, 96), cols=(20, 50, 80)) -> np.ndarray:
    b = np.zeros(shape, bool)
    b[:, list(cols)] = True
    return b


# --------------------------------------------------------------------------- boundary P/R/F1


def test_identical_maps_score_one():
    b = grid_boundaries()
    r = boundary_prf(b, b, tolerance=1)
    assert r["precision"] == r["recall"] == r["f1"] == 1.0
    assert r["n_pred"] == r["n_true"] == r["n_matched"] > 0


def test_shift_by_one_pixel_depends_on_tolerance():
    true = vertical_lines()
    pred = np.roll(true, 1, axis=1)
    assert boundary_prf(pred, true, tolerance=1.5)["f1"] == 1.0
    assert boundary_prf(pred, true, tolerance=1.0)["f1"] == 1.0  # distance exactly 1 is inside
    assert boundary_prf(pred, true, tolerance=0.5)["f1"] == 0.0
    # a grid shifted diagonally: only the coinciding parts match at 0.5 px
    g = grid_boundaries()
    shifted = np.roll(g, (1, 1), axis=(0, 1))
    assert boundary_prf(shifted, g, tolerance=1.5)["f1"] == 1.0
    assert boundary_prf(shifted, g, tolerance=0.5)["f1"] < 0.2


def test_matching_is_one_to_one_for_doubled_line():
    true = np.zeros((40, 60), bool)
    true[:, 30] = True
    pred = np.zeros_like(true)
    pred[:, 29] = pred[:, 31] = True  # two parallel lines with a 1-px gap, both within 1 px
    r = boundary_prf(pred, true, tolerance=2)
    assert r["recall"] == 1.0
    assert r["precision"] == pytest.approx(0.5)
    # a plain distance-transform count would have called every predicted pixel correct
    from scipy.ndimage import distance_transform_edt

    assert np.all(distance_transform_edt(~true)[pred] <= 2)


def test_thick_prediction_is_thinned_first():
    true = vertical_lines()
    thick = true | np.roll(true, 1, axis=1) | np.roll(true, -1, axis=1)  # 3-px wide lines
    r = boundary_prf(thick, true, tolerance=1)
    # thinning shortens each band by one pixel at each image border: 3 x 62 of 3 x 64
    assert r["n_pred"] == 3 * 62
    assert r["precision"] == 1.0
    assert r["recall"] == pytest.approx(62 / 64)


def test_missing_and_spurious_pixels_counted():
    true = vertical_lines(cols=(20, 50))
    pred = true.copy()
    pred[:32, 50] = False  # half of one line missing: recall 3/4
    pred[:, 80] = True  # a spurious line far away: precision (64+32)/(64+32+64)
    r = boundary_prf(pred, true, tolerance=2)
    assert r["recall"] == pytest.approx(96 / 128)
    assert r["precision"] == pytest.approx(96 / 160)
    assert r["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)


def test_empty_maps():
    empty = np.zeros((32, 32), bool)
    line = empty.copy()
    line[:, 10] = True
    assert boundary_prf(empty, empty, 2)["f1"] == 1.0
    for pred, true in ((empty, line), (line, empty)):
        r = boundary_prf(pred, true, 2)
        assert r["precision"] == r["recall"] == r["f1"] == 0.0


def test_bad_input_raises():
    with pytest.raises(InputError):
        boundary_prf(np.zeros((10, 10)), np.zeros((10, 12)), 1)
    with pytest.raises(InputError):
        boundary_prf(np.zeros((10, 10)), np.zeros((10, 10)), -1)
    with pytest.raises(InputError):
        segmentation_scores(np.zeros((5, 5, 2), int), np.zeros((5, 5, 2), int))


def test_matching_size_agrees_with_hopcroft_karp_on_random_graphs():
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    rng = np.random.default_rng(1)
    for _ in range(20):
        n_left, n_right = rng.integers(1, 40, size=2)
        n_edges = int(rng.integers(0, 120))
        i = rng.integers(0, n_left, n_edges)
        j = rng.integers(0, n_right, n_edges)
        expected = 0
        if n_edges:
            g = csr_matrix((np.ones(n_edges), (i, j)), shape=(n_left, n_right))
            g.data[:] = 1
            expected = int(np.count_nonzero(maximum_bipartite_matching(g, perm_type="column") >= 0))
        assert _max_matching_size(i, j, n_left, n_right) == expected


def test_boundary_prf_is_fast_on_large_maps():
    # Voronoi boundaries shifted by 1 px plus noise: the layered graph on which
    # scipy's Hopcroft-Karp takes tens of seconds.
    from skimage.segmentation import expand_labels, find_boundaries

    rng = np.random.default_rng(0)
    n = 640
    seeds = np.zeros((n, n), np.int32)
    k = 156
    idx = rng.integers(0, n, (k, 2))
    seeds[idx[:, 0], idx[:, 1]] = np.arange(1, k + 1)
    true = find_boundaries(expand_labels(seeds, 2 * n), mode="inner")
    pred = np.roll(true, 1, axis=1) | (rng.random(true.shape) < 0.01)
    t0 = time.perf_counter()
    r = boundary_prf(pred, true, tolerance=2)
    assert time.perf_counter() - t0 < 5.0
    assert r["recall"] > 0.99
    assert 0.6 < r["precision"] < 0.9  # the noise pixels are unmatched


# --------------------------------------------------------------------------- regions


def test_identical_segmentations():
    lab = labels_of(grid_boundaries())
    s = segmentation_scores(lab, lab)
    assert s["vi"] == pytest.approx(0.0, abs=1e-12)
    assert s["are"] == pytest.approx(0.0, abs=1e-12)
    # boundary pixels do not matter: a relabelled copy with thicker boundaries still scores 0
    relabelled = lab * 7
    relabelled[np.roll(lab == 0, 1, axis=1)] = 0
    assert segmentation_scores(relabelled, lab)["vi"] == pytest.approx(0.0, abs=1e-12)


def test_missing_boundary_is_a_merge_and_spurious_line_a_split():
    b = vertical_lines(cols=(32, 64))
    true = labels_of(b)  # three vertical strips
    merged_b = b.copy()
    merged_b[:, 64] = False
    merged = labels_of(merged_b)  # strips 2 and 3 merged
    s = segmentation_scores(merged, true)
    assert s["vi_merge"] > 0.5
    assert s["vi_split"] == pytest.approx(0.0, abs=1e-12)
    assert s["are_precision"] == pytest.approx(1.0)
    assert s["are_recall"] < 1.0
    split_b = b.copy()
    split_b[32, :] = True
    split = labels_of(split_b)  # every strip cut in two
    s = segmentation_scores(split, true)
    assert s["vi_split"] == pytest.approx(1.0, abs=0.05)  # each grain halved: 1 bit
    assert s["vi_merge"] == pytest.approx(0.0, abs=1e-12)
    assert s["are_recall"] == pytest.approx(1.0)
    assert s["are_precision"] < 1.0


def test_fill_boundaries_leaves_no_gaps():
    lab = labels_of(grid_boundaries())
    lab[lab == 0] = 0
    lab[::3, ::5] = 0  # scattered holes and thick boundary parts
    filled = fill_boundaries(lab)
    assert filled.min() > 0
    assert set(np.unique(filled)) == set(np.unique(lab)) - {0}
    assert np.all(fill_boundaries(np.zeros((8, 8), int)) == 1)


def test_count_and_ecd_errors():
    true = np.zeros((40, 40), np.int32)
    true[:20, :20], true[:20, 20:], true[20:, :20], true[20:, 20:] = 1, 2, 3, 4  # 4 grains, 400 px
    pred = true.copy()
    pred[pred == 2] = 1  # 3 grains: 800, 400, 400 px
    assert grain_count_error(pred, true) == pytest.approx(-0.25)
    np.testing.assert_allclose(grain_ecds(true), np.sqrt(4 * 400 / np.pi))
    d_pred = np.sqrt(4 * np.array([800, 400, 400]) / np.pi)
    expected = d_pred.mean() / np.sqrt(4 * 400 / np.pi) - 1
    assert mean_ecd_error(pred, true) == pytest.approx(expected)
    assert mean_ecd_error(true, true) == 0.0
    assert ecd_ks_statistic(true, true) == 0.0
    assert ecd_ks_statistic(pred, true) == pytest.approx(1 / 3)
    assert np.isnan(grain_count_error(true, np.zeros_like(true)))
    assert np.isnan(mean_ecd_error(np.zeros_like(true), true))


def test_ecd_ignores_boundary_width_and_matches_measure_grains():
    b = grid_boundaries()
    thin_lab = labels_of(b)
    thick_lab = thin_lab.copy()
    thick_lab[np.roll(b, 1, axis=1) | np.roll(b, 1, axis=0)] = 0  # 2-px boundaries
    assert mean_ecd_error(thick_lab, thin_lab) == pytest.approx(0.0, abs=0.02)
    assert grain_ecds(thick_lab, fill=False).mean() < 0.95 * grain_ecds(thin_lab, fill=False).mean()
    try:
        from napari_grainseg.measure.table import measure_grains
    except ImportError:
        pytest.skip("measure module not available")
    np.testing.assert_allclose(np.sort(grain_ecds(thick_lab)), np.sort(measure_grains(thick_lab)["ecd_px"]))


def test_pixel_accuracy_of_empty_prediction():
    true = grid_boundaries()
    fraction = true.mean()
    assert 0.05 < fraction < 0.2
    assert pixel_accuracy(np.zeros_like(true), true) == pytest.approx(1 - fraction)
    assert pixel_accuracy(true, true) == 1.0
    assert pixel_accuracy(~true, true) == 0.0


def test_evaluate_prediction_flat_dict():
    b = grid_boundaries()
    lab = labels_of(b)
    pred_b = np.roll(b, 1, axis=1)
    out = evaluate_prediction(pred_b, labels_of(pred_b), b, lab, tolerances=(0.5, 1, 2))
    for key in (
        "f1_0.5px",
        "precision_1px",
        "recall_2px",
        "vi",
        "vi_split",
        "vi_merge",
        "are",
        "grain_count_error",
        "mean_ecd_error",
        "ecd_ks",
        "pixel_accuracy",
    ):
        assert key in out
    assert out["f1_1px"] == 1.0
    assert out["f1_0.5px"] < out["f1_1px"]
    assert out["n_grains_pred"] == out["n_grains_true"] == lab.max()
    assert out["grain_count_error"] == 0.0
    assert all(isinstance(v, (int, float)) for v in out.values())
