"""Read micrographs and their pixel-size calibration from common microscopy formats.

:func:`read_micrograph` is the one entry point: it dispatches on the file
extension, reads the pixels and whatever calibration the file carries, sends
the array through :func:`~napari_grainseg.io.validate.validate_image` and returns a
:class:`Micrograph`. Grain sizes in nanometres are only as good as this pixel
size, so every reader says where its calibration came from
(``metadata["calibration_source"]``) and refuses what it cannot trust: screen
default resolutions are ignored, reciprocal-space (diffraction) calibrations
are rejected.

Supported formats
-----------------
- TIFF (8/16/32-bit integer, float): FEI/Thermo and Zeiss SEM tags, ImageJ
  ``unit`` + X/YResolution, or the TIFF ResolutionUnit (centimetre, millimetre,
  micrometre; inch unless it is a 72/96/300 dpi screen default).
- PNG, JPEG, BMP: pixels only, never calibrated.
- MRC: ``voxel_size`` (Ångström); single images only.
- Gatan DM3/DM4 and FEI TIA SER/EMI through the optional GPL-3 package
  rosettasciio (``pip install napari-grainseg[gpl-readers]``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from napari_grainseg.errors import InputError, one_line
from napari_grainseg.io.validate import validate_image

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "PIXEL_SIZE_RANGE_NM",
    "TYPICAL_PIXEL_SIZE_RANGE_NM",
    "Micrograph",
    "check_pixel_count",
    "check_single_image",
    "pillow_size_unchecked",
    "ImplausibleCalibrationWarning",
    "NonSquarePixelWarning",
    "nm_per_unit",
    "read_micrograph",
    "read_array",
    "tiff_pixel_size",
    "ARRAY_EXTENSIONS",
    "validate_pixel_size",
]

_TIFF = (".tif", ".tiff")
_RASTER = (".png", ".jpg", ".jpeg", ".bmp")
_MRC = (".mrc",)
_DM = (".dm3", ".dm4")
_TIA = (".ser", ".emi")

#: File extensions :func:`read_micrograph` accepts (lower case, with the dot).
SUPPORTED_EXTENSIONS: tuple[str, ...] = _TIFF + _RASTER + _MRC + _DM + _TIA

#: TIFF resolutions (dots per inch, whatever the ResolutionUnit) that are
#: screen/printer defaults written by image editors, not calibrations.
SCREEN_DEFAULT_DPI = (72.0, 96.0, 300.0)
#: Below this many dots per inch a TIFF resolution in inches is a print setting of an image
#: editor (150, 600, 1200 dpi...), not a calibration: its pixels would be over 2.54 um wide.
PRINT_DPI_LIMIT = 10_000.0

# Relative difference above which the y and x pixel sizes count as different.
_SQUARE_RTOL = 1e-4

#: Plausible pixel sizes in nm (1 pm to 1 mm per pixel). A size given by the user outside
#: this range is an error; a file's calibration outside it is ignored with a warning
#: (the image is read as uncalibrated).
PIXEL_SIZE_RANGE_NM: tuple[float, float] = (1e-3, 1e6)
#: Pixel sizes of real micrographs of grains (nm): from atomic-resolution TEM (0.01 nm) to
#: low-magnification optical images (10 µm). A size typed outside it is accepted with a note:
#: most often it was typed in another unit.
TYPICAL_PIXEL_SIZE_RANGE_NM: tuple[float, float] = (1e-2, 1e4)

#: Largest image (height x width) read by default: 2.5e8 px, e.g. 15800², about 1 GB as
#: float32 and several GB at the segmentation's peak. Checked from the file's header
#: before decoding where the format allows (TIFF, PNG, JPEG, BMP, MRC); raise it with
#: ``max_pixels`` (``--max-pixels``), 0 = no limit.
DEFAULT_MAX_PIXELS = 250_000_000

_GPL_EXTRA_HINT = "pip install 'napari-grainseg[gpl-readers]'"


class NonSquarePixelWarning(UserWarning):
    """The file's pixels are not square; the mean size is used for 1-D quantities."""


class ImplausibleCalibrationWarning(UserWarning):
    """The file's pixel size is outside :data:`PIXEL_SIZE_RANGE_NM`; the image is read as uncalibrated."""


# --------------------------------------------------------------------------- #
# Pixel size and units
# --------------------------------------------------------------------------- #


