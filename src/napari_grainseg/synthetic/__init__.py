"""Concept-oriented synthetic bright-field TEM micrographs with exact grain targets.

Follows the seven concept stages of Saleh et al. (2025, arXiv 2504.14782):
lognormal grain sizes, Monte Carlo circle packing, power-diagram tessellation,
per-grain brightness, noise and overlap, and goes further in realism (curvature
flow, twins, bend contours, inclined boundaries, thickness fringes, ramps, PSF,
shot noise). See ``docs/synthetic.md``.

>>> from napari_grainseg.synthetic import generate
>>> sample = generate(seed=1, shape=(96, 496), preset="tem")

torch is not imported here; training builds its samples from :func:`generate`
(:mod:`napari_grainseg.training`).
"""

from napari_grainseg.synthetic.generator import SyntheticSample, generate
from napari_grainseg.synthetic.presets import PARAMETERS, PRESETS
from napari_grainseg.synthetic.stats import grain_size_stats, triple_junction_angles
from napari_grainseg.synthetic.targets import boundary_pixels, grains_from_boundaries

__all__ = [
    "PARAMETERS",
    "PRESETS",
    "SyntheticSample",
    "boundary_pixels",
    "generate",
    "grain_size_stats",
    "grains_from_boundaries",
    "triple_junction_angles",
]
