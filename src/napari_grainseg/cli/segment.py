"""``grainseg segment``: micrographs → boundaries, grains, measurements and figures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_grainseg.cli._common import (
    add_measurement_arguments,
    add_segmentation_arguments,
    load_micrograph,
    measurement_options,
    segment_options_from_args,
)
from napari_grainseg.cli._limits import add_max_pixels_argument, add_output_safety_arguments
from napari_grainseg.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="find grain boundaries and measure grains",
        description="Segment micrographs into grains and write, per input, DIR/<stem>_boundaries.tif "
        "(uint8, 1 = boundary), DIR/<stem>_grains.tif (uint32 labels, 0 = boundary), "
        "<stem>_grains.csv, <stem>_summary.json, <stem>_histogram.png (and .svg with --svg) and <stem>_overlay.png, "
        "then <stem>_done.json listing them all (size, SHA-256). A field's files are written to a staging "
        "folder and moved in as a set; one run at a time uses DIR. Give INPUT files or --sample, not both. "
        "--min-grain-area applies to building the grains and to measuring them.",
        usage="%(prog)s (INPUT [INPUT ...] | --sample) --out DIR [options]",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="micrograph files (or --sample)")
    p.add_argument("--sample", action="store_true", help="segment the bundled real TEM micrograph (instead of INPUT)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    add_segmentation_arguments(p, scope="the files")
    add_measurement_arguments(p, min_area=False)
    add_max_pixels_argument(p)
    add_output_safety_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_grainseg.batch import check_resampling
    from napari_grainseg.io.outputs import FolderLock, check_output_dir

    options = segment_options_from_args(args)
    if args.sample and args.inputs:
        raise InputError("give input files or --sample, not both")
    sources = [None] if args.sample else args.inputs
    if not sources:
        raise InputError("no input: give micrograph files, or --sample for the bundled one")
    check_output_dir(args.out, create=False)  # a file, under a file, read-only...: before any reading
    # Read everything first: a bad file fails before any long computation.
    micrographs = [
        load_micrograph(src, sample=args.sample, pixel_size_nm=args.pixel_size, max_pixels=args.max_pixels)
        for src in sources
    ]
    stems = [Path(m.source).stem for m in micrographs]
    report_options = measurement_options(args)
    min_area = report_options["min_area"]
    for m in micrographs:  # a minimum grain area larger than the image leaves nothing: say so before computing
        if min_area is not None and min_area > m.data.size:
            raise InputError(
                f"--min-grain-area {min_area} px is larger than {m.source} ({m.data.shape[0]}x{m.data.shape[1]} "
                f"= {m.data.size} px): no grain could be kept"
            )
    if report_options["exclude"] is not None:
        for m in micrographs:
            if m.data.shape != report_options["exclude"].shape:
                raise InputError(
                    f"--exclude {args.exclude}: the mask is {report_options['exclude'].shape[0]}x"
                    f"{report_options['exclude'].shape[1]} px but {m.source} is "
                    f"{m.data.shape[0]}x{m.data.shape[1]}"
                )
    if len(set(stems)) != len(stems):
        raise InputError(
            "several inputs have the same file name; their outputs would collide "
            "(use grainseg batch, which mirrors folders)"
        )
    for m in micrographs:
        try:
            gsize = options.grain_size_for(m.pixel_size_nm, where=m.source, fix="add --pixel-size NM")
        except InputError as exc:
            raise InputError(f"--grain-size-nm: {exc}") from None
        # checked here, before any computation; segment() resolves the same size for each image
        check_resampling(m.shape, gsize, args.max_pixels, name=Path(m.source).name)
    check_output_dir(args.out)  # made only now: a bad input leaves no empty folder behind
    lock = FolderLock(args.out, wait=args.wait).acquire()
    try:
        return _segment_all(args, options, micrographs, stems, lock.run_id, report_options)
    finally:
        lock.release()


def _segment_all(args, options, micrographs, stems, run_id: str, report_options: dict) -> int:
    """Segment each micrograph and commit its files as a set (the caller holds the folder's lock)."""
    from tqdm import tqdm

    from napari_grainseg.batch import FIELD_OUTPUT_SUFFIXES
    from napari_grainseg.io.atomic import as_output_error
    from napari_grainseg.io.outputs import (
        check_not_edited,
        commit_field,
        read_marker,
        remove_stale_staging,
        staging_dir,
    )
    from napari_grainseg.models.device import describe_device
    from napari_grainseg.segmentation.pipeline import segment, write_segmentation

    remove_stale_staging(args.out, run_id)
    suffixes = FIELD_OUTPUT_SUFFIXES + (("_histogram.svg",) if report_options["svg"] else ())
    names = {stem: [stem + suffix for suffix in suffixes] for stem in stems}
    hashes = {stem: _input_sha256(m.source) for m, stem in zip(micrographs, stems, strict=True)}  # read once
    for m, stem in zip(micrographs, stems, strict=True):  # before any computation, unless --overwrite:
        check_not_edited(args.out, stem, names[stem], overwrite=args.overwrite)  # outputs edited by hand
        if not args.overwrite and _another_input(read_marker(args.out, stem), m.source, hashes[stem]):
            raise InputError(
                f"{args.out} already holds the results of another file named like {Path(m.source).name} under "
                f"'{stem}'; {m.source} would replace them: choose another --out, or add --overwrite"
            )
    device = options.compute_device()
    model = options.net1(device)
    print(f"grainseg: running on {describe_device(device, model)}", file=sys.stderr)
    budget = options.net2_budget()
    net2_model = options.net2(device) if budget else None
    if options.net2_auto and not budget:
        print("grainseg: no Net2 weights shipped; using Net1 only", file=sys.stderr)
    for m, stem in tqdm(list(zip(micrographs, stems)), desc="segment", unit="image", disable=len(micrographs) < 2):
        # the grain size of each image: nm -> px, and an adapted model's scale by its pixel size
        tiles = _TileBar(Path(m.source).stem, disable=len(micrographs) > 1)  # one image: its tiles instead
        try:
            result = segment(
                m.data, options, pixel_size_nm=m.pixel_size_nm, model=model, net2_model=net2_model, progress=tiles
            )
        finally:
            tiles.close()
        stage = staging_dir(args.out, stem, run_id)
        try:
            written = write_segmentation(
                stage,
                stem,
                m.data,
                result,
                pixel_size_nm=m.pixel_size_nm,
                extra={"source": m.source, "pixel_size_nm": m.pixel_size_nm},
                calibration_source=m.metadata.get("calibration_source"),
                **report_options,
            )
            measurement_warnings = json.loads(written["json"].read_text())["warnings"]
            commit_field(
                stage,
                args.out,
                stem,
                expected=names[stem],
                extra={
                    "input": str(Path(m.source).resolve()),
                    "input_sha256": hashes[stem],
                    "command": "segment",
                    "n_grains": int(result.labels.max()),
                },
            )
        except OSError as exc:
            raise as_output_error(exc, args.out / stem) from exc
        finally:
            if stage.exists():
                import shutil

                shutil.rmtree(stage, ignore_errors=True)
        net2 = (
            (
                f", Net2 {result.refine_steps} steps {result.refine_seconds:.2f} s"
                + ("" if result.refine_converged else " (not converged)")
            )
            if result.refine_steps
            else ""
        )
        n = int(result.labels.max())
        scale = result.prediction.scale
        resampled = f", image resampled ×{scale:.2g}" if scale != 1.0 else ""
        print(
            f"{stem}: {n} grain{'' if n == 1 else 's'} ({result.builder_words}){resampled}, "
            f"Net1 {result.prediction.seconds:.2f} s{net2} → {args.out}",
            file=sys.stderr,
        )
        for warning in measurement_warnings:  # what the summary JSON records, as `measure` says it
            print(f"grainseg: warning: {stem}: {warning}", file=sys.stderr)
    return 0


def _input_sha256(source) -> str | None:
    """The SHA-256 of an input file (None for the bundled sample, read from the package)."""
    from napari_grainseg.io.outputs import file_record

    path = Path(source) if source else None
    return file_record(path)["sha256"] if path is not None and path.is_file() else None


def _another_input(marker: dict | None, source, sha256: str | None) -> bool:
    """Whether a field's completion marker records another input than ``source`` (content ``sha256``):
    by content when the marker has its hash (a project folder moved elsewhere is still the same
    input), else by path where that file still exists."""
    if not marker or not marker.get("input") or not source:
        return False
    if marker.get("input_sha256"):
        return marker["input_sha256"] != sha256
    earlier = Path(marker["input"])
    return earlier != Path(source).resolve() and earlier.is_file()


#: Fewest Net1 tiles of a single image for which ``segment`` shows a tile bar (a 2048² image has 4).
MIN_TILES_FOR_A_BAR = 4


class _TileBar:
    """Net1's tiles as a tqdm bar on stderr (for a single large image, where the per-image bar
    would show nothing for minutes); then "building grains" until the field is done."""

    def __init__(self, name: str, disable: bool) -> None:
        self.name, self.disable, self.bar = name, disable, None

    def __call__(self, done: int, total: int) -> None:
        if self.disable or total < MIN_TILES_FOR_A_BAR:  # a few tiles take a second: no bar to flash by
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"{self.name}: Net1", unit="tile", file=sys.stderr)
        if total != self.bar.total or done < self.bar.n:  # another pass (e.g. the automatic scale's)
            self.bar.reset(total=total)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.bar.set_postfix_str("building grains")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
