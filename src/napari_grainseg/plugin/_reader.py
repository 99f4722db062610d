"""napari reader contribution: opens micrographs through :func:`napari_grainseg.io.readers.read_micrograph`."""

from __future__ import annotations

from pathlib import Path

from napari_grainseg.io.readers import SUPPORTED_EXTENSIONS
from napari_grainseg.plugin._layers import micrograph_layer_kwargs


def get_reader(path):
    """Return a reader function when ``path`` is a single supported micrograph file, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if Path(path).suffix.lower() not in SUPPORTED_EXTENSIONS:
        return None
    return read_layers


def read_layers(path):
    """Read one micrograph into a napari layer-data tuple, with scale and units from its calibration."""
    from napari_grainseg.io.readers import read_micrograph

    if isinstance(path, list):
        path = path[0]
    micrograph = read_micrograph(path)
    return [(micrograph.data, micrograph_layer_kwargs(micrograph, Path(path).stem), "image")]