def unusual_pixel_size_note(nm: float) -> str | None:
    """A note on a pixel size typed by the user outside :data:`TYPICAL_PIXEL_SIZE_RANGE_NM`
    (None inside it): the likely unit slip, since every size and G follow from it.

    Examples
    --------
    >>> unusual_pixel_size_note(2.0) is None
    True
    >>> unusual_pixel_size_note(0.002)
    'pixel size 0.002 nm is finer than atomic resolution: if it was in µm, give 2 (nm)'
    """
    lo, hi = TYPICAL_PIXEL_SIZE_RANGE_NM
    if nm < lo:
        return f"pixel size {nm:g} nm is finer than atomic resolution: if it was in µm, give {nm * 1000:g} (nm)"
    if nm > hi:
        return (
            f"pixel size {nm:g} nm is coarser than a micrograph of grains: if it was in pm, give {nm / 1000:g} "
            f"(nm); if in Å, {nm / 10:g}"
        )
    return None


def validate_pixel_size(value: Any) -> float:
    """Return ``value`` as a float pixel size in nm, or raise :class:`InputError`.

    Zero, negative, NaN, infinite or non-numeric values are rejected, since
    every physical grain size is this number times a pixel count.

    Examples
    --------
    >>> validate_pixel_size("0.5")
    0.5
    >>> validate_pixel_size(0)
    Traceback (most recent call last):
    ...
    napari_grainseg.errors.InputError: pixel size must be a positive finite number of nm, got 0
    """
    if isinstance(value, bool):
        raise InputError(f"pixel size must be a positive finite number of nm, got {value!r}")
    if isinstance(value, str) and re.fullmatch(
        r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*[^\W\d_]+\s*", value
    ):  # "2nm"
        raise InputError(f"give the pixel size as a number of nm, without a unit (e.g. 2), got {value!r}")
    try:
        size = float(value)
    except (TypeError, ValueError):
        raise InputError(f"pixel size must be a positive finite number of nm, got {value!r}") from None
    if not math.isfinite(size) or size <= 0:
        raise InputError(f"pixel size must be a positive finite number of nm, got {value!r}")
    lo, hi = PIXEL_SIZE_RANGE_NM
    if not lo <= size <= hi:
        raise InputError(
            f"pixel size {size:g} nm is outside the plausible range {lo:g} to {hi:g} nm (give it in nm per pixel)"
        )
    return size


def check_pixel_count(shape, max_pixels: int | None, source: str = "the image") -> None:
    """Refuse an image larger than ``max_pixels`` (None: :data:`DEFAULT_MAX_PIXELS`; 0: no limit)."""
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    dims = [int(n) for n in shape]
    if len(dims) >= 2:
        dims = dims[-3:-1] if len(dims) >= 3 and dims[-1] in (3, 4) else dims[-2:]
    n = math.prod(dims)
    if limit > 0 and n > limit:
        shown = "x".join(str(d) for d in dims)
        raise InputError(
            f"{source} is {shown} = {n:.3g} pixels, more than the limit of {limit:.3g} "
            "(raise it with --max-pixels N, or crop the image)"
        )


_NM_PER_UNIT = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "nanometers": 1.0,
    "nanometres": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "micrometers": 1e3,
    "micrometres": 1e3,
    "å": 0.1,
    "a": 0.1,
    "angstrom": 0.1,
    "angstroms": 0.1,
    "ångström": 0.1,
    "pm": 1e-3,
    "picometer": 1e-3,
    "picometre": 1e-3,
    "mm": 1e6,
    "millimeter": 1e6,
    "millimetre": 1e6,
    "cm": 1e7,
    "centimeter": 1e7,
    "centimetre": 1e7,
    "m": 1e9,
    "meter": 1e9,
    "metre": 1e9,
    "meters": 1e9,
    "metres": 1e9,
    "in": 2.54e7,
    "inch": 2.54e7,
    "inches": 2.54e7,
}
_PIXEL_UNITS = {"", "pixel", "pixels", "px", "pix", "<undefined>", "undefined", "none"}
_RECIPROCAL = re.compile(r"^1\s*/|\^\s*-\s*1$|-1$|⁻¹$|^per\s|^recip")


