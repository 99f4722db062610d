"""An independently written micrograph renderer, for evaluation only (never for training).

Every model here was trained on images of :mod:`napari_grainseg.synthetic`. A test set
drawn by that same generator shares its assumptions (how grains are cut, how a
boundary is drawn, how noise looks), so it flatters the models. This module shares
no code with it and makes other choices on purpose, so that it tests what a model
learned about grain boundaries rather than about our renderer:

- **Geometry**: a Johnson-Mehl tessellation — grains nucleate at random times and
  grow at their own speed (``argmin_i t_i + |x - s_i| / v_i``), which gives curved
  boundaries, a wide size spread and grains that are not convex — stretched by a
  random anisotropy (rolled or columnar films).
- **Contrast**: bright-field diffraction contrast, one random excitation per grain
  (``I = 1 - A sin^2(pi w)``, many grains near-equal); thickness fringes near
  boundaries in a random subset of grains (inclined boundaries); bend contours:
  dark smooth bands inside a few grains that stop at their boundary; a
  mass-thickness ramp.
- **Boundaries**: no line at all in most grains (only the contrast step shows the
  boundary); a faint dark groove in some images.
- **Imaging**: a Lorentzian-tailed blur, Poisson noise at a random dose, a random
  gamma, 8-bit quantisation.

The truth is exact: 1-px lines where the right or lower neighbour belongs to
another grain, and the grains between them.

Examples
--------
>>> s = render_independent(3, (128, 128))
>>> s.image.shape, s.image.dtype, bool(s.boundaries.any())
((128, 128), dtype('float32'), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IndependentSample:
    """A rendered micrograph with its exact truth (the fields of a synthetic sample)."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    boundaries: np.ndarray


