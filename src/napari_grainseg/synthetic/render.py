"""Bright-field TEM image formation for a grain tessellation.

Each function adds one physical effect to a transmission image (1 = vacuum,
values fall with scattering) and is vectorised over pixels; per-grain quantities
are small arrays indexed with the cell image. :func:`render` chains them in the
order they act in the microscope: specimen (grains, twins, bend contours, inclined
boundaries, boundary strain, thickness ramp, amorphous support, contamination),
then optics (PSF blur), then detector (shot noise at a dose, read noise).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["render", "neighbour_pairs", "grain_levels", "smooth_field", "twin_lamellae"]


def neighbour_pairs(cells: np.ndarray) -> np.ndarray:
    """Unique (a, b) pairs, a < b, of cells that share a pixel edge; shape (m, 2)."""
    a = np.concatenate([cells[1:, :].ravel(), cells[:, 1:].ravel()])
    b = np.concatenate([cells[:-1, :].ravel(), cells[:, :-1].ravel()])
    diff = a != b
    lo, hi = np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])
    key = np.unique(lo.astype(np.int64) * (int(cells.max()) + 1) + hi)
    return np.column_stack(np.divmod(key, int(cells.max()) + 1))


def grain_levels(rng: np.random.Generator, cells: np.ndarray, n: int, p: dict) -> np.ndarray:
    """Per-grain transmission: mostly mid-grey, a ``dark_fraction`` strongly diffracting,
    and a ``similar_fraction`` copying a neighbour's level (nearly invisible boundary)."""
    # log-normal spread: a long tail of bright grains, as in real bright field
    c = p["contrast"] / p["mean_level"]
    level = p["mean_level"] * np.exp(c * rng.standard_normal(n) - 0.5 * c * c)
    dark = rng.random(n) < p["dark_fraction"]
    level[dark] = p["mean_level"] * rng.uniform(0.3, 0.75, int(dark.sum()))
    level = np.clip(level, 0.03, 1.0)
    if p["similar_fraction"] > 0 and n > 1:
        pairs = neighbour_pairs(cells)
        if len(pairs):
            chosen = rng.permutation(len(pairs))[: int(round(p["similar_fraction"] * n / 2))]
            for a, b in pairs[chosen]:
                level[b] = np.clip(level[a] + rng.normal(0, 0.01), 0.03, 1.0)
    return level


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Smooth random field, zero mean, unit std, correlation length ~``scale`` px."""
    h, w = shape
    gh, gw = max(2, int(h / scale) + 2), max(2, int(w / scale) + 2)
    f = rng.standard_normal((gh, gw)).astype(np.float32)
    f = cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC)
    return (f - f.mean()) / (f.std() + 1e-6)


def twin_lamellae(
    rng: np.random.Generator,
    cells: np.ndarray,
    centres: tuple[np.ndarray, np.ndarray],
    grid: tuple[np.ndarray, np.ndarray],
    diameter: float,
    fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Annealing twins: straight parallel lamellae inside a ``fraction`` of the grains.

    Returns the lamella mask (bool, image-sized; never a grain boundary) and each
    grain's relative intensity change inside its lamellae (signed, 0.25-0.6).
    ``centres`` are the per-cell centroids (y, x); ``grid`` the pixel coordinates.
    """
    n = len(centres[0])
    (cy, cx), (yy, xx) = centres, grid
    has = rng.random(n) < fraction
    theta = rng.uniform(0, np.pi, n)
    period = (diameter * rng.uniform(0.4, 1.2, n)).astype(np.float32)
    width = rng.uniform(0.15, 0.45, n).astype(np.float32)
    phase = rng.random(n).astype(np.float32)
    factor = rng.choice([-1.0, 1.0], n) * rng.uniform(0.25, 0.6, n)
    s, c = np.sin(theta).astype(np.float32), np.cos(theta).astype(np.float32)
    u = (s[cells] * (yy - cy[cells]) + c[cells] * (xx - cx[cells])) / period[cells]
    return has[cells] & (np.mod(u + phase[cells], 1.0) < width[cells]), factor


