"""Two Net1 weights image by image on the evaluation sets, the classical baseline beside them.

For every image of every named set: the classical baseline, Net1 ``--old`` and Net1
``--new`` (each through the product pipeline: automatic scale, grains by ``--grains``,
default the product's default builder),
and optionally ``--new`` with test-time augmentation. Per set: the means of boundary
F1, VI (split, merge), grain-count and mean-ECD errors, and the paired differences
new - old (mean ± standard error over images, and on how many images new is better).

    python benchmarks/compare_net1.py --old configs/weights/net1_v5.pt \\
        --new src/napari_grainseg/data/weights/net1.pt --tta \\
        --sets real-tbm look-independent look-random ood-paper ood-noisy ood-large ood-small id-tem-64 \\
        --json docs/compare_net1_v6.json --markdown docs/compare_net1_v6.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

METRICS = ("f1_2px", "vi", "vi_split", "vi_merge", "abs_grain_count_error", "abs_mean_ecd_error")


def runners(old: Path, new: Path, tta: bool, device: str = "cpu", grains: str | None = None):
    """``{name: image -> (boundaries, labels)}`` for classical, old, new (and new+tta)."""
    from dataclasses import replace

    from napari_grainseg.evaluation.suite import method_runners
    from napari_grainseg.models.weights import load_net1
    from napari_grainseg.segmentation.options import SegmentOptions
    from napari_grainseg.segmentation.pipeline import segment

    out = {"classical": method_runners(["classical"])["classical"]}
    for name, path in (("old", old), ("new", new)):
        model = load_net1(path, device=device)
        options = SegmentOptions(net2_steps=0, device=device)
        if grains is not None:
            options = replace(options, grains=grains)

        def run(image, model=model, options=options):
            result = segment(image, options, model=model)
            return result.boundaries, result.labels, {}

        out[name] = run
        if tta and name == "new":
            tta_options = replace(options, tta=True)
            out["new+tta"] = lambda image, model=model, o=tta_options: run(image, model, o)
    return out


def scores_of(rows: list[dict]) -> dict[str, list[float]]:
    """Per metric, the per-image values (``abs_`` keys: magnitudes)."""
    from napari_grainseg.evaluation.metrics import metric_values

    return {key: metric_values(rows, key) for key in METRICS}


def markdown(results: dict) -> str:
    lines = [f"Grains by {results['grains']} for both networks.", ""]
    for name, data in results["sets"].items():
        lines += [f"### {name} — {data['description']} ({data['n_images']} images)", ""]
        lines += ["| method | F1@2px | VI | VI split | VI merge | abs. count error | abs. mean-ECD error | s/image |"]
        lines += ["|---|---|---|---|---|---|---|---|"]
        for method, sc in data["scores"].items():
            cells = [f"{np.nanmean(sc[m]):.3f}" for m in METRICS]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {data['seconds'][method]:.2f} |")
        lines += ["", "Paired, image by image (difference of the means ± standard error; images where better):", ""]
        for label, p in data["paired"].items():
            parts = [f"{m} {p[m]['mean']:+.3f} ± {p[m]['se']:.3f} ({p[m]['better']}/{p[m]['n']})" for m in METRICS]
            lines.append(f"- {label}: " + ", ".join(parts))
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    from napari_grainseg.evaluation.metrics import evaluate_prediction
    from napari_grainseg.evaluation.suite import EVAL_SETS, paired_differences
    from napari_grainseg.segmentation.grains import DEFAULT_GRAIN_BUILDER, GRAIN_BUILDERS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, required=True)
    ap.add_argument("--new", type=Path, required=True)
    ap.add_argument("--sets", nargs="+", default=["real-tbm", "look-independent", "look-random", "id-tem-64"])
    ap.add_argument("--tta", action="store_true", help="also score --new with test-time augmentation")
    ap.add_argument("--grains", choices=GRAIN_BUILDERS, help="grain builder (default: the product's)")
    ap.add_argument("--limit", type=int, help="at most this many images per set (quick runs)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    grains = args.grains or DEFAULT_GRAIN_BUILDER
    methods = runners(args.old, args.new, args.tta, grains=grains)
    results = {"old": str(args.old), "new": str(args.new), "grains": grains, "sets": {}}
    for set_name in args.sets:
        eval_set = EVAL_SETS[set_name]
        rows = {m: [] for m in methods}
        seconds = {m: [] for m in methods}
        for sample in eval_set.samples(args.limit):
            for m, run in methods.items():
                t0 = time.perf_counter()
                boundaries, labels, _ = run(sample.image)
                seconds[m].append(time.perf_counter() - t0)
                rows[m].append(evaluate_prediction(boundaries, labels, sample.boundaries, sample.labels))
        scores = {m: scores_of(r) for m, r in rows.items()}
        pairs = {"new - old": paired_differences(rows["new"], rows["old"], METRICS)}
        pairs["new - classical"] = paired_differences(rows["new"], rows["classical"], METRICS)
        if "new+tta" in rows:
            pairs["new+tta - new"] = paired_differences(rows["new+tta"], rows["new"], METRICS)
        results["sets"][set_name] = {
            "description": eval_set.description,
            "n_images": len(rows["old"]),
            "scores": scores,
            "seconds": {m: float(np.median(s)) for m, s in seconds.items()},
            "paired": pairs,
        }
        print(markdown({"grains": grains, "sets": {set_name: results["sets"][set_name]}}), file=sys.stderr)
        if args.json:  # after every set, so an interrupted run keeps what it measured
            args.json.write_text(json.dumps(results, indent=1))
    if args.markdown:
        args.markdown.write_text(markdown(results) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
