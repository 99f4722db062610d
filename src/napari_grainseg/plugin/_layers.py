"""Conversions between core values and napari layer data tuples / layers."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_grainseg.errors import InputError
from napari_grainseg.io.readers import nm_per_unit, square_pixel_size
from napari_grainseg.io.validate import validate_image

#: Layer metadata key: where a layer's pixel size came from, and the size it was (``{"source", "pixel_size_nm"}``).
CALIBRATION_KEY = "grainseg_calibration"


def calibration_record(source: str, pixel_size_nm: float) -> dict[str, Any]:
    """What a layer's :data:`CALIBRATION_KEY` holds."""
    return {"source": source, "pixel_size_nm": float(pixel_size_nm)}


def calibration_source_of(layers, pixel_size_nm: float | None) -> str | None:
    """Where a pixel size came from (a file's calibration, set by the user in napari), for the
    summary: the record of the first of ``layers`` (e.g. the micrograph, then the boundary layer)
    whose record matches the size; "the layer's scale and units in napari" when none does (the
    scale was changed in napari's own layer controls). None without a pixel size."""
    if pixel_size_nm is None:
        return None
    for layer in layers:
        record = layer.metadata.get(CALIBRATION_KEY) if layer is not None else None
        if record and math.isclose(record.get("pixel_size_nm", 0.0), pixel_size_nm, rel_tol=1e-9):
            return str(record["source"])
    return "the layer's scale and units in napari"


def micrograph_layer_kwargs(micrograph, name: str) -> dict[str, Any]:
    """Layer keyword arguments for a micrograph: name, scale and units (nm) when calibrated."""
    kwargs: dict[str, Any] = {
        "name": name,
        "colormap": "gray",
        "metadata": {"grainseg": dict(micrograph.metadata, source=micrograph.source)},
    }
    if micrograph.pixel_size_nm is not None:
        source = micrograph.metadata.get("calibration_source") or "the file's calibration"
        kwargs["metadata"][CALIBRATION_KEY] = calibration_record(source, micrograph.pixel_size_nm)
    if micrograph.pixel_size_yx_nm is not None:
        kwargs["scale"] = tuple(float(v) for v in micrograph.pixel_size_yx_nm)
        kwargs["units"] = ("nm", "nm")
    elif micrograph.pixel_size_nm is not None:
        kwargs["scale"] = (micrograph.pixel_size_nm, micrograph.pixel_size_nm)
        kwargs["units"] = ("nm", "nm")
    return kwargs


def image_from_layer(layer) -> np.ndarray:
    """The 2-D float32 micrograph held by an Image layer, validated.

    Raises :class:`InputError` for a missing layer, a stack, an RGB layer with
    unequal channels is converted with a warning (see :func:`validate_image`).
    """
    if layer is None:
        raise InputError("no image layer selected: open a micrograph first")
    if getattr(layer, "multiscale", False):
        data = np.asarray(layer.data[0])
    else:
        data = np.asarray(layer.data)
    if data.ndim == 3 and not getattr(layer, "rgb", False):
        raise InputError(f"layer '{layer.name}' is a 3-D stack {data.shape}: select a single 2-D micrograph")
    return validate_image(data)


def pixel_size_of(layer) -> float | None:
    """The layer's pixel size in nm when its units say nm (or µm), else None."""
    if layer is None:
        return None
    return pixel_size_from(layer.scale, getattr(layer, "units", None))


def pixel_size_from(scale, units) -> float | None:
    """Pixel size in nm from a layer's ``scale`` and ``units`` (e.g. a writer's ``meta``), else None."""
    if scale is None:
        return None
    scale = tuple(float(v) for v in scale[-2:])
    if not units:
        return None
    try:  # the unit table of the file readers
        factor = nm_per_unit(str(units[-1]))
    except InputError:  # a unit that is not a length: not a calibration
        return None
    if factor is None:
        return None
    return square_pixel_size(scale) * factor  # a non-square pixel: the square one of the same area


