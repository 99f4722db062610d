"""``grainseg finetune``: adapt Net1 to a lab's own micrographs from corrected results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_grainseg.cli._common import positive_float
from napari_grainseg.cli._limits import pixel_size_nm
from napari_grainseg.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="adapt the model to your micrographs from corrected results",
        description="Fine-tune Net1 from the shipped weights on corrected micrographs and write a model "
        "directory (net1.pt, net2.pt, model.json with the base model, the SHA-256 of every training file, "
        "the config, the loss curve and, with >= 2 images, held-out figures against the base model). "
        "Use it with grainseg segment/batch/eval --model MODEL_DIR. With --from, the images recorded in "
        "that model are used again together with the new ones, and training starts again from the base "
        "model (not from the adapted one, which would drift and forget). Ctrl-C stops training cleanly "
        "and saves the model so far.",
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="corrected micrographs")
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--labels",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="grain label images, one per IMAGE in the same order (each grain a positive id; "
        "0 = boundary; a boundary also wherever two ids meet)",
    )
    target.add_argument(
        "--boundaries",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="boundary masks, one per IMAGE (non-zero = boundary, lines of any width, e.g. a "
        "corrected *_boundaries.tif); lines are thinned to their centre",
    )
    p.add_argument(
        "--roi",
        nargs="+",
        type=Path,
        metavar="MASK",
        help="masks of the verified part of each image (non-zero = verified); the rest is ignored",
    )
    p.add_argument("--out", required=True, type=Path, help="model directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    p.add_argument(
        "--from",
        dest="from_dir",
        type=Path,
        metavar="MODEL_DIR",
        help="learn again: add the corrections recorded in MODEL_DIR and train from its base model",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, metavar="N", help="optimiser steps (default 300)")
    budget.add_argument(
        "--minutes",
        type=positive_float,
        metavar="M",
        help="train for this long instead of a number of steps (not reproducible step for step)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of crops, augmentation and split (default 0)")
    p.add_argument(
        "--holdout",
        type=float,
        default=None,
        metavar="SHARE",
        help="share of the images held out to check the adapted model against the base (with >= 2 "
        "images at least one; 0 = none; default 0.25)",
    )
    p.add_argument(
        "--net2-steps",
        type=int,
        default=None,
        metavar="N",
        help="also adapt Net2 for N steps on (adapted Net1 map -> corrected map) pairs; segment then runs "
        "it by default only if it helped on the held-out images (default 0: Net2 not adapted)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda or mps (default: auto)")
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--pixel-size",
        type=pixel_size_nm,
        metavar="NM",
        help="pixel size of the images in nm (recorded; with the measured grain size it lets "
        "the model pick the right scale on other calibrated images)",
    )
    size.add_argument(
        "--grain-size",
        type=positive_float,
        metavar="PX",
        help="mean grain diameter of the images in px (default: measured on the corrections)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_grainseg.models.model_dir import check_model_destination
    from napari_grainseg.training.finetune import adapt_and_save

    check_model_destination(args.out, overwrite=args.overwrite)  # before reading and training
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be >= 1, got {args.steps}")
    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    if args.net2_steps is not None and args.net2_steps < 0:
        raise InputError(f"--net2-steps must be >= 0, got {args.net2_steps}")
    if args.holdout is not None and not 0 <= args.holdout < 1:
        raise InputError(f"--holdout must be in [0, 1), got {args.holdout}")
    if args.images and args.labels is None and args.boundaries is None:
        raise InputError("give the corrections of the images: --labels FILE... or --boundaries FILE...")
    if not args.images and (args.labels or args.boundaries or args.roi):
        raise InputError("--labels/--boundaries/--roi need the IMAGE files they belong to")
    if not args.images and args.from_dir is None:
        raise InputError("no images: give corrected IMAGE files (and --labels or --boundaries), or --from MODEL_DIR")

    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        def progress(step, total, loss):
            nonlocal bar
            if bar is None:
                desc = "fine-tune Net1" + (" and Net2" if args.net2_steps else "")
                bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, file=sys.stderr)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
    else:
        progress = None
    try:
        out, info = adapt_and_save(
            args.images,
            labels=args.labels,
            boundaries=args.boundaries,
            rois=args.roi,
            out=args.out,
            from_dir=args.from_dir,
            steps=args.steps,
            minutes=args.minutes,
            seed=args.seed,
            holdout=args.holdout,
            net2_steps=args.net2_steps,
            device=args.device,
            pixel_size_nm=args.pixel_size,
            grain_size_px=args.grain_size,
            progress=progress,
            log=lambda text: print(f"grainseg: {text}", file=sys.stderr),
            overwrite=args.overwrite,
        )
    finally:
        if bar is not None:
            bar.close()
    n_held = sum(r.get("role") == "heldout" for r in info["training_images"])
    print(
        f"grainseg: {info['steps_done']} steps on {len(info['training_images']) - n_held} images "
        + (f"({n_held} held out) " if n_held else "")
        + f"({info['train_seconds']:.0f} s, {info['stopped']}); model -> {out}",
        file=sys.stderr,
    )
    from napari_grainseg.models.model_dir import magnification_warning

    if warning := magnification_warning(info):
        print(f"grainseg: WARNING: {warning}", file=sys.stderr)
    held = info.get("heldout")
    if held:
        base_builder = min(held["base"], key=lambda k: held["base"][k]["vi"])
        b, a = held["base"][base_builder], held["adapted"][held["best_grains"]]
        rec = info.get("recommended", {})
        setting = ", ".join(f"{k} {v}" for k, v in rec.items() if k not in ("grains", "net2_steps"))
        print(
            f"grainseg: held out {held['n_images']} image(s): base (grains by {base_builder}) -> adapted "
            f"(grains by {rec.get('grains')}{', ' + setting if setting else ''}): VI {b['vi']:.3f} -> "
            f"{a['vi']:.3f}, F1 {b['f1_2px']:.3f} -> {a['f1_2px']:.3f}, |count err| "
            f"{b['abs_grain_count_error']:.0%} -> {a['abs_grain_count_error']:.0%}",
            file=sys.stderr,
        )
        if "adapted_net2" in held:
            n = held["adapted_net2"][held["best_grains"]]
            print(
                f"grainseg: adapted Net2 on the held-out image(s): VI {a['vi']:.3f} -> {n['vi']:.3f} "
                + ("(helps: segment runs it by default)" if held["net2_helps"] else "(no help: Net1 only by default)"),
                file=sys.stderr,
            )
        if held["worse_than_base"]:
            print(
                "grainseg: WARNING: the adapted model scores worse than the base model on the held-out "
                "images (flagged in model.json); check the corrections or use more of them",
                file=sys.stderr,
            )
    return 0
