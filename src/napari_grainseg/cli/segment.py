"""``grainseg segment``: micrographs → boundaries, grains, measurements and figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_grainseg.errors import InputError
from napari_grainseg.cli._common import add_segmentation_arguments, check_segmentation_arguments, load_micrograph


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="find grain boundaries and measure grains",
        description="Segment micrographs into grains and write, per input, DIR/<stem>_boundaries.tif "
        "(uint8, 1 = boundary), DIR/<stem>_grains.tif (uint32 labels, 0 = boundary), "
        "<stem>_grains.csv, <stem>_summary.json, <stem>_histogram.png/.svg and <stem>_overlay.png.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="micrograph files")
    p.add_argument("--sample", action="store_true", help="segment the bundled real TEM micrograph")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    add_segmentation_arguments(p, scope="the files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_grainseg.models.device import describe_device, select_device
    from napari_grainseg.models.weights import load_net1
    from napari_grainseg.segmentation.pipeline import net2_available, segment, write_segmentation

    budget = check_segmentation_arguments(args)
    if args.sample and args.inputs:
        raise InputError("give input files or --sample, not both")
    sources = [None] if args.sample else args.inputs
    if not sources:
        raise InputError("no input: give micrograph files, or --sample for the bundled one")
    # Read everything first: a bad file fails before any long computation.
    micrographs = [load_micrograph(src, sample=args.sample, pixel_size_nm=args.pixel_size) for src in sources]
    stems = [Path(m.source).stem for m in micrographs]
    if len(set(stems)) != len(stems):
        raise InputError("several inputs have the same file name; their outputs would collide "
                         "(use grainseg batch, which mirrors folders)")
    grain_sizes = []
    for m in micrographs:
        if args.grain_size_nm is not None:
            if m.pixel_size_nm is None:
                raise InputError(f"--grain-size-nm needs a pixel size, but {m.source} is not calibrated: "
                                 "add --pixel-size NM")
            size = args.grain_size_nm / m.pixel_size_nm
            if getattr(args, "model", None) is not None:  # at the scale the model was adapted at
                from napari_grainseg.models.model_dir import inference_grain_size

                size = inference_grain_size(size)
            grain_sizes.append(size)
        else:
            grain_sizes.append(args.grain_size)
    device = select_device(args.device)
    print(f"grainseg: running on {describe_device(device)}", file=sys.stderr)
    model = load_net1(args.weights, device=device)
    net2_model = None
    if budget and (args.net2_weights is not None or args.net2_steps.strip().lower() != "auto" or net2_available()):
        from napari_grainseg.models.weights import load_net2

        net2_model = load_net2(args.net2_weights, device=device)
    elif budget:
        print("grainseg: no Net2 weights shipped; using Net1 only", file=sys.stderr)
    for m, stem, gsize in tqdm(list(zip(micrographs, stems, grain_sizes)), desc="segment", unit="image",
                               disable=len(micrographs) < 2):
        result = segment(m.data, model=model, device=device, grain_size_px=gsize, threshold=args.threshold,
                         min_grain_area=args.min_grain_area, net2_steps=budget if net2_model else 0,
                         net2_model=net2_model, grains=args.grains,
                         watershed_h=getattr(args, "watershed_h", 0.1))
        write_segmentation(args.out, stem, m.data, result, pixel_size_nm=m.pixel_size_nm,
                           extra={"source": m.source, "pixel_size_nm": m.pixel_size_nm})
        net2 = (f", Net2 {result.refine_steps} steps {result.refine_seconds:.2f} s"
                + ("" if result.refine_converged else " (not converged)")) if result.refine_steps else ""
        print(f"{stem}: {int(result.labels.max())} grains, scale {result.prediction.scale:.2f}, "
              f"Net1 {result.prediction.seconds:.2f} s{net2} → {args.out}", file=sys.stderr)
    return 0
