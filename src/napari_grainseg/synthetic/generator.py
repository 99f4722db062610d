"""The public entry point :func:`generate`: one reproducible synthetic sample per seed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_grainseg.errors import InputError
from napari_grainseg.synthetic.presets import resolve_parameters
from napari_grainseg.synthetic.randomize import render_randomized
from napari_grainseg.synthetic.render import render, smooth_field
from napari_grainseg.synthetic.targets import targets_from_tessellation
from napari_grainseg.synthetic.tessellation import pack_circles, power_diagram_labels, sample_diameters, smooth_labels

__all__ = ["SyntheticSample", "generate", "grain_geometry", "smoothing_sigma", "circle_distribution", "warp_cells"]


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


#: Response of the *cells* (before boundaries) to the circle distribution, measured by
#: ``scripts/calibrate_synthetic.py`` at 40 px on 1024x1024 images: for each number of
#: smoothing steps (rows, ``_STEPS``) and circle log-sigma (columns, ``_SIGMAS``), the
#: pair (mean cell ECD / mean circle diameter, SD of ln cell ECD).
_STEPS = np.array([0, 2, 4, 6, 9, 12], float)
_SIGMAS = np.array([0.0, 0.15, 0.3, 0.45, 0.6, 0.75])
_CELL_TABLE = np.array(
    [
        # smoothing 0
        [(0.9936, 0.071), (0.9808, 0.1702), (0.9644, 0.3159), (0.9414, 0.4765), (0.9297, 0.6063), (0.947, 0.6659)],
        # smoothing 2
        [(0.9933, 0.0691), (0.9787, 0.1746), (0.96, 0.3374), (0.9434, 0.5153), (0.9594, 0.6052), (0.9843, 0.6787)],
        # smoothing 4
        [(0.9928, 0.0714), (0.977, 0.1874), (0.9563, 0.3676), (0.9557, 0.5166), (0.9844, 0.6027), (1.025, 0.6445)],
        # smoothing 6
        [(0.9924, 0.0755), (0.9761, 0.1935), (0.9573, 0.386), (0.9681, 0.5212), (1.0013, 0.6079), (1.052, 0.6508)],
        # smoothing 9
        [(0.9917, 0.0789), (0.9737, 0.2131), (0.9629, 0.4069), (0.9785, 0.5512), (1.0348, 0.6187), (1.097, 0.6368)],
        # smoothing 12
        [(0.991, 0.0845), (0.9724, 0.2271), (0.971, 0.4164), (1.0034, 0.5462), (1.0736, 0.5802), (1.1282, 0.6332)],
    ]
)

# equal-probability standard-normal quantiles for the expectation over grains
_Z = np.sqrt(2) * __import__("scipy.special", fromlist=["erfinv"]).erfinv((np.arange(512) + 0.5) / 512 * 2 - 1)
_MIN_ECD = math.sqrt(4 * 15 / math.pi)  # grains >= 15 px count in the output statistics


def _cell_response(s_circle: float, steps: int) -> tuple[float, float]:
    col = [np.interp(min(steps, 12), _STEPS, _CELL_TABLE[:, j, q]) for q in (0, 1) for j in range(len(_SIGMAS))]
    ratio = np.interp(s_circle, _SIGMAS, col[: len(_SIGMAS)])
    sigma = np.interp(s_circle, _SIGMAS, col[len(_SIGMAS) :])
    return float(ratio), float(sigma)


def predicted_output_stats(d_circle: float, s_circle: float, steps: int) -> tuple[float, float]:
    """Expected (mean ECD, SD ln ECD) of output grains for a circle distribution.

    Cells follow the measured table; each grain then loses its share of the 1-px
    boundary (ECD^2 -> ECD^2 - 2 ECD, about one pixel of diameter) and grains
    below 15 px are not counted.
    """
    ratio, s_cell = _cell_response(s_circle, steps)
    mean_cell = ratio * d_circle
    ecd = np.exp(math.log(mean_cell) - 0.5 * s_cell**2 + s_cell * _Z)
    ecd = np.sqrt(np.maximum(ecd**2 - 2 * ecd, 0.0))
    ecd = ecd[ecd >= _MIN_ECD]
    if ecd.size < 2:
        return float("nan"), float("nan")
    return float(ecd.mean()), float(np.log(ecd).std())


def circle_distribution(mean_diameter: float, log_sigma: float, smoothing: int) -> tuple[float, float]:
    """Circle (mean diameter, log-sigma) that yields the requested *output* statistics.

    The output statistics are measured on the label image (see
    :func:`~napari_grainseg.synthetic.stats.grain_size_stats`): 1-px boundaries
    take about one pixel off every ECD, the power diagram of a relaxed packing
    adds some spread of its own (so an output log-sigma below about 0.08 cannot
    be reached), curvature flow removes small grains, and grains below 15 px are
    not counted. :func:`predicted_output_stats` models this; here it is inverted
    by fixed-point iteration. The circle log-sigma is capped at 0.75 (output
    log-sigma up to about 0.6 is reachable).
    """
    # residual bias of the model, measured with the tests' protocol (interior grains
    # of images ~22 mean diameters wide): output mean +5 %, log-sigma -5 %
    mean_diameter, log_sigma = mean_diameter / 1.05, log_sigma / 0.95
    d_c, s_c = mean_diameter + 1.0, log_sigma
    for _ in range(30):
        m, sd = predicted_output_stats(d_c, s_c, smoothing)
        if not math.isfinite(m):
            d_c *= 1.5
            continue
        d_c *= mean_diameter / m
        s_new = min(max(s_c + (log_sigma - sd), 0.0), 0.75)
        if abs(s_new - s_c) < 1e-4 and abs(m / mean_diameter - 1) < 1e-4:
            break
        s_c = s_new
    return d_c, s_c


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


def grain_geometry(
    rng: np.random.Generator, shape: tuple[int, int], p: dict[str, Any]
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
    corners = (
        np.array([[-margin, -margin], [-margin, w + margin], [h + margin, -margin], [h + margin, w + margin]]) @ A.T
    )
    y0, x0 = corners.min(axis=0)
    y1, x1 = corners.max(axis=0)
    area = (y1 - y0) * (x1 - x0)
    f2 = p.get("bimodal_fraction", 0.0)
    diam = sample_diameters(rng, d_circ, s_circ, area * (1 - f2))
    if f2 > 0:
        # a second population of larger grains sharing the area (bimodal sizes)
        large = sample_diameters(rng, d_circ * p["bimodal_ratio"], s_circ, area * f2)
        diam = rng.permutation(np.concatenate([diam, large]))
    # the discs cover the domain about once, so relaxation spreads them evenly and
    # the power cells get about the discs' areas
    centres = pack_circles(rng, diam, (y0, x0, y1, x1), sweeps=20)
    block = int(np.clip(d / 8, 2, 6))
    cells = power_diagram_labels((h, w), centres, (diam / 2) ** 2, transform=A, block=block)
    sigma = smoothing_sigma(d)
    cells = smooth_labels(cells, p["smoothing"], sigma)
    if p.get("warp", 0.0) > 0:
        cells = warp_cells(rng, cells, p["warp"] * d, d)
    cells, labels, boundaries = targets_from_tessellation(cells)

    return cells, labels, boundaries


def warp_cells(rng: np.random.Generator, cells: np.ndarray, amplitude: float, scale: float) -> np.ndarray:
    """Cells displaced by a smooth random field (``amplitude`` px, correlation ``scale`` px).

    Straight power-diagram edges become wavy and grains non-convex; the targets are
    derived afterwards (:func:`targets_from_tessellation`), so they stay exact.
    """
    h, w = cells.shape
    dy = smooth_field(rng, (h, w), scale) * amplitude
    dx = smooth_field(rng, (h, w), scale) * amplitude
    yy, xx = np.mgrid[0:h, 0:w]
    iy = np.clip(np.rint(yy + dy), 0, h - 1).astype(np.intp)
    ix = np.clip(np.rint(xx + dx), 0, w - 1).astype(np.intp)
    # one curvature-flow step removes the pixel-scale interleaving of cells where the field folds
    return smooth_labels(cells[iy, ix], 1, 1.0)


def generate(seed: int, shape: tuple[int, int] = (96, 496), preset: str = "tem", **params: Any) -> SyntheticSample:
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
        polygons like the paper's inputs), ``"train"`` (every knob drawn per
        sample from documented ranges) or ``"random"`` (domain randomisation:
        geometry and appearance far beyond realism, the drawn appearance recorded
        in ``params["appearance"]``); see :data:`PRESETS`.
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
    params_used = {
        "seed": int(seed),
        "preset": preset,
        "shape": [h, w],
        **p,
        "smoothing_sigma": smoothing_sigma(p["mean_diameter"]),
    }
    if p["randomized"]:
        image, twins, appearance = render_randomized(np.random.default_rng(img_ss), cells, boundaries, p)
        params_used["appearance"] = appearance
    else:
        image, twins = render(np.random.default_rng(img_ss), cells, boundaries, p)
    return SyntheticSample(image=image, labels=labels, boundaries=boundaries, params=params_used, twins=twins)