def check_single_image(shape, axes: str, source: str = "the image") -> None:
    """Refuse, from a file's header, anything but one 2-D image (gray, RGB or RGBA samples).

    ``axes`` are tifffile's letters (``S`` = colour samples); axes of length 1 do not count.
    A movie or tilt series is refused before its frames are decoded.
    """
    kept = [(int(n), a) for n, a in zip(shape, axes) if int(n) != 1]
    planes = [n for n, a in kept if a != "S"]
    samples = [n for n, a in kept if a == "S"]
    if len(planes) > 2 or (len(planes) == 2 and samples and samples != [3] and samples != [4]) or len(samples) > 1:
        raise InputError(
            f"expected a 2-D micrograph, got a {len(kept)}-D stack of shape {tuple(int(n) for n in shape)} "
            f"in {source}; extract one frame first"
        )


def _clean_unit(unit: str) -> str:
    """Decode ImageJ's ``\\u00B5`` escapes and normalise spaces and case."""
    unit = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), str(unit))
    # ANGSTROM SIGN -> A WITH RING; GREEK MU -> MICRO SIGN
    return unit.strip().replace("\u212b", "å").replace("\u03bc", "µ").lower()


def nm_per_unit(unit: str) -> float | None:
    """Nanometres in one ``unit`` of length, or None for pixel / empty units.

    Accepts nm, µm (also ``um``, ``micron``, ImageJ's ``\\u00B5m``), Å (``A``),
    pm, mm, cm, m, inch. Reciprocal units (``1/nm``, ``nm^-1``...) mark a
    diffraction pattern and raise :class:`InputError`; unknown units raise too.

    Examples
    --------
    >>> nm_per_unit("µm"), nm_per_unit("Å"), nm_per_unit("pixel")
    (1000.0, 0.1, None)
    """
    cleaned = _clean_unit(unit)
    if cleaned in _PIXEL_UNITS:
        return None
    if _RECIPROCAL.search(cleaned):
        raise InputError(
            f"reciprocal-space calibration (unit {unit!r}): this is a diffraction pattern, not a real-space micrograph"
        )
    factor = _NM_PER_UNIT.get(cleaned)
    if factor is None:
        raise InputError(f"unknown length unit {unit!r} in the file's calibration")
    return factor


# --------------------------------------------------------------------------- #
# Micrograph
# --------------------------------------------------------------------------- #


@dataclasses.dataclass(frozen=True, eq=False)
class Micrograph:
    """A 2-D grayscale micrograph with its pixel size.

    Attributes
    ----------
    data
        2-D float32, C-contiguous pixel values (original intensity scale).
    pixel_size_nm
        Pixel size in nm, or None when the file is uncalibrated. For
        non-square pixels this is :func:`square_pixel_size` of the y and x sizes.
    pixel_size_yx_nm
        (y, x) pixel sizes in nm, or None.
    source
        File path or a description of where the pixels came from.
    metadata
        ``format``, ``reader``, ``original_dtype``, ``original_shape``, ``unit``
        (as found in the file), ``calibration_source``, ``non_square_pixels``,
        ``warnings`` (messages also issued as Python warnings) and
        format-specific extras.
    """

    data: np.ndarray = dataclasses.field(repr=False)
    pixel_size_nm: float | None = None
    pixel_size_yx_nm: tuple[float, float] | None = None
    source: str = "array"
    metadata: dict = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        data = np.ascontiguousarray(self.data, dtype=np.float32)
        if data.ndim != 2:
            raise InputError(f"a micrograph must be 2-D, got shape {data.shape}")
        object.__setattr__(self, "data", data)
        size, size_yx = self.pixel_size_nm, self.pixel_size_yx_nm
        if size_yx is not None:
            size_yx = (validate_pixel_size(size_yx[0]), validate_pixel_size(size_yx[1]))
            size = square_pixel_size(size_yx) if size is None else validate_pixel_size(size)
        elif size is not None:
            size = validate_pixel_size(size)
            size_yx = (size, size)
        object.__setattr__(self, "pixel_size_nm", size)
        object.__setattr__(self, "pixel_size_yx_nm", size_yx)

    @classmethod
    def from_array(cls, array: np.ndarray, pixel_size_nm: float | None = None, source: str = "array") -> Micrograph:
        """Validate any 2-D gray or RGB array (see ``validate_image``) into a Micrograph."""
        original = np.asarray(array)
        data = validate_image(original)
        metadata = _base_metadata("array", "numpy", original)
        if pixel_size_nm is not None:
            metadata["calibration_source"] = "given"
        return cls(data, pixel_size_nm, None, source, metadata)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.data.shape

    @property
    def is_calibrated(self) -> bool:
        """True when the pixel size is known."""
        return self.pixel_size_nm is not None

    def with_pixel_size(self, nm: float) -> Micrograph:
        """Return a copy with square pixels of ``nm`` nanometres (overrides the file's).

        Raises :class:`InputError` for zero, negative, NaN or infinite sizes.
        """
        size = validate_pixel_size(nm)
        metadata = {
            **self.metadata,
            "calibration_source": "set by user",
            "non_square_pixels": False,
            "warnings": list(self.metadata.get("warnings", [])),
        }
        if self.pixel_size_nm is not None:
            metadata["file_pixel_size_yx_nm"] = self.pixel_size_yx_nm
        return dataclasses.replace(self, pixel_size_nm=size, pixel_size_yx_nm=(size, size), metadata=metadata)

    def __repr__(self) -> str:
        return f"Micrograph(shape={self.shape}, pixel_size_nm={self.pixel_size_nm}, source={self.source!r})"


