"""``grainseg average-weights``: the weighted average of several weights files (a model soup)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "average-weights",
        help="average the weights of runs of one network (how the shipped Net1 v13 was made)",
        description="Write the weighted average of two or more weights files of the same network "
        "and architecture (e.g. two runs continued from one start), with a JSON record of the "
        "sources' SHA-256 and coefficients. The shipped Net1 is reproduced by "
        "'grainseg average-weights configs/weights/net1_v11.pt configs/weights/net1_v12.pt --out "
        "net1.pt' then 'grainseg export-onnx net1.pt'.",
    )
    p.add_argument("weights", type=Path, nargs="+", help="two or more .pt files (their .json beside them)")
    p.add_argument("--coefficients", type=float, nargs="+", help="one weight per file (default: equal)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="the averaged .pt (its .json beside it)")
    p.set_defaults(func=run)


def run(args) -> int:
    from napari_grainseg.models.weights import average_weights
    from napari_grainseg.training.loop import git_revision

    path, _ = average_weights(args.weights, args.out, args.coefficients, {"git_revision": git_revision()})
    print(f"grainseg: wrote {path} (the average of {len(args.weights)} weights files)", file=sys.stderr)
    return 0
