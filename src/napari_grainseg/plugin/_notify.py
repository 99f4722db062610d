"""Notifications about an image's data, shown once per layer and data.

Reading a micrograph layer can warn (a colour image converted to luminance, extreme values
rescaled). The warning concerns the data, not the click: it is shown the first time a layer's
data is read, and again only when the data changes. The Edges and Segment docks read their image
through :func:`read_image`, so Edges, Net1 and Net2 on one layer warn once between them. The
memory is a checksum and the messages per layer read (a few bytes each), kept for the session.
"""

from __future__ import annotations

import warnings

import numpy as np
from napari.utils.notifications import show_warning

from napari_grainseg.plugin._boundaries import checksum, layer_key
from napari_grainseg.plugin._layers import image_from_layer

#: layer key -> (checksum of the image read, the messages shown for it)
_SHOWN: dict[object, tuple[int, set[str]]] = {}


def read_image(layer) -> np.ndarray:
    """:func:`~napari_grainseg.plugin._layers.image_from_layer` with its warnings shown once per
    layer and data (:func:`show_once`); errors are raised as there."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = image_from_layer(layer)
    show_once(layer, data, [str(w.message) for w in caught])
    return data


def show_once(layer, data: np.ndarray, messages: list[str]) -> None:
    """Show each of ``messages`` about ``layer`` holding ``data`` unless it was shown for that
    layer and the same data before (a changed image warns again)."""
    if not messages:
        return
    key = layer_key(layer)
    crc = checksum(data)
    seen, shown = _SHOWN.get(key, (None, set()))
    if seen != crc:
        shown = set()
    for message in messages:
        if message not in shown:
            show_warning(message)
            shown.add(message)
    _SHOWN[key] = (crc, shown)
