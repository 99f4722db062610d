"""napari reader contribution: micrographs through :func:`napari_grainseg.io.readers.read_micrograph`, and this
tool's own ``*_boundaries.tif`` / ``*_grains.tif`` exports as a boundary Labels layer, ready to correct."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_grainseg.io.readers import SUPPORTED_EXTENSIONS
from napari_grainseg.plugin._layers import CALIBRATION_KEY, micrograph_layer_kwargs

#: File name endings of this tool's label exports (opened as Labels, not as an image).
LABEL_SUFFIXES = ("_boundaries", "_grains")


def get_reader(path):
    """Return a reader function when ``path`` is a single supported micrograph file, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if Path(path).suffix.lower() not in SUPPORTED_EXTENSIONS:
        return None
    return read_layers


def label_export_kind(path) -> str | None:
    """ "boundaries" or "grains" for this tool's TIFF exports (``<stem>_boundaries.tif`` ...), else None."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    for suffix in LABEL_SUFFIXES:
        if path.stem.endswith(suffix) and len(path.stem) > len(suffix):
            return suffix[1:]
    return None


def read_layers(path):
    """Read one micrograph into a napari layer-data tuple, with scale and units from its calibration.

    A ``*_boundaries.tif`` (a boundary mask: non-zero = boundary, so 0/1 and an
    editor's 0/255 alike, anti-aliased lines and inverted grain masks too; see
    :func:`~napari_grainseg.segmentation.grains.read_as_boundary_mask`) or
    ``*_grains.tif`` (labels) written by this tool opens as one editable boundary
    Labels layer (a label image's boundaries are its 0 pixels) with the file's
    calibration: the Correct grains and Grain statistics docks work on it at once.
    """
    from napari_grainseg.io.readers import read_array, read_micrograph

    if isinstance(path, list):
        path = path[0]
    micrograph = read_micrograph(path)
    kind = label_export_kind(path)
    if kind is not None:
        # a boundaries file saved by an editor in colour: its brightest channel (lines of any colour)
        data = read_array(path, f"{kind} export", mask=kind == "boundaries")
        if data.ndim == 2 and np.issubdtype(data.dtype, np.integer):
            from napari_grainseg.segmentation.grains import read_as_boundary_mask

            mask = read_as_boundary_mask(data) if kind == "boundaries" else None
            data = mask if mask is not None else data == 0  # else a label image: its boundaries are its 0s
            return [(np.asarray(data, np.uint8), label_layer_kwargs(micrograph, Path(path)), "labels")]
    return [(micrograph.data, micrograph_layer_kwargs(micrograph, Path(path).stem), "image")]


def label_layer_kwargs(micrograph, path: Path) -> dict:
    """Keyword arguments of a reopened boundary layer: name, calibration, role, boundary colours."""
    from napari_grainseg.plugin._boundaries import ROLE_KEY, boundary_colormap

    image = micrograph_layer_kwargs(micrograph, path.stem)
    stem = path.stem.rsplit("_", 1)[0]
    kwargs = {
        "name": f"{stem} boundaries",
        "opacity": 0.9,
        "colormap": boundary_colormap(),
        "metadata": {ROLE_KEY: "boundaries", "grainseg_source": stem, "grainseg_file": str(path)},
    }
    for key in ("scale", "units"):
        if key in image:
            kwargs[key] = image[key]
    if CALIBRATION_KEY in image["metadata"]:
        kwargs["metadata"][CALIBRATION_KEY] = image["metadata"][CALIBRATION_KEY]
    return kwargs
