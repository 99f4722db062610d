"""napari sample data: the bundled real micrograph (and synthetic ones)."""

from __future__ import annotations

from napari_grainseg.io.samples import INTERCONNECT_TEM_CREDIT
from napari_grainseg.io.samples import interconnect_tem as _load_interconnect
from napari_grainseg.plugin._boundaries import ROLE_KEY
from napari_grainseg.plugin._layers import micrograph_layer_kwargs


def interconnect_tem():
    """The bundled real bright-field TEM micrograph of an interconnect line (CC0)."""
    micrograph = _load_interconnect()
    kwargs = micrograph_layer_kwargs(micrograph, "interconnect_tem")
    kwargs["metadata"]["credit"] = INTERCONNECT_TEM_CREDIT
    return [(micrograph.data, kwargs, "image")]


def synthetic_micrograph():
    """A synthetic bright-field micrograph (default "tem" preset, seed 0) with its true grains."""
    from napari_grainseg.synthetic import generate

    sample = generate(seed=0, shape=(512, 512), preset="tem")
    name = "synthetic micrograph"
    meta = {"grainseg_synthetic_params": sample.params}
    # the truth belongs to the micrograph: a pixel size set on it applies to the truth too
    truth_meta = {ROLE_KEY: "truth", "grainseg_source": name, "grainseg_derived": True}
    return [
        (sample.image, {"name": name, "colormap": "gray", "metadata": meta}, "image"),
        (
            sample.labels,
            {"name": "synthetic true grains", "opacity": 0.3, "visible": False, "metadata": truth_meta},
            "labels",
        ),
    ]
