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
    FINER_SCALES,
    equivalent_grain_diameter,
    predict_boundaries,
    probe_crop_shape,
)


def grid_probability(shape: tuple[int, int], cell: float) -> np.ndarray:
    """Boundary map (1 on lines, 0 inside) of square grains ``cell`` px wide."""

    def lines(n):
        return (np.floor(np.arange(n) / cell) != np.floor((np.arange(n) + 1) / cell)).astype(np.float32)

    return np.maximum(lines(shape[0])[:, None], lines(shape[1])[None, :])


def grid_estimate(shape: tuple[int, int], cell: float) -> float:
    """The estimate's grain size (edge grains by half) of the stand-in's grid."""
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    return equivalent_grain_diameter(boundaries_to_labels(grid_probability(shape, cell)))[0]


class StandIn:
    """``predict_probability`` of a network that merges grains of ``grain_px`` in ``blocks[scale]``² blocks.

    The scale of a pass is the last factor :func:`inference.resample` was called with (1 when it
    was not called), so images and crops of any shape work. ``calls`` records ``(scale, shape, tta)``.
    """

    def __init__(
        self,
        monkeypatch,
        grain_px: float,
        blocks: dict[float, float],
        shrink: dict | None = None,
        line: dict | None = None,
        averaged_line: float = 1.0,
    ):
        self.grain_px, self.blocks, self.shrink = grain_px, blocks, shrink or {}
        self.line = line or {}  # scale -> the probability drawn on its lines (default 1: sure)
        self.averaged_line = averaged_line  # lines drawn with test-time augmentation are this much softer
        self.calls: list[tuple[float, tuple[int, int], bool]] = []
        self._scale = 1.0
        resample = inference.resample

        def recording_resample(image, scale):
            self._scale = scale
            return resample(image, scale)

        monkeypatch.setattr(inference, "resample", recording_resample)
        monkeypatch.setattr(inference, "predict_probability", self.predict)

    def _pop_scale(self) -> float:
        scale, self._scale = self._scale, 1.0
        return scale

    def predict(self, image, model, device, **run):
        scale = self._pop_scale()
        self.calls.append((scale, image.shape, run.get("tta", False)))
        cell = self.grain_px * scale * self.blocks.get(scale, 1) * self.shrink.get(scale, 1.0)
        softer = self.averaged_line if run.get("tta", False) else 1.0
        return grid_probability(image.shape, cell) * self.line.get(scale, 1.0) * softer, 1

    @property
    def scales(self) -> list[float]:
        return [c[0] for c in self.calls]


