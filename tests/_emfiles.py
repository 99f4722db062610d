"""Test-only writers for minimal Gatan DM3/DM4 and FEI TIA SER/EMI files.

No library writes these formats, so the tests build them byte by byte from the
format descriptions (Gatan DM3/DM4 tag files: C. Boothroyd, "DM3 file format";
TIA series files: Boothroyd, "TIA SER file format") in the subset that
rosettasciio parses: a tag tree ``ImageList/TagGroup0/ImageData`` with
``Calibrations/Dimension``, ``Data``, ``DataType`` and ``Dimensions`` for DM,
and a one-element 2-D series with its data-element calibration for SER.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------- #
# Gatan DigitalMicrograph 3 / 4
# --------------------------------------------------------------------------- #

# numpy dtype -> (DM image DataType, DM tag element type of the Data array)
_DM_IMAGE_TYPES = {
    np.dtype(np.int16): (1, 2),
    np.dtype(np.float32): (2, 6),
    np.dtype(np.uint8): (6, 10),
    np.dtype(np.int32): (7, 3),
    np.dtype(np.uint16): (10, 4),
    np.dtype(np.uint32): (11, 5),
    np.dtype(np.float64): (12, 7),
}
_DM_SIMPLE = {"f4": (6, "<f"), "i4": (3, "<l"), "u4": (5, "<L"), "f8": (7, "<d")}


class _DMWriter:
    """Encodes tag groups and data tags for DM version 3 (32-bit) or 4 (64-bit sizes)."""

    def __init__(self, version: int):
        if version not in (3, 4):
            raise ValueError("DM version must be 3 or 4")
        self.version = version
        self.size_fmt = ">l" if version == 3 else ">q"

    def _n(self, value: int) -> bytes:
        return struct.pack(self.size_fmt, value)

    def _name(self, tag_id: int, name: str) -> bytes:
        raw = name.encode("latin-1")
        return struct.pack(">bh", tag_id, len(raw)) + raw

    def group(self, name: str, entries: list[bytes]) -> bytes:
        # DM4 puts the byte length of the rest of the tag right after its name.
        body = struct.pack(">bb", 0, 1) + self._n(len(entries)) + b"".join(entries)
        size = self._n(len(body)) if self.version == 4 else b""
        return self._name(20, name) + size + body

    def _data(self, name: str, info: list[int], payload: bytes) -> bytes:
        body = b"%%%%" + self._n(len(info)) + b"".join(self._n(i) for i in info) + payload
        size = self._n(len(body)) if self.version == 4 else b""
        return self._name(21, name) + size + body

    def simple(self, name: str, value, kind: str) -> bytes:
        etype, fmt = _DM_SIMPLE[kind]
        return self._data(name, [etype], struct.pack(fmt, value))

    def string(self, name: str, text: str) -> bytes:
        """A DM unicode string: an array of uint16 characters (element type 4)."""
        return self._data(name, [20, 4, len(text)], b"".join(struct.pack("<H", ord(c)) for c in text))

    def array(self, name: str, array: np.ndarray, element_type: int) -> bytes:
        payload = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        return self._data(name, [20, element_type, array.size], payload)

    def file(self, root_entries: list[bytes]) -> bytes:
        root = struct.pack(">bb", 0, 1) + self._n(len(root_entries)) + b"".join(root_entries)
        tail = b"\0" * 8
        header = (
            struct.pack(">l", self.version) + self._n(len(root) + len(tail)) + struct.pack(">l", 1)
        )  # 1 = little-endian data
        return header + root + tail


def write_dm(
    path: str | Path,
    image: np.ndarray,
    scale: float | tuple[float, float] = 1.0,
    units: str | tuple[str, str] = "",
    version: int = 3,
) -> Path:
    """Write a 2-D ``image`` (or an (H, W, 4) uint8 RGBA image) as a minimal DM3 (``version=3``) or DM4 file.

    ``scale`` and ``units`` are the physical size of one pixel, one value for
    both axes or a (y, x) pair, as DigitalMicrograph stores them per dimension.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 4 and image.dtype == np.uint8:
        image = np.ascontiguousarray(image).view("<u4")[..., 0]  # RGBA bytes as one uint32 per pixel
        data_type, element_type = 23, 5  # DM's RGBA_UINT8
    else:
        if image.ndim != 2:
            raise ValueError("write_dm writes 2-D images only")
        data_type, element_type = _DM_IMAGE_TYPES[image.dtype]
    scale_y, scale_x = (scale, scale) if np.isscalar(scale) else scale
    units_y, units_x = (units, units) if isinstance(units, str) else units
    w = _DMWriter(version)

    def dimension(scale_value: float, unit: str) -> bytes:
        return w.group(
            "", [w.simple("Origin", 0.0, "f4"), w.simple("Scale", scale_value, "f4"), w.string("Units", unit)]
        )

    brightness = w.group(
        "Brightness", [w.simple("Origin", 0.0, "f4"), w.simple("Scale", 1.0, "f4"), w.string("Units", "")]
    )
    calibrations = w.group(
        "Calibrations", [brightness, w.group("Dimension", [dimension(scale_x, units_x), dimension(scale_y, units_y)])]
    )
    height, width = image.shape
    image_data = w.group(
        "ImageData",
        [
            calibrations,
            w.array("Data", image.ravel(), element_type),
            w.simple("DataType", data_type, "i4"),
            w.group("Dimensions", [w.simple("", width, "u4"), w.simple("", height, "u4")]),
            w.simple("PixelDepth", image.dtype.itemsize, "i4"),
        ],
    )
    image_entry = w.group("", [image_data, w.group("ImageTags", []), w.string("Name", "test")])
    path = Path(path)
    path.write_bytes(w.file([w.group("ImageList", [image_entry])]))
    return path


