"""Checks and conversions that turn any array into a usable 2-D grayscale micrograph.

Every entry point (file readers, the CLI, the napari widgets) funnels arrays
through :func:`validate_image`, so bad input gets the same clear message
everywhere instead of a crash or silent garbage downstream.
"""

from __future__ import annotations

import warnings

import numpy as np

from napari_grainseg.errors import InputError

#: Smallest accepted height and width in pixels.
MIN_SIZE = 16

# ITU-R BT.601 luma weights, as used by MATLAB's rgb2gray and OpenCV.
_LUMA = np.array([0.299, 0.587, 0.114])


#: Pixel magnitudes above this, or a value range below ``SAFE_MIN_SPAN``, are rescaled to 0..1
#: (float32 and squared gradients would overflow, or differences vanish).
SAFE_MAGNITUDE = 1e15
SAFE_MIN_SPAN = 1e-15


class ColourImageWarning(UserWarning):
    """An RGB image with unequal channels was converted to luminance."""


class ExtremeValuesWarning(UserWarning):
    """Pixel values too large or too close together for float32: the image was rescaled to 0..1."""


def to_grayscale(data: np.ndarray) -> np.ndarray:
    """Return a 2-D array from a 2-D gray, or an RGB / RGBA (H, W, 3|4) image.

    Equal colour channels (a gray image saved as RGB, like the bundled sample)
    are collapsed silently; unequal channels become BT.601 luminance with a
    :class:`ColourImageWarning`. Alpha is ignored. Other 3-D arrays (stacks,
    tilt series, spectrum images) raise :class:`InputError`.

    Examples
    --------
    >>> rgb = np.dstack([np.eye(20)] * 3)
    >>> to_grayscale(rgb).shape
    (20, 20)
    """
    data = np.asarray(data)
    if data.ndim == 2:
        return data
    if data.ndim == 3 and data.shape[-1] in (3, 4) and min(data.shape[:2]) > 4:
        rgb = data[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return rgb[..., 0]
        warnings.warn(
            "colour image with unequal channels: converted to luminance (0.299 R + 0.587 G + 0.114 B)",
            ColourImageWarning,
            stacklevel=2,
        )
        return rgb.astype(np.float64) @ _LUMA
    if data.ndim == 3:
        raise InputError(f"expected a 2-D micrograph, got a 3-D stack of shape {data.shape}; extract one frame first")
    raise InputError(f"expected a 2-D micrograph, got an array with {data.ndim} dimensions (shape {data.shape})")


def validate_image(data: np.ndarray, *, min_size: int = MIN_SIZE) -> np.ndarray:
    """Check a micrograph and return it as a C-contiguous 2-D float32 array.

    Parameters
    ----------
    data
        2-D grayscale or RGB(A) image (see :func:`to_grayscale`), any real dtype.
    min_size
        Smallest accepted height and width in pixels.

    Raises
    ------
    InputError
        For stacks, complex or non-numeric data, images smaller than
        ``min_size``, NaN or infinite values, or constant images (no edges to find).

    Warns
    -----
    ExtremeValuesWarning
        Values beyond ±``SAFE_MAGNITUDE``, spanning less than ``SAFE_MIN_SPAN``, or
        spanning too little for their offset to keep 10^4 levels in float32 (e.g.
        1e9 + noise): rescaled linearly to 0..1 in float64 instead of overflowing to
        infinity or collapsing (nearly) to a constant in float32.
    """
    data = np.asarray(data)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise InputError(f"unsupported pixel type {data.dtype}: expected integer or float pixels")
    data = to_grayscale(data)
    h, w = data.shape
    if h < min_size or w < min_size:
        raise InputError(f"image is {h}x{w} pixels; at least {min_size}x{min_size} is needed")
    if np.issubdtype(data.dtype, np.floating):
        n_bad = int(np.count_nonzero(~np.isfinite(data)))
        if n_bad:
            raise InputError(
                f"image contains {n_bad} NaN or infinite pixel values: crop them away, or fill them "
                "(e.g. with the median) and exclude that area from the statistics with an exclusion mask"
            )
    lo, hi = np.min(data), np.max(data)
    if lo == hi:
        raise InputError(f"image is constant (every pixel is {lo}): there are no grains to find")
    lo64, hi64 = float(lo), float(hi)
    span = hi64 / 2 - lo64 / 2  # halves: no overflow for -1e308..1e308
    magnitude = max(abs(lo64), abs(hi64))
    if magnitude > SAFE_MAGNITUDE:
        reason = "large"
    elif span < 0.5 * SAFE_MIN_SPAN:
        reason = "close together"
    elif np.issubdtype(data.dtype, np.integer) and magnitude > 2**24:
        reason = "large to be exact"  # whole numbers above 2^24 are not all exact in float32
    elif not np.issubdtype(data.dtype, np.integer) and float(np.spacing(np.float32(magnitude))) > 2 * span * 1e-4:
        reason = "close together for their offset"  # float32 would keep under 10^4 levels across the range
    else:
        reason = None
    if reason is not None:
        # float32 (and the squares in the edge filters) would overflow to infinity, flush the
        # differences to zero, or round them away against a large offset: keep the picture,
        # rescaled to 0..1 in float64 (the offset subtracted first).
        warnings.warn(
            f"pixel values span {lo64:.6g} to {hi64:.6g}, too {reason} "
            "to compute with in float32: rescaled linearly to 0..1",
            ExtremeValuesWarning,
            stacklevel=2,
        )
        scaled = (data.astype(np.float64) / 2 - lo64 / 2) / span
        return np.ascontiguousarray(scaled, dtype=np.float32)
    return np.ascontiguousarray(data, dtype=np.float32)
