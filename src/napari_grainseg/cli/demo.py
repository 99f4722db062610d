"""``grainseg demo``: run the whole pipeline on the bundled real micrograph."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the pipeline on the bundled real TEM micrograph",
        description="Run the default pipeline (edge fusion, Net1, grains by watershed, measurements, figures) on the "
        "bundled real TEM micrograph (interconnect line, CC0, Saleh et al. 2025) and write every output "
        "to --out: the files of `grainseg segment` plus the fused edge image.",
    )
    p.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results)")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda or mps (default: auto)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_grainseg.cli import build_parser

    parser = build_parser()
    out = str(args.out)
    steps = [
        ["edges", "--sample", "--out", str(args.out / "interconnect_tem_edges.tif")],
        ["segment", "--sample", "--out", out, "--device", args.device],
    ]
    for argv in steps:
        sub_args = parser.parse_args(argv)
        code = sub_args.func(sub_args)
        if code:
            return code
    return 0
