"""``grainseg train net1|net2``: train a model on synthetic data (resumable)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from napari_grainseg.cli._common import positive_float


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a network on synthetic data (resumable)",
        description="Train a network on the endless synthetic stream, with validation on a fixed "
        "held-out set, checkpoints and resume. Run the same command again to continue an "
        "interrupted run. The final weights + config + git revision are written to --out.",
    )
    p.add_argument(
        "model",
        choices=["net1", "net2"],
        help="which network to train: net1 (boundary U-Net) or net2 (the refiner; trained on "
        "the outputs of a given Net1)",
    )
    p.add_argument("--config", type=Path, help="JSON file with training settings (see TrainConfig / Net2TrainConfig)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<model>)")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda or mps (default: auto)")
    p.add_argument("--steps", type=int, help="override the number of steps")
    p.add_argument("--max-minutes", type=positive_float, help="stop cleanly after this many minutes")
    p.add_argument("--no-resume", action="store_true", help="start again even if a checkpoint exists")
    p.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    p.add_argument(
        "--net1-weights",
        type=Path,
        help="net2 only: the Net1 whose outputs Net2 learns to refine (default: shipped Net1)",
    )
    p.add_argument(
        "--pool-cache",
        type=Path,
        help="net2 only: folder caching the synthetic pool with its Net1 outputs (default: --out)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_grainseg.errors import InputError

    if args.model == "net2":
        from napari_grainseg.training.net2 import Net2TrainConfig as Config
    else:
        from napari_grainseg.training.net1 import TrainConfig as Config

        if args.net1_weights is not None or args.pool_cache is not None:
            raise InputError("--net1-weights and --pool-cache apply to net2 only")
    config = Config.from_json(args.config) if args.config else Config()
    if args.steps is not None:
        config = dataclasses.replace(config, steps=args.steps)
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    out = args.out or Path("runs") / args.model
    from napari_grainseg.io.outputs import check_output_dir

    check_output_dir(out)  # a file, under a file, read-only: a one-line error before any work
    if args.model == "net2":
        from napari_grainseg.training.net2 import train_net2

        summary = train_net2(
            config,
            out,
            net1_weights=args.net1_weights,
            device=args.device,
            resume=not args.no_resume,
            max_minutes=args.max_minutes,
            pool_cache=args.pool_cache,
        )
    else:
        from napari_grainseg.training.net1 import train_net1

        summary = train_net1(config, out, device=args.device, resume=not args.no_resume, max_minutes=args.max_minutes)
    state = "finished" if summary["finished"] else "paused (run again to resume)"
    print(
        f"{args.model} training {state} at step {summary['step']}/{summary['steps']} on "
        f"{summary['device']}; metrics {summary['metrics']}",
        file=sys.stderr,
    )
    if summary.get("weights"):
        print(f"weights: {summary['weights']}", file=sys.stderr)
    return 0
