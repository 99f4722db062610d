"""Argument helpers shared by the ``grainseg`` subcommands."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from napari_grainseg.cli._limits import bounded_float, bounded_int, nonempty, pixel_size_nm
from napari_grainseg.errors import InputError
from napari_grainseg.segmentation.edges import EdgeParams
from napari_grainseg.segmentation.grains import (
    DEFAULT_GRAIN_BUILDER,
    DEFAULT_MIN_GRAIN_AREA,
    DEFAULT_WATERSHED_H,
    GRAIN_BUILDERS,
    MAX_WATERSHED_H,
)

#: Net2 steps when ``--net2-steps`` is not given (and no --model directory recommends others): Net1 only.
DEFAULT_NET2_STEPS = "0"


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
    g.add_argument(
        "--stretch-percentiles",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=(1.0, 99.0),
        help="contrast-stretch percentiles (default: 1 99)",
    )
    g.add_argument(
        "--median-size", type=bounded_int(1, 101), default=7, help="median filter size, odd, 1 to 101 (default: 7)"
    )
    g.add_argument("--sobel-threshold", type=float, default=None, help="Sobel magnitude threshold")
    g.add_argument(
        "--log-sigma",
        type=bounded_float(0, 50, lo_open=True, what="LoG sigma"),
        default=2.0,
        help="LoG sigma in px, > 0 and <= 50 (default: 2)",
    )
    g.add_argument("--log-threshold", type=float, default=None, help="LoG zero-crossing threshold")
    g.add_argument(
        "--canny-sigma",
        type=bounded_float(0, 50, lo_open=True, what="Canny sigma"),
        default=math.sqrt(2),
        help="Canny sigma in px, > 0 and <= 50 (default: 1.414)",
    )
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


def load_micrograph(
    path: str | Path | None, *, sample: bool = False, pixel_size_nm: float | None = None, max_pixels: int | None = None
):
    """Read the input micrograph (or the bundled sample) and apply a pixel-size override.

    ``max_pixels``: largest image accepted (None: the readers' default; 0: no limit).
    """
    from napari_grainseg.io.readers import read_micrograph
    from napari_grainseg.io.samples import interconnect_tem_path

    if sample:
        if path is not None:
            raise InputError("give either an input file or --sample, not both")
        path = interconnect_tem_path()
    elif path is None:
        raise InputError("no input: give a micrograph file, or --sample for the bundled one")
    micrograph = read_micrograph(path, max_pixels=max_pixels)
    if pixel_size_nm is not None:
        warn_if_calibration_replaced(pixel_size_nm, micrograph.pixel_size_nm, Path(path).name)
        micrograph = micrograph.with_pixel_size(pixel_size_nm)
    return micrograph


def warn_if_calibration_replaced(given: float, stored: float | None, source: str) -> None:
    """Warn when ``--pixel-size`` differs from a file's own calibration by more than 10 %.

    A value typed in the wrong unit (um for nm) is 1000x off: the warning names both and the ratio.
    """
    if stored is not None and abs(given - stored) > 0.1 * stored:
        print(
            f"grainseg: warning: --pixel-size {given:g} nm replaces the calibration of "
            f"{source}, {stored:.6g} nm ({given / stored:.3g}x)",
            file=sys.stderr,
        )


def add_segmentation_arguments(parser: argparse.ArgumentParser, *, scope: str = "the file") -> None:
    """Add the options of the segmentation pipeline shared by ``segment`` and ``batch``."""
    parser.add_argument(
        "--pixel-size",
        type=pixel_size_nm,
        metavar="NM",
        help=f"pixel size in nm (overrides the calibration of {scope})",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--grain-size",
        type=positive_float,
        metavar="PX",
        help="expected mean grain diameter in pixels (default: estimated per image)",
    )
    size.add_argument(
        "--grain-size-nm",
        type=positive_float,
        metavar="NM",
        help="expected mean grain diameter in nm (needs a pixel size)",
    )
    parser.add_argument(
        "--device", type=nonempty, default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda or mps (default: auto)"
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "torch"),
        default="auto",
        help="how Net1 runs: auto = through OpenCV on the CPU when the weights have an ONNX export "
        "(the shipped ones do; about twice as fast, no PyTorch import), else PyTorch; torch = always "
        "PyTorch (default: auto)",
    )
    parser.add_argument(
        "--net2-steps",
        default=None,  # None: not given (DEFAULT_NET2_STEPS, or a --model directory's recommendation)
        metavar="auto|N",
        help="Net2 refinement: 0 = Net1 only, auto = until converged (at most 30 steps), "
        f"N = at most N steps (default: {DEFAULT_NET2_STEPS}; on real hand-traced crops Net2 made grains worse, "
        "docs/generalisation.md)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        metavar="MODEL_DIR",
        help="an adapted model directory (grainseg finetune) instead of the shipped model",
    )
    parser.add_argument("--weights", type=Path, help="Net1 weights file (default: shipped weights)")
    parser.add_argument("--net2-weights", type=Path, help="Net2 weights file (default: shipped weights)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,  # None: not given (SegmentOptions' 0.5), so a builder's flag given for the other is seen
        help="with --grains threshold: boundary probability threshold, between 0 and 1 (default: 0.5)",
    )
    parser.add_argument(
        "--grains",
        choices=GRAIN_BUILDERS,
        default=None,  # None: not given (DEFAULT_GRAIN_BUILDER, or a --model directory's recommendation)
        help="how grains are built from the final boundary map: every basin of its watershed deeper than "
        "--watershed-h (closes faint boundaries, ignores shallow texture lines; lower VI than the "
        "threshold on every test set, real hand-traced crops included, docs/generalisation.md; works "
        "on the whole image at once, about 0.2 s per 1024² field), or threshold it "
        f"at --threshold (default: {DEFAULT_GRAIN_BUILDER})",
    )
    parser.add_argument(
        "--watershed-h",
        type=bounded_float(0.0, MAX_WATERSHED_H, lo_open=True, what="watershed depth"),
        default=None,  # None: not given (DEFAULT_WATERSHED_H), as --threshold
        metavar="H",
        help="with --grains watershed: how far below the lowest ridge around it the floor of a basin of "
        "the boundary probability must lie for the basin to become a grain. Deeper (0.4-0.5) ignores "
        "the texture lines of real etched or textured micrographs; shallower (0.1) keeps very fine grains "
        f"(docs/generalisation.md; default: {DEFAULT_WATERSHED_H})",
    )
    parser.add_argument(
        "--min-grain-area",
        type=int,
        default=DEFAULT_MIN_GRAIN_AREA,
        help=f"smallest grain kept, px (default: {DEFAULT_MIN_GRAIN_AREA})",
    )
    parser.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average Net1 over the eight turned and flipped copies (8x Net1's time; "
        "effect measured in docs/generalisation.md)",
    )


#: The command-line flag of each :class:`~napari_grainseg.segmentation.options.SegmentOptions` field.
OPTION_FLAGS = {
    "net2_steps": "--net2-steps",
    "grain_size_px": "--grain-size",
    "grain_size_nm": "--grain-size-nm",
    "grains": "--grains",
    "threshold": "--threshold",
    "min_grain_area": "--min-grain-area",
    "device": "--device",
    "weights": "--weights",
    "net2_weights": "--net2-weights",
    "pixel_size_nm": "--pixel-size",
    "max_pixels": "--max-pixels",
    "watershed_h": "--watershed-h",
    "tta": "--tta",
    "backend": "--backend",
    "model_grain_size_px": "--model",
    "model_grain_size_nm": "--model",
}


def model_dir_from_args(args: argparse.Namespace) -> dict | None:
    """For ``--model``: its ``model.json`` (None without ``--model``), with ``args.weights`` set to its Net1.

    A model directory brings its own weights, so ``--weights`` / ``--net2-weights`` beside it are an
    error; a bad directory fails here, before any computation.
    """
    if getattr(args, "model", None) is None:
        return None
    from napari_grainseg.models.model_dir import read_model_info

    if args.weights is not None or args.net2_weights is not None:
        raise InputError("--model brings its own weights: give --model or --weights/--net2-weights, not both")
    info = read_model_info(args.model)
    args.weights = args.model / "net1.pt"
    return info


def check_builder_flags(grains: str, *, threshold_given: bool, depth_given: bool, from_model: bool = False) -> None:
    """Refuse a grain builder's parameter given for the other builder, which would be ignored silently.

    ``--watershed-h`` only sets the watershed and ``--threshold`` only the threshold; a user who
    typed one of them (in any form argparse takes: ``--watershed-h=0.4``, ``--watershed 0.4``)
    expects it to change the result. ``from_model``: the builder came from a ``--model``
    directory's recommendation, which the error then names.

    Examples
    --------
    >>> check_builder_flags("threshold", threshold_given=True, depth_given=False)
    >>> check_builder_flags("threshold", threshold_given=False, depth_given=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    napari_grainseg.errors.InputError: --watershed-h sets the watershed's basin depth, but grains ...
    """
    flag, builder, given = (
        ("--threshold", "threshold", threshold_given)
        if grains == "watershed"
        else ("--watershed-h", "watershed", depth_given)
    )
    if not given:
        return
    what = "the boundary threshold" if flag == "--threshold" else "the watershed's basin depth"
    source = " (the --model directory's choice)" if from_model else ""
    raise InputError(
        f"{flag} sets {what}, but grains are built by {grains}{source} here; add --grains {builder} or leave {flag} out"
    )


def segment_options_from_args(args: argparse.Namespace, cls=None, **more):
    """The :class:`~napari_grainseg.segmentation.options.SegmentOptions` of :func:`add_segmentation_arguments`.

    ``cls``: a subclass to make instead (e.g. :class:`~napari_grainseg.batch.BatchOptions`),
    with its further fields in ``more``. Bad values are one-line errors that name the flag.
    """
    from napari_grainseg.models.model_dir import model_grain_size_nm
    from napari_grainseg.segmentation.options import OptionError, SegmentOptions

    for flag, path in (("--weights", args.weights), ("--net2-weights", args.net2_weights)):
        if path is not None and not path.is_file():
            raise InputError(f"{flag}: weights file not found: {path}")
    args.model_info = model_dir_from_args(args)
    # what the command line gave (argparse's None: not given, in any form argparse accepts, abbreviations
    # included), so a --model directory's recommendation yields to exactly what the user typed
    given = {k: v for k, v in (("threshold", args.threshold), ("watershed_h", args.watershed_h)) if v is not None}
    grains_given, net2_given = args.grains is not None, args.net2_steps is not None
    args.grains = args.grains if grains_given else DEFAULT_GRAIN_BUILDER
    args.net2_steps = args.net2_steps if net2_given else DEFAULT_NET2_STEPS
    builder_values = given
    if args.model_info is not None:
        net2 = args.model / "net2.pt"
        recommended = args.model_info.get("recommended", {})
        if recommended.get("net2_steps") == "auto" and not net2_given:
            args.net2_steps = "auto"  # its adapted Net2 helped on its held-out images
        if net2.is_file() and (args.net2_steps.strip().lower() != "auto" or recommended.get("net2_steps", 1)):
            args.net2_weights = net2
        elif args.net2_steps.strip().lower() == "auto":
            args.net2_steps = "0"  # auto: the model directory's recommendation (its Net2 is not adapted)
        # the grain builder tuned on the model's corrections, unless given on the command line
        if recommended.get("grains") and not grains_given:
            args.grains = recommended["grains"]
            tuned = {k: float(recommended[k]) for k in ("threshold", "watershed_h") if k in recommended}
            builder_values = {**tuned, **given}
    check_builder_flags(
        args.grains,
        threshold_given="threshold" in given,
        depth_given="watershed_h" in given,
        from_model=args.model_info is not None,
    )
    try:
        return (cls or SegmentOptions)(
            net2_steps=args.net2_steps,
            grain_size_px=args.grain_size,
            grain_size_nm=args.grain_size_nm,
            grains=args.grains,
            min_grain_area=args.min_grain_area,
            device=args.device,
            **builder_values,
            weights=str(args.weights) if args.weights else None,
            net2_weights=str(args.net2_weights) if args.net2_weights else None,
            tta=bool(getattr(args, "tta", False)),
            backend=getattr(args, "backend", "auto"),
            # the scale the model was adapted at, converted per image by its pixel size (SegmentOptions.grain_size_for)
            model_grain_size_px=(args.model_info or {}).get("grain_size_px"),
            model_grain_size_nm=model_grain_size_nm(args.model_info or {}),
            **more,
        )
    except OptionError as exc:
        raise InputError(f"{OPTION_FLAGS.get(exc.field, exc.field)}: {exc}") from None


def add_measurement_arguments(parser: argparse.ArgumentParser, *, min_area: bool = True) -> None:
    """Add the options of every measurement: an exclusion mask, the smallest grain, SVG figures.

    ``min_area=False`` when the command already has ``--min-grain-area`` (``segment``).
    """
    parser.add_argument(
        "--exclude",
        type=Path,
        default=None,
        metavar="MASK",
        help="mask image (.tif/.png/.npy, same size; non-zero = excluded) of pixels left out "
        "of the measurement: grains overlapping it are dropped, N_A uses the remaining area",
    )
    if min_area:
        parser.add_argument(
            "--min-grain-area",
            type=int,
            default=1,
            metavar="PX",
            help="smallest grain measured, px; smaller grains are shared out to their "
            "neighbours (default: 1, every grain)",
        )
    parser.add_argument("--svg", action="store_true", help="also write the histogram as SVG")


def measurement_options(args: argparse.Namespace, shape: tuple[int, int] | None = None) -> dict:
    """``min_area``, ``exclude`` (read and checked against ``shape``) and ``svg`` for the report."""
    from napari_grainseg.measure.table import validate_exclude_mask

    if args.min_grain_area < 1:
        raise InputError(f"--min-grain-area must be >= 1, got {args.min_grain_area}")
    mask = None
    if args.exclude is not None:
        from napari_grainseg.io.readers import read_array

        mask = read_array(args.exclude, "mask", getattr(args, "max_pixels", None), mask=True)
        try:
            mask = validate_exclude_mask(mask, shape if shape is not None else mask.shape)
        except InputError as exc:
            raise InputError(f"--exclude {args.exclude}: {exc}") from None
    return {"min_area": args.min_grain_area, "exclude": mask, "svg": args.svg}
