"""Every knob of the generator, its allowed range, and the named presets.

``PARAMETERS`` is the single table of knobs (name -> allowed range and meaning);
``PRESETS`` holds the named settings. ``"tem"`` and ``"paper"`` are fixed values;
``"train"`` holds a *sampling rule* per knob, drawn afresh for every sample from
its seed by :func:`sample_preset`.

======================  ==========  ==========  ===========================================
knob                    allowed     train       meaning
======================  ==========  ==========  ===========================================
mean_diameter           4..250      8..60 log   arithmetic mean ECD of interior grains (px)
log_sigma               0..0.8      0.2..0.6    SD of ln ECD (calibrated 0.2..0.6)
elongation              1..4        1 | 1..2.5  grain aspect ratio (area kept)
elongation_angle        0..180      0..180      direction of elongation (deg, from x axis)
smoothing               0..12       0 | 1..6    curvature-flow steps (0: straight edges)
mean_level              0.05..1     0.35..0.85  typical grain transmission
contrast                0..0.5      0.01..0.3   SD of grain transmissions (log-uniform)
dark_fraction           0..1        0..0.3      grains in strong diffraction (dark)
similar_fraction        0..1        0..0.6      grains copying a neighbour's level
grain_gradient          0..0.5      0..0.2      intensity change across a grain
twin_fraction           0..1        0..0.4      grains with twin lamellae
bend_contours           0..1        0..0.5      depth of bend-contour bands
inclined_fraction       0..1        0..0.8      grains with inclined (overlap) boundaries
inclined_width          0..12       0..8        overlap band width t*tan(theta) (px)
fringe_amplitude        0..0.5      0..0.15     thickness-fringe depth inside the band
boundary_darkening      0..0.6      0..0.3      max dark-line depth at boundaries
ramp                    0..1        0..0.5      thickness / illumination ramp
texture                 0..0.3      0..0.08     amorphous support speckle
blobs                   0..20       0..3        contamination spots per 1e5 px
blur_sigma              0..4        0.3..2.5    PSF Gaussian sigma (px)
dose                    0, 2..1e5   5..3000 log electrons/px at full transmission (0: off)
read_noise              0..0.2      0..0.05     Gaussian detector noise SD
noise_blur              0..3        0 | 0.5..1.5 blur applied after noise (correlated noise)
flat_shading            bool        p = 0.15    paper look: flat grains, no TEM effects
bimodal_fraction        0..0.6      0           area share of a second, larger population
bimodal_ratio           1..8        1           its mean diameter / mean_diameter
warp                    0..0.5      0           smooth cell displacement (x mean_diameter)
randomized              bool        False       appearance by randomize.py (preset "random")
======================  ==========  ==========  ===========================================

The "random" preset (domain randomisation) draws mean_diameter 5..120 (log), log_sigma
0.1..0.7, elongation 1 | 1..4, smoothing 0 | 1..12, bimodal_fraction 0 | 0.1..0.5 with
bimodal_ratio 2..6, warp 0 | 0.05..0.35, and sets randomized.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from napari_grainseg.errors import InputError

__all__ = ["PARAMETERS", "PRESETS", "resolve_parameters", "sample_preset"]

#: knob -> (lowest, highest, meaning). Booleans use (False, True).
PARAMETERS: dict[str, tuple[Any, Any, str]] = {
    "mean_diameter": (4.0, 250.0, "arithmetic mean ECD of interior grains >= 15 px (px)"),
    "log_sigma": (0.0, 0.8, "standard deviation of ln ECD of interior grains"),
    "elongation": (1.0, 4.0, "grain aspect ratio; area is kept"),
    "elongation_angle": (0.0, 180.0, "direction of elongation, degrees from the x axis"),
    "smoothing": (0, 12, "curvature-flow (MBO) steps; 0 keeps straight power-diagram edges"),
    "mean_level": (0.05, 1.0, "typical grain transmission (1 = vacuum)"),
    "contrast": (0.0, 0.5, "standard deviation of grain transmissions"),
    "dark_fraction": (0.0, 1.0, "fraction of grains in strong diffraction (dark)"),
    "similar_fraction": (0.0, 1.0, "fraction of grains copying a neighbour's level"),
    "grain_gradient": (0.0, 0.5, "relative intensity change across one grain diameter"),
    "twin_fraction": (0.0, 1.0, "fraction of grains with twin lamellae"),
    "bend_contours": (0.0, 1.0, "maximum depth of bend-contour bands"),
    "inclined_fraction": (0.0, 1.0, "fraction of grains with inclined (overlapping) boundaries"),
    "inclined_width": (0.0, 12.0, "width t*tan(theta) of the overlap band (px); target at its centre"),
    "fringe_amplitude": (0.0, 0.5, "thickness-fringe depth inside overlap bands"),
    "boundary_darkening": (0.0, 0.6, "maximum depth of the thin dark line at boundaries"),
    "ramp": (0.0, 1.0, "thickness / illumination ramp amplitude"),
    "texture": (0.0, 0.3, "amorphous support speckle amplitude"),
    "blobs": (0.0, 20.0, "mean number of contamination spots per 1e5 px"),
    "blur_sigma": (0.0, 4.0, "PSF Gaussian sigma (px)"),
    "dose": (0.0, 1e5, "electrons per pixel at full transmission (Poisson noise); 0 = off"),
    "read_noise": (0.0, 0.2, "Gaussian detector noise standard deviation"),
    "noise_blur": (0.0, 3.0, "Gaussian sigma applied after the noise (correlated noise)"),
    "flat_shading": (False, True, "paper look: flat grains without TEM effects"),
    # Appended in session 9 (domain randomisation); drawn after the knobs above, so samples of
    # the older presets are unchanged.
    "bimodal_fraction": (0.0, 0.6, "share of the area in a second population of larger grains"),
    "bimodal_ratio": (1.0, 8.0, "mean diameter of the second population / mean_diameter"),
    "warp": (0.0, 0.5, "smooth displacement of the cells (x mean_diameter): irregular, non-convex grains"),
    "randomized": (False, True, "appearance drawn far beyond realism (randomize.py) instead of bright-field TEM"),
}

#: The appended knobs at their neutral values (the older presets keep these).
_NEUTRAL_NEW = {"bimodal_fraction": 0.0, "bimodal_ratio": 1.0, "warp": 0.0, "randomized": False}

_TEM = {
    "mean_diameter": 48.0,
    "log_sigma": 0.4,
    "elongation": 1.0,
    "elongation_angle": 0.0,
    "smoothing": 4,
    "mean_level": 0.56,
    "contrast": 0.13,
    "dark_fraction": 0.1,
    "similar_fraction": 0.3,
    "grain_gradient": 0.08,
    "twin_fraction": 0.15,
    "bend_contours": 0.2,
    "inclined_fraction": 0.4,
    "inclined_width": 5.0,
    "fringe_amplitude": 0.04,
    "boundary_darkening": 0.08,
    "ramp": 0.25,
    "texture": 0.06,
    "blobs": 1.0,
    "blur_sigma": 2.0,
    "dose": 2000.0,
    "read_noise": 0.005,
    "noise_blur": 0.0,
    "flat_shading": False,
}

_PAPER = dict(_TEM)
_PAPER.update(
    {
        "mean_diameter": 55.0,
        "log_sigma": 0.35,
        "smoothing": 0,
        "mean_level": 0.6,
        "contrast": 0.25,
        "dark_fraction": 0.1,
        "similar_fraction": 0.0,
        "grain_gradient": 0.0,
        "twin_fraction": 0.0,
        "bend_contours": 0.0,
        "inclined_fraction": 0.0,
        "inclined_width": 0.0,
        "fringe_amplitude": 0.0,
        "boundary_darkening": 0.0,
        "ramp": 0.0,
        "texture": 0.0,
        "blobs": 0.0,
        "blur_sigma": 0.7,
        "dose": 0.0,
        "read_noise": 0.1,
        "noise_blur": 1.0,
        "flat_shading": True,
    }
)

# Sampling rules of the "train" preset: ("uniform", lo, hi), ("loguniform", lo, hi),
# ("int", lo, hi) inclusive, ("choice", p_first, first_value, rule_otherwise),
# ("bernoulli", p).
_TRAIN = {
    "mean_diameter": ("loguniform", 8.0, 60.0),
    "log_sigma": ("uniform", 0.2, 0.6),
    "elongation": ("choice", 0.6, 1.0, ("uniform", 1.0, 2.5)),
    "elongation_angle": ("uniform", 0.0, 180.0),
    "smoothing": ("choice", 0.2, 0, ("int", 1, 6)),
    "mean_level": ("uniform", 0.35, 0.85),
    "contrast": ("loguniform", 0.01, 0.3),
    "dark_fraction": ("uniform", 0.0, 0.3),
    "similar_fraction": ("uniform", 0.0, 0.6),
    "grain_gradient": ("uniform", 0.0, 0.2),
    "twin_fraction": ("choice", 0.4, 0.0, ("uniform", 0.0, 0.4)),
    "bend_contours": ("choice", 0.3, 0.0, ("uniform", 0.0, 0.5)),
    "inclined_fraction": ("uniform", 0.0, 0.8),
    "inclined_width": ("uniform", 0.0, 8.0),
    "fringe_amplitude": ("uniform", 0.0, 0.15),
    "boundary_darkening": ("uniform", 0.0, 0.3),
    "ramp": ("uniform", 0.0, 0.5),
    "texture": ("uniform", 0.0, 0.08),
    "blobs": ("uniform", 0.0, 3.0),
    "blur_sigma": ("uniform", 0.3, 2.5),
    "dose": ("loguniform", 5.0, 3000.0),
    "read_noise": ("uniform", 0.0, 0.05),
    "noise_blur": ("choice", 0.7, 0.0, ("uniform", 0.5, 1.5)),
    "flat_shading": ("bernoulli", 0.15),
}

# The domain-randomisation preset (docs/generalisation.md): geometry far wider than "train"
# (5-120 px grains, bimodal sizes, elongation up to 4, irregular warped cells) and an appearance
# that is not TEM at all: random per-grain intensity mixtures, textures, boundary styles (dark,
# bright, Fresnel pair, step only, invisible), distractor lines, bias fields, resampling, noise
# and random monotone intensity maps with inversion (see randomize.py). The TEM-physics knobs
# are unused (randomized=True) and kept at neutral values.
_RANDOM = {
    **{
        name: 0.0
        for name in (
            "contrast",
            "dark_fraction",
            "similar_fraction",
            "grain_gradient",
            "twin_fraction",
            "bend_contours",
            "inclined_fraction",
            "inclined_width",
            "fringe_amplitude",
            "boundary_darkening",
            "ramp",
            "texture",
            "blobs",
            "blur_sigma",
            "dose",
            "read_noise",
            "noise_blur",
        )
    },
    "mean_level": 0.5,
    "flat_shading": False,
    "mean_diameter": ("loguniform", 5.0, 120.0),
    "log_sigma": ("uniform", 0.1, 0.7),
    "elongation": ("choice", 0.5, 1.0, ("uniform", 1.0, 4.0)),
    "elongation_angle": ("uniform", 0.0, 180.0),
    "smoothing": ("choice", 0.3, 0, ("int", 1, 12)),
    "bimodal_fraction": ("choice", 0.7, 0.0, ("uniform", 0.1, 0.5)),
    "bimodal_ratio": ("uniform", 2.0, 6.0),
    "warp": ("choice", 0.5, 0.0, ("uniform", 0.05, 0.35)),
    "randomized": True,
}
for _preset in (_TEM, _PAPER, _TRAIN):
    _preset.update(_NEUTRAL_NEW)

#: Named presets. "tem" (default) aims at real bright-field TEM such as the bundled
#: interconnect micrograph; "paper" mimics the paper's flat-shaded synthetic inputs;
#: "train" randomises every knob per sample (values are sampling rules, see above);
#: "random" randomises geometry and appearance far beyond realism (domain randomisation).
PRESETS: dict[str, dict] = {"tem": _TEM, "paper": _PAPER, "train": _TRAIN, "random": _RANDOM}


def _draw(rule: tuple, rng: np.random.Generator) -> Any:
    kind = rule[0]
    if kind == "uniform":
        return float(rng.uniform(rule[1], rule[2]))
    if kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(rule[1]), math.log(rule[2]))))
    if kind == "int":
        return int(rng.integers(rule[1], rule[2] + 1))
    if kind == "bernoulli":
        return bool(rng.random() < rule[1])
    if kind == "choice":
        first = rng.random() < rule[1]
        other = _draw(rule[3], rng)  # always drawn: keeps the random stream aligned
        return rule[2] if first else other
    raise ValueError(f"unknown sampling rule {rule!r}")


def sample_preset(preset: str, rng: np.random.Generator) -> dict[str, Any]:
    """Concrete knob values of ``preset`` (sampling rules are drawn with ``rng``)."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = {}
    for name in PARAMETERS:  # fixed order: reproducible draws
        v = PRESETS[preset][name]
        values[name] = _draw(v, rng) if isinstance(v, tuple) else v
    if preset == "train" and values["flat_shading"]:
        values.update(
            noise_blur=max(values["noise_blur"], 0.8),
            read_noise=max(values["read_noise"], 0.03),
            contrast=max(values["contrast"], 0.08),
        )
    return values


