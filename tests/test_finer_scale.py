"""The self-consistent scale search for grains too fine for Net1 at native scale (inference.finer_scale).

A stand-in network with a known resolution limit draws the boundaries of a square grid of
grains: grains it cannot resolve come out merged in blocks, as Net1 merges 6 px grains. The
search must find the enlargement at which the measured size stops falling, and must cost one
small pass (and change nothing) on images Net1 already resolves.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_grainseg.segmentation import inference
from napari_grainseg.segmentation.inference import (
    FINER_PROBE_CROP,
    FINER_SCALES,
    equivalent_grain_diameter,
    predict_boundaries,
)

SIDE = FINER_PROBE_CROP  # the whole image is the probe crop, so a pass's scale is its side / SIDE


def grid_probability(side: int, cell: float) -> np.ndarray:
    """Boundary map (1 on lines, 0 inside) of square grains ``cell`` px wide."""
    lines = (np.floor(np.arange(side) / cell) != np.floor((np.arange(side) + 1) / cell)).astype(np.float32)
    return np.maximum(lines[:, None], lines[None, :])


def stand_in_net(grain_px: float, merged_blocks: dict[float, int]):
    """``predict_probability`` of a network that merges grains in ``merged_blocks[scale]``² blocks."""
    calls: list[float] = []

    def predict(image, model, device, **run):
        scale = round(image.shape[0] / SIDE, 2)
        calls.append(scale)
        block = merged_blocks.get(scale, 1)
        return grid_probability(image.shape[0], grain_px * scale * block), 1

    return predict, calls


def test_grains_merged_at_native_scale_are_enlarged_until_the_size_is_consistent(monkeypatch):
    # 6 px grains: merged 5x5 at native scale (an in-range 34 px estimate), 2x2 at x1.5, resolved from x2 on.
    predict, calls = stand_in_net(6.0, {1.0: 5, 1.5: 2})
    monkeypatch.setattr(inference, "predict_probability", predict)
    image = np.random.default_rng(0).random((SIDE, SIDE)).astype(np.float32)
    pred = predict_boundaries(image, object(), device="cpu")
    assert pred.scale == 2.0, calls
    assert pred.grain_size_source == "estimate"
    assert pred.grain_size_px == pytest.approx(grid_estimate(12.0, 2 * SIDE) / 2, rel=1e-6)
    assert pred.grain_size_px == pytest.approx(6.0 * np.sqrt(4 / np.pi), rel=0.15)  # near the true size
    # native, the three probes (x2 consistent with x3 ends the search), then the final pass at x2
    assert calls == [1.0, *FINER_SCALES, 2.0]
    assert pred.probability.shape == image.shape


def test_grains_resolved_at_native_scale_cost_one_small_probe_and_keep_the_native_pass(monkeypatch):
    predict, calls = stand_in_net(30.0, {})
    monkeypatch.setattr(inference, "predict_probability", predict)
    image = np.random.default_rng(1).random((SIDE, SIDE)).astype(np.float32)
    pred = predict_boundaries(image, object(), device="cpu")
    assert pred.scale == 1.0
    assert calls == [1.0, FINER_SCALES[0]]
    assert pred.grain_size_px == pytest.approx(grid_estimate(30.0, SIDE), rel=1e-6)


def test_a_hint_skips_the_search(monkeypatch):
    predict, calls = stand_in_net(6.0, {1.0: 5, 1.5: 2})
    monkeypatch.setattr(inference, "predict_probability", predict)
    image = np.random.default_rng(2).random((SIDE, SIDE)).astype(np.float32)
    pred = predict_boundaries(image, object(), device="cpu", grain_size_px=30.0)
    assert pred.scale == 1.0 and pred.grain_size_source == "hint"
    assert calls == [1.0]


def grid_estimate(cell: float, side: int) -> float:
    """The estimate's grain size (edge grains by half) of the stand-in's grid on a ``side`` px image."""
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    return equivalent_grain_diameter(boundaries_to_labels(grid_probability(side, cell)))[0]