def johnson_mehl(shape: tuple[int, int], rng: np.random.Generator, n_grains: int) -> np.ndarray:
    """Grain ids (1..n) of an anisotropic Johnson-Mehl tessellation (nucleation times, growth speeds)."""
    h, w = shape
    seeds = rng.uniform([0, 0], [h, w], size=(n_grains, 2))
    times = rng.exponential(0.35, n_grains) * math.sqrt(h * w / n_grains)
    speeds = rng.lognormal(0.0, 0.25, n_grains)
    stretch = rng.uniform(1.0, 2.2)
    angle = rng.uniform(0, math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    best = np.full(shape, np.inf, np.float32)
    labels = np.zeros(shape, np.int32)
    c, s = math.cos(angle), math.sin(angle)
    for i, ((sy, sx), t0, v) in enumerate(zip(seeds, times, speeds), start=1):
        dy, dx = yy - sy, xx - sx
        along, across = dx * c + dy * s, -dx * s + dy * c
        arrival = t0 + np.sqrt((along / stretch) ** 2 + across**2) / v
        closer = arrival < best
        best[closer] = arrival[closer]
        labels[closer] = i
    return _relabel_connected(labels, min_area=max(12, int(0.05 * h * w / n_grains)))


def _relabel_connected(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Split grains that came out in several pieces (a slow grain cut by a fast one) into separate ids
    and give pieces smaller than ``min_area`` px to their neighbours (a late nucleus a few px wide
    is not a grain anyone could see)."""
    from scipy import ndimage
    from skimage.segmentation import expand_labels

    out = np.zeros_like(labels)
    next_id = 1
    for i in range(1, int(labels.max()) + 1):
        parts, n = ndimage.label(labels == i)
        sizes = np.bincount(parts.ravel(), minlength=n + 1)
        for j in range(1, n + 1):
            if sizes[j] >= min_area:
                out[parts == j] = next_id
                next_id += 1
    while (out == 0).any():
        out = expand_labels(out, distance=3)
    return out


def thin_boundaries(labels: np.ndarray) -> np.ndarray:
    """1-px boundary lines: a pixel whose right or lower neighbour belongs to another grain."""
    lines = np.zeros(labels.shape, bool)
    lines[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    lines[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return lines


def render_independent(seed: int, shape: tuple[int, int] = (256, 256)) -> IndependentSample:
    """One bright-field-like micrograph of the independent renderer (deterministic in ``seed``)."""
    import cv2
    from scipy import ndimage
    from skimage.segmentation import relabel_sequential

    rng = np.random.default_rng([seed, 424242])
    h, w = shape
    mean_diameter = math.exp(rng.uniform(math.log(14), math.log(60)))
    n_grains = max(4, int(round(h * w / (math.pi / 4 * mean_diameter**2))))
    grains = johnson_mehl(shape, rng, n_grains)
    n = int(grains.max())
    # diffraction contrast per grain: 1 - A sin^2(pi * w), w the grain's random excitation error
    excitation = rng.uniform(0, 1, n + 1)
    if rng.random() < 0.3:  # many near-equal neighbours: excitations clustered
        excitation = rng.choice(rng.uniform(0, 1, 5), n + 1) + rng.normal(0, 0.08, n + 1)
    strength = rng.uniform(0.3, 0.8)
    level = 1.0 - strength * np.sin(np.pi * excitation) ** 2
    image = level[grains].astype(np.float32)
    inside = ndimage.distance_transform_edt(~thin_boundaries(grains)).astype(np.float32)
    # thickness fringes along boundaries in some grains (inclined boundaries)
    fringed = rng.random(n + 1) < rng.uniform(0.1, 0.5)
    period = rng.uniform(3, 7)
    fringes = 0.1 * np.cos(2 * np.pi * inside / period) * np.exp(-inside / (1.2 * period))
    image += np.where(fringed[grains], fringes, 0).astype(np.float32)
    # bend contours: a dark smooth band inside a few grains, stopping at their boundary
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for g in rng.choice(np.arange(1, n + 1), size=min(n, int(rng.integers(0, 4))), replace=False):
        a, c0 = rng.uniform(0, math.pi), rng.uniform(-0.5, 0.5) * max(h, w)
        dist = (xx - w / 2) * math.cos(a) + (yy - h / 2) * math.sin(a) - c0
        band = 0.35 * np.exp(-((dist + 6 * np.sin(yy / rng.uniform(15, 40))) ** 2) / (2 * rng.uniform(2, 6) ** 2))
        image -= np.where(grains == g, band, 0).astype(np.float32)
    if rng.random() < 0.4:  # a faint groove at the boundaries
        image -= rng.uniform(0.05, 0.2) * np.exp(-(inside**2) / 2.0)
    # mass-thickness ramp
    image *= 1 + rng.uniform(-0.25, 0.25) * (xx / w - 0.5) + rng.uniform(-0.25, 0.25) * (yy / h - 0.5)
    # a Lorentzian-tailed point spread: a sharp core plus a wide halo
    core = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.6, 1.6))
    halo = cv2.GaussianBlur(image, (0, 0), rng.uniform(4, 10))
    mix = rng.uniform(0.05, 0.3)
    image = np.clip((1 - mix) * core + mix * halo, 0.02, None)
    dose = math.exp(rng.uniform(math.log(20), math.log(400)))
    image = rng.poisson(image * dose).astype(np.float32) / dose
    image = np.clip(image / max(float(np.percentile(image, 99.5)), 1e-6), 0, 1) ** rng.uniform(0.7, 1.4)
    image = np.round(image * 255) / 255
    lines = thin_boundaries(grains)
    labels, _, _ = relabel_sequential(np.where(lines, 0, grains))
    return IndependentSample(
        name=f"independent-{seed}", image=image.astype(np.float32), labels=labels.astype(np.uint32), boundaries=lines
    )


@dataclass(frozen=True)
class IndependentSet:
    """A frozen evaluation set of the independent renderer (same interface as a synthetic ``EvalSet``)."""

    name: str
    description: str
    first_seed: int
    size: int
    shape: tuple[int, int] = (256, 256)
    in_default_run: bool = False

    def samples(self, limit: int | None = None):
        """Yield the set's samples (deterministic)."""
        for i in range(self.size if limit is None else min(limit, self.size)):
            yield render_independent(self.first_seed + i, self.shape)