# --------------------------------------------------------------------------- #
# Format readers: each returns the raw array, (y, x) pixel size in nm or None,
# and metadata. read_micrograph does the checks common to all formats.
# --------------------------------------------------------------------------- #


class _Raw(NamedTuple):
    array: np.ndarray
    pixel_size_yx_nm: tuple[float, float] | None
    metadata: dict


def _base_metadata(fmt: str, reader: str, array: np.ndarray) -> dict:
    return {
        "format": fmt,
        "reader": reader,
        "original_dtype": str(array.dtype),
        "original_shape": tuple(int(n) for n in array.shape),
        "unit": None,
        "calibration_source": None,
        "non_square_pixels": False,
        "warnings": [],
    }


def _yx_from_units(scale_yx, units_yx, metadata: dict) -> tuple[float, float] | None:
    """Pixel size in nm from per-axis scales and unit names, or None if uncalibrated.

    Reciprocal units raise :class:`InputError`; an unknown unit leaves the image
    uncalibrated with a message in ``metadata["warnings"]`` rather than refusing it.
    """
    factors = []
    for unit in units_yx:
        try:
            factors.append(nm_per_unit(unit))
        except InputError as exc:
            if "reciprocal" in str(exc):
                raise
            message = f"{exc}: image left uncalibrated"
            metadata["warnings"].append(message)
            warnings.warn(message, stacklevel=4)
            return None
    if factors[0] is None or factors[1] is None:
        return None
    sizes = tuple(float(s) * f for s, f in zip(scale_yx, factors))
    if not all(math.isfinite(s) and s > 0 for s in sizes):
        return None
    return sizes


def _tiff_calibration(tif, page, metadata: dict) -> tuple[tuple[float, float] | None, str | None, str]:
    """(y, x) pixel size in nm, unit as found and a note on its source, for a TIFF."""
    fei = tif.fei_metadata
    if fei:
        for section in ("Scan", "EScan", "IScan"):
            values = fei.get(section) or {}
            width, height = values.get("PixelWidth"), values.get("PixelHeight", None)
            if isinstance(width, int | float) and width > 0:
                height = height if isinstance(height, int | float) and height > 0 else width
                return (height * 1e9, width * 1e9), "m", f"FEI metadata [{section}] PixelWidth"
    sem = tif.sem_metadata
    if sem:
        for key in ("ap_image_pixel_size", "ap_pixel_size"):
            entry = sem.get(key)
            if entry and len(entry) == 3 and isinstance(entry[1], int | float) and entry[1] > 0:
                factor = None
                with contextlib.suppress(InputError):
                    factor = nm_per_unit(entry[2])
                if factor is not None:
                    size = entry[1] * factor
                    return (size, size), entry[2], f"Zeiss SEM metadata {key}"

    resolution = page.resolution  # pixels per unit, (x, y)
    if not all(r and math.isfinite(r) and r > 0 for r in resolution):
        return None, None, "no usable X/YResolution"
    xres, yres = (float(r) for r in resolution)

    imagej = tif.imagej_metadata or {}
    if imagej.get("unit"):
        unit_x = imagej["unit"]
        unit_y = imagej.get("yunit", unit_x)
        sizes = _yx_from_units((1 / yres, 1 / xres), (unit_y, unit_x), metadata)
        return (
            sizes,
            _clean_unit(unit_x),
            ("ImageJ unit and X/YResolution" if sizes else "ImageJ unit is pixels: uncalibrated"),
        )

    import tifffile

    unit = tifffile.RESUNIT(page.resolutionunit)
    nm = {
        tifffile.RESUNIT.CENTIMETER: 1e7,
        tifffile.RESUNIT.MILLIMETER: 1e6,
        tifffile.RESUNIT.MICROMETER: 1e3,
        tifffile.RESUNIT.INCH: 2.54e7,
    }.get(unit)
    if nm is None:
        return None, None, "TIFF ResolutionUnit NONE: uncalibrated"
    dpi = [r * 2.54e7 / nm for r in (xres, yres)]
    if all(any(abs(d - default) < 1e-3 * default for default in SCREEN_DEFAULT_DPI) for d in dpi):
        return None, unit.name.lower(), (f"{dpi[0]:.0f} dpi is a screen default, not a calibration: ignored")
    if unit == tifffile.RESUNIT.INCH and min(dpi) < PRINT_DPI_LIMIT:
        return None, "inch", (f"{dpi[0]:.0f} dpi is a print setting, not a calibration: ignored (give --pixel-size)")
    return (nm / yres, nm / xres), unit.name.lower(), f"TIFF ResolutionUnit {unit.name}"


