"""The public entry point :func:`generate`: one reproducible synthetic sample per seed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from .presets import resolve_parameters
from .render import render
from .targets import targets_from_tessellation
from .tessellation import pack_circles, power_diagram_labels, sample_diameters, smooth_labels

__all__ = ["SyntheticSample", "generate", "grain_geometry", "smoothing_sigma", "circle_distribution"]


@dataclass(frozen=True)
class SyntheticSample:
    """One synthetic micrograph with its ground truth.

    Attributes
    ----------
    image
        float32 (H, W) bright-field micrograph, values in [0, 1].
    labels
        uint32 (H, W) grain labels 1..n (each grain 4-connected), 0 on boundary pixels.
    boundaries
        bool (H, W) boundary map, 1 px wide; 4-connected labelling of ``~boundaries``
        gives back ``labels``. Twin boundaries are never in it.
    params
        Every parameter used (JSON-serialisable), including ``seed``, ``preset``
        and ``shape``.
    twins
        bool (H, W) twin lamellae (inspection only; not a target).
    """

    image: np.ndarray
    labels: np.ndarray
    boundaries: np.ndarray
    params: dict[str, Any]
    twins: np.ndarray = field(repr=False, default=None)


def smoothing_sigma(mean_diameter: float) -> float:
    """Gaussian sigma (px) of one curvature-flow step, proportional to the grain size."""
    return float(np.clip(0.12 * mean_diameter, 1.2, 8.0))


def circle_distribution(mean_diameter: float, log_sigma: float, smoothing: int
                        ) -> tuple[float, float]:
    """Circle (mean diameter, log-sigma) that yields the requested *output* statistics.

    The output statistics are measured on the label image (see
    :func:`~napari_grainseg.synthetic.stats.grain_size_stats`): 1-px boundaries
    take about one pixel off every ECD, the power diagram of a relaxed packing
    makes cells a little more even than the circles, and curvature flow removes
    small grains. The constants were fitted with ``scripts/calibrate_synthetic.py``.
    """
    d_cell = 1.0 + math.sqrt(1.0 + mean_diameter**2)
    return d_cell, log_sigma


def _validate_shape(shape) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape must be (height, width), got {shape!r}") from None
    if h < 16 or w < 16:
        raise InputError(f"shape {h}x{w} is too small; at least 16x16 is needed")
    if h * w > 64_000_000:
        raise InputError(f"shape {h}x{w} is too large (more than 64 megapixels)")
    return h, w


def grain_geometry(rng: np.random.Generator, shape: tuple[int, int], p: dict[str, Any]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells, grain labels and boundaries for the geometry knobs in ``p``.

    Lognormal circles (calibrated by :func:`circle_distribution`), Monte Carlo
    packing over the image plus a margin, power diagram (optionally elongated),
    curvature flow, then targets. Returns ``(cells, labels, boundaries)`` as in
    :func:`~napari_grainseg.synthetic.targets.targets_from_tessellation`.
    """
    h, w = shape
    d, s = p["mean_diameter"], p["log_sigma"]
    d_circ, s_circ = circle_distribution(d, s, p["smoothing"])
    e = p["elongation"]
    t = math.radians(p["elongation_angle"])
    # (y, x) coordinates; the map squeezes along the elongation direction by
    # sqrt(e) and stretches across it by sqrt(e) (det 1: areas kept), so round
    # cells in the mapped space are grains elongated e times in the image
    along = np.array([-math.sin(t), math.cos(t)])
    across = np.array([math.cos(t), math.sin(t)])
    A = np.outer(along, along) / math.sqrt(e) + np.outer(across, across) * math.sqrt(e)
    margin = 1.2 * d_circ * math.sqrt(e)
    corners = np.array([[-margin, -margin], [-margin, w + margin],
                        [h + margin, -margin], [h + margin, w + margin]]) @ A.T
    y0, x0 = corners.min(axis=0)
    y1, x1 = corners.max(axis=0)
    diam = sample_diameters(rng, d_circ, s_circ, (y1 - y0) * (x1 - x0))
    # the discs cover the domain about once, so relaxation spreads them evenly and
    # the power cells get about the discs' areas
    centres = pack_circles(rng, diam, (y0, x0, y1, x1), sweeps=20)
    block = int(np.clip(d / 8, 2, 6))
    cells = power_diagram_labels((h, w), centres, (diam / 2) ** 2, transform=A, block=block)
    sigma = smoothing_sigma(d)
    cells = smooth_labels(cells, p["smoothing"], sigma)
    cells, labels, boundaries = targets_from_tessellation(cells)

    return cells, labels, boundaries


def generate(seed: int, shape: tuple[int, int] = (96, 496), preset: str = "tem",
             **params: Any) -> SyntheticSample:
    """Generate one synthetic bright-field TEM micrograph with its grain targets.

    Parameters
    ----------
    seed
        Any non-negative integer; the same seed, shape, preset and parameters give a
        bit-identical sample.
    shape
        (height, width) in pixels.
    preset
        ``"tem"`` (default: real bright-field look), ``"paper"`` (flat-shaded
        polygons like the paper's inputs) or ``"train"`` (every knob drawn per
        sample from documented ranges); see :data:`PRESETS`.
    **params
        Overrides of any knob in :data:`PARAMETERS`.

    Examples
    --------
    >>> s = generate(0, (96, 496))
    >>> s.image.dtype, s.labels.dtype, s.boundaries.shape
    (dtype('float32'), dtype('uint32'), (96, 496))
    """
    h, w = _validate_shape(shape)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    knob_ss, geo_ss, img_ss = np.random.SeedSequence(int(seed)).spawn(3)
    p = resolve_parameters(preset, np.random.default_rng(knob_ss), params)

    cells, labels, boundaries = grain_geometry(np.random.default_rng(geo_ss), (h, w), p)
    image, twins = render(np.random.default_rng(img_ss), cells, boundaries, p)
    params_used = {"seed": int(seed), "preset": preset, "shape": [h, w], **p,
                   "smoothing_sigma": smoothing_sigma(p["mean_diameter"])}
    return SyntheticSample(image=image, labels=labels, boundaries=boundaries,
                           params=params_used, twins=twins)
