"""Concept tests of the synthetic TEM generator (napari_grainseg.synthetic)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from napari_grainseg.errors import InputError
from napari_grainseg.measure.table import grain_ecds
from napari_grainseg.synthetic import (
    PARAMETERS,
    PRESETS,
    boundary_pixels,
    generate,
    grain_size_stats,
    grains_from_boundaries,
    triple_junction_angles,
)
from napari_grainseg.synthetic.generator import grain_geometry
from napari_grainseg.synthetic.presets import sample_preset


def _geometry(seed, shape, **knobs):
    p = sample_preset("tem", np.random.default_rng(0))
    p.update(knobs)
    return grain_geometry(np.random.default_rng(seed), shape, p)


def _neighbour_labels(labels, ys, xs):
    p = np.pad(labels.astype(np.int64), 1)
    return np.stack([p[ys + 1 + dy, xs + 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])


# --- targets -----------------------------------------------------------------------


def test_boundary_pixels_of_two_halves_is_one_column():
    cells = np.zeros((20, 30), int)
    cells[:, 15:] = 1
    b = boundary_pixels(cells)
    assert b.sum() == 20 and b[:, 15].all()
    labels, n = grains_from_boundaries(b)
    assert n == 2


@pytest.mark.parametrize("preset", ["train", "tem", "paper", "random"])
def test_targets_contract_over_many_seeds(preset):
    for seed in range(25):
        s = generate(seed, (96, 160), preset)
        b, lab = s.boundaries, s.labels
        assert b.dtype == bool and lab.dtype == np.uint32 and s.image.dtype == np.float32
        # 4-connected labelling of the non-boundary pixels gives back the grains
        relabel, n = ndimage.label(~b)
        assert n == lab.max() and np.array_equal(relabel, lab)
        assert np.array_equal(b, lab == 0)
        # every boundary pixel separates two different grains (3x3 neighbourhood)
        ys, xs = np.nonzero(b)
        nb = _neighbour_labels(lab, ys, xs)
        big = nb.max(0)
        small = np.where(nb > 0, nb, np.iinfo(np.int64).max).min(0)
        assert np.all(big > small), f"seed {seed}: a boundary pixel separates nothing"
        # 1 px wide: no boundary pixel is buried in boundary on all four sides
        p = np.pad(b, 1, constant_values=False)
        buried = b & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        # grains of 5-9 px (only "random" draws them) leave a few more junction blobs
        assert buried.sum() <= max(2, (0.005 if preset == "random" else 0.002) * b.sum())
        # grains are not crumbs
        assert np.bincount(lab.ravel())[1:].min() >= 4


def test_boundaries_are_8_connected_lines():
    _, labels, b = _geometry(3, (256, 256), mean_diameter=30.0, smoothing=4)
    comps, n = ndimage.label(b, structure=np.ones((3, 3)))
    sizes = np.bincount(comps.ravel())[1:]
    # a tessellation's boundary network is one piece (islands would be whole grains)
    assert sizes.max() >= 0.98 * b.sum()


# --- grain size calibration --------------------------------------------------------


@pytest.mark.parametrize(
    "d,s,steps", [(12, 0.4, 4), (30, 0.4, 4), (60, 0.4, 4), (30, 0.25, 0), (30, 0.55, 0), (12, 0.5, 2)]
)
def test_size_statistics_match_request_within_10_percent(d, s, steps):
    side = int(np.sqrt(350 * d * d * 1.4))
    ecd, r = [], 0
    while sum(map(len, ecd)) < 300:
        ecd.append(
            grain_ecds(
                _geometry(100 + r, (side, side), mean_diameter=float(d), log_sigma=s, smoothing=steps)[1],
                fill=False,
                min_area=15,
                interior=True,
            )
        )
        r += 1
    e = np.concatenate(ecd)
    assert abs(e.mean() / d - 1) < 0.10, e.mean()
    assert abs(np.log(e).std(ddof=1) / s - 1) < 0.10, np.log(e).std(ddof=1)


def test_grain_size_stats_on_known_squares():
    lab = np.zeros((50, 50), int)
    lab[5:15, 5:15] = 1  # 100 px
    lab[20:40, 20:40] = 2  # 400 px
    lab[0:10, 40:50] = 3  # touches the border: excluded
    lab[45:48, 2:5] = 4  # 9 px: below 15 px, excluded
    st = grain_size_stats(lab)
    d = np.sqrt(4 * np.array([100, 400]) / np.pi)
    assert st["n"] == 2
    assert st["mean_ecd"] == pytest.approx(d.mean())
    assert st["log_sigma"] == pytest.approx(np.log(d).std(ddof=1))


# --- curvature flow ----------------------------------------------------------------


def test_smoothing_pulls_triple_junctions_to_120_degrees():
    spread = {}
    for steps in (0, 6):
        a = np.concatenate(
            [
                triple_junction_angles(
                    _geometry(k, (320, 320), mean_diameter=40.0, log_sigma=0.35, smoothing=steps)[1], 7
                )
                for k in range(2)
            ]
        )
        assert len(a) > 60
        assert np.allclose(a.sum(axis=1), 360)
        spread[steps] = np.sqrt(np.mean((a - 120) ** 2))
    assert spread[6] < 13.0
    assert spread[0] > 1.3 * spread[6]


def test_triple_junction_angles_of_a_t_junction():
    lab = np.ones((41, 41), int)
    lab[:20, :] = 1
    lab[20:, :20] = 2
    lab[20:, 20:] = 3
    a = triple_junction_angles(lab, 8)
    assert a.shape == (1, 3)
    assert np.sort(a[0]) == pytest.approx([90, 90, 180], abs=6)


# --- image concepts ----------------------------------------------------------------


def test_same_seed_gives_bit_identical_sample_and_other_seed_differs():
    a, b = generate(7, (96, 496)), generate(7, (96, 496))
    assert a.image.tobytes() == b.image.tobytes()
    assert np.array_equal(a.labels, b.labels) and a.params == b.params
    c = generate(8, (96, 496))
    assert not np.array_equal(a.image, c.image)


def test_twins_make_intensity_edges_but_no_target_boundary():
    quiet = dict(
        dose=0.0,
        read_noise=0.0,
        texture=0.0,
        blobs=0.0,
        blur_sigma=0.0,
        ramp=0.0,
        bend_contours=0.0,
        grain_gradient=0.0,
        boundary_darkening=0.0,
        inclined_fraction=0.0,
    )
    plain = generate(4, (192, 496), twin_fraction=0.0, **quiet)
    twinned = generate(4, (192, 496), twin_fraction=1.0, **quiet)
    assert np.array_equal(plain.boundaries, twinned.boundaries)
    assert twinned.twins.sum() > 500 and not plain.twins.any()
    # edges of the twin lamellae, away from grain boundaries
    t = twinned.twins
    edge = (t != np.roll(t, 1, axis=1)) | (t != np.roll(t, 1, axis=0))
    far = ndimage.distance_transform_edt(~twinned.boundaries) > 3
    edge &= far
    edge[:, :2] = edge[:2, :] = False
    gy, gx = np.gradient(twinned.image)
    jump = np.hypot(gy, gx)[edge]
    assert edge.sum() > 100
    assert np.median(jump) > 0.03
    # the plain image is flat there: the edge comes from the twin, not from a boundary
    gy0, gx0 = np.gradient(plain.image)
    assert np.median(np.hypot(gy0, gx0)[edge]) < 1e-6


def test_elongation_stretches_grains_along_the_angle():
    def orientation_stats(elong, angle):
        _, lab, _ = _geometry(1, (384, 384), mean_diameter=30.0, elongation=elong, elongation_angle=angle)
        n = lab.max() + 1
        yy, xx = np.mgrid[:384, :384]
        a = np.bincount(lab.ravel(), minlength=n).astype(float)
        my, mx = (np.bincount(lab.ravel(), v.ravel(), n) / a for v in (yy, xx))
        vyy = np.bincount(lab.ravel(), (yy**2).ravel(), n) / a - my**2
        vxx = np.bincount(lab.ravel(), (xx**2).ravel(), n) / a - mx**2
        ok = a >= 50
        ok[0] = False
        return np.median(vxx[ok] / vyy[ok])

    assert 0.8 < orientation_stats(1.0, 0.0) < 1.25
    assert orientation_stats(2.5, 0.0) > 3.0  # long along x
    assert orientation_stats(2.5, 90.0) < 0.33  # long along y


def test_tem_image_is_in_unit_range_and_boundaries_show_contrast():
    s = generate(2, (96, 496))
    img = s.image
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert 0.3 < img.mean() < 0.8
    assert np.isfinite(img).all()


# --- parameters --------------------------------------------------------------------


def test_params_are_json_and_complete():
    s = generate(11, (96, 496), "train")
    back = json.loads(json.dumps(s.params))
    assert back == s.params
    assert {"seed", "preset", "shape"} <= set(back) and set(PARAMETERS) <= set(back)
    assert back["seed"] == 11 and back["preset"] == "train" and back["shape"] == [96, 496]


#: Knobs appended for the "random" preset; "train" keeps them at their neutral values.
RANDOM_ONLY = {"bimodal_fraction", "bimodal_ratio", "warp", "randomized"}


def test_train_preset_draws_every_knob_within_its_range_and_varies():
    draws = [generate(seed, (32, 32), "train").params for seed in range(40)]
    for name, (lo, hi, _) in PARAMETERS.items():
        if name in RANDOM_ONLY:
            assert {d[name] for d in draws} == {PRESETS["tem"][name]}, name
            continue
        values = [d[name] for d in draws]
        assert all(lo <= v <= hi for v in values), name
        assert len(set(values)) > 1, f"{name} never varies"
    sizes = [d["mean_diameter"] for d in draws]
    assert 8 <= min(sizes) and max(sizes) <= 60


def test_overrides_win_and_presets_exist():
    assert {"tem", "paper", "train", "random"} <= set(PRESETS)
    s = generate(0, (64, 64), "train", mean_diameter=20.0, flat_shading=True)
    assert s.params["mean_diameter"] == 20.0 and s.params["flat_shading"] is True


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(preset="nope"),
        dict(mean_diameter=1.0),
        dict(foo=1),
        dict(shape=(8, 100)),
        dict(shape="96x496"),
        dict(seed=-1),
        dict(smoothing=2.5),
        dict(flat_shading="yes"),
        dict(dose=1.0),
    ],
)
def test_bad_input_raises_input_error(kwargs):
    args = dict(seed=0, shape=(64, 64))
    args.update(kwargs)
    with pytest.raises(InputError):
        generate(args.pop("seed"), args.pop("shape"), **args)


# --- CLI -----------------------------------------------------------------------------


def test_cli_writes_samples_atomically_readable(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    from napari_grainseg.cli import main

    out = tmp_path / "synth"
    assert (
        main(
            ["synth", "--n", "2", "--out", str(out), "--shape", "48x80", "--seed", "3", "--preset", "paper", "--quiet"]
        )
        == 0
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        f"synth_{seed:06d}_{k}"
        for seed in (3, 4)  # named by seed
        for k in ("image.tif", "labels.tif", "boundaries.tif", "params.json")
    )
    ref = generate(4, (48, 80), "paper")
    img = tifffile.imread(out / "synth_000004_image.tif")
    lab = tifffile.imread(out / "synth_000004_labels.tif")
    bnd = tifffile.imread(out / "synth_000004_boundaries.tif")
    assert img.dtype == np.float32 and lab.dtype == np.uint32 and bnd.dtype == np.uint8
    assert np.array_equal(img, ref.image) and np.array_equal(lab, ref.labels)
    assert np.array_equal(bnd.astype(bool), ref.boundaries)
    assert json.loads((out / "synth_000004_params.json").read_text())["seed"] == 4


@pytest.mark.parametrize(
    "argv", [["--shape", "96by496"], ["--n", "0"], ["--preset", "x"], ["--param", "contrast=9"], ["--param", "nokey"]]
)
def test_cli_bad_arguments_exit_2(tmp_path, argv, capsys):
    from napari_grainseg.cli import main

    base = {"--n": "1", "--out": str(tmp_path / "o")}
    for k, v in zip(argv[::2], argv[1::2]):
        base[k] = v
    args = ["synth"] + [x for kv in base.items() for x in kv]
    assert main(args) == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --- domain randomisation (preset "random") ----------------------------------------------


def test_random_preset_is_deterministic_json_and_in_unit_range():
    a, b = generate(5, (96, 128), "random"), generate(5, (96, 128), "random")
    assert a.image.tobytes() == b.image.tobytes() and a.params == b.params
    assert json.loads(json.dumps(a.params)) == a.params
    assert a.params["randomized"] is True and set(a.params["appearance"]) == {
        "regions",
        "textures",
        "boundaries",
        "distractors",
        "acquisition",
        "display",
    }
    assert a.image.dtype == np.float32 and 0.0 <= a.image.min() and a.image.max() <= 1.0
    assert a.image.std() > 0.02


def test_random_preset_varies_look_and_geometry_widely():
    draws = [generate(seed, (128, 128), "random") for seed in range(30)]
    sizes = [d.params["mean_diameter"] for d in draws]
    assert min(sizes) < 12 and max(sizes) > 60
    assert any(d.params["bimodal_fraction"] > 0 for d in draws) and any(d.params["warp"] > 0 for d in draws)
    inverted = [d.params["appearance"]["display"]["inverted"] for d in draws]
    assert 0 < sum(inverted) < len(inverted)
    # the mean intensity of boundary pixels relative to the grains changes sign across samples:
    # boundaries are drawn dark in some images and bright in others
    contrast = [d.image[d.boundaries].mean() - d.image[~d.boundaries].mean() for d in draws if d.boundaries.any()]
    assert min(contrast) < -0.02 and max(contrast) > 0.02


def test_warp_makes_non_convex_grains_and_bimodal_adds_large_grains():
    from skimage.measure import regionprops

    p = sample_preset("tem", np.random.default_rng(0))
    p.update(smoothing=0, mean_diameter=20.0, log_sigma=0.2)
    _, straight, _ = grain_geometry(np.random.default_rng(1), (192, 192), p)
    _, warped, _ = grain_geometry(np.random.default_rng(1), (192, 192), {**p, "warp": 0.3})
    solidity = [np.median([r.solidity for r in regionprops(lab) if r.area > 50]) for lab in (straight, warped)]
    assert solidity[1] < solidity[0] - 0.02
    _, bimodal, _ = grain_geometry(
        np.random.default_rng(1), (192, 192), {**p, "bimodal_fraction": 0.5, "bimodal_ratio": 4.0}
    )
    largest = [np.sort(np.bincount(lab.ravel())[1:])[-3:].mean() for lab in (straight, bimodal)]
    assert largest[1] > 4 * largest[0]


def test_older_presets_do_not_draw_the_appended_knobs():
    # the appended knobs sit after the others and are fixed in tem/paper/train, so a "train"
    # sample's knob values are exactly the ones drawn before they existed (pinned here)
    p = generate(11, (32, 32), "train").params
    assert (p["bimodal_fraction"], p["bimodal_ratio"], p["warp"], p["randomized"]) == (0.0, 1.0, 0.0, False)
