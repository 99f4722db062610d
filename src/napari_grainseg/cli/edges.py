"""``grainseg edges``: write the fused Sobel/LoG/Canny RGB image of a micrograph."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_grainseg.errors import InputError
from napari_grainseg.cli._common import add_edge_arguments, edge_params_from_args, load_micrograph


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "edges",
        help="fused edge image (R = Sobel, G = LoG, B = Canny)",
        description="Detect edges with Sobel, Laplacian-of-Gaussian and Canny and write them "
        "as one RGB uint8 TIFF (R = Sobel, G = LoG, B = Canny; 0 or 255).",
    )
    p.add_argument("input", nargs="?", help="micrograph file (TIFF, PNG, JPEG, MRC, DM3/DM4, SER)")
    p.add_argument("--sample", action="store_true", help="use the bundled real TEM micrograph")
    p.add_argument("--out", required=True, type=Path, help="output file, .tif")
    add_edge_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tifffile

    from napari_grainseg.io.atomic import atomic_path
    from napari_grainseg.segmentation.edges import fuse_edges

    if args.out.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"--out must be a .tif file, got {args.out}")
    params = edge_params_from_args(args)
    micrograph = load_micrograph(args.input, sample=args.sample)
    rgb = fuse_edges(micrograph.data, params)
    with atomic_path(args.out) as tmp:
        tifffile.imwrite(tmp, rgb, photometric="rgb")
    print(f"wrote {args.out} ({rgb.shape[1]}x{rgb.shape[0]} RGB: R=Sobel G=LoG B=Canny)", file=sys.stderr)
    return 0
