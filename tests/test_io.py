"""Tests for napari_grainseg.io.readers: every format reads back its pixels and its pixel size."""

from __future__ import annotations

import contextlib
import importlib.util
import math
import sys
import warnings

import cv2
import mrcfile
import numpy as np
import pytest
import tifffile
from _emfiles import write_dm, write_emi, write_ser  # noqa: E402  (tests/ is on sys.path)

from napari_grainseg.errors import InputError
from napari_grainseg.io.readers import (
    SUPPORTED_EXTENSIONS,
    Micrograph,
    NonSquarePixelWarning,
    nm_per_unit,
    read_micrograph,
    validate_pixel_size,
)
from napari_grainseg.io.samples import interconnect_tem_path
from napari_grainseg.io.validate import ColourImageWarning

RNG = np.random.default_rng(0)


def grains(dtype=np.uint16, shape=(40, 56)) -> np.ndarray:
    """A non-constant test image spanning a good part of ``dtype``'s range."""
    if np.issubdtype(dtype, np.floating):
        return RNG.normal(0.5, 0.2, shape).astype(dtype)
    top = min(np.iinfo(dtype).max, 60000)
    return RNG.integers(0, top, shape).astype(dtype)


@contextlib.contextmanager
def no_warnings():
    """Turn any warning raised inside the block into a test failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --------------------------------------------------------------------------- #
# TIFF
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.uint32, np.float32, np.float64])
def test_tiff_dtypes_roundtrip_uncalibrated(tmp_path, dtype):
    image = grains(dtype)
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, image)
    m = read_micrograph(path)
    assert m.data.dtype == np.float32 and m.data.flags.c_contiguous
    np.testing.assert_allclose(m.data, image.astype(np.float32))
    assert m.pixel_size_nm is None and m.pixel_size_yx_nm is None
    assert m.metadata["format"] == "TIFF"
    assert m.metadata["original_dtype"] == np.dtype(dtype).name
    assert m.metadata["original_shape"] == image.shape
    assert "NONE" in m.metadata["calibration_source"]


@pytest.mark.parametrize(
    ("unit", "resolution", "expected_nm"),
    [
        ("nm", 1 / 0.5, 0.5),
        ("um", 1 / 0.002, 2.0),
        ("micron", 100.0, 10.0),
        ("\\u00B5m", 1 / 0.25, 250.0),  # how ImageJ itself writes µm
        ("A", 0.5, 0.2),  # 2 Å per pixel
    ],
)
def test_tiff_imagej_calibration(tmp_path, unit, resolution, expected_nm):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, grains(np.uint16), imagej=True, resolution=(resolution, resolution), metadata={"unit": unit})
    m = read_micrograph(path)
    assert m.pixel_size_nm == pytest.approx(expected_nm, rel=1e-6)
    assert m.pixel_size_yx_nm == pytest.approx((expected_nm, expected_nm), rel=1e-6)
    assert m.metadata["calibration_source"].startswith("ImageJ")
    assert not m.metadata["non_square_pixels"]


def test_tiff_imagej_pixel_unit_is_uncalibrated(tmp_path):
    path = tmp_path / "ij_px.tif"
    tifffile.imwrite(path, grains(np.uint8), imagej=True, resolution=(3.0, 3.0), metadata={"unit": "pixel"})
    assert read_micrograph(path).pixel_size_nm is None


def test_tiff_resolution_unit_centimeter(tmp_path):
    # 1e6 pixels per cm = 10 nm per pixel
    path = tmp_path / "cm.tif"
    tifffile.imwrite(path, grains(np.uint16), resolution=(1e6, 1e6), resolutionunit="CENTIMETER")
    m = read_micrograph(path)
    assert m.pixel_size_nm == pytest.approx(10.0, rel=1e-6)
    assert "CENTIMETER" in m.metadata["calibration_source"]


@pytest.mark.parametrize(
    ("resolution", "unit"), [(72, "INCH"), (96, "INCH"), (300, "INCH"), (28.35, "CENTIMETER")]
)  # 72 dpi in cm
def test_tiff_screen_default_dpi_is_not_a_calibration(tmp_path, resolution, unit):
    path = tmp_path / "dpi.tif"
    tifffile.imwrite(path, grains(np.uint8), resolution=(resolution, resolution), resolutionunit=unit)
    m = read_micrograph(path)
    assert m.pixel_size_nm is None
    assert "screen default" in m.metadata["calibration_source"]


@pytest.mark.parametrize("dpi", [150, 200, 600, 1200, 4800])
def test_tiff_print_dpi_is_not_a_calibration(tmp_path, dpi):
    """Image editors save 150-4800 dpi in inches: read as 170-5 um pixels, grain sizes would be
    off by 10^3-10^5 on a TEM image."""
    path = tmp_path / "print.tif"
    tifffile.imwrite(path, grains(np.uint8), resolution=(dpi, dpi), resolutionunit="INCH")
    m = read_micrograph(path)
    assert m.pixel_size_nm is None
    assert "print setting" in m.metadata["calibration_source"]


def test_tiff_real_inch_calibration_is_kept(tmp_path):
    # 2.54e6 pixels per inch = 10 nm per pixel: not a screen default
    path = tmp_path / "inch.tif"
    tifffile.imwrite(path, grains(np.uint8), resolution=(2.54e6, 2.54e6), resolutionunit="INCH")
    assert read_micrograph(path).pixel_size_nm == pytest.approx(10.0, rel=1e-6)


def test_tiff_fei_metadata_wins(tmp_path):
    ini = "[User]\nDate=01/06/2025\n[Scan]\nPixelWidth=1.5e-09\nPixelHeight=1.5e-09\n"
    path = tmp_path / "fei.tif"
    tifffile.imwrite(
        path, grains(np.uint8), resolution=(72, 72), resolutionunit="INCH", extratags=[(34682, "s", 0, ini, True)]
    )
    m = read_micrograph(path)
    assert m.pixel_size_nm == pytest.approx(1.5, rel=1e-9)
    assert "FEI" in m.metadata["calibration_source"]


def test_tiff_zeiss_sem_metadata(tmp_path):
    text = "0\r\nAP_IMAGE_PIXEL_SIZE\r\nImage Pixel Size = 3.2 nm\r\n"
    path = tmp_path / "zeiss.tif"
    tifffile.imwrite(path, grains(np.uint8), extratags=[(34118, "s", 0, text, True)])
    m = read_micrograph(path)
    assert m.pixel_size_nm == pytest.approx(3.2)
    assert "Zeiss" in m.metadata["calibration_source"]


def test_tiff_non_square_pixels_recorded_and_warned(tmp_path):
    path = tmp_path / "rect.tif"
    # x: 2 px/nm -> 0.5 nm, y: 1 px/nm -> 1.0 nm
    tifffile.imwrite(path, grains(np.uint16), imagej=True, resolution=(2.0, 1.0), metadata={"unit": "nm"})
    with pytest.warns(NonSquarePixelWarning, match="non-square"):
        m = read_micrograph(path)
    assert m.pixel_size_yx_nm == pytest.approx((1.0, 0.5))
    assert m.pixel_size_nm == pytest.approx(np.sqrt(0.5))  # the same pixel area, 0.5 nm² (not 0.75² = 0.5625)
    assert m.metadata["non_square_pixels"] is True
    assert any("non-square" in w for w in m.metadata["warnings"])


def test_tiff_planar_rgb_and_single_page_3d(tmp_path):
    gray = grains(np.uint8)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, np.stack([gray] * 3), photometric="rgb", planarconfig="separate")
    with no_warnings():
        m = read_micrograph(path)
    np.testing.assert_array_equal(m.data, gray)


def test_tiff_miniswhite_is_inverted(tmp_path):
    gray = grains(np.uint8)
    path = tmp_path / "white.tif"
    tifffile.imwrite(path, gray, photometric="miniswhite")
    m = read_micrograph(path)
    np.testing.assert_array_equal(m.data, 255 - gray.astype(np.float32))


def test_tiff_stack_is_rejected(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, grains(np.uint8, (5, 32, 32)))
    with pytest.raises(InputError, match="3-D stack"):
        read_micrograph(path)


def test_tiff_nan_is_rejected(tmp_path):
    image = grains(np.float32)
    image[3, 4] = np.nan
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, image)
    with pytest.raises(InputError, match="NaN"):
        read_micrograph(path)


def test_truncated_tiff(tmp_path):
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, grains(np.uint16, (64, 64)))
    bad = tmp_path / "cut.tif"
    bad.write_bytes(good.read_bytes()[:300])
    with pytest.raises(InputError, match=r"cannot read .*cut\.tif"):
        read_micrograph(bad)


def test_garbage_tiff(tmp_path):
    bad = tmp_path / "garbage.TIF"
    bad.write_bytes(b"this is not a tiff file at all" * 10)
    with pytest.raises(InputError, match="cannot read") as info:
        read_micrograph(bad)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- #
# PNG / JPEG / BMP
# --------------------------------------------------------------------------- #


def test_bundled_sample_is_gray_without_warning():
    with no_warnings():
        m = read_micrograph(interconnect_tem_path())
    assert m.shape == (154, 1166)
    assert m.pixel_size_nm is None
    assert m.metadata["original_shape"] == (154, 1166, 3)
    assert m.metadata["warnings"] == []
    assert 0 <= m.data.min() < m.data.max() <= 255


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_roundtrip(tmp_path, dtype):
    image = grains(dtype)
    path = tmp_path / "a.PNG"
    assert cv2.imwrite(str(path), image)
    m = read_micrograph(path)
    np.testing.assert_array_equal(m.data, image)
    assert m.pixel_size_nm is None and m.metadata["format"] == "PNG"


def test_jpeg_uncalibrated(tmp_path):
    image = cv2.GaussianBlur(grains(np.uint8, (64, 80)), (0, 0), 3)
    path = tmp_path / "a.jpeg"
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    m = read_micrograph(path)
    assert m.shape == (64, 80) and m.pixel_size_nm is None
    assert np.abs(m.data - image).mean() < 2  # lossy, but close
    assert m.metadata["format"] == "JPEG"


def test_bmp(tmp_path):
    image = grains(np.uint8)
    path = tmp_path / "a.bmp"
    assert cv2.imwrite(str(path), image)
    np.testing.assert_array_equal(read_micrograph(path).data, image)


def test_colour_png_is_rgb_ordered_luminance_with_warning(tmp_path):
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, :16, 0] = 200  # left half pure red, right half pure blue
    rgb[:, 16:, 2] = 200
    path = tmp_path / "colour.png"
    cv2.imwrite(str(path), rgb[..., ::-1])  # cv2 writes BGR
    with pytest.warns(ColourImageWarning):
        m = read_micrograph(path)
    assert m.data[0, 0] == pytest.approx(0.299 * 200, abs=1e-3)  # red weight, not blue
    assert m.data[0, -1] == pytest.approx(0.114 * 200, abs=1e-3)
    assert any("luminance" in w for w in m.metadata["warnings"])


def test_truncated_png(tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), grains(np.uint8, (64, 64)))
    bad = tmp_path / "cut.png"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(InputError, match=r"cannot read .*cut\.png.*corrupt or truncated"):
        read_micrograph(bad)


def test_truncated_jpeg(tmp_path):
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), grains(np.uint8, (128, 128)))
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated"):
        read_micrograph(bad)


def test_empty_png(tmp_path):
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    with pytest.raises(InputError, match="cannot read .*empty"):
        read_micrograph(bad)


def test_constant_and_tiny_images(tmp_path):
    constant = tmp_path / "constant.png"
    cv2.imwrite(str(constant), np.full((32, 32), 7, np.uint8))
    with pytest.raises(InputError, match="constant"):
        read_micrograph(constant)
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), grains(np.uint8, (10, 10)))
    with pytest.raises(InputError, match="10x10 pixels"):
        read_micrograph(tiny)


# --------------------------------------------------------------------------- #
# MRC
# --------------------------------------------------------------------------- #


def test_mrc_voxel_size_angstrom_to_nm(tmp_path):
    image = grains(np.float32)
    path = tmp_path / "a.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(image)
        mrc.voxel_size = 12.5  # Å
    m = read_micrograph(path)
    np.testing.assert_array_equal(m.data, image)
    assert m.pixel_size_nm == pytest.approx(1.25)
    assert m.metadata["format"] == "MRC" and m.metadata["unit"] == "Å"


def test_mrc_uncalibrated_and_int16(tmp_path):
    image = grains(np.int16)
    path = tmp_path / "b.MRC"
    with mrcfile.new(path) as mrc:
        mrc.set_data(image)  # voxel size stays 0
    m = read_micrograph(path)
    np.testing.assert_array_equal(m.data, image)
    assert m.pixel_size_nm is None


def test_mrc_stack_is_rejected(tmp_path):
    path = tmp_path / "stack.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(grains(np.float32, (3, 32, 32)))
        mrc.voxel_size = 5.0
    with pytest.raises(InputError, match="stack of 3 images"):
        read_micrograph(path)


def test_corrupt_mrc(tmp_path):
    path = tmp_path / "bad.mrc"
    path.write_bytes(b"\1" * 2000)
    with pytest.raises(InputError, match="cannot read"):
        read_micrograph(path)


# --------------------------------------------------------------------------- #
# Gatan DM3 / DM4, FEI TIA SER / EMI (hand-built files, read through rosettasciio)
# --------------------------------------------------------------------------- #

needs_rsciio = pytest.mark.skipif(
    importlib.util.find_spec("rsciio") is None, reason="rosettasciio (gpl-readers extra) not installed"
)


@needs_rsciio
@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize(("scale", "unit", "expected_nm"), [(0.25, "nm", 0.25), (0.5, "µm", 500.0), (2.0, "Å", 0.2)])
def test_dm_calibration(tmp_path, version, scale, unit, expected_nm):
    image = grains(np.uint16)
    path = write_dm(tmp_path / f"a.dm{version}", image, scale, unit, version=version)
    m = read_micrograph(path)
    np.testing.assert_array_equal(m.data, image)
    assert m.pixel_size_nm == pytest.approx(expected_nm, rel=1e-6)
    assert m.metadata["format"] == f"DM{version}"
    assert m.metadata["unit"] == unit


@needs_rsciio
def test_dm_float_uncalibrated(tmp_path):
    image = grains(np.float32)
    m = read_micrograph(write_dm(tmp_path / "b.dm3", image, 1.0, ""))
    np.testing.assert_array_equal(m.data, image)
    assert m.pixel_size_nm is None


@needs_rsciio
def test_dm_non_square(tmp_path):
    path = write_dm(tmp_path / "rect.dm4", grains(np.uint16), (0.5, 0.25), "nm", version=4)
    with pytest.warns(NonSquarePixelWarning):
        m = read_micrograph(path)
    assert m.pixel_size_yx_nm == pytest.approx((0.5, 0.25))
    assert m.metadata["non_square_pixels"]


@needs_rsciio
@pytest.mark.parametrize("unit", ["1/nm", "nm^-1", "1/Å"])
def test_dm_diffraction_pattern_is_rejected(tmp_path, unit):
    path = write_dm(tmp_path / "dp.dm3", grains(np.float32), 0.01, unit)
    with pytest.raises(InputError, match="reciprocal-space calibration.*diffraction pattern"):
        read_micrograph(path)


@needs_rsciio
def test_truncated_dm3(tmp_path):
    good = write_dm(tmp_path / "good.dm3", grains(np.uint16, (64, 64)), 0.5, "nm")
    bad = tmp_path / "cut.dm3"
    bad.write_bytes(good.read_bytes()[:150])
    with pytest.raises(InputError, match=r"cannot read .*cut\.dm3"):
        read_micrograph(bad)


@needs_rsciio
@pytest.mark.parametrize("version", [0x0210, 0x0220])
def test_ser_calibration_metres_to_nm(tmp_path, version):
    image = grains(np.float32)
    path = write_ser(tmp_path / "a_1.ser", image, 0.8e-9, version=version)
    m = read_micrograph(path)
    np.testing.assert_array_equal(m.data, image)  # orientation survives TIA's bottom-up rows
    assert m.pixel_size_nm == pytest.approx(0.8, rel=1e-9)
    assert m.metadata["format"] == "TIA SER"


@needs_rsciio
def test_emi_real_space_and_diffraction(tmp_path):
    image = grains(np.uint16)
    write_ser(tmp_path / "scan_1.ser", image, 2e-9)
    emi = write_emi(tmp_path / "scan.emi", mode="TEM")
    m = read_micrograph(emi)
    np.testing.assert_array_equal(m.data, image)
    assert m.pixel_size_nm == pytest.approx(2.0)
    write_emi(emi, mode="TEM Diffraction")
    with pytest.raises(InputError, match="diffraction pattern"):
        read_micrograph(emi)


def test_missing_rsciio_says_which_extra_to_install(tmp_path, monkeypatch):
    path = write_dm(tmp_path / "a.dm3", grains(np.uint16), 0.5, "nm")
    monkeypatch.setitem(sys.modules, "rsciio.digitalmicrograph", None)
    with pytest.raises(InputError, match=r"napari-grainseg\[gpl-readers\]"):
        read_micrograph(path)


# --------------------------------------------------------------------------- #
# Paths, Micrograph, pixel size
# --------------------------------------------------------------------------- #


def test_missing_file_directory_and_extension(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_micrograph(tmp_path / "nope.tif")
    with pytest.raises(InputError, match="is a directory"):
        read_micrograph(tmp_path)
    other = tmp_path / "notes.xyz"
    other.write_text("hello")
    with pytest.raises(InputError, match=r"unsupported file type '\.xyz'.*\.tif.*\.dm3"):
        read_micrograph(other)


def test_supported_extensions_are_lowercase_and_dispatch(tmp_path):
    assert all(e == e.lower() and e.startswith(".") for e in SUPPORTED_EXTENSIONS)
    assert {".tif", ".png", ".mrc", ".dm3", ".dm4", ".ser"} <= set(SUPPORTED_EXTENSIONS)


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "abc", None, True])
def test_validate_pixel_size_rejects(bad):
    with pytest.raises(InputError, match="pixel size"):
        validate_pixel_size(bad)


def test_with_pixel_size(tmp_path):
    m = read_micrograph(interconnect_tem_path())
    calibrated = m.with_pixel_size(2.5)
    assert calibrated.pixel_size_nm == 2.5 and calibrated.pixel_size_yx_nm == (2.5, 2.5)
    assert calibrated.metadata["calibration_source"] == "set by user"
    assert m.pixel_size_nm is None  # the original is unchanged (frozen)
    assert calibrated.data is m.data
    for bad in (0, -3, math.nan):
        with pytest.raises(InputError):
            m.with_pixel_size(bad)


def test_micrograph_from_array_and_invariants():
    m = Micrograph.from_array(np.dstack([grains(np.uint8)] * 3), pixel_size_nm=1.5)
    assert m.shape == (40, 56) and m.data.dtype == np.float32
    assert m.pixel_size_yx_nm == (1.5, 1.5)
    with pytest.raises(InputError):
        Micrograph(np.zeros((2, 3, 4)))
    with pytest.raises(InputError):
        Micrograph(np.ones((20, 20)), pixel_size_nm=-1)
    with pytest.raises(AttributeError):
        m.pixel_size_nm = 3.0  # frozen


@pytest.mark.parametrize(
    ("unit", "nm"),
    [
        ("nm", 1.0),
        ("µm", 1e3),
        ("μm", 1e3),
        ("um", 1e3),
        ("Å", 0.1),
        ("\u212b", 0.1),
        ("A", 0.1),
        ("m", 1e9),
        ("pixel", None),
        ("", None),
    ],
)
def test_nm_per_unit(unit, nm):
    assert nm_per_unit(unit) == nm


@pytest.mark.parametrize("unit", ["1/nm", "1 / nm", "nm^-1", "nm-1", "1/m", "1/Å"])
def test_nm_per_unit_reciprocal(unit):
    with pytest.raises(InputError, match="diffraction"):
        nm_per_unit(unit)


def test_a_tiff_movie_is_refused_before_its_frames_are_decoded(tmp_path, monkeypatch):
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, grains(np.uint8, (40, 32, 32)))

    def no_decoding(*args, **kwargs):
        raise AssertionError("the frames were decoded")

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", no_decoding)
    monkeypatch.setattr(tifffile.TiffFile, "asarray", no_decoding)
    with pytest.raises(InputError, match=r"3-D stack of shape \(40, 32, 32\).*extract one frame"):
        read_micrograph(path)


def test_an_mrc_tilt_series_is_refused_from_its_header(tmp_path, monkeypatch):
    import mrcfile

    path = tmp_path / "tilt.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(grains(np.float32, (7, 32, 32)))
    opened = []
    real_open = mrcfile.open
    monkeypatch.setattr(mrcfile, "open", lambda *a, **k: opened.append(k.get("header_only")) or real_open(*a, **k))
    with pytest.raises(InputError, match="stack of 7 images"):
        read_micrograph(path)
    assert opened == [True]  # the data were never opened


def test_a_palette_tiff_reads_as_its_colours(tmp_path):
    path = tmp_path / "palette.tif"
    index = (np.arange(40 * 56).reshape(40, 56) % 4).astype(np.uint8)
    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, :4] = np.array([0, 20000, 40000, 65535])  # grey levels: R = G = B
    tifffile.imwrite(path, index, photometric="palette", colormap=colormap)
    m = read_micrograph(path)
    assert m.data.shape == (40, 56)
    assert np.array_equal(np.argsort(m.data[0, :4]), [0, 1, 2, 3])  # darker index, darker pixel


def test_planar_rgb_with_a_leading_length_one_axis_is_one_image(tmp_path):
    path = tmp_path / "qsyx.tif"
    rgb = np.stack([grains(np.uint8, (40, 56))] * 3)  # gray saved as planar RGB
    tifffile.imwrite(path, rgb[None], photometric="rgb", planarconfig="separate")
    m = read_micrograph(path)
    assert m.data.shape == (40, 56)
    np.testing.assert_allclose(m.data, rgb[0].astype(np.float32))


@needs_rsciio
def test_a_dm_colour_image_is_read_as_one_gray_image(tmp_path):
    """rosettasciio cannot load DM RGBA lazily: the reader falls back to loading it at once."""
    gray = grains(np.uint8)
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    m = read_micrograph(write_dm(tmp_path / "rgba.dm3", rgba, 0.5, "nm"))
    assert m.data.shape == gray.shape and m.pixel_size_nm == pytest.approx(0.5)
    np.testing.assert_allclose(m.data, gray.astype(np.float32))


@pytest.mark.parametrize("mode", ["P", "LA", "RGB", "RGBA"])
def test_a_mask_painted_in_an_editor_reads_as_its_painted_pixels(tmp_path, mode):
    """A palette PNG whose white lines sit at index 0 must not read as lines = 0."""
    from PIL import Image

    from napari_grainseg.io.readers import read_array

    lines = np.zeros((40, 56), bool)
    lines[:, 20] = lines[15, :] = True
    white = Image.fromarray(np.where(lines, 255, 0).astype(np.uint8))
    if mode == "P":
        image = Image.fromarray(np.where(lines, 0, 1).astype(np.uint8), mode="P")
        image.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)  # index 0 = white, 1 = black
    else:
        image = white.convert(mode)
    image.save(tmp_path / "m.png")
    data = read_array(tmp_path / "m.png", "mask", mask=True)
    assert data.ndim == 2
    np.testing.assert_array_equal(data != 0, lines)
