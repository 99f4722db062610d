"""Argument types and options for limits and output safety, shared by the ``grainseg`` subcommands."""

from __future__ import annotations

import argparse
import math

from napari_grainseg.errors import InputError


def bounded_float(lo: float, hi: float, *, lo_open: bool = False, what: str = "value"):
    """argparse type: a finite number in [lo, hi] (``lo_open``: lo excluded)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = math.isfinite(value) and (value > lo if lo_open else value >= lo) and value <= hi
        if not ok:
            raise argparse.ArgumentTypeError(
                f"{what} must be {'>' if lo_open else '>='} {lo:g} and <= {hi:g}, got {text}"
            )
        return value

    return parse


def bounded_int(lo: int, hi: int | None = None):
    """argparse type: a whole number in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(
                f"must be >= {lo}" + (f" and <= {hi}" if hi is not None else "") + f", got {value}"
            )
        return value

    return parse


def pixel_size_nm(text: str) -> float:
    """argparse type: a pixel size in nm, checked by :func:`napari_grainseg.io.readers.validate_pixel_size`
    (and noted when it looks typed in another unit: :func:`warn_if_unusual_pixel_size`)."""
    from napari_grainseg.io.readers import validate_pixel_size

    try:
        size = validate_pixel_size(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    warn_if_unusual_pixel_size(size)
    return size


def warn_if_unusual_pixel_size(nm: float | None) -> None:
    """Warn (one line on the command line) of a pixel size outside the range of real micrographs."""
    import warnings

    from napari_grainseg.io.readers import unusual_pixel_size_note

    note = unusual_pixel_size_note(nm) if nm is not None else None
    if note:
        warnings.warn(note, UserWarning, stacklevel=3)


def nonempty(text: str) -> str:
    """argparse type: a non-blank string."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def max_pixels(text: str) -> int:
    """argparse type for ``--max-pixels``: a number of pixels (``2.5e8`` allowed), 0 = no limit."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise argparse.ArgumentTypeError(f"must be a whole number of pixels >= 0 (0 = no limit), got {text}")
    return int(value)


def add_max_pixels_argument(parser: argparse.ArgumentParser, *, resampled: bool = True) -> None:
    """``--max-pixels``; ``resampled``: the command may enlarge an image for a grain-size hint."""
    from napari_grainseg.io.readers import DEFAULT_MAX_PIXELS

    what = "images (decoded, or resampled for a grain-size hint)" if resampled else "images"
    parser.add_argument(
        "--max-pixels",
        type=max_pixels,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse {what} larger than N pixels; 0 = no limit (default: {DEFAULT_MAX_PIXELS:.3g})",
    )


def add_output_safety_arguments(parser: argparse.ArgumentParser) -> None:
    """``--overwrite`` and ``--wait`` (outputs edited by hand; another run using the folder)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs that differ from what grainseg wrote (edited by hand); "
        "without it such a run stops before computing anything",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="if another grainseg run uses the output folder, wait for it instead of stopping",
    )
