"""Argument helpers shared by the ``grainseg`` subcommands."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from napari_grainseg.errors import InputError
from napari_grainseg.segmentation.edges import EdgeParams
from napari_grainseg.segmentation.grains import GRAIN_BUILDERS


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (pixel sizes, grain sizes)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_edge_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the edge-fusion parameters (all optional; automatic when omitted)."""
    g = parser.add_argument_group("edge detection (automatic when omitted)")
    g.add_argument("--stretch-percentiles", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   default=(1.0, 99.0), help="contrast-stretch percentiles (default: 1 99)")
    g.add_argument("--median-size", type=int, default=7, help="median filter size, odd (default: 7)")
    g.add_argument("--sobel-threshold", type=float, default=None, help="Sobel magnitude threshold")
    g.add_argument("--log-sigma", type=float, default=2.0, help="LoG sigma in px (default: 2)")
    g.add_argument("--log-threshold", type=float, default=None, help="LoG zero-crossing threshold")
    g.add_argument("--canny-sigma", type=float, default=math.sqrt(2), help="Canny sigma (default: 1.414)")
    g.add_argument("--canny-high", type=float, default=None, help="Canny high threshold")
    g.add_argument("--canny-low-ratio", type=float, default=0.4, help="Canny low/high ratio (default: 0.4)")


def edge_params_from_args(args: argparse.Namespace) -> EdgeParams:
    """Build :class:`EdgeParams` from the arguments of :func:`add_edge_arguments`."""
    return EdgeParams(
        stretch_percentiles=tuple(args.stretch_percentiles),
        median_size=args.median_size,
        sobel_threshold=args.sobel_threshold,
        log_sigma=args.log_sigma,
        log_threshold=args.log_threshold,
        canny_sigma=args.canny_sigma,
        canny_high=args.canny_high,
        canny_low_ratio=args.canny_low_ratio,
    )


def load_micrograph(path: str | Path | None, *, sample: bool = False, pixel_size_nm: float | None = None):
    """Read the input micrograph (or the bundled sample) and apply a pixel-size override."""
    from napari_grainseg.io.readers import read_micrograph
    from napari_grainseg.io.samples import interconnect_tem_path

    if sample:
        if path is not None:
            raise InputError("give either an input file or --sample, not both")
        path = interconnect_tem_path()
    elif path is None:
        raise InputError("no input: give a micrograph file, or --sample for the bundled one")
    micrograph = read_micrograph(path)
    if pixel_size_nm is not None:
        micrograph = micrograph.with_pixel_size(pixel_size_nm)
    return micrograph


def add_segmentation_arguments(parser: argparse.ArgumentParser, *, scope: str = "the file") -> None:
    """Add the options of the segmentation pipeline shared by ``segment`` and ``batch``."""
    parser.add_argument("--pixel-size", type=positive_float, metavar="NM",
                        help=f"pixel size in nm (overrides the calibration of {scope})")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--grain-size", type=positive_float, metavar="PX",
                      help="expected mean grain diameter in pixels (default: estimated per image)")
    size.add_argument("--grain-size-nm", type=positive_float, metavar="NM",
                      help="expected mean grain diameter in nm (needs a pixel size)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda or mps")
    parser.add_argument("--net2-steps", default="auto", metavar="auto|N",
                        help="Net2 refinement: auto = until converged (at most 30 steps), N = at most N "
                        "steps, 0 = Net1 only (default: auto)")
    parser.add_argument("--model", type=Path, metavar="MODEL_DIR",
                        help="an adapted model directory (grainseg finetune) instead of the shipped model")
    parser.add_argument("--weights", type=Path, help="Net1 weights file (default: shipped weights)")
    parser.add_argument("--net2-weights", type=Path, help="Net2 weights file (default: shipped weights)")
    parser.add_argument("--threshold", type=float, default=0.5, help="boundary probability threshold")
    parser.add_argument("--grains", choices=GRAIN_BUILDERS, default="threshold",
                        help="how grains are built from the final boundary map: threshold it, or take every "
                        "basin of its watershed (closes faint boundaries; with --net2-steps 0 the most accurate "
                        "on the synthetic test sets, see docs/benchmarks.md; whole-image: 2.7 GB peak at 4096² instead "
                        "of 0.94 GB) (default: threshold)")
    parser.add_argument("--min-grain-area", type=int, default=10, help="smallest grain kept, px (default 10)")


def check_segmentation_arguments(args: argparse.Namespace) -> int:
    """Validate the options of :func:`add_segmentation_arguments`; returns the Net2 step budget."""
    from napari_grainseg.segmentation.pipeline import net2_step_budget

    for flag, path in (("--weights", args.weights), ("--net2-weights", args.net2_weights)):
        if path is not None and not path.is_file():
            raise InputError(f"{flag}: weights file not found: {path}")
    if getattr(args, "model", None) is not None:
        from napari_grainseg.models.model_dir import read_model_info

        if args.weights is not None or args.net2_weights is not None:
            raise InputError("--model brings its own weights: give --model or --weights/--net2-weights, not both")
        args.model_info = read_model_info(args.model)  # a bad directory fails before any computation
        args.weights = args.model / "net1.pt"
        net2 = args.model / "net2.pt"
        if net2.is_file() and (args.net2_steps.strip().lower() != "auto"
                               or args.model_info.get("recommended", {}).get("net2_steps", 1)):
            args.net2_weights = net2
        elif args.net2_steps.strip().lower() == "auto":
            args.net2_steps = "0"  # auto: the model directory's recommendation (its Net2 is not adapted)
        # the scale the model was adapted at: the corrections' grain size unless the user gives one
        if getattr(args, "grain_size_nm", None) is None:
            from napari_grainseg.models.model_dir import model_grain_size_hint

            args.grain_size = model_grain_size_hint(args.model_info, grain_size_px=args.grain_size)
        # the grain builder tuned on the model's corrections, unless given on the command line
        recommended, given = args.model_info.get("recommended", {}), getattr(args, "argv", None) or []
        if recommended.get("grains") and not any(a.startswith("--grains") for a in given):
            args.grains = recommended["grains"]
            if "threshold" in recommended and not any(a.startswith("--threshold") for a in given):
                args.threshold = float(recommended["threshold"])
            args.watershed_h = float(recommended.get("watershed_h", 0.1))
    try:
        budget = net2_step_budget(args.net2_steps)
    except InputError as exc:
        raise InputError(f"--net2-steps: {exc}") from None
    if not 0 < args.threshold < 1:
        raise InputError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.min_grain_area < 1:
        raise InputError(f"--min-grain-area must be >= 1, got {args.min_grain_area}")
    return budget