# --------------------------------------------------------------------------- #
# FEI / Thermo TIA series (.ser) and its .emi companion
# --------------------------------------------------------------------------- #

_SER_TYPES = {
    np.dtype(np.uint8): 1,
    np.dtype(np.uint16): 2,
    np.dtype(np.uint32): 3,
    np.dtype(np.int8): 4,
    np.dtype(np.int16): 5,
    np.dtype(np.int32): 6,
    np.dtype(np.float32): 7,
    np.dtype(np.float64): 8,
}


def write_ser(
    path: str | Path, image: np.ndarray, pixel_size_m: float | tuple[float, float], version: int = 0x0210
) -> Path:
    """Write a 2-D ``image`` as a one-element TIA series file (``.ser``).

    ``pixel_size_m`` is the calibration delta in metres (TIA's unit), one value
    or a (y, x) pair. ``version`` 0x0210 uses 32-bit offsets, 0x0220 64-bit.
    TIA stores rows bottom-up, so the array is flipped on disk.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError("write_ser writes 2-D images only")
    delta_y, delta_x = (pixel_size_m, pixel_size_m) if np.isscalar(pixel_size_m) else pixel_size_m
    offset_fmt = "<I" if version <= 0x0210 else "<Q"
    offset_size = struct.calcsize(offset_fmt)

    description, units = b"Number", b""
    dimension = (
        struct.pack("<IddII", 1, 0.0, 1.0, 0, len(description)) + description + struct.pack("<I", len(units)) + units
    )
    header_size = 22 + offset_size + 4 + len(dimension)
    offset_array_offset = header_size
    data_offset = offset_array_offset + 2 * offset_size
    height, width = image.shape
    element = struct.pack("<ddIddIHII", 0.0, delta_x, 0, 0.0, delta_y, 0, _SER_TYPES[image.dtype], width, height)
    pixels = np.flipud(image).astype(image.dtype.newbyteorder("<")).tobytes()
    tag_offset = data_offset + len(element) + len(pixels)

    header = struct.pack("<HHHIIII", 0x4949, 0x0197, version, 0x4122, 0x4152, 1, 1)
    header += struct.pack(offset_fmt, offset_array_offset) + struct.pack("<I", 1) + dimension
    offsets = struct.pack(offset_fmt, data_offset) + struct.pack(offset_fmt, tag_offset)
    tag = struct.pack("<HHI", 0x4152, 0, 0)
    path = Path(path)
    path.write_bytes(header + offsets + element + pixels + tag)
    return path


def write_emi(path: str | Path, mode: str = "TEM") -> Path:
    """Write a minimal TIA ``.emi`` file whose ExperimentalDescription gives ``mode``.

    Its series file must be named ``<stem>_1.ser`` next to it. A mode with
    "Diffraction" makes rosettasciio calibrate the image in reciprocal units.
    """
    xml = (
        "<ObjectInfo><ExperimentalDescription><Root>"
        f"<Data><Label>Mode</Label><Value>{mode}</Value><Unit></Unit></Data>"
        "</Root></ExperimentalDescription>"
        "<AcquireInfo><DwellTimePath>x</DwellTimePath></AcquireInfo>"
        "<AcquireDate>Mon Jan 06 10:00:00 2025</AcquireDate></ObjectInfo>"
    )
    path = Path(path)
    path.write_bytes(b"\0" * 16 + xml.encode("utf-8") + b"\0" * 16)
    return path
