"""Per-grain table, summary statistics and ASTM E112 against known answers."""

import json
import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import cKDTree

from napari_grainseg.errors import InputError
from napari_grainseg.measure.astm import (
    astm_g_from_intercept_mm,
    astm_g_from_mean_area_mm2,
    astm_g_from_na,
    mean_intercept,
    planimetric_count,
)
from napari_grainseg.measure.statistics import field_statistics, lognormal_fit, summarize
from napari_grainseg.measure.table import fill_boundaries, measure_grains
from napari_grainseg.segmentation.grains import normalize_labels

PIXEL_NM = 10.0


def hex_tiling(shape, d):
    """Regular hexagonal tiling, centre spacing ``d`` px, no boundary pixels."""
    h, w = shape
    rows, cols = int(h / (d * math.sqrt(3) / 2)) + 3, int(w / d) + 3
    pts = np.array(
        [
            (r * d * math.sqrt(3) / 2 + 0.3, c * d + (d / 2 if r % 2 else 0) + 0.7)
            for r in range(-1, rows)
            for c in range(-1, cols)
        ]
    )
    yy, xx = np.mgrid[:h, :w]
    _, idx = cKDTree(pts).query(np.c_[yy.ravel(), xx.ravel()])
    return (idx.reshape(h, w) + 1).astype(np.uint32)