def _read_tiff(path: Path, max_pixels: int | None = None) -> _Raw:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        page = tif.pages.first  # a TiffPage with all tags (series pages may be frames)
        check_pixel_count((page.imagelength, page.imagewidth), max_pixels, path.name)  # before decoding
        check_single_image(series.shape, series.axes, path.name)  # a movie is refused undecoded
        array = series.asarray()
        axes = series.axes
        metadata = _base_metadata("TIFF", "tifffile", array)
        metadata["tiff_axes"] = axes
        if len(tif.series) > 1:
            metadata["n_series"] = len(tif.series)
        size_yx, unit, note = _tiff_calibration(tif, page, metadata)
        photometric = tifffile.PHOTOMETRIC(page.photometric)
        colormap = page.colormap if photometric == tifffile.PHOTOMETRIC.PALETTE else None

    if array.ndim == len(axes):  # length-1 axes (and their letters) out first: QSYX -> SYX
        kept = [i for i, n in enumerate(array.shape) if n != 1][-3:] if array.ndim > 2 else []
        if kept and len(kept) < array.ndim:
            axes = "".join(axes[i] for i in kept)
            array = array.reshape([array.shape[i] for i in kept])
    if array.ndim == 3 and axes.startswith("S") and array.shape[0] in (3, 4):
        array = np.moveaxis(array, 0, -1)  # planar RGB -> (H, W, C)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if colormap is not None:
        from tifffile.tifffile import apply_colormap  # not at tifffile's top level in 2026 releases

        array = apply_colormap(array, colormap)
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE:
        array = _invert(array)
        metadata["inverted_miniswhite"] = True
    metadata["unit"] = unit
    metadata["calibration_source"] = note
    return _Raw(array, size_yx, metadata)


def _invert(array: np.ndarray) -> np.ndarray:
    """Invert a MINISWHITE image so that dark stays dark (1-bit images included)."""
    if array.dtype == bool:
        return ~array
    if np.issubdtype(array.dtype, np.integer):
        return np.iinfo(array.dtype).max - array
    return array.max() + array.min() - array


@contextlib.contextmanager
def pillow_size_unchecked():
    """Pillow without its own decompression-bomb check for the block (``max_pixels`` applies instead).

    Pillow's global setting is restored afterwards, so other users of Pillow keep their protection.
    """
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield Image
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _raster_header_shape(path: Path) -> tuple[int, int] | None:
    """(height, width) from a PNG/JPEG/BMP header without decoding the pixels (Pillow), or None."""
    try:
        with pillow_size_unchecked() as Image, Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception:  # unreadable header: the decoder reports it
        return None


def _read_raster(path: Path, max_pixels: int | None = None) -> _Raw:
    import cv2

    shape = _raster_header_shape(path)
    if shape is not None:
        check_pixel_count(shape, max_pixels, path.name)  # before decoding: a small file may decode huge

    # imdecode from bytes: works with non-ASCII paths, where cv2.imread fails.
    buffer = np.fromfile(path, dtype=np.uint8)
    array = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
    if array is None:
        raise InputError(f"cannot read {path}: not a valid {path.suffix[1:].upper()} image (corrupt or truncated?)")
    if path.suffix.lower() in (".jpg", ".jpeg") and b"\xff\xd9" not in buffer[-4096:].tobytes():
        # libjpeg silently fills a cut-off file with gray; a JPEG ends with the EOI marker.
        raise InputError(f"cannot read {path}: JPEG has no end-of-image marker (truncated?)")
    if array.ndim == 3 and array.shape[-1] == 3:
        array = array[..., ::-1]  # BGR -> RGB
    elif array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., [2, 1, 0, 3]]  # BGRA -> RGBA
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), path.suffix[1:].upper())
    metadata = _base_metadata(fmt, "cv2", array)
    metadata["calibration_source"] = f"{fmt} files carry no calibration"
    return _Raw(array, None, metadata)


