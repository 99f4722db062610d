"""``grainseg batch``: a folder of micrographs → per-field results and sample statistics, on Dask."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_grainseg.cli._common import add_segmentation_arguments, segment_options_from_args
from napari_grainseg.cli._limits import add_max_pixels_argument, add_output_safety_arguments, bounded_int

#: Most torch/OpenCV threads one local worker may use.
MAX_THREADS_PER_WORKER = 256


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="segment a folder of micrographs (parallel, resumable) with sample statistics",
        description="Segment every micrograph of a folder (recursively) or glob pattern. Outputs mirror "
        "the input folders: IN/a/x.tif -> DIR/a/x_grains.tif, x_summary.json... plus x_done.json, written "
        "last, listing every output with its size and SHA-256. Inputs whose outputs are complete and "
        "unchanged are skipped (resume); outputs edited by hand stop the run unless --overwrite. Files "
        "named like outputs or targets (*_grains, *_boundaries, *_labels, *_overlay, *_histogram) are not "
        "inputs. One run at a time uses DIR (a second stops at once, or waits with --wait). "
        "DIR/sample_summary.json pools all "
        "fields (histograms, lognormal fit, ASTM G, per-field mean, 95% CI and %RA); DIR/failures.json "
        "lists files that failed. Exit status: 0 all fields done, 1 some failed, 2 a user error (bad argument, "
        "unusable output folder or weights, folder in use, outputs edited by hand, disk full).",
    )
    p.add_argument(
        "input",
        metavar="INPUT_DIR_OR_GLOB",
        help="folder (searched recursively) or quoted glob pattern, e.g. 'fields/**/*.tif'",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument(
        "--workers",
        type=bounded_int(1),
        default=None,
        metavar="N",
        help="worker processes of the local Dask cluster, T threads each (default: CPU cores // T, "
        "at most one per input; 1 = serial in this process, no Dask)",
    )
    p.add_argument(
        "--threads-per-worker",
        type=bounded_int(1, MAX_THREADS_PER_WORKER),
        default=1,
        metavar="T",
        help=f"torch/OpenCV threads per local worker, 1 to {MAX_THREADS_PER_WORKER} (default: 1)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on an existing Dask cluster, e.g. tcp://host:8786 (workers use their own thread count)",
    )
    add_segmentation_arguments(p, scope="every file")
    add_max_pixels_argument(p)
    add_output_safety_arguments(p)
    p.add_argument("--no-resume", action="store_true", help="process every input even if its outputs are complete")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_grainseg.batch import BatchOptions, check_resampling, discover_inputs
    from napari_grainseg.errors import InputError
    from napari_grainseg.io.outputs import FolderLock, check_output_dir

    if args.model is not None and args.grain_size_nm is not None:
        raise InputError("with --model, give the grain size in px (--grain-size) or none (the model's own)")
    options = segment_options_from_args(
        args,
        BatchOptions,
        pixel_size_nm=args.pixel_size,
        threads=None if args.scheduler else args.threads_per_worker,
        max_pixels=args.max_pixels,
    )
    if args.scheduler is not None and args.workers is not None:
        raise InputError("--workers starts a local cluster; with --scheduler the cluster's workers are used")
    if args.grain_size is not None:  # an absurd hint is refused before anything runs
        check_resampling(None, args.grain_size, 0, name="every field")
    items = discover_inputs(args.input, args.out)
    check_output_dir(args.out)
    with FolderLock(args.out, wait=args.wait) as lock:
        return _run_locked(args, options, items, lock.run_id)


def _run_locked(args, options, items, run_id: str) -> int:
    from napari_grainseg.batch import run_batch, write_sample_summary
    from napari_grainseg.io.outputs import remove_stale_staging

    remove_stale_staging(args.out, run_id)  # e.g. .part files of a sample summary a killed run was writing

    from napari_grainseg.models.device import available_cores

    workers = args.workers or max(1, min(len(items), available_cores() // args.threads_per_worker))
    where = args.scheduler or ("this process" if workers == 1 else f"{workers} local Dask workers")
    print(f"grainseg: {len(items)} micrographs, running on {where}", file=sys.stderr)
    result = run_batch(
        items,
        options,
        workers=workers,
        scheduler=args.scheduler,
        resume=not args.no_resume,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        run_id=run_id,
    )
    sample = write_sample_summary(args.out, items, result)
    for f in result.failures:  # the error names its file already, or the line does
        named = f["error"].startswith(Path(f["input"]).name + ":") or f["input"] in f["error"]
        print(f"grainseg: failed: {f['error'] if named else f['input'] + ': ' + f['error']}", file=sys.stderr)
    pooled = sample["pooled"]
    g = pooled.get("astm_g_planimetric")
    print(
        f"grainseg: {result.count('processed')} processed, {result.count('skipped')} skipped (already done), "
        f"{len(result.failures)} failed in {result.seconds:.1f} s; {pooled['n_grains_included']} complete "
        f"grains pooled"
        + (f", G (planimetric) = {g:.2f}" if g is not None else "")
        + f" -> {args.out / 'sample_summary.json'}",
        file=sys.stderr,
    )
    for warning in pooled.get("warnings") or []:
        print(f"grainseg: warning: pooled: {warning}", file=sys.stderr)
    return 1 if result.failures else 0