def square_grid(shape, p, offset=(7, 11)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (((yy + offset[0]) // p) * 1000 + (xx + offset[1]) // p + 1).astype(np.uint32)


HEX_D = 24.0
HEX = hex_tiling((480, 480), HEX_D)
SQUARE_P = 25
SQUARE = square_grid((400, 400), SQUARE_P)


@pytest.fixture(scope="module", params=["no boundary", "1-px boundary"])
def hex_summary(request):
    lab = HEX if request.param == "no boundary" else normalize_labels(HEX)
    return summarize(lab, PIXEL_NM)


@pytest.fixture(scope="module", params=["no boundary", "1-px boundary"])
def square_summary(request):
    lab = SQUARE if request.param == "no boundary" else normalize_labels(SQUARE)
    return summarize(lab, PIXEL_NM)


def test_hexagons_planimetric_g(hex_summary):
    cell_mm2 = math.sqrt(3) / 2 * HEX_D**2 * (PIXEL_NM * 1e-6) ** 2
    assert hex_summary["astm_g_planimetric"] == pytest.approx(astm_g_from_na(1 / cell_mm2), abs=0.05)


def test_hexagons_intercept_g_isotropic(hex_summary):
    # hexagon side a = d/sqrt(3); L_A = 2/(sqrt(3) a) = 2/d; isotropic l = pi/(2 L_A)
    l_iso_px = math.pi / (2 * (2 / HEX_D))
    expected = astm_g_from_intercept_mm(l_iso_px * PIXEL_NM * 1e-6)
    assert hex_summary["astm_g_intercept"] == pytest.approx(expected, abs=0.1)
    assert hex_summary["mean_intercept_px"] == pytest.approx(l_iso_px, rel=0.03)


def test_hexagons_ecd_and_no_small_sample_warning(hex_summary):
    assert hex_summary["mean_ecd_px"] == pytest.approx(math.sqrt(4 * math.sqrt(3) / 2 * HEX_D**2 / math.pi), rel=0.01)
    assert not any("fewer than" in w for w in hex_summary["warnings"])
    assert hex_summary["lognormal"]["sigma"] < 0.05  # all grains the same size


def test_square_grid_planimetric_and_intercept(square_summary):
    area_mm2 = SQUARE_P**2 * (PIXEL_NM * 1e-6) ** 2
    assert square_summary["astm_g_planimetric"] == pytest.approx(astm_g_from_na(1 / area_mm2), abs=0.05)
    theta = np.arange(8) * np.pi / 8
    exact_px = SQUARE_P / np.mean(np.abs(np.cos(theta)) + np.abs(np.sin(theta)))
    assert square_summary["mean_intercept_px"] == pytest.approx(exact_px, rel=0.01)
    by = {b["angle_deg"]: b for b in square_summary["intercept"]["by_orientation"]}
    assert by[0.0]["mean_intercept_px"] == pytest.approx(SQUARE_P, rel=0.01)
    assert by[45.0]["mean_intercept_px"] == pytest.approx(SQUARE_P / math.sqrt(2), rel=0.01)
    assert square_summary["mean_ecd_px"] == pytest.approx(math.sqrt(4 * SQUARE_P**2 / math.pi), rel=1e-3)


def test_intercept_is_not_fooled_by_near_parallel_raster_lines():
    yy, xx = np.mgrid[:200, :200]
    lab = np.where(yy * 0.5 > xx - 60, 1, 2).astype(np.uint32)  # boundary at 63.4 deg
    for ang in (45.0, 67.5):
        r = mean_intercept(lab, angles_deg=np.array([ang]))["by_orientation"][0]
        expected = 223.6 * abs(math.sin(math.radians(ang - 63.435))) / 4  # lines 4 px apart
        assert abs(r["intersections"] - expected) <= 1.5


def test_e112_table_values_and_unit_conversion():
    assert astm_g_from_na(15.50) == pytest.approx(1.0, abs=0.005)  # E112 Table 4
    assert astm_g_from_na(7.75) == pytest.approx(0.0, abs=0.005)
    assert astm_g_from_intercept_mm(0.2260) == pytest.approx(1.0, abs=0.01)
    assert astm_g_from_mean_area_mm2(1 / 15.50) == pytest.approx(1.0, abs=0.005)
    a = summarize(SQUARE, 5.0)
    b = summarize(SQUARE, 10.0)  # every length doubles
    assert a["mean_ecd_nm"] == pytest.approx(5.0 * a["mean_ecd_px"])
    assert b["n_a_per_mm2"] == pytest.approx(a["n_a_per_mm2"] / 4)
    assert b["n_a_per_mm2"] == pytest.approx(b["n_a_per_px2"] / (10e-6) ** 2)
    assert b["astm_g_planimetric"] - a["astm_g_planimetric"] == pytest.approx(-2.0, abs=1e-3)
    assert b["astm_g_intercept"] - a["astm_g_intercept"] == pytest.approx(-2.0, abs=1e-3)
    # G is not clamped: 25 nm grains -> G far above the E112 chart
    assert a["astm_g_planimetric"] > 20


def test_measure_grains_known_rectangles_and_units():
    lab = np.zeros((20, 41), np.uint32)
    lab[:, :20] = 1
    lab[:, 21:] = 2
    lab[:10, 21:] = 0
    lab[:10, 22:] = 3  # grain 3 (10 x 19) above grain 2, 1-px boundaries
    lab[10, 21:] = 0
    t = measure_grains(lab, pixel_size_nm=2.0)
    assert len(t) == 3 and t.columns[:3] == ["label", "area_px", "ecd_px"]
    assert t["area_px"].sum() == lab.size  # boundary pixels shared out
    assert np.allclose(t["area_nm2"], 4.0 * t["area_px"])
    assert np.allclose(t["ecd_nm"], 2.0 * t["ecd_px"])
    assert np.allclose(t["ecd_px"], np.sqrt(4 * t["area_px"] / np.pi))
    assert t["touches_border"].tolist() == [True, True, True]
    row = t.row(0)
    assert row["area_px"] in (400, 410, 420)  # 20x20 plus part of column 20
    assert row["solidity"] == pytest.approx(1.0)
    assert t["aspect_ratio"][0] == pytest.approx(t["major_axis_px"][0] / t["minor_axis_px"][0])
    assert 20 < t["feret_max_px"][0] < 30
    assert "ecd_nm" not in measure_grains(lab)


def test_fill_boundaries_distributes_all_pixels():
    lab = normalize_labels(HEX[:100, :100])
    filled = fill_boundaries(lab)
    assert np.all(filled > 0)
    assert np.array_equal(filled[lab > 0], lab[lab > 0])


def test_interior_grain_is_not_edge():
    lab = np.ones((30, 30), np.uint32)
    lab[10:20, 10:20] = 2
    lab[9, 9:21] = lab[20, 9:21] = lab[9:21, 9] = lab[9:21, 20] = 0
    t = measure_grains(lab)
    assert t["touches_border"].tolist() == [True, False]
    assert 100 <= t["area_px"][1] <= 144  # 10x10 plus part of its ring
    assert t["area_px"].sum() == 900


def test_lognormal_fit_recovers_parameters():
    rng = np.random.default_rng(42)
    d = stats.lognorm.rvs(0.4, scale=50.0, size=3000, random_state=rng)
    fit = lognormal_fit(d)
    assert fit["sigma"] == pytest.approx(0.4, abs=0.02)
    assert fit["median"] == pytest.approx(50.0, rel=0.03)
    s, loc, scale = stats.lognorm.fit(d, floc=0)
    assert fit["sigma"] == pytest.approx(s, rel=1e-6) and fit["median"] == pytest.approx(scale)
    assert fit["ks_statistic"] < 0.03 and fit["ks_pvalue"] > 0.01
    assert lognormal_fit([5.0]) is None


def test_lognormal_fit_detects_wrong_shape():
    d = np.r_[np.full(500, 10.0), np.full(500, 100.0)]  # bimodal
    assert lognormal_fit(d)["ks_statistic"] > 0.2


def test_missing_pixel_size_gives_null_physical_fields_and_warning():
    sm = summarize(SQUARE)
    assert sm["pixel_size_nm"] is None
    for key in ("mean_ecd_nm", "astm_g_planimetric", "astm_g_intercept", "n_a_per_mm2", "d50_nm", "astm_g_mean_area"):
        assert sm[key] is None
    assert sm["mean_ecd_px"] > 0 and sm["mean_intercept_px"] > 0
    assert any("no pixel size" in w for w in sm["warnings"])
    json.dumps(sm, allow_nan=False)


def test_small_sample_warning_and_one_grain():
    sm = summarize(np.ones((40, 40), np.uint8), 1.0)
    assert sm["n_grains"] == 1 and sm["mean_ecd_px"] == pytest.approx(math.sqrt(4 * 1600 / math.pi))
    assert sm["astm_g_intercept"] is None and sm["astm_g_planimetric"] is not None
    assert any("fewer than 50" in w for w in sm["warnings"])
    json.dumps(sm, allow_nan=False)


@pytest.mark.parametrize(
    "labels, size, match",
    [
        (np.ones((20, 20), np.float32), None, "integer dtype"),
        (np.ones((20, 20), bool), None, "integer dtype"),
        (np.zeros((20, 20), np.uint16), None, "no grain"),
        (np.ones((20, 20), np.uint16), 0, "pixel size"),
        (np.ones((20, 20), np.uint16), -2.5, "pixel size"),
    ],
)
def test_bad_inputs(labels, size, match):
    with pytest.raises(InputError, match=match):
        summarize(labels, size)


def test_planimetric_counting_rules():
    quad = np.ones((20, 20), np.uint32)
    quad[:, 10:] += 1
    quad[10:] += 2  # four corner grains
    assert planimetric_count(quad, "saltikov")["n_equivalent"] == 1.0
    assert planimetric_count(quad, "jeffries")["n_equivalent"] == 2.0
    lab = np.ones((30, 30), np.uint32)
    lab[10:20, 10:20] = 2
    c = planimetric_count(lab, "saltikov")
    assert (c["n_inside"], c["n_corner"], c["n_equivalent"]) == (1, 1, 1.25)


def test_strip_image_axial_intercept():
    strip = square_grid((40, 400), 20, offset=(0, 5))
    sm = summarize(strip, 2.0)
    ax = sm["axial_intercept"]
    assert ax["axis"] == "x"
    assert ax["mean_intercept_px"] == pytest.approx(20.0, rel=0.02)
    assert ax["mean_intercept_nm"] == pytest.approx(2.0 * ax["mean_intercept_px"])
    assert summarize(SQUARE)["axial_intercept"] is None
    # the warning gives the value a microscopist looks for, not only a JSON key
    (warning,) = [w for w in sm["warnings"] if w.startswith("strip image")]
    assert f"along the line it is {ax['mean_intercept_nm']:.3g} nm" in warning, warning


def test_edge_corrections():
    # big grains in the middle, small ones everywhere: excluding edge grains
    # under-counts big ones; Miles weighting restores their share
    sm_none = summarize(HEX, edge_correction=None)
    sm_miles = summarize(HEX, edge_correction="miles")
    sm_guard = summarize(HEX, edge_correction="guard")
    sm_all = summarize(HEX, exclude_edge_grains=False)
    assert sm_all["n_grains_included"] == sm_all["n_grains"]
    assert sm_none["n_grains_included"] < sm_all["n_grains"]
    assert sm_guard["n_grains_included"] < sm_none["n_grains_included"]
    ecd = math.sqrt(4 * math.sqrt(3) / 2 * HEX_D**2 / math.pi)
    for sm in (sm_none, sm_miles, sm_guard):  # equal hexagons: same mean either way
        assert sm["mean_ecd_px"] == pytest.approx(ecd, rel=0.01)
    with pytest.raises(InputError):
        summarize(HEX, edge_correction="nope")


def test_miles_weights_favour_large_grains():
    lab = np.zeros((100, 100), np.uint32)
    lab[:] = 1
    lab[5:45, 5:45] = 2  # large interior grain (40x40)
    lab[60:65, 60:65] = 3  # small interior grain
    sm = summarize(lab, edge_correction="miles", histogram_bins=2)
    sm0 = summarize(lab, edge_correction=None, histogram_bins=2)
    assert sm["mean_ecd_px"] > sm0["mean_ecd_px"]


def test_field_statistics():
    fields = [
        {"astm_g_planimetric": g, "astm_g_intercept": None, "mean_ecd_px": e, "mean_ecd_nm": None}
        for g, e in ((8.0, 10.0), (9.0, 12.0), (10.0, 14.0))
    ]
    fs = field_statistics(fields)
    g = fs["astm_g_planimetric"]
    assert g["n"] == 3 and g["mean"] == 9.0 and g["sd"] == pytest.approx(1.0)
    assert g["ci95"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert g["ra_percent"] == pytest.approx(100 * g["ci95"] / 9.0)
    assert fs["astm_g_intercept"]["n"] == 0 and fs["astm_g_intercept"]["mean"] is None
    assert fs["mean_ecd_px"]["mean"] == 12.0


# --------------------------------------------------------------------------- vectorised columns, ids, options


def _skimage_columns(lab):
    import warnings

    from skimage.measure import regionprops

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        props = regionprops(fill_boundaries(lab))
        return {
            k: np.array([getattr(p, a) for p in props], float)
            for k, a in (
                ("area_px", "area"),
                ("perimeter_px", "perimeter"),
                ("major_axis_px", "axis_major_length"),
                ("minor_axis_px", "axis_minor_length"),
                ("feret_max_px", "feret_diameter_max"),
                ("solidity", "solidity"),
            )
        } | {
            "centroid_y_px": np.array([p.centroid[0] for p in props]),
            "centroid_x_px": np.array([p.centroid[1] for p in props]),
        }


@pytest.mark.parametrize(
    "make",
    [
        lambda r: normalize_labels(HEX[:200, :260]),
        lambda r: r.integers(0, 30, (41, 57)).astype(np.uint16),  # speckle: split ids, thin pieces
        lambda r: np.kron(r.integers(1, 9, (9, 7)), np.ones((5, 3), int)).astype(np.int32),
        # one id in raster runs of 5 that wrap from a row's end to the next row's start
        lambda r: (np.arange(23 * 17).reshape(23, 17) // 5 % 4 + 1).astype(np.int64),
    ],
)
def test_vectorised_columns_equal_skimage_regionprops(make):
    lab = make(np.random.default_rng(5))
    t = measure_grains(lab)
    ref = _skimage_columns(lab)
    for k, v in ref.items():
        np.testing.assert_allclose(t[k], v, rtol=1e-12, atol=1e-12, err_msg=k)


def test_feret_and_solidity_of_lines_and_single_pixels():
    lab = np.zeros((20, 20), np.uint32)
    lab[2, 3:13] = 1  # horizontal line, 10 px
    lab[5:12, 18] = 2  # vertical line, 7 px
    lab[np.arange(8, 16), np.arange(2, 10)] = 3  # diagonal line, 8 px
    lab[18, 18] = 4
    t = measure_grains(lab, min_area=1)
    ref = _skimage_columns(lab)
    np.testing.assert_allclose(t["feret_max_px"], ref["feret_max_px"], rtol=1e-12)
    np.testing.assert_allclose(t["solidity"], ref["solidity"], rtol=1e-12)


def test_ids_near_2_to_the_32_cost_what_small_ids_cost():
    import tracemalloc

    lab = np.zeros((128, 128), np.uint32)
    ids = [2**32 - 1 - 7919 * i for i in range(10)]
    for i, v in enumerate(ids):
        lab[i * 12 : (i + 1) * 12 - 1, :] = v
    small = np.where(lab > 0, np.searchsorted(sorted(ids), lab) + 1, 0).astype(np.uint32)  # same order
    tracemalloc.start()
    t = measure_grains(lab, 2.0)
    s = summarize(lab, 2.0, table=t)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 * lab.size * 8  # a few bytes per pixel, not per id (2**32 ids would be 32 GB)
    assert sorted(t["label"].tolist()) == sorted(ids)
    ref = summarize(small, 2.0)
    assert s["mean_ecd_px"] == ref["mean_ecd_px"] and s["n_grains"] == 10
    assert s["astm_g_planimetric"] == ref["astm_g_planimetric"]
    assert s["mean_intercept_px"] == ref["mean_intercept_px"]


def test_min_area_drops_small_grains_into_their_neighbours():
    lab = normalize_labels(SQUARE)
    lab2 = lab.copy()
    lab2[200:203, 200:203] = lab.max() + 1  # a 9-px speck inside one grain
    full = summarize(lab2, PIXEL_NM)
    kept = summarize(lab2, PIXEL_NM, min_area=10)
    assert full["n_grains"] == kept["n_grains"] + 1
    assert kept["measurement"]["min_area_px"] == 10
    assert kept["measurement"]["n_grains_below_min_area"] == 1
    assert full["measurement"]["n_grains_below_min_area"] == 0
    base = summarize(lab, PIXEL_NM)
    assert kept["mean_ecd_px"] == pytest.approx(base["mean_ecd_px"], rel=1e-3)
    assert kept["planimetric"]["field_area_px"] == lab.size  # area stays: the speck joins a grain
    t = measure_grains(lab2, min_area=10)
    assert t["area_px"].sum() == lab.size
    with pytest.raises(InputError, match="min_area"):
        measure_grains(lab2, min_area=0)
    with pytest.raises(InputError, match="no grain left"):
        measure_grains(lab2, min_area=10**6)


def test_exclusion_mask_drops_overlapping_grains_and_their_area():
    lab = normalize_labels(SQUARE)
    mask = np.zeros(lab.shape, bool)
    mask[:, :150] = True  # the left part of the field is e.g. a hole in the film
    s = summarize(lab, PIXEL_NM, exclude=mask)
    t = measure_grains(lab, PIXEL_NM, exclude=mask)
    hit = np.unique(lab[mask])
    hit = hit[hit > 0]
    assert s["n_grains"] == len(t) == int(lab.max()) - hit.size
    assert not np.isin(t["label"], hit).any()
    ex = s["measurement"]["exclude"]
    assert ex["n_grains_dropped"] == hit.size and ex["excluded_px"] >= mask.sum()
    assert s["planimetric"]["field_area_px"] == lab.size - ex["excluded_px"] == t["area_px"].sum()
    # the same grains per area: N_A and the intercept barely change
    full = summarize(lab, PIXEL_NM)
    assert s["n_a_per_mm2"] == pytest.approx(full["n_a_per_mm2"], rel=0.08)
    assert s["mean_intercept_px"] == pytest.approx(full["mean_intercept_px"], rel=0.05)
    assert s["mean_ecd_px"] == pytest.approx(full["mean_ecd_px"], rel=0.02)
    # an all-false mask changes nothing but the record
    none = summarize(lab, PIXEL_NM, exclude=np.zeros(lab.shape, np.uint8))
    assert none["astm_g_intercept"] == full["astm_g_intercept"]
    assert none["measurement"]["exclude"] == {"excluded_px": 0, "n_grains_dropped": 0}
    with pytest.raises(InputError, match="exclusion mask is"):
        summarize(lab, PIXEL_NM, exclude=mask[:10])


def test_lognormal_method_says_what_the_code_does():
    d = np.exp(np.random.default_rng(2).normal(3, 0.4, 400))
    fit = lognormal_fit(d)
    assert fit["mu"] == pytest.approx(np.log(d).mean()) and fit["sigma"] == pytest.approx(np.log(d).std())
    sigma, _, scale = stats.lognorm.fit(d, floc=0)
    assert fit["sigma"] == pytest.approx(sigma, rel=1e-4) and fit["median"] == pytest.approx(scale, rel=1e-4)
    s = summarize(normalize_labels(HEX), PIXEL_NM)
    assert "scipy" not in s["lognormal"]["method"] and "closed form" in s["lognormal"]["method"]


def test_ecd_image_with_ids_near_2_to_the_32():
    from napari_grainseg.measure.display import ecd_image

    lab = np.zeros((30, 40), np.uint32)
    lab[:, :19] = 2**32 - 5
    lab[:, 20:] = 7
    t = measure_grains(lab, 2.0)
    img = ecd_image(lab, t)
    big = t["ecd_nm"][t["label"] == 2**32 - 5][0]
    assert img.dtype == np.float32 and np.all(img[:, :19] == np.float32(big))
    assert np.all(img[:, 20:] == np.float32(t["ecd_nm"][t["label"] == 7][0])) and np.isnan(img[:, 19]).all()
    small = np.where(lab == 2**32 - 5, 3, lab).astype(np.uint32)
    np.testing.assert_array_equal(ecd_image(small, measure_grains(small, 2.0)), img)


@pytest.mark.parametrize("options", [{}, {"n_intercept_orientations": 5, "intercept_spacing_px": 3.0, "min_area": 30}])
def test_measure_field_gives_the_same_on_one_thread_and_two(options):
    """With two CPU threads the table and the intercept are measured side by side: same results,
    and the intercept options still reach the test lines."""
    from napari_grainseg.measure.statistics import measure_field
    from napari_grainseg.models.device import restored_cpu_threads, set_cpu_threads

    lab = normalize_labels(hex_tiling((300, 420), 17.0))
    mask = np.zeros(lab.shape, bool)
    mask[:40, :60] = True
    results = []
    with restored_cpu_threads():
        for threads in (1, 2):
            set_cpu_threads(threads)
            results.append(measure_field(lab, PIXEL_NM, exclude=mask, **options))
    (t1, s1), (t2, s2) = results
    assert s1 == s2
    assert t1.data.keys() == t2.data.keys()
    for name, column in t1.data.items():
        np.testing.assert_array_equal(column, t2.data[name])
    n = options.get("n_intercept_orientations", 8)
    assert s2["intercept"]["n_orientations"] == n and len(s2["intercept"]["by_orientation"]) == n
    assert s2["intercept"]["line_spacing_px"] == options.get("intercept_spacing_px", 4.0)
    assert s2["mean_intercept_px"] == pytest.approx(
        summarize(lab, PIXEL_NM, exclude=mask, **options)["mean_intercept_px"]
    )


@pytest.mark.parametrize("threads", [2, 3])
def test_boundaries_filled_in_bands_of_rows_equal_one_piece(monkeypatch, threads):
    """Bands of rows with a margin wider than the widest gap give the same grains, ties included
    (a square grid with 2-px gaps has equidistant grains everywhere; thick lines come from a brush)."""
    from scipy import ndimage as ndi

    from napari_grainseg.measure import table

    monkeypatch.setattr(table, "BANDED_FILL_MIN_PX", 0)
    grid = square_grid((230, 170), 13)
    grid[(np.arange(230)[:, None] % 13 < 2) | (np.arange(170)[None, :] % 13 < 2)] = 0
    thick = normalize_labels(hex_tiling((240, 200), 21.0))
    thick[ndi.binary_dilation(thick == 0, iterations=2)] = 0  # 5-px lines
    for lab in (grid, thick):
        gap = float(ndi.distance_transform_edt(lab == 0).max())
        assert gap > 1
        np.testing.assert_array_equal(fill_boundaries(lab, max_gap_px=gap, threads=threads), fill_boundaries(lab))


def test_prepare_labels_fills_in_bands_only_where_no_area_is_unlabelled(monkeypatch):
    from napari_grainseg.measure import table
    from napari_grainseg.models.device import restored_cpu_threads, set_cpu_threads

    monkeypatch.setattr(table, "BANDED_FILL_MIN_PX", 0)
    calls = []
    real = table._fill_in_bands
    monkeypatch.setattr(table, "_fill_in_bands", lambda *a, **k: calls.append(k) or real(*a, **k))
    lab = normalize_labels(HEX)
    with restored_cpu_threads():
        set_cpu_threads(2)
        banded = table.prepare_labels(lab).filled
        assert len(calls) == 1 and calls[0]["threads"] == 2
        hole = lab.copy()
        hole[100:200, 100:200] = 0  # a deleted grain: far from every grain, filled in one piece
        table.prepare_labels(hole)
        assert len(calls) == 1
        set_cpu_threads(1)
        np.testing.assert_array_equal(table.prepare_labels(lab).filled, banded)
        assert len(calls) == 1


def test_a_field_of_one_grain_cut_by_the_border_gets_one_warning_about_it():
    """Not both "every grain touches the border: all grains used" and "1 of 1 ... miss the large ones"."""
    s = summarize(np.ones((40, 40), np.uint32), PIXEL_NM)
    border = [w for w in s["warnings"] if "border" in w]
    assert border == ["every grain touches the image border: size statistics use all grains"]


def test_pooled_statistics_warn_of_too_few_grains():
    from napari_grainseg.measure.statistics import MIN_GRAINS_FOR_STATISTICS, measure_field, pooled_statistics

    def field(labels):
        table, summary = measure_field(labels, PIXEL_NM)
        return {"summary": summary, "grains": {k: table[k] for k in ("ecd_px", "touches_border")}}

    few = np.zeros((60, 60), np.uint32)
    few[20:30, 20:30] = 1  # one complete grain, and the rest of the field as a second (cut) one
    few[few == 0] = 2
    few[19, 19:31] = few[30, 19:31] = 0
    few[19:31, 19] = few[19:31, 30] = 0
    pooled = pooled_statistics([field(few), field(few)])
    assert pooled["n_grains_included"] < MIN_GRAINS_FOR_STATISTICS
    assert any(w.startswith(f"only {pooled['n_grains_included']} complete grains pooled") for w in pooled["warnings"])
    many = pooled_statistics([field(normalize_labels(HEX))])
    assert not any("pooled" in w for w in many["warnings"])


def test_a_band_without_any_grain_falls_back_to_one_piece(monkeypatch):
    """An understated gap left a band of boundary only: its pixels stayed 0 ("filled" with nothing)."""
    from napari_grainseg.measure import table

    monkeypatch.setattr(table, "BANDED_FILL_MIN_PX", 0)
    lab = np.zeros((200, 10), np.uint32)
    lab[:20, :5], lab[:20, 5:] = 5, 6
    filled = fill_boundaries(lab, max_gap_px=3, threads=2)
    assert filled.min() > 0
    np.testing.assert_array_equal(filled, fill_boundaries(lab))