def noise(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_grains_merged_at_native_scale_are_enlarged_until_the_size_is_consistent(monkeypatch):
    # 6 px grains: merged 8x8 at native scale (an in-range estimate), 2x2 at x1.5, resolved from x2 on.
    net = StandIn(monkeypatch, 6.0, {1.0: 8, 1.5: 2})
    image = noise((300, 420))
    pred = predict_boundaries(image, object(), device="cpu")
    assert pred.scale == 2.0, net.calls
    assert pred.grain_size_source == "estimate"
    assert pred.grain_size_px == pytest.approx(grid_estimate((256, 256), 12.0) / 2, rel=1e-6)
    assert pred.grain_size_px == pytest.approx(6.0 * np.sqrt(4 / np.pi), rel=0.15)  # near the true size
    # native, the three probes on the central 128 px crop (x2 agrees with x3: the search ends), the final pass
    assert net.scales == [1.0, *FINER_SCALES, 2.0]
    assert [c[1] for c in net.calls[1:4]] == [(192, 192), (256, 256), (384, 384)]
    assert net.calls[-1][1] == (600, 840) and pred.probability.shape == image.shape


@pytest.mark.parametrize("size_at_x3, chosen", [(9.9, 2.0), (9.0, 3.0)])
def test_a_larger_enlargement_must_measure_clearly_smaller_grains(monkeypatch, size_at_x3, chosen):
    # sizes (input px) the network measures at each scale; x3 within 2 % of x2 is rounding, not resolution
    sizes = {1.0: 36.0, 1.5: 14.0, 2.0: 10.0, 3.0: size_at_x3}
    net = StandIn(monkeypatch, 6.0, {})
    monkeypatch.setattr(net, "predict", lambda image, *a, **k: (np.full(image.shape, net._pop_scale()), 1))
    monkeypatch.setattr(inference, "predict_probability", net.predict)
    monkeypatch.setattr(inference, "estimate_grain_size", lambda prob: sizes[float(prob.flat[0])] * float(prob.flat[0]))
    image = noise((256, 256))
    found = inference.finer_scale(image, np.ones(image.shape, np.float32), 36.0, object(), "cpu")
    assert found == (chosen, sizes[chosen])


def test_grains_resolved_at_native_scale_cost_one_small_probe_and_keep_the_native_pass(monkeypatch):
    net = StandIn(monkeypatch, 30.0, {})
    image = noise((256, 256), 1)
    pred = predict_boundaries(image, object(), device="cpu")
    assert pred.scale == 1.0
    assert net.scales == [1.0, FINER_SCALES[0]]
    assert pred.grain_size_px == pytest.approx(grid_estimate((256, 256), 30.0), rel=1e-6)


def test_a_thin_image_is_probed_on_a_crop_of_the_same_area(monkeypatch):
    net = StandIn(monkeypatch, 6.0, {1.0: 5, 1.5: 2})
    pred = predict_boundaries(noise((48, 900)), object(), device="cpu")
    assert probe_crop_shape(48, 900) == (48, 342)
    assert net.calls[1][1] == (72, 513)  # the crop enlarged x1.5
    assert pred.scale == 2.0


def test_a_probe_without_closed_grains_keeps_the_native_pass(monkeypatch):
    # at x1.5 the stand-in sees no boundary at all (one grain): nothing to compare
    net = StandIn(monkeypatch, 6.0, {1.0: 5, 1.5: 1000})
    pred = predict_boundaries(noise((128, 128)), object(), device="cpu")
    assert pred.scale == 1.0 and net.scales == [1.0, 1.5]


def test_images_too_large_to_enlarge_keep_their_native_scale_without_a_probe(monkeypatch):
    net = StandIn(monkeypatch, 6.0, {1.0: 5, 1.5: 2})
    monkeypatch.setattr(inference, "MAX_ENLARGED_PIXELS", 160 * 160)  # x1.5 of 128² would exceed it
    pred = predict_boundaries(noise((128, 128)), object(), device="cpu")
    assert pred.scale == 1.0 and net.scales == [1.0]


def test_probes_run_without_test_time_augmentation(monkeypatch):
    net = StandIn(monkeypatch, 6.0, {1.0: 5, 1.5: 2})
    predict_boundaries(noise((128, 128)), object(), device="cpu", tta=True)
    # native (averaged), the x1.5 probe, one native pass on the crop to judge its lines, x2, x3, final (averaged)
    assert [c[2] for c in net.calls] == [True, False, False, False, False, True]


def test_a_hint_skips_the_search(monkeypatch):
    net = StandIn(monkeypatch, 6.0, {1.0: 5, 1.5: 2})
    pred = predict_boundaries(noise((128, 128)), object(), device="cpu", grain_size_px=30.0)
    assert pred.scale == 1.0 and pred.grain_size_source == "hint"
    assert net.scales == [1.0]


@pytest.mark.parametrize(
    "line_native, line_at_x15, chosen",
    [(1.0, 0.97, 2.0), (1.0, 0.9, 1.0), (1.0, 0.66, 1.0), (0.8, 0.76, 2.0), (0.8, 0.74, 1.0)],
)
def test_smaller_grains_drawn_with_hesitant_lines_are_not_taken_for_merged_grains(
    monkeypatch, line_native, line_at_x15, chosen
):
    # As on a noisy, scratched tuning image: enlarged x1.5 the network finds smaller "grains" in the
    # texture, but draws them with much less sure lines (0.66 against 0.80 there); resolved fine
    # grains are drawn as surely as at native scale (a drop of 0.01 on 6 px grains).
    net = StandIn(monkeypatch, 6.0, {1.0: 8, 1.5: 2}, line={1.0: line_native, 1.5: line_at_x15})
    pred = predict_boundaries(noise((300, 420)), object(), device="cpu")
    assert pred.scale == chosen, net.calls
    assert net.scales[:2] == [1.0, 1.5]  # one probe either way


def test_with_test_time_augmentation_the_native_lines_are_judged_from_one_pass_too(monkeypatch):
    # averaged over 8 orientations the native lines are softer (0.85) than one pass draws them (1.0);
    # the enlarged probe is one pass (0.9): against one native pass that is a drop of 0.1, hesitant
    net = StandIn(monkeypatch, 6.0, {1.0: 8, 1.5: 2}, line={1.5: 0.9}, averaged_line=0.85)
    pred = predict_boundaries(noise((300, 420)), object(), device="cpu", tta=True)
    assert pred.scale == 1.0, net.calls
    crop = probe_crop_shape(300, 420)
    assert net.calls[1:] == [(1.5, (192, 192), False), (1.0, crop, False)]  # the probe, then one native pass
