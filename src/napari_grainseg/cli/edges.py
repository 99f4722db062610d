"""``grainseg edges``: write the fused Sobel/LoG/Canny RGB image of a micrograph."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_grainseg.cli._common import add_edge_arguments, edge_params_from_args, load_micrograph
from napari_grainseg.cli._limits import add_max_pixels_argument
from napari_grainseg.errors import InputError
from napari_grainseg.io.outputs import check_not_an_input


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "edges",
        help="fused edge image (R = Sobel, G = LoG, B = Canny)",
        description="Detect edges with Sobel, Laplacian-of-Gaussian and Canny and write them "
        "as one RGB uint8 TIFF (R = Sobel, G = LoG, B = Canny; 0 or 255).",
    )
    p.add_argument(
        "input", nargs="?", metavar="INPUT", help="micrograph file (TIFF, PNG, JPEG, MRC, DM3/DM4, SER), or --sample"
    )
    p.add_argument("--sample", action="store_true", help="use the bundled real TEM micrograph (instead of INPUT)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="output file, .tif (never the input file)")
    add_edge_arguments(p)
    add_max_pixels_argument(p, resampled=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tifffile

    from napari_grainseg.io.atomic import atomic_path
    from napari_grainseg.io.outputs import check_output_dir
    from napari_grainseg.segmentation.edges import fuse_edges

    if args.out.is_dir():
        raise InputError(f"--out {args.out} is a folder; give an output file name ending in .tif")
    if args.out.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"--out must be a .tif file, got {args.out}")
    check_not_an_input([args.out], [args.input])
    check_output_dir(args.out.parent if str(args.out.parent) else Path("."), option=f"--out {args.out}: folder")
    params = edge_params_from_args(args)
    micrograph = load_micrograph(args.input, sample=args.sample, max_pixels=args.max_pixels)
    rgb = fuse_edges(micrograph.data, params)
    with atomic_path(args.out) as tmp:
        tifffile.imwrite(tmp, rgb, photometric="rgb")
    print(f"wrote {args.out} ({rgb.shape[1]}x{rgb.shape[0]} RGB: R=Sobel G=LoG B=Canny)", file=sys.stderr)
    return 0
