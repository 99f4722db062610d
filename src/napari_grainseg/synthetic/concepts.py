"""The generator's concept families, for leave-one-concept-out training and testing.

Issue 20 asks whether Net1 learns what a grain boundary is, or only what our renderer's
grains look like. For each family of concepts the generator encodes, this module names the
knobs that remove it (a model trained with those overrides never sees it) and the knobs that
show it strongly (a test set on which a model must cope with it). A model trained without a
family and scored on that family's test set, beside one trained with everything, measures how
much the family's training data is worth (``benchmarks/leave_one_concept_out.py``,
docs/generalisation.md).

Examples
--------
>>> from napari_grainseg.synthetic import generate
>>> twins = CONCEPT_FAMILIES["twins"]
>>> generate(0, (64, 64), preset="train", **twins.without).params["twin_fraction"]
0.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ConceptFamily:
    """One family of concepts of the generator.

    Attributes
    ----------
    description : what the family is, in a microscopist's words.
    without : generator knobs that remove the family from any preset's samples.
    shown : generator knobs (over the "tem" preset) that show it strongly, for its test set.
    """

    description: str
    without: dict[str, Any] = field(default_factory=dict)
    shown: dict[str, Any] = field(default_factory=dict)


#: The five families of issue 20, by short name.
CONCEPT_FAMILIES: dict[str, ConceptFamily] = {
    "twins": ConceptFamily(
        "twins: straight lines inside grains that are not boundaries",
        without={"twin_fraction": 0.0},
        shown={"twin_fraction": 0.6},
    ),
    "bends": ConceptFamily(
        "bend contours and thickness effects: dark bands and ramps inside grains",
        without={"bend_contours": 0.0, "ramp": 0.0, "grain_gradient": 0.0},
        shown={"bend_contours": 0.6, "ramp": 0.6, "grain_gradient": 0.25},
    ),
    "inclined": ConceptFamily(
        "inclined and overlapping boundaries: wide bands with thickness fringes",
        without={"inclined_fraction": 0.0, "inclined_width": 0.0, "fringe_amplitude": 0.0},
        shown={"inclined_fraction": 0.9, "inclined_width": 8.0, "fringe_amplitude": 0.2},
    ),
    "noise": ConceptFamily(
        "noise and dose: shot noise, read noise and correlated noise",
        without={"dose": 0.0, "read_noise": 0.0, "noise_blur": 0.0},
        shown={"dose": 20.0, "read_noise": 0.03},
    ),
    "shape": ConceptFamily(
        "grain shape and size distribution: elongated, curved grains of widely spread sizes",
        without={"mean_diameter": 30.0, "log_sigma": 0.2, "elongation": 1.0, "smoothing": 3},
        shown={"elongation": 3.0, "log_sigma": 0.7, "smoothing": 8},
    ),
}
