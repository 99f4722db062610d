"""Edge fusion: each detector lands on known edges; thresholds are image-wide and overridable."""

from __future__ import annotations

import numpy as np
import pytest

from napari_grainseg.errors import InputError
from napari_grainseg.segmentation.edges import (
    CHANNELS,
    EdgeParams,
    detect_edges,
    fuse_edges,
    preprocess,
    resolve_edge_params,
)


def step_image(shape=(64, 96), column=48, vertical=True, low=0.2, high=0.8):
    img = np.full(shape, low, np.float32)
    if vertical:
        img[:, column:] = high
    else:
        img[column:, :] = high
    return img


@pytest.mark.parametrize("rising", [True, False])
@pytest.mark.parametrize("channel", CHANNELS)
def test_vertical_step_edge_lands_on_the_step(channel, rising):
    img = step_image()
    if not rising:
        img = 1 - img
    edges = getattr(detect_edges(img), channel)
    cols = np.unique(np.nonzero(edges)[1])
    assert cols.size >= 1
    # The step lies between columns 47 and 48: every edge pixel is one of those two.
    assert set(cols.tolist()) <= {47, 48}
    # Every row has an edge pixel on the step (a continuous line).
    assert np.all(edges[:, 47:49].any(axis=1))


@pytest.mark.parametrize("channel", CHANNELS)
def test_horizontal_step_edge_lands_on_the_step(channel):
    edges = getattr(detect_edges(step_image(shape=(80, 70), column=30, vertical=False)), channel)
    rows = np.unique(np.nonzero(edges)[0])
    assert set(rows.tolist()) <= {29, 30}
    assert np.all(edges[29:31, :].any(axis=0))


@pytest.mark.parametrize("channel", CHANNELS)
def test_circle_edges_follow_the_circle_in_noise(channel, rng):
    yy, xx = np.mgrid[:160, :160]
    radius = 45
    disk = (np.hypot(yy - 80, xx - 80) < radius).astype(np.float32)
    img = 0.3 + 0.4 * disk + 0.03 * rng.standard_normal(disk.shape).astype(np.float32)
    edges = getattr(detect_edges(img), channel)
    r = np.hypot(*(np.array(np.nonzero(edges)) - 80))
    on_circle = np.abs(r - radius) <= 2.5
    # The circle is found almost all around...
    angles = np.arctan2(*(np.array(np.nonzero(edges))[:, on_circle] - 80))
    coverage = np.unique(np.round(np.degrees(angles) / 5)).size / 72
    assert coverage > 0.95
    # ...and for Sobel and LoG most detected pixels are on it (Canny's 70th-percentile rule
    # deliberately marks weak noise edges too, as MATLAB's default does).
    if channel != "canny":
        assert on_circle.mean() > 0.8


def test_fused_image_is_rgb_uint8_in_channel_order():
    img = step_image()
    maps = detect_edges(img)
    rgb = fuse_edges(img)
    assert rgb.shape == img.shape + (3,) and rgb.dtype == np.uint8
    assert set(np.unique(rgb).tolist()) <= {0, 255}
    for i, name in enumerate(CHANNELS):
        np.testing.assert_array_equal(rgb[..., i] == 255, getattr(maps, name))


def test_works_at_native_size_and_aspect_ratio(sample_path):
    from napari_grainseg.io.readers import read_micrograph

    data = read_micrograph(sample_path).data
    rgb = fuse_edges(data)
    assert rgb.shape == (154, 1166, 3)
    # Real micrograph: every detector finds a sensible amount of edges (1-40 % of pixels).
    for i in range(3):
        fraction = (rgb[..., i] > 0).mean()
        assert 0.01 < fraction < 0.4


def test_preprocess_stretches_to_unit_range(rng):
    img = rng.normal(1000, 50, (64, 64)).astype(np.float32)
    pre = preprocess(img, EdgeParams(median_size=1))
    assert pre.dtype == np.float32
    assert pre.min() == 0.0 and pre.max() == 1.0
    assert 0.005 < (pre == 0).mean() < 0.03  # ~1 % clipped at each end
    assert 0.005 < (pre == 1).mean() < 0.03


def test_auto_thresholds_follow_matlab_rules():
    img = step_image()
    params = resolve_edge_params(img)
    pre = preprocess(img, params)
    gx = np.zeros_like(pre)
    gx[:, 47:49] = (pre[:, 48] - pre[:, 47])[:, None] * 4 / 8  # Sobel/8 of a clean step
    expected = np.sqrt(4 * np.mean(gx**2))
    assert params.sobel_threshold == pytest.approx(expected, rel=1e-5)
    assert params.log_threshold > 0 and params.canny_high > 0
    assert params.stretch_limits == (pytest.approx(0.2), pytest.approx(0.8))


def test_explicit_thresholds_override_auto():
    img = step_image()
    none = detect_edges(img, EdgeParams(sobel_threshold=10.0, log_threshold=10.0, canny_high=10.0))
    assert not none.sobel.any() and not none.log.any() and not none.canny.any()
    assert none.params.sobel_threshold == 10.0


def test_tiles_with_image_wide_params_agree_with_whole_image(rng):
    yy, xx = np.mgrid[:128, :256]
    img = (np.sin(xx / 9.0) * np.cos(yy / 13.0) > 0.2).astype(np.float32)
    img += 0.05 * rng.standard_normal(img.shape).astype(np.float32)
    params = resolve_edge_params(img)
    whole = detect_edges(img, params)
    left = detect_edges(img[:, :140], params)
    margin = 20  # filters reach at most ~10 px; compare away from the tile's cut
    for name in CHANNELS:
        np.testing.assert_array_equal(getattr(left, name)[:, : 140 - margin], getattr(whole, name)[:, : 140 - margin])


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"median_size": 4}, "odd"),
        ({"stretch_percentiles": (99, 1)}, "percentiles"),
        ({"log_sigma": 0}, "log sigma"),
        ({"canny_low_ratio": 1.5}, "low ratio"),
        ({"sobel_threshold": -1.0}, "sobel threshold"),
        ({"sobel_threshold": float("inf")}, "sobel threshold must be a finite number"),  # gave a blank map
        ({"canny_high": float("nan")}, "canny high"),
    ],
)
def test_bad_parameters_are_clear_errors(kwargs, words):
    with pytest.raises(InputError, match=words):
        EdgeParams(**kwargs)


@pytest.mark.parametrize(
    "image, words",
    [
        (np.zeros((64, 64)), "constant"),
        (np.full((64, 64), np.nan), "NaN"),
        (np.zeros((8, 64)), "at least 16x16"),
        (np.zeros((3, 64, 64)), "3-D stack"),
    ],
)
def test_bad_images_are_clear_errors(image, words):
    with pytest.raises(InputError, match=words):
        detect_edges(image)
