"""``grainseg batch``: a folder of micrographs → per-field results and sample statistics, on Dask."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from napari_grainseg.cli._common import add_segmentation_arguments, check_segmentation_arguments


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="segment a folder of micrographs (parallel, resumable) with sample statistics",
        description="Segment every micrograph of a folder (recursively) or glob pattern. Outputs mirror "
        "the input folders: IN/a/x.tif -> DIR/a/x_grains.tif, x_summary.json... plus x_done.json, written "
        "last. Inputs with complete outputs are skipped (resume). DIR/sample_summary.json pools all "
        "fields (histograms, lognormal fit, ASTM G, per-field mean, 95% CI and %RA); DIR/failures.json "
        "lists files that failed. Exit status: 0 all fields done, 1 some failed, 2 bad arguments.",
    )
    p.add_argument("input", metavar="INPUT_DIR_OR_GLOB",
                   help="folder (searched recursively) or quoted glob pattern, e.g. 'fields/**/*.tif'")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="worker processes of the local Dask cluster, 1 thread each "
                   "(default: the number of CPU cores; 1 = serial, no Dask)")
    p.add_argument("--threads-per-worker", type=_positive_int, default=1, metavar="T",
                   help="torch/OpenCV threads per local worker (default 1)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on an existing Dask cluster, e.g. tcp://host:8786 (workers use their own "
                   "thread count)")
    add_segmentation_arguments(p, scope="every file")
    p.add_argument("--no-resume", action="store_true", help="process every input even if its outputs are complete")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_grainseg.batch import BatchOptions, discover_inputs, run_batch, write_sample_summary
    from napari_grainseg.errors import InputError

    check_segmentation_arguments(args)
    if args.model is not None and args.grain_size_nm is not None:
        raise InputError("with --model, give the grain size in px (--grain-size) or none (the model's own)")
    steps = args.net2_steps if args.net2_steps.strip().lower() == "auto" else int(args.net2_steps)
    if args.scheduler is not None and args.workers is not None:
        raise InputError("--workers starts a local cluster; with --scheduler the cluster's workers are used")
    options = BatchOptions(weights=str(args.weights) if args.weights else None, device=args.device,
                           pixel_size_nm=args.pixel_size, grain_size_px=args.grain_size,
                           grain_size_nm=args.grain_size_nm, net2_steps=steps,
                           net2_weights=str(args.net2_weights) if args.net2_weights else None,
                           threshold=args.threshold, min_grain_area=args.min_grain_area, grains=args.grains,
                           threads=None if args.scheduler else args.threads_per_worker,
                           watershed_h=getattr(args, "watershed_h", 0.1))
    items = discover_inputs(args.input, args.out)
    workers = args.workers or max(1, min(len(items), (os.cpu_count() or 1) // args.threads_per_worker))
    where = args.scheduler or ("this process" if workers == 1 else f"{workers} local Dask workers")
    print(f"grainseg: {len(items)} micrographs, running on {where}", file=sys.stderr)
    result = run_batch(items, options, workers=workers, scheduler=args.scheduler,
                       resume=not args.no_resume, progress=not args.no_progress)
    sample = write_sample_summary(args.out, items, result)
    for f in result.failures:
        print(f"grainseg: failed: {f['input']}: {f['error']}", file=sys.stderr)
    pooled = sample["pooled"]
    g = pooled.get("astm_g_planimetric")
    print(f"grainseg: {result.count('processed')} processed, {result.count('skipped')} skipped (already done), "
          f"{len(result.failures)} failed in {result.seconds:.1f} s; {pooled['n_grains_included']} complete "
          f"grains pooled" + (f", G (planimetric) = {g:.2f}" if g is not None else "")
          + f" -> {args.out / 'sample_summary.json'}", file=sys.stderr)
    return 1 if result.failures else 0
