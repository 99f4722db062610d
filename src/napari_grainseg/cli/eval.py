"""``grainseg eval``: every method on the frozen synthetic test sets → a markdown table."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from napari_grainseg.cli._limits import bounded_int
from napari_grainseg.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    from napari_grainseg.evaluation.suite import DEFAULT_EVAL_SETS, EVAL_SETS, EXTRA_METHODS, METHODS

    p = sub.add_parser(
        "eval",
        help="evaluate the methods on frozen synthetic test sets",
        description="Run the methods on the frozen synthetic test sets (in distribution and out of "
        "distribution) and report boundary P/R/F1 at 1-3 px, variation of information, adapted Rand "
        "error, grain-count and mean-ECD errors, pixel accuracy and seconds per megapixel.",
    )
    p.add_argument(
        "--sets",
        nargs="+",
        default=list(DEFAULT_EVAL_SETS),
        choices=list(EVAL_SETS),
        metavar="SET",
        help=f"test sets (default: {', '.join(DEFAULT_EVAL_SETS)}; also "
        f"{', '.join(s for s in EVAL_SETS if s not in DEFAULT_EVAL_SETS)})",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        choices=list(METHODS + EXTRA_METHODS),
        metavar="METHOD",
        help=f"methods (default: all of {', '.join(METHODS)}; also {', '.join(EXTRA_METHODS)})",
    )
    p.add_argument("--limit", type=bounded_int(1), metavar="N", help="at most this many images per set (quick runs)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    p.add_argument(
        "--model",
        type=Path,
        metavar="MODEL_DIR",
        help="an adapted model directory (grainseg finetune) for the Net1 and Net2 methods",
    )
    p.add_argument("--weights", type=Path, help="Net1 weights (default: shipped)")
    p.add_argument("--net2-weights", type=Path, help="Net2 weights for net1+net2 (default: shipped)")
    p.add_argument(
        "--blind-net2-weights",
        type=Path,
        help="image-blind Net2 weights for net1+blind-net2 (default: shipped net2-blind.pt)",
    )
    p.add_argument(
        "--paper-nets",
        type=Path,
        help="the paper's networks as .npz "
        "(default: $GRAINSEG_PAPER_NETS, else shared/data/seed_nets/seed_nets.npz inside or beside the "
        "repository this package runs from, whatever the working folder)",
    )
    p.add_argument(
        "--markdown",
        type=Path,
        help="write the tables into this markdown file, in a section "
        "between <!-- BEGIN SECTION --> and <!-- END SECTION --> markers (other text is kept)",
    )
    p.add_argument(
        "--section",
        default="eval",
        help="name of that section (default: eval), so runs on other sets can keep their own tables in the same file",
    )
    p.add_argument("--json", type=Path, help="write all results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_grainseg.cli._common import model_dir_from_args
    from napari_grainseg.evaluation.markdown import check_section_name, replace_section
    from napari_grainseg.evaluation.suite import format_markdown, run_evaluation
    from napari_grainseg.io.atomic import atomic_open
    from napari_grainseg.io.outputs import check_output_file
    from napari_grainseg.models.paper import paper_nets_path

    check_section_name(args.section)  # before the evaluation, which takes minutes
    for option, path in (("--markdown", args.markdown), ("--json", args.json)):
        if path is not None:
            check_output_file(path, option=option)
    if args.markdown is not None and args.json is not None and args.markdown.resolve() == args.json.resolve():
        raise InputError(f"--markdown and --json are the same file {args.json}: give two names")
    if args.markdown is not None and args.markdown.is_file():
        try:
            args.markdown.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--markdown {args.markdown}: cannot read it as UTF-8 text ({exc})") from None
    if model_dir_from_args(args) is not None and (args.model / "net2.pt").is_file():
        args.net2_weights = args.model / "net2.pt"
    results = run_evaluation(
        args.sets,
        args.methods,
        limit=args.limit,
        device=args.device,
        net1_weights=args.weights,
        paper_nets=paper_nets_path(args.paper_nets),
        net2_weights=args.net2_weights,
        blind_net2_weights=args.blind_net2_weights,
    )
    results["model"] = _model_record(args.weights, args.net2_weights)
    table = format_markdown(results)
    print(table)
    if args.json:  # first: the results are the costly part, the markdown only their table
        with atomic_open(args.json) as fh:
            json.dump(results, fh, indent=2)
    if args.markdown:
        command = shlex.join(["grainseg", *(getattr(args, "argv", None) or ["eval"])])
        replace_section(
            args.markdown,
            args.section,
            f"Regenerate with `{command}`.\n\n{table}",
            heading="## Evaluation on frozen synthetic test sets" if args.section == "eval" else None,
        )
    print("done", file=sys.stderr)
    return 0


def _model_record(net1_weights, net2_weights) -> dict:
    """The model the Net1 methods used, with its hashes (:func:`~napari_grainseg.models.model_dir.model_record`)."""
    from napari_grainseg.models.model_dir import model_record
    from napari_grainseg.models.weights import load_net1, load_net2, shipped_weights_dir

    net1 = load_net1(net1_weights) if net1_weights is not None else None
    net2_path = net2_weights or shipped_weights_dir() / "net2.pt"
    net2 = load_net2(net2_path) if net2_path.is_file() else None
    return model_record(net1, net2)
