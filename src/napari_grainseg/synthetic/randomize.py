"""Domain randomisation: micrographs whose look is drawn far beyond realism, with exact targets.

SynthSeg's lesson (Billot et al., Medical Image Analysis 2023): randomise everything that
should not matter, so that a network learns what does — here, a closed network of thin
lines between regions, with triple junctions. Nothing below imitates one microscope; each
function draws one family of appearance from ``rng`` and the choices are returned so that
a sample documents itself:

- region intensities: a random mixture of 1-5 intensity clusters, with near-equal
  neighbours (boundaries with no intensity step);
- textures inside grains: speckle, mottling at a random scale, per-grain gradients
  (etching tint), pits;
- boundary appearance, per grain: dark line, bright line, Fresnel pair (bright core,
  dark fringes), step only, or invisible; random width and depth;
- distractor lines that are not boundaries: twin lamellae, bend-contour bands that run
  across boundaries, scratches, short dislocation-like curves;
- acquisition: bias fields, anisotropic blur, resolution loss by resampling, Poisson,
  Gaussian, scan-line and correlated noise;
- display: a random monotone intensity map, sometimes inverted.

Used by :func:`napari_grainseg.synthetic.generate` when ``randomized`` is set
(preset ``"random"``).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from napari_grainseg.synthetic.render import neighbour_pairs, smooth_field, twin_lamellae

__all__ = ["render_randomized", "BOUNDARY_STYLES"]

#: How a boundary may look; drawn per grain (the side of the line that belongs to it).
BOUNDARY_STYLES = ("dark", "bright", "fresnel", "step", "invisible")
#: Mean share of each style over images (each image draws its shares from a Dirichlet around these):
#: mostly visible lines, so that the target can be seen in most images.
_STYLE_SHARES = np.array([0.35, 0.2, 0.15, 0.22, 0.08])


def region_intensities(rng: np.random.Generator, cells: np.ndarray, n: int) -> tuple[np.ndarray, dict]:
    """Per-cell intensity from a random mixture of 1-5 clusters, some neighbours near-equal."""
    k = int(rng.integers(1, 6))
    centres = rng.uniform(0.0, 1.0, k)
    weights = rng.dirichlet(np.ones(k))
    spread = float(np.exp(rng.uniform(np.log(0.03), np.log(0.25))))
    level = centres[rng.choice(k, n, p=weights)] + spread * rng.standard_normal(n)
    similar = float(rng.uniform(0.0, 0.3))
    if similar > 0 and n > 1:
        pairs = neighbour_pairs(cells)
        if len(pairs):
            chosen = rng.permutation(len(pairs))[: int(round(similar * n / 2))]
            for a, b in pairs[chosen]:
                level[b] = level[a] + rng.normal(0, 0.005)
    return level.astype(np.float32), {"clusters": k, "spread": spread, "similar_fraction": similar}


def grain_textures(
    rng: np.random.Generator, img: np.ndarray, cells: np.ndarray, centres, grid, diameter: float
) -> tuple[np.ndarray, dict]:
    """Speckle, mottling, per-grain gradients and pits, each present with probability 1/2."""
    h, w = img.shape
    n = len(centres[0])
    (cy, cx), (yy, xx) = centres, grid
    drawn: dict[str, float] = {}
    if rng.random() < 0.5:
        amp = float(rng.uniform(0.01, 0.15))
        speckle = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), rng.uniform(0.5, 1.5))
        img = img + amp * speckle / (speckle.std() + 1e-6)
        drawn["speckle"] = amp
    if rng.random() < 0.5:
        amp = float(rng.uniform(0.02, 0.12))
        scale = float(rng.uniform(2.0, max(3.0, diameter)))
        gain = rng.uniform(-1.0, 1.0, n).astype(np.float32)
        img = img + amp * gain[cells] * smooth_field(rng, (h, w), scale)
        drawn["mottling"] = amp
    if rng.random() < 0.5:
        amp = float(rng.uniform(0.05, 0.5))
        ang = rng.uniform(0, 2 * np.pi, n)
        mag = (rng.uniform(0, amp, n) / max(diameter, 1.0)).astype(np.float32)
        gy, gx = (mag * np.sin(ang)).astype(np.float32), (mag * np.cos(ang)).astype(np.float32)
        img = img + gy[cells] * (yy - cy[cells]) + gx[cells] * (xx - cx[cells])
        drawn["tint_gradient"] = amp
    if rng.random() < 0.5:
        density = float(rng.uniform(1, 15))  # pits per 1e4 px
        count = rng.poisson(density * h * w / 1e4)
        pits = np.zeros((h, w), np.float32)
        pits[rng.integers(0, h, count), rng.integers(0, w, count)] = rng.uniform(-1, 1, count)
        img = img + cv2.GaussianBlur(pits, (0, 0), rng.uniform(0.7, 2.0)) * 2.0
        drawn["pits_per_1e4px"] = density
    return img, drawn


def boundary_appearance(
    rng: np.random.Generator, img: np.ndarray, cells: np.ndarray, boundaries: np.ndarray, n: int
) -> tuple[np.ndarray, dict]:
    """Draw each grain's boundary segments in one of :data:`BOUNDARY_STYLES`."""
    probs = rng.dirichlet(8 * _STYLE_SHARES)
    style = rng.choice(len(BOUNDARY_STYLES), n, p=probs)
    width = float(rng.uniform(0.5, 3.0))
    depth = rng.uniform(0.05, 0.6, n).astype(np.float32)
    if not boundaries.any():
        return img, {"style_shares": dict(zip(BOUNDARY_STYLES, probs.round(3).tolist())), "width": width}
    # distance to the nearest boundary pixel and the grain that owns that pixel
    dist, (iy, ix) = _nearest_boundary(boundaries)
    owner = cells[iy, ix]
    s, a = style[owner], depth[owner]
    core = np.exp(-0.5 * (dist / width) ** 2)
    fringe = np.exp(-0.5 * ((dist - 1.8 * width) / width) ** 2)
    profile = np.select([s == 0, s == 1, s == 2], [-core, core, core - 0.8 * fringe], 0.0)
    img = img + (a * profile).astype(np.float32)
    return img, {"style_shares": dict(zip(BOUNDARY_STYLES, probs.round(3).tolist())), "width": width}


