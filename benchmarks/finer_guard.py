"""The finer-scale check's confidence guard, on and off, image by image (docs/generalisation.md, session 21).

The product pipeline (shipped or given Net1, automatic scale, the default grain builder, no
Net2) runs on every image twice: with the guard
(:data:`~napari_grainseg.segmentation.inference.FINER_CONFIDENCE_DROP` as shipped) and without
it (the drop set to infinity, so any enlarged size counts as merged grains). Per set: mean VI of
both, the paired difference (mean ± standard error), how many images changed, and on how many
the grain count is off by more than 2× (found/true above 2 or below ½). ``--stress`` adds
look-random with every image and its truth resampled by 0.9 and 1.1, which moves grain sizes
across the trained range's 64 px edge.

    python benchmarks/finer_guard.py --sets tune-tem tune-small tune-independent tune-random \\
        real-tbm-adapt real-tbm look-independent look-random ood-paper ood-noisy ood-small \\
        ood-large id-tem-64 concept-twins concept-bends concept-inclined concept-noise \\
        concept-shape --stress --json docs/finer_guard_v13.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def resampled_samples(name: str, factor: float):
    """``(image, boundaries, labels)`` of a set with image and truth resampled by ``factor``.

    The truth's grains are first grown over their 1-px boundaries (nearest grain),
    resampled by nearest neighbour, then given new 1-px boundaries the generator's way.
    """
    from napari_grainseg.evaluation.suite import EVAL_SETS
    from napari_grainseg.measure.table import fill_boundaries
    from napari_grainseg.segmentation.inference import resample
    from napari_grainseg.synthetic.targets import boundary_pixels, grains_from_boundaries

    for s in EVAL_SETS[name].samples():
        cells = fill_boundaries(s.labels)
        h, w = cells.shape
        rows = np.minimum((np.arange(round(h * factor)) + 0.5) / factor, h - 1).astype(int)
        cols = np.minimum((np.arange(round(w * factor)) + 0.5) / factor, w - 1).astype(int)
        boundaries = boundary_pixels(cells[np.ix_(rows, cols)])
        image = resample(s.image, factor)
        if image.shape != boundaries.shape:
            raise RuntimeError(f"resampled image {image.shape} and truth {boundaries.shape} differ")
        yield image, boundaries, grains_from_boundaries(boundaries)[0]


def count_off_twofold(rows: list[dict]) -> int:
    """Images whose grain count is more than 2× too high or too low."""
    return sum(1 for r in rows if r["n_pred"] > 2 * r["n_true"] or r["n_pred"] < 0.5 * r["n_true"])


def main() -> None:
    from napari_grainseg.evaluation.metrics import evaluate_prediction
    from napari_grainseg.evaluation.suite import EVAL_SETS
    from napari_grainseg.models.weights import load_net1
    from napari_grainseg.segmentation import inference
    from napari_grainseg.segmentation.options import SegmentOptions
    from napari_grainseg.segmentation.pipeline import segment

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=["tune-random", "look-random"])
    ap.add_argument("--stress", action="store_true", help="also look-random resampled by 0.9 and 1.1")
    ap.add_argument("--weights", help="Net1 weights (default: shipped)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    model = load_net1(args.weights, device="cpu")
    options = SegmentOptions(net2_steps=0, device="cpu")
    shipped_drop = inference.FINER_CONFIDENCE_DROP
    sources = [
        (name, lambda name=name: ((s.image, s.boundaries, s.labels) for s in EVAL_SETS[name].samples()))
        for name in args.sets
    ]
    if args.stress:
        sources += [(f"look-random x{f:g}", lambda f=f: resampled_samples("look-random", f)) for f in (0.9, 1.1)]
    results = {"weights": args.weights or "shipped", "confidence_drop": shipped_drop, "sets": {}}
    print(
        "| set | images | VI without guard | VI with guard | paired difference | images changed "
        "| count off > 2x without | with |"
    )
    print("|---|---|---|---|---|---|---|---|")
    try:
        for name, samples in sources:
            start = time.perf_counter()
            rows: dict[str, list[dict]] = {"without": [], "with": []}
            for image, boundaries, labels in samples():
                for arm, drop in (("without", float("inf")), ("with", shipped_drop)):
                    inference.FINER_CONFIDENCE_DROP = drop
                    result = segment(image, options, model=model)
                    scores = evaluate_prediction(result.boundaries, result.labels, boundaries, labels)
                    rows[arm].append(
                        {
                            "vi": scores["vi"],
                            "n_pred": scores["n_grains_pred"],
                            "n_true": scores["n_grains_true"],
                            "scale": result.prediction.scale,
                        }
                    )
            without = np.array([r["vi"] for r in rows["without"]])
            diff = np.array([r["vi"] for r in rows["with"]]) - without
            se = diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else 0.0
            results["sets"][name] = {**rows, "seconds": time.perf_counter() - start}
            print(
                f"| {name} | {diff.size} | {without.mean():.3f} | {without.mean() + diff.mean():.3f} "
                f"| {diff.mean():+.3f} ± {se:.3f} | {int((diff != 0).sum())} "
                f"| {count_off_twofold(rows['without'])} | {count_off_twofold(rows['with'])} |",
                flush=True,
            )
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    finally:
        inference.FINER_CONFIDENCE_DROP = shipped_drop


if __name__ == "__main__":
    main()
