"""``grainseg measure``: grain statistics and exports for an existing label image.

For example a segmentation corrected by hand in napari and saved as TIFF.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from napari_grainseg.cli._common import add_measurement_arguments, measurement_options, warn_if_calibration_replaced
from napari_grainseg.cli._limits import add_max_pixels_argument, warn_if_unusual_pixel_size
from napari_grainseg.errors import InputError
from napari_grainseg.io.outputs import check_not_an_input


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "measure",
        help="measure grains of a label image (CSV, JSON, histogram, overlay)",
        description="Measure every grain of a label image (0 = boundary, grains > 0, integer "
        "TIFF / PNG / NPY) and write <stem>_grains.csv, <stem>_summary.json, "
        "<stem>_histogram.png (and .svg with --svg) and <stem>_overlay.png.",
    )
    p.add_argument("labels", type=Path, help="label image: .tif/.tiff, .png or .npy, integer")
    p.add_argument(
        "--pixel-size",
        default=None,
        metavar="NM",  # checked in run(), range included: main() returns 2 with one line
        help="pixel size in nm (default: the calibration of --image, else of the label TIFF)",
    )
    p.add_argument(
        "--image", type=Path, default=None, metavar="MICROGRAPH", help="micrograph for the overlay (and its pixel size)"
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--stem", default=None, help="output file prefix (default: labels file name)")
    p.add_argument(
        "--include-edge-grains", action="store_true", help="use grains cut by the image edge in the size statistics"
    )
    p.add_argument(
        "--edge-correction",
        choices=("miles", "guard", "none"),
        default="miles",
        help="unbiased correction for excluded edge grains (default: miles)",
    )
    p.add_argument(
        "--orientations", type=int, default=8, help="test-line orientations of the intercept method (default: 8)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output files already in --out (refused by default: they may be an earlier, corrected export)",
    )
    add_measurement_arguments(p)
    add_max_pixels_argument(p, resampled=False)
    p.set_defaults(func=run)


def read_labels(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """Read a label image from TIFF, PNG or NPY (no conversion of the dtype).

    ``max_pixels``: largest image accepted, checked from the header before decoding
    (None: the readers' default; 0: no limit). Pickled ``.npy`` files are refused.
    """
    from napari_grainseg.io.readers import read_array

    return read_array(path, "label", max_pixels)


def split_regions(labels: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Give every 4-connected region its own id when one id is used for separate regions.

    Returns ``(labels, ids)``: the input unchanged and ``[]`` when every id is one
    region; otherwise labels renumbered 1..N by region (0 kept) and the ids that
    were split.
    """
    from scipy import ndimage
    from skimage.measure import label as label_regions

    regions = label_regions(labels, background=0, connectivity=1)
    n_regions = int(regions.max())
    ids = np.unique(labels)
    n_ids = int(ids.size - (ids[0] == 0 if ids.size else 0))
    if n_regions == n_ids:
        return labels, []
    # the id of each region (any pixel of it), then which ids occur more than once
    idx = np.arange(1, n_regions + 1)
    region_ids = ndimage.maximum(labels, regions, idx).astype(np.int64)
    values, counts = np.unique(region_ids, return_counts=True)
    return regions.astype(np.uint32 if n_regions < 2**32 else np.uint64), values[counts > 1].tolist()


#: A label image whose ids recur in separate regions averaging fewer pixels than this is taken for a
#: micrograph's grey levels (grains of a few pixels cannot be measured anyway): refused with a hint.
MICROGRAPH_REGION_PX = 16


def run(args: argparse.Namespace) -> int:
    from napari_grainseg.io.outputs import check_output_dir
    from napari_grainseg.measure.report import field_export_paths, write_report
    from napari_grainseg.measure.table import optional_pixel_size
    from napari_grainseg.segmentation.grains import boundaries_to_labels, looks_like_boundary_mask, validate_labels

    # every argument and the output folder before the (possibly large) label image is read
    pixel_size = optional_pixel_size(args.pixel_size)
    warn_if_unusual_pixel_size(pixel_size)
    from napari_grainseg.measure.astm import MAX_INTERCEPT_ORIENTATIONS

    if not 1 <= args.orientations <= MAX_INTERCEPT_ORIENTATIONS:
        raise InputError(f"--orientations must be 1 to {MAX_INTERCEPT_ORIENTATIONS}, got {args.orientations}")
    stem = args.stem or args.labels.stem
    outputs = field_export_paths(args.out, stem, ("csv", "json", "histogram"), svg=True)
    outputs.append(args.out / f"{stem}_overlay.png")
    check_not_an_input(outputs, [args.labels, args.image])
    existing = [path.name for path in outputs if path.exists()]  # an earlier run's .svg too: it belongs to the set
    stale_svg = None if args.svg else next(path for path in outputs if path.suffix == ".svg")
    if existing and not args.overwrite:
        raise InputError(
            f"{args.out} already holds {', '.join(existing)} (an earlier run, perhaps corrected): "
            "add --overwrite to replace them, or choose another --stem or --out"
        )
    check_output_dir(args.out, create=False)  # made once the inputs have been read: a bad one leaves nothing

    raw = read_labels(args.labels, args.max_pixels)
    if raw.ndim == 2 and looks_like_boundary_mask(raw):
        print(
            f"grainseg: warning: {args.labels.name} looks like a boundary mask (non-zero lines between "
            "zero regions), not a label image: measuring the grains its lines enclose",
            file=sys.stderr,
        )
        labels = boundaries_to_labels(raw != 0)
    else:
        labels = validate_labels(raw)
    labels, split = split_regions(labels)
    n_regions = int(labels.max())
    if split and n_regions * MICROGRAPH_REGION_PX > labels.size:
        raise InputError(
            f"{args.labels.name} looks like a micrograph, not a label image: its values recur in {n_regions} "
            f"separate regions of {labels.size / n_regions:.1f} px on average; segment it with grainseg segment, "
            "or give the label image"
        )
    if split:
        more = f" and {len(split) - 3} more" if len(split) > 3 else ""
        print(
            f"grainseg: warning: label id{'s' if len(split) > 1 else ''} "
            f"{', '.join(str(i) for i in split[:3])}{more} {'each cover' if len(split) > 1 else 'covers'} "
            "separate regions: every region is "
            "measured as its own grain (grains renumbered)",
            file=sys.stderr,
        )
    from napari_grainseg.io.readers import tiff_pixel_size

    image, stored, source = None, None, None  # the files' own calibration, and whose it is
    if args.image is not None:
        from napari_grainseg.io.readers import read_micrograph

        micrograph = read_micrograph(args.image, max_pixels=args.max_pixels)
        image = micrograph.data
        if image.shape != labels.shape:
            raise InputError(
                f"micrograph is {image.shape[0]}x{image.shape[1]} px but the label "
                f"image is {labels.shape[0]}x{labels.shape[1]}"
            )
        stored, source = micrograph.pixel_size_nm, args.image.name
    if stored is None and args.labels.suffix.lower() in (".tif", ".tiff"):
        stored, source = tiff_pixel_size(args.labels), args.labels.name
    calibration_source = "set by user" if pixel_size is not None else None
    if pixel_size is None and stored is not None:
        pixel_size = stored
        calibration_source = f"the calibration of {source}"
        print(f"grainseg: pixel size {pixel_size:.6g} nm, from {source}'s calibration", file=sys.stderr)
    elif pixel_size is not None:
        warn_if_calibration_replaced(pixel_size, stored, source)
    options = measurement_options(args, labels.shape)
    check_output_dir(args.out)
    paths = write_report(
        args.out,
        stem,
        image=image,
        labels=labels,
        pixel_size_nm=pixel_size,
        extra={"source_labels": str(args.labels), "source_image": str(args.image) if args.image else None},
        exclude_edge_grains=not args.include_edge_grains,
        edge_correction=None if args.edge_correction == "none" else args.edge_correction,
        n_intercept_orientations=args.orientations,
        calibration_source=calibration_source,
        **options,
    )
    if stale_svg is not None and stale_svg.exists():  # --overwrite: the earlier run's svg would not match the rest
        stale_svg.unlink()
        print(f"grainseg: removed the earlier {stale_svg.name} (no --svg this time)", file=sys.stderr)
    import json

    summary = json.loads(paths["json"].read_text())
    for w in summary["warnings"]:
        print(f"grainseg: warning: {w}", file=sys.stderr)
    g = summary["astm_g_planimetric"]
    ecd = summary["mean_ecd_nm"]
    print(
        f"{summary['n_grains']} grains ({summary['n_grains_included']} in size statistics); "
        f"mean ECD {summary['mean_ecd_px']:.3g} px"
        + (f" = {ecd:.4g} nm" if ecd is not None else "")
        + (
            f"; ASTM G planimetric {g:.2f}, intercept {summary['astm_g_intercept']:.2f}"
            if g is not None and summary["astm_g_intercept"] is not None
            else ""
        ),
        file=sys.stderr,
    )
    for p in paths.values():
        print(p)
    return 0