def _nearest_boundary(boundaries: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    from scipy import ndimage

    dist, idx = ndimage.distance_transform_edt(~boundaries, return_indices=True)
    return dist.astype(np.float32), (idx[0], idx[1])


def distractor_lines(
    rng: np.random.Generator, img: np.ndarray, cells: np.ndarray, centres, grid, diameter: float
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Lines that are not boundaries: twins, bend bands, scratches, dislocations."""
    h, w = img.shape
    drawn: dict[str, Any] = {}
    twins = np.zeros((h, w), bool)
    span = float(np.ptp(img)) + 0.05
    if rng.random() < 0.4:
        fraction = float(rng.uniform(0.1, 0.5))
        twins, factor = twin_lamellae(rng, cells, centres, grid, diameter, fraction)
        img = np.where(twins, img + (factor.astype(np.float32) * span * 0.5)[cells], img)
        drawn["twin_fraction"] = fraction
    if rng.random() < 0.3:
        # bend contours that run continuously across boundaries (unlike real ones, which jump)
        amp = float(rng.uniform(0.05, 0.25))
        band = np.exp(-(((smooth_field(rng, (h, w), rng.uniform(1.0, 3.0) * diameter)) / 0.3) ** 2))
        img = img - amp * span * band
        drawn["bend_bands"] = amp
    lines = np.zeros((h, w), np.float32)
    if rng.random() < 0.4:
        count = int(rng.integers(1, 8))
        for _ in range(count):
            p0 = rng.uniform([0, 0], [w, h])
            ang = rng.uniform(0, np.pi)
            length = rng.uniform(0.3, 1.5) * max(h, w)
            p1 = p0 + length * np.array([np.cos(ang), np.sin(ang)])
            p0 = p0 - 0.5 * length * np.array([np.cos(ang), np.sin(ang)])
            cv2.line(
                lines,
                tuple(int(v) for v in p0),
                tuple(int(v) for v in p1),
                float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 1.0)),
                int(rng.integers(1, 3)),
                cv2.LINE_AA,
            )
        drawn["scratches"] = count
    if rng.random() < 0.4:
        count = int(rng.poisson(rng.uniform(2, 20) * h * w / 1e5)) + 1
        for _ in range(count):
            steps = int(rng.integers(4, 30))
            pts = np.cumsum(rng.normal(0, 1.5, (steps, 2)), axis=0) + rng.uniform([0, 0], [w, h])
            cv2.polylines(lines, [pts.astype(np.int32)], False, -float(rng.uniform(0.2, 0.8)), 1, cv2.LINE_AA)
        drawn["dislocations"] = count
    if lines.any():
        img = img + span * 0.5 * cv2.GaussianBlur(lines, (0, 0), 0.6)
    return img, twins, drawn


def acquisition(rng: np.random.Generator, img: np.ndarray) -> tuple[np.ndarray, dict]:
    """Bias field, blur, resolution loss, and noise of several kinds."""
    h, w = img.shape
    drawn: dict[str, Any] = {}
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo + 1e-6)
    if rng.random() < 0.7:
        amp = float(rng.uniform(0.05, 0.6))
        img = img * (1 + amp * 0.5 * smooth_field(rng, (h, w), max(h, w) * rng.uniform(0.3, 1.0)))
        drawn["bias_field"] = amp
    if rng.random() < 0.8:
        sy, sx = rng.uniform(0.3, 2.5), rng.uniform(0.3, 2.5)
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigmaX=float(sx), sigmaY=float(sy))
        drawn["blur_sigma_yx"] = [round(float(sy), 3), round(float(sx), 3)]
    if rng.random() < 0.4:
        factor = float(rng.uniform(1.2, 3.0))
        small = cv2.resize(img, (max(4, int(w / factor)), max(4, int(h / factor))), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=int(rng.choice([cv2.INTER_LINEAR, cv2.INTER_CUBIC])))
        drawn["resample_factor"] = factor
    img = np.clip(img, 0, None).astype(np.float32)
    if rng.random() < 0.6:
        dose = float(np.exp(rng.uniform(np.log(10.0), np.log(3000.0))))
        img = rng.poisson(img.astype(np.float64) * dose).astype(np.float32) / dose
        drawn["dose"] = dose
    if rng.random() < 0.6:
        sd = float(rng.uniform(0.005, 0.08))
        img = img + sd * rng.standard_normal((h, w), dtype=np.float32)
        drawn["gaussian_noise"] = sd
    if rng.random() < 0.2:
        sd = float(rng.uniform(0.005, 0.05))
        img = img + sd * rng.standard_normal((h, 1), dtype=np.float32)
        drawn["scan_lines"] = sd
    if rng.random() < 0.3:
        sigma = float(rng.uniform(0.5, 1.5))
        img = cv2.GaussianBlur(img, (0, 0), sigma)
        drawn["noise_blur"] = sigma
    return img, drawn


def intensity_map(rng: np.random.Generator, img: np.ndarray) -> tuple[np.ndarray, dict]:
    """Stretch to [0, 1] by percentiles, then a random monotone curve, inverted with p = 0.3."""
    lo, hi = np.percentile(img, [0.5, 99.5])
    x = np.clip((img - lo) / (hi - lo + 1e-6), 0, 1)
    knots = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, 3)), [1.0]])
    # half identity, half random: monotone, never flattening most of the range
    values = 0.5 * knots + 0.5 * np.concatenate([[0.0], np.sort(rng.uniform(0, 1, 3)), [1.0]])
    gamma = float(np.exp(rng.uniform(np.log(0.4), np.log(2.5))))
    x = np.interp(x**gamma, knots, values).astype(np.float32)
    inverted = bool(rng.random() < 0.3)
    if inverted:
        x = 1.0 - x
    return x, {"gamma": gamma, "inverted": inverted}


def render_randomized(
    rng: np.random.Generator, cells: np.ndarray, boundaries: np.ndarray, p: dict
) -> tuple[np.ndarray, np.ndarray, dict]:
    """A randomised micrograph of ``cells``: ``(image in [0, 1] float32, twin mask, drawn choices)``.

    The targets (``boundaries`` and the labels derived from ``cells``) are not
    touched: only the appearance is random. ``p["mean_diameter"]`` sets the scale
    of textures and distractors.

    Examples
    --------
    >>> from napari_grainseg.synthetic import generate
    >>> s = generate(seed=3, shape=(128, 128), preset="random")
    >>> float(s.image.min()) >= 0.0 and float(s.image.max()) <= 1.0
    True
    """
    h, w = cells.shape
    n = int(cells.max()) + 1
    d = float(p["mean_diameter"])
    grid = np.mgrid[0:h, 0:w].astype(np.float32)
    area = np.bincount(cells.ravel(), minlength=n).astype(np.float32) + 1e-6
    centres = tuple(np.bincount(cells.ravel(), g.ravel(), n).astype(np.float32) / area for g in grid)
    level, drawn_regions = region_intensities(rng, cells, n)
    img = level[cells]
    img, drawn_textures = grain_textures(rng, img, cells, centres, (grid[0], grid[1]), d)
    img, drawn_boundaries = boundary_appearance(rng, img, cells, boundaries, n)
    img, twins, drawn_lines = distractor_lines(rng, img, cells, centres, (grid[0], grid[1]), d)
    img, drawn_acquisition = acquisition(rng, img)
    img, drawn_display = intensity_map(rng, img)
    drawn = {
        "regions": drawn_regions,
        "textures": drawn_textures,
        "boundaries": drawn_boundaries,
        "distractors": drawn_lines,
        "acquisition": drawn_acquisition,
        "display": drawn_display,
    }
    return img, twins, drawn