def render(
    rng: np.random.Generator, cells: np.ndarray, boundaries: np.ndarray, p: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Render a bright-field micrograph of ``cells``; return ``(image, twin_mask)``.

    ``p`` holds the image knobs documented in :data:`~napari_grainseg.synthetic.PARAMETERS`.
    ``twin_mask`` marks the twin lamellae (for tests and inspection only: twins
    are never grain boundaries).
    """
    h, w = cells.shape
    n = int(cells.max()) + 1
    d = p["mean_diameter"]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    area = np.bincount(cells.ravel(), minlength=n).astype(np.float32) + 1e-6
    cy = np.bincount(cells.ravel(), yy.ravel(), n).astype(np.float32) / area
    cx = np.bincount(cells.ravel(), xx.ravel(), n).astype(np.float32) / area

    level = grain_levels(rng, cells, n, p).astype(np.float32)
    img = level[cells]
    twins = np.zeros((h, w), bool)
    flat = p["flat_shading"]

    if not flat and p["grain_gradient"] > 0:
        # bending of the foil changes the diffraction condition across a grain
        ang = rng.uniform(0, 2 * np.pi, n)
        mag = rng.uniform(0, p["grain_gradient"], n) / d
        gy, gx = (mag * np.sin(ang)).astype(np.float32), (mag * np.cos(ang)).astype(np.float32)
        img = img * (1 + gy[cells] * (yy - cy[cells]) + gx[cells] * (xx - cx[cells]))

    if not flat and p["twin_fraction"] > 0:
        twins, factor = twin_lamellae(rng, cells, (cy, cx), (yy, xx), d, p["twin_fraction"])
        factor = np.where(level * (1 + factor) > 1.0, -np.abs(factor), factor)
        img = np.where(twins, img * (1 + factor.astype(np.float32))[cells], img)

    if not flat and p["bend_contours"] > 0:
        # bend contours: broad dark bands where the bent foil meets a Bragg condition;
        # they jump at boundaries because each grain has its own orientation
        field = smooth_field(rng, (h, w), 1.5 * d)
        offset = rng.uniform(-1.5, 1.5, n).astype(np.float32)
        amp = (rng.random(n) < 0.5) * rng.uniform(0, p["bend_contours"], n)
        band = np.exp(-(((field + offset[cells]) / 0.35) ** 2))
        img = img * (1 - amp.astype(np.float32)[cells] * band)

    if not flat and (p["inclined_width"] > 0 or p["boundary_darkening"] > 0):
        dist = cv2.distanceTransform((~boundaries).astype(np.uint8), cv2.DIST_L2, 3)
        np.minimum(dist, 1e4, out=dist)  # no boundary at all: huge finite distance
        if p["inclined_width"] > 0 and p["inclined_fraction"] > 0:
            # an inclined boundary projects as a band of width t*tan(theta) where both
            # grains overlap through the thickness: transmissions multiply, so the band
            # is the log-space mix of the two grains, centred on the target line,
            # with thickness fringes parallel to it
            half = p["inclined_width"] / 2
            inclined = rng.random(n) < p["inclined_fraction"]
            logimg = np.log(np.maximum(img, 1e-3))
            mixed = np.exp(cv2.GaussianBlur(logimg, (0, 0), max(half / 1.5, 0.5)))
            weight = np.clip(1 - dist / half, 0, 1) * inclined[cells]
            img = img + weight * (mixed - img)
            if p["fringe_amplitude"] > 0:
                period = rng.uniform(0.5, 1.0) * max(half, 1.5)
                fringe = np.cos(2 * np.pi * dist / period) * weight
                img = img * (1 + p["fringe_amplitude"] * fringe)
        if p["boundary_darkening"] > 0:
            # strain and extra scattering make some boundaries a thin dark line
            strength = rng.uniform(0, p["boundary_darkening"], n).astype(np.float32)
            img = img * (1 - strength[cells] * np.exp(-0.5 * (dist / 0.9) ** 2))

    if p["ramp"] > 0:
        # thickness / illumination gradient over the field of view
        ang = rng.uniform(0, 2 * np.pi)
        lin = (np.cos(ang) * (xx / w - 0.5) + np.sin(ang) * (yy / h - 0.5)) * 2
        smooth = smooth_field(rng, (h, w), max(h, w) / 2)
        img = img * (1 + p["ramp"] * (0.6 * lin + 0.4 * smooth) / 2)

    if not flat and p["texture"] > 0:
        # amorphous support film: fine speckle of phase contrast
        tex = rng.standard_normal((h, w)).astype(np.float32)
        tex = cv2.GaussianBlur(tex, (0, 0), 1.0) * 2.0
        img = img * (1 + p["texture"] * tex)

    n_blobs = rng.poisson(p["blobs"] * h * w / 1e5)
    for _ in range(n_blobs):
        # contamination / etch pits: soft dark (sometimes bright) spots
        r = rng.uniform(1.5, max(2.0, 0.25 * d))
        y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
        amp = rng.uniform(-0.4, 0.2)
        ext = int(3 * r) + 1
        ya, yb, xa, xb = max(int(y0) - ext, 0), min(int(y0) + ext, h), max(int(x0) - ext, 0), min(int(x0) + ext, w)
        if ya >= yb or xa >= xb:
            continue
        g = np.exp(-((yy[ya:yb, xa:xb] - y0) ** 2 + (xx[ya:yb, xa:xb] - x0) ** 2) / (2 * r * r))
        img[ya:yb, xa:xb] *= 1 + amp * g

    if p["blur_sigma"] > 0:
        img = cv2.GaussianBlur(img, (0, 0), p["blur_sigma"])

    img = np.maximum(img, 0)
    if p["dose"] > 0:
        # shot noise: Poisson counts at `dose` electrons/px for full transmission;
        # above 30 e/px the Gaussian limit is used (same mean and variance, faster)
        if p["dose"] < 30:
            img = rng.poisson(img.astype(np.float64) * p["dose"]).astype(np.float32) / p["dose"]
        else:
            noise = rng.standard_normal((h, w), dtype=np.float32)
            img = img + np.sqrt(img / p["dose"]) * noise
    if p["read_noise"] > 0:
        img = img + p["read_noise"] * rng.standard_normal((h, w), dtype=np.float32)
    if p["noise_blur"] > 0:
        img = cv2.GaussianBlur(img, (0, 0), p["noise_blur"])
    return np.clip(img, 0.0, 1.0).astype(np.float32), twins