def resolve_parameters(preset: str, rng: np.random.Generator, overrides: dict[str, Any]) -> dict[str, Any]:
    """Preset values, then ``overrides``, checked against :data:`PARAMETERS`."""
    unknown = sorted(set(overrides) - set(PARAMETERS))
    if unknown:
        raise InputError(f"unknown generator parameter(s) {', '.join(unknown)}; known: {', '.join(PARAMETERS)}")
    values = sample_preset(preset, rng)
    values.update(overrides)
    for name, (lo, hi, _) in PARAMETERS.items():
        v = values[name]
        if isinstance(lo, bool):
            if not isinstance(v, (bool, np.bool_)):
                raise InputError(f"parameter {name} must be True or False, got {v!r}")
            values[name] = bool(v)
            continue
        try:
            fv = float(v)
        except (TypeError, ValueError):
            raise InputError(f"parameter {name} must be a number, got {v!r}") from None
        if not (lo <= fv <= hi) or math.isnan(fv):
            raise InputError(f"parameter {name}={v!r} is outside its range [{lo}, {hi}]")
        values[name] = int(fv) if isinstance(lo, int) else fv
        if isinstance(lo, int) and fv != int(fv):
            raise InputError(f"parameter {name} must be a whole number, got {v!r}")
    if 0 < values["dose"] < 2:
        raise InputError(f"parameter dose={values['dose']} is too low; use 0 (off) or >= 2")
    return values