def _read_mrc(path: Path, max_pixels: int | None = None) -> _Raw:
    import mrcfile

    with mrcfile.open(path, mode="r", permissive=False, header_only=True) as mrc:
        check_pixel_count((int(mrc.header.ny), int(mrc.header.nx)), max_pixels, path.name)
        nz = int(mrc.header.nz)
        if nz > 1:  # refused from the header: a tilt series is not read in full to say so
            raise InputError(
                f"{path.name} holds a stack of {nz} images (shape ({nz}, {int(mrc.header.ny)}, "
                f"{int(mrc.header.nx)})); extract one image first"
            )
    with mrcfile.open(path, mode="r", permissive=False) as mrc:
        array = np.array(mrc.data)
        voxel = mrc.voxel_size
        size_x, size_y = float(voxel.x), float(voxel.y)
    metadata = _base_metadata("MRC", "mrcfile", array)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise InputError(
            f"{path.name} holds a stack of {array.shape[0]} images (shape {array.shape}); extract one image first"
        )
    metadata["unit"] = "Å"
    if size_x > 0 and size_y > 0 and math.isfinite(size_x) and math.isfinite(size_y):
        metadata["calibration_source"] = "MRC voxel size (Å)"
        return _Raw(array, (size_y / 10, size_x / 10), metadata)
    metadata["calibration_source"] = "MRC voxel size is 0: uncalibrated"
    return _Raw(array, None, metadata)