def derived_layer_kwargs(source, name: str) -> dict[str, Any]:
    """Keyword arguments that place a derived layer exactly over ``source``."""
    kwargs = {"name": name, "scale": tuple(source.scale[-2:]), "translate": tuple(source.translate[-2:])}
    units = getattr(source, "units", None)
    if units:
        kwargs["units"] = tuple(units[-2:])
    return kwargs


#: The Correct dock's helper layers of a boundary layer: Points that pick grains, Shapes that split them.
HELPER_KINDS = {"points": "picks", "shapes": "split lines"}


def helper_layer_name(boundaries_name: str, kind: str) -> str:
    """The name of a boundary layer's helper layer of ``kind`` ("points" or "shapes")."""
    return f"{boundaries_name} {HELPER_KINDS[kind]}"


def helper_layers_of(viewer, boundaries) -> list:
    """The helper layers (picks, split lines) that belong to the boundary layer ``boundaries``."""
    names = {helper_layer_name(boundaries.name, kind) for kind in HELPER_KINDS}
    return [layer for layer in viewer.layers if layer.name in names]


def keep_read_only(layer) -> None:
    """Make a derived Labels layer read-only for good.

    napari makes a Labels layer editable again each time its data is replaced, so setting
    ``editable = False`` once does not last: a grains layer rebuilt from its boundaries
    could then be painted, and the paint would be lost at the next rebuild without being
    counted as a hand edit. The layer is switched back whenever it becomes editable.
    """

    def back_to_read_only(_event=None) -> None:
        # sets the value while its own event is being sent: napari's emitter allows this (0.9),
        # and clear_history's toggle of a read-only layer relies on it to end read-only
        if layer.editable:
            layer.editable = False

    layer.editable = False
    layer.events.editable.connect(back_to_read_only)


def move_below(viewer, layer, other) -> None:
    """Move ``layer`` just under ``other`` in the layer list (by ``unique_id``: docks get layer proxies)."""
    ids = [lay.unique_id for lay in viewer.layers]
    if layer.unique_id in ids and other.unique_id in ids:
        viewer.layers.move(ids.index(layer.unique_id), ids.index(other.unique_id))  # "before" = under


#: The start of napari's notification when layers in nm and in pixels are open together.
UNITS_WARNING = "Inconsistent units across layers"


def units_consistent(viewer) -> bool:
    """False when the viewer's layers mix units napari cannot convert (nm and pixels)."""
    layers = viewer.layers
    return len(layers) == 0 or layers.extent.units is not None


@contextlib.contextmanager
def adding_layers(viewer):
    """Add layers made from images already in ``viewer`` without napari's repeated units notification.

    With a calibrated (nm) and an uncalibrated (pixel) image open together,
    napari notifies "Inconsistent units across layers" again for every layer
    added (napari 0.9: each insertion re-checks all layers). A layer made from
    an image carries that image's scale and units (:func:`derived_layer_kwargs`),
    so it never changes whether the units agree: the notification napari gave
    when the second image was opened stays the only one. Units that agree
    before are left alone: a new disagreement is news and is shown.
    """
    from napari.utils.notifications import notification_manager

    if units_consistent(viewer) or "dispatch" in vars(notification_manager):
        yield
        return
    dispatch = notification_manager.dispatch

    def without_units_warning(notification):
        if not str(getattr(notification, "message", "")).startswith(UNITS_WARNING):
            dispatch(notification)

    notification_manager.dispatch = without_units_warning
    try:
        yield
    finally:
        del notification_manager.dispatch


def image_folder(layer) -> Path:
    """Where exports of ``layer`` go by default: the folder of the file it was read from, else the
    current working directory (never the home directory, never the installed package's data)."""
    import napari_grainseg

    package = Path(napari_grainseg.__file__).resolve().parent
    candidates = []
    if layer is not None:
        candidates.append(getattr(getattr(layer, "source", None), "path", None))
        candidates.append((layer.metadata.get("grainseg") or {}).get("source"))
        candidates.append(layer.metadata.get("grainseg_file"))  # an export reopened by our reader
    for candidate in candidates:
        if not candidate or candidate == "array":
            continue
        folder = Path(candidate).resolve().parent
        if folder.is_dir() and os.access(folder, os.W_OK) and package not in (folder, *folder.parents):
            return folder
    return Path.cwd()
