"""``grainseg export-onnx``: write the ONNX export that runs Net1 on the CPU through OpenCV."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export Net1 weights to ONNX (the fast CPU path, run by OpenCV)",
        description="Export Net1 weights to <weights>.onnx with a record <weights>.onnx.json "
        "(the weights' SHA-256, versions, and the largest PyTorch/OpenCV logit difference on a "
        "check input). On a CPU, segment, batch, eval and napari then run Net1 through OpenCV's "
        "DNN module instead of PyTorch; an export whose record does not match its weights is "
        "never used. Needs the onnx package (pip install 'napari-grainseg[export]').",
    )
    p.add_argument(
        "weights", type=Path, nargs="?", default=None, help="Net1 weights (.pt; default: the shipped weights)"
    )
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="export path (default: beside the weights)")
    p.set_defaults(func=run)


def run(args) -> int:
    from napari_grainseg.models.model_dir import is_shipped_location
    from napari_grainseg.models.net1_opencv import export_net1_onnx

    path = export_net1_onnx(args.weights, args.out)
    record = json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))
    where = " (inside the package)" if is_shipped_location(path) else ""
    print(
        f"grainseg: wrote {path}{where}; largest logit difference to PyTorch "
        f"{record['check_max_abs_logit_difference']:.2g}",
        file=sys.stderr,
    )
    return 0