def _import_rsciio(module: str, fmt: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(
            f"reading {fmt} files needs the optional GPL-3 package rosettasciio: {_GPL_EXTRA_HINT}"
        ) from None


def _read_with_rsciio(path: Path, module: str, fmt: str, max_pixels: int | None = None) -> _Raw:
    reader = _import_rsciio(module, fmt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:  # shapes first, pixels only if it is one 2-D image
            signals = reader.file_reader(str(path), lazy=True)
        except ValueError as exc:
            if "lazy" not in str(exc).lower():
                raise
            signals = reader.file_reader(str(path), lazy=False)  # DM colour images: never lazy, always 2-D
        if not signals:
            raise InputError(f"no image found in {path.name}")
        signal = signals[0]
        data = signal["data"]
        check_pixel_count(np.shape(data), max_pixels, path.name)
        if not getattr(data.dtype, "names", None) and len(np.shape(data)) != 2:
            raise InputError(
                f"{path.name} holds a {len(np.shape(data))}-D dataset of shape {tuple(np.shape(data))}, "
                "not a single 2-D image (stack, spectrum or line scan?)"
            )
        # in this thread: dask's default pool would use every core beside a batch's workers
        array = np.asarray(data.compute(scheduler="synchronous") if hasattr(data, "compute") else data)
    metadata = _base_metadata(fmt, f"rosettasciio ({module})", array)
    metadata["reader_messages"] = [str(w.message) for w in caught]
    if len(signals) > 1:
        metadata["n_images_in_file"] = len(signals)
    if array.dtype.names:  # DM RGB(A): structured (R, G, B, A) bytes
        array = np.stack([array[c] for c in ("R", "G", "B")], axis=-1)
    elif array.ndim != 2:
        raise InputError(
            f"{path.name} holds a {array.ndim}-D dataset of shape {array.shape}, "
            "not a single 2-D image (stack, spectrum or line scan?)"
        )
    axes = signal["axes"][-2:]
    if len(axes) != 2:
        metadata["calibration_source"] = "no axes calibration"
        return _Raw(array, None, metadata)
    units = tuple(str(a.get("units") or "") for a in axes)
    scales = tuple(float(a.get("scale", 1.0)) for a in axes)
    metadata["unit"] = units[1]
    size_yx = _yx_from_units(scales, units, metadata)
    metadata["calibration_source"] = "axes scale and units" if size_yx else "axes are in pixels: uncalibrated"
    return _Raw(array, size_yx, metadata)


def _reader_for(suffix: str):
    if suffix in _TIFF:
        return _read_tiff
    if suffix in _RASTER:
        return _read_raster
    if suffix in _MRC:
        return _read_mrc
    if suffix in _DM:
        return lambda p, m=None: _read_with_rsciio(p, "rsciio.digitalmicrograph", suffix[1:].upper(), m)
    if suffix in _TIA:
        return lambda p, m=None: _read_with_rsciio(p, "rsciio.tia", "TIA " + suffix[1:].upper(), m)
    raise InputError(
        f"unsupported file type {suffix or '(no extension)'!r}; supported: " + ", ".join(SUPPORTED_EXTENSIONS)
    )


def _plausible(size_yx) -> bool:
    """Whether both pixel sizes (nm) of a file's calibration lie in :data:`PIXEL_SIZE_RANGE_NM`."""
    lo, hi = PIXEL_SIZE_RANGE_NM
    return all(math.isfinite(float(v)) and lo <= float(v) <= hi for v in size_yx)


def read_micrograph(path: str | os.PathLike, *, max_pixels: int | None = None) -> Micrograph:
    """Read a 2-D micrograph and its pixel size from a file.

    Parameters
    ----------
    path
        A file with one of :data:`SUPPORTED_EXTENSIONS` (case-insensitive).
    max_pixels
        Largest accepted image (height x width); None: :data:`DEFAULT_MAX_PIXELS`,
        0: no limit. Checked from the header before decoding where possible.

    Returns
    -------
    Micrograph
        float32 pixels, pixel size in nm (None if the file has no trustworthy
        calibration) and metadata saying where the calibration came from.

    Raises
    ------
    InputError
        Missing file, directory, unsupported extension, unreadable or corrupt
        file, stacks, diffraction patterns (reciprocal units), constant, tiny or
        NaN-containing images, images over ``max_pixels``, or rosettasciio
        missing for DM3/DM4/SER/EMI.

    Warns
    -----
    ColourImageWarning
        RGB image with unequal channels, converted to luminance.
    NonSquarePixelWarning
        Pixel height and width differ.

    Examples
    --------
    >>> from napari_grainseg.io.samples import interconnect_tem_path
    >>> m = read_micrograph(interconnect_tem_path())
    >>> m.shape, m.pixel_size_nm
    ((154, 1166), None)
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory; give an image file (for a folder of micrographs: grainseg batch)")
    suffix = path.suffix.lower()
    read = _reader_for(suffix)
    if path.stat().st_size == 0:
        raise InputError(f"cannot read {path}: the file is empty")
    try:
        raw = read(path, max_pixels)
        check_pixel_count(np.shape(raw.array), max_pixels, path.name)
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"cannot read {path}: not enough memory") from None
    except Exception as exc:  # any failure of a third-party reader means a bad file
        raise InputError(
            f"cannot read {path}: {one_line(exc, 200)} (corrupt, truncated or not really a {suffix[1:].upper()} file?)"
        ) from exc

    metadata = raw.metadata
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = validate_image(raw.array)
    except InputError as exc:  # constant, too small...: say which file, among several inputs
        raise InputError(f"{path.name}: {exc}") from None
    for warning in caught:
        metadata["warnings"].append(str(warning.message))
        warnings.warn(warning.category(f"{path.name}: {warning.message}"), stacklevel=2)

    size_yx = raw.pixel_size_yx_nm
    size = None
    lo, hi = PIXEL_SIZE_RANGE_NM
    if size_yx is not None and not _plausible(size_yx):
        message = (
            f"the calibration of {path.name} ({float(size_yx[0]):.6g} x {float(size_yx[1]):.6g} nm "
            f"per pixel, y x) is outside the plausible range {lo:g} to {hi:g} nm: ignored, the image "
            "is read as uncalibrated (give --pixel-size)"
        )
        metadata["warnings"].append(message)
        metadata["ignored_calibration_yx_nm"] = tuple(float(v) for v in size_yx)
        metadata["calibration_source"] = f"{metadata.get('calibration_source')} (implausible: ignored)"
        warnings.warn(message, ImplausibleCalibrationWarning, stacklevel=2)
        size_yx = None
    if size_yx is not None:
        size_yx = (float(size_yx[0]), float(size_yx[1]))
        size = square_pixel_size(size_yx)
        if abs(size_yx[0] - size_yx[1]) > _SQUARE_RTOL * size:
            metadata["non_square_pixels"] = True
            message = (
                f"non-square pixels ({size_yx[0]:.6g} x {size_yx[1]:.6g} nm, y x) in "
                f"{path.name}; measured with square pixels of {size:.6g} nm (the same pixel area)"
            )
            metadata["warnings"].append(message)
            warnings.warn(message, NonSquarePixelWarning, stacklevel=2)
        else:
            size_yx = (size, size)
    with contextlib.suppress(Exception):
        metadata["file_size_bytes"] = path.stat().st_size
    return Micrograph(data, size, size_yx, str(path), metadata)


#: File types :func:`read_array` reads (label images and masks: lossless formats only).
ARRAY_EXTENSIONS = (".tif", ".tiff", ".png", ".bmp", ".npy")


def read_array(path: str | os.PathLike, what: str, max_pixels: int | None = None, *, mask: bool = False) -> np.ndarray:
    """Read a label image or mask (``what`` names it in errors) from TIFF, PNG, BMP or NPY, as stored.

    No intensity scaling and the dtype kept, so label ids survive; leading and trailing axes of
    length 1 are dropped. ``max_pixels``: the largest image accepted, checked from the header
    before decoding (None: :data:`DEFAULT_MAX_PIXELS`; 0: no limit). Pickled ``.npy`` files are
    refused (loading them would run code). With ``mask`` (lines or regions painted in an editor),
    a palette PNG gives its colours, not its palette indices, a grey+alpha PNG its grey and an RGB(A)
    image its brightest colour channel.
    Every failure is an :class:`InputError` naming the file.

    Examples
    --------
    >>> labels = read_array("cu_grains.tif", "label")  # doctest: +SKIP
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory; give a {what} image file")
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in ARRAY_EXTENSIONS:
        raise InputError(f"unsupported {what} file type {suffix!r}: use {', '.join(ARRAY_EXTENSIONS)}")
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                check_pixel_count((page.imagelength, page.imagewidth), max_pixels, path.name)
                data = tif.asarray()
        elif suffix == ".npy":
            header = np.load(path, mmap_mode="r", allow_pickle=False)
            check_pixel_count(header.shape, max_pixels, path.name)
            del header
            data = np.load(path, allow_pickle=False)
        else:
            with pillow_size_unchecked() as Image, Image.open(path) as im:  # our limit, from the header
                check_pixel_count((im.size[1], im.size[0]), max_pixels, path.name)
                if mask and im.mode in ("P", "PA"):  # indices would say nothing about the painted colour
                    data = np.asarray(im.convert("RGBA"))
                elif mask and im.mode == "LA":
                    data = np.asarray(im)[..., 0]
                else:
                    data = np.asarray(im)
    except InputError:
        raise
    except ValueError as exc:
        text = one_line(exc, 200)
        if "pickle" in text.lower():
            raise InputError(
                f"cannot read {what} image {path}: it holds Python objects (pickled), not numbers; refused"
            ) from None
        raise InputError(f"cannot read {what} image {path}: {text}") from None
    except Exception as exc:  # corrupt or foreign file
        raise InputError(f"cannot read {what} image {path}: {one_line(exc, 200)}") from None
    data = np.squeeze(data)
    if mask and data.ndim == 3 and data.shape[-1] in (3, 4):  # painted in colour: its brightest channel
        data = data[..., :3].max(axis=-1)
    return data


def square_pixel_size(size_yx) -> float:
    """The square pixel of the same area as a (y, x) pixel: the geometric mean of the two sizes.

    Areas, and the ECDs and ASTM numbers computed from them, stay exact; the arithmetic mean
    overstated a 2 x 4 nm pixel's area by 12.5 %.

    Examples
    --------
    >>> square_pixel_size((2.0, 8.0))
    4.0
    >>> square_pixel_size((-2.0, 2.0))  # a flipped axis (a negative napari scale): its size
    2.0
    """
    return math.sqrt(abs(float(size_yx[0]) * float(size_yx[1])))


def tiff_pixel_size(path: str | os.PathLike) -> float | None:
    """The pixel size in nm a TIFF's tags give (:func:`square_pixel_size`), read from its header only.

    None when the file has no trustworthy calibration (the rules of :func:`read_micrograph`:
    screen and print dpi, pixels, implausible values) or is not a readable TIFF. Used where only
    the calibration of a label image is wanted, without decoding its pixels a second time.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            size_yx, _, _ = _tiff_calibration(tif, tif.pages.first, {"warnings": []})
    except Exception:  # not a TIFF, or tags it cannot parse: no calibration
        return None
    if size_yx is None or not _plausible(size_yx):
        return None
    return square_pixel_size(size_yx)
