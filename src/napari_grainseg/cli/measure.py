"""``grainseg measure``: grain statistics and exports for an existing label image.

For example a segmentation corrected by hand in napari and saved as TIFF.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from napari_grainseg.cli._common import add_measurement_arguments, measurement_options, read_image_array
from napari_grainseg.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "measure",
        help="measure grains of a label image (CSV, JSON, histogram, overlay)",
        description="Measure every grain of a label image (0 = boundary, grains > 0, integer "
        "TIFF / PNG / NPY) and write <stem>_grains.csv, <stem>_summary.json, "
        "<stem>_histogram.png (and .svg with --svg) and <stem>_overlay.png.",
    )
    p.add_argument("labels", type=Path, help="label image: .tif/.tiff, .png or .npy, integer")
    p.add_argument("--pixel-size", default=None, metavar="NM",
                   help="pixel size in nm (default: the micrograph's calibration, if --image)")
    p.add_argument("--image", type=Path, default=None, metavar="MICROGRAPH",
                   help="micrograph for the overlay (and its pixel size)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--stem", default=None, help="output file prefix (default: labels file name)")
    p.add_argument("--include-edge-grains", action="store_true",
                   help="use grains cut by the image edge in the size statistics")
    p.add_argument("--edge-correction", choices=("miles", "guard", "none"), default="miles",
                   help="unbiased correction for excluded edge grains (default: miles)")
    p.add_argument("--orientations", type=int, default=8,
                   help="test-line orientations of the intercept method (default: 8)")
    add_measurement_arguments(p)
    p.set_defaults(func=run)


def read_labels(path: Path) -> np.ndarray:
    """Read a label image from TIFF, PNG or NPY (no conversion of the dtype)."""
    return read_image_array(path, "label")


def run(args: argparse.Namespace) -> int:
    from napari_grainseg.measure.report import write_report
    from napari_grainseg.measure.table import optional_pixel_size
    from napari_grainseg.segmentation.grains import validate_labels

    labels = validate_labels(read_labels(args.labels))
    pixel_size = optional_pixel_size(args.pixel_size)
    image = None
    if args.image is not None:
        from napari_grainseg.io.readers import read_micrograph

        micrograph = read_micrograph(args.image)
        image = micrograph.data
        if image.shape != labels.shape:
            raise InputError(f"micrograph is {image.shape[0]}x{image.shape[1]} px but the label "
                             f"image is {labels.shape[0]}x{labels.shape[1]}")
        if pixel_size is None:
            pixel_size = micrograph.pixel_size_nm
    if args.orientations < 1:
        raise InputError(f"--orientations must be >= 1, got {args.orientations}")
    options = measurement_options(args, labels.shape)
    stem = args.stem or args.labels.stem
    paths = write_report(
        args.out, stem, image=image, labels=labels, pixel_size_nm=pixel_size,
        extra={"source_labels": str(args.labels),
               "source_image": str(args.image) if args.image else None},
        exclude_edge_grains=not args.include_edge_grains,
        edge_correction=None if args.edge_correction == "none" else args.edge_correction,
        n_intercept_orientations=args.orientations,
        **options,
    )
    import json

    summary = json.loads(paths["json"].read_text())
    for w in summary["warnings"]:
        print(f"grainseg: warning: {w}", file=sys.stderr)
    g = summary["astm_g_planimetric"]
    ecd = summary["mean_ecd_nm"]
    print(f"{summary['n_grains']} grains ({summary['n_grains_included']} in size statistics); "
          f"mean ECD {summary['mean_ecd_px']:.3g} px"
          + (f" = {ecd:.4g} nm" if ecd is not None else "")
          + (f"; ASTM G planimetric {g:.2f}, intercept {summary['astm_g_intercept']:.2f}"
             if g is not None and summary['astm_g_intercept'] is not None else ""),
          file=sys.stderr)
    for p in paths.values():
        print(p)
    return 0
