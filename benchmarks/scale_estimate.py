"""How often Net1's automatic grain-size estimate is off, and what a correct scale would buy.

For each image of the named sets: the true grain size (the same definition as
:func:`~napari_grainseg.segmentation.inference.estimate_grain_size`, on the truth
labels), Net1's estimate without a hint, the ratio of the two, and the VI / grain-count
error of Net1 + threshold with no hint and with the true size as the hint (an upper
bound on what a better estimate can give), and on how many images the automatic choice
enlarged the image (:func:`~napari_grainseg.segmentation.inference.finer_scale`). With
``--enlarge F`` also the estimate Net1 makes on the image enlarged F times (in input px), over
the estimate of a native-scale pass: about 1 where Net1 resolves the grains at native scale, well below 1 where
they merged there (or where enlarging over-splits). Prints a markdown table.

    python benchmarks/scale_estimate.py --sets real-tbm look-random id-tem [--limit N] [--weights NET1.pt]
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from napari_grainseg.evaluation.metrics import evaluate_prediction
    from napari_grainseg.evaluation.suite import EVAL_SETS
    from napari_grainseg.models.weights import load_net1
    from napari_grainseg.segmentation.grains import boundaries_to_labels
    from napari_grainseg.segmentation.inference import (
        equivalent_grain_diameter,
        estimate_grain_size,
        predict_boundaries,
        predict_probability,
        resample,
    )

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=["real-tbm", "look-random", "id-tem"])
    parser.add_argument("--limit", type=int)
    parser.add_argument("--weights", help="Net1 weights (default: shipped)")
    parser.add_argument("--enlarge", type=float, help="also estimate on the image enlarged this many times")
    args = parser.parse_args()
    model = load_net1(args.weights, device="cpu")
    print(f"Net1: {args.weights or 'shipped'}\n")
    print(
        "| set | images | estimate off > 2x | median estimate / truth | VI no hint | VI true hint "
        "| count err no hint | count err true hint | enlarged |"
        + (f" estimate x{args.enlarge:g} / native (median, range) |" if args.enlarge else "")
    )
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" if args.enlarge else ""))
    for name in args.sets:
        rows = []
        for s in EVAL_SETS[name].samples(args.limit):
            truth, _ = equivalent_grain_diameter(s.labels)
            row = {"truth": truth}
            for key, hint in (("auto", None), ("hint", truth)):
                pred = predict_boundaries(s.image, model, device="cpu", grain_size_px=hint)
                labels = boundaries_to_labels(pred.probability)
                scores = evaluate_prediction(labels == 0, labels, s.boundaries, s.labels)
                row[key] = scores
                if hint is None:
                    row["estimate"], row["scale"] = pred.grain_size_px, pred.scale
            if args.enlarge:  # against the native pass's own estimate (not the chosen scale's)
                native = estimate_grain_size(predict_probability(s.image, model, "cpu")[0])
                prob, _ = predict_probability(resample(s.image, args.enlarge), model, "cpu")
                enlarged = estimate_grain_size(prob)
                row["enlarged"] = enlarged / args.enlarge / native if enlarged and native else np.nan
            rows.append(row)
        ratio = np.array([r["estimate"] / r["truth"] if r["estimate"] else np.nan for r in rows])
        off = np.mean([not (0.5 <= q <= 2.0) if np.isfinite(q) else True for q in ratio])
        mean = {
            k: {m: np.mean([abs(r[k][m]) for r in rows]) for m in ("vi", "grain_count_error")} for k in ("auto", "hint")
        }
        print(
            f"| {name} | {len(rows)} | {off:.0%} | {np.nanmedian(ratio):.2f} | {mean['auto']['vi']:.3f} | "
            f"{mean['hint']['vi']:.3f} | {mean['auto']['grain_count_error']:.0%} | "
            f"{mean['hint']['grain_count_error']:.0%} | {sum(r['scale'] > 1 for r in rows)} |"
            + (enlarged_cell(rows) if args.enlarge else "")
        )


def enlarged_cell(rows: list[dict]) -> str:
    q = np.array([r.get("enlarged", np.nan) for r in rows])
    return f" {np.nanmedian(q):.2f} ({np.nanmin(q):.2f}-{np.nanmax(q):.2f}) |" if np.isfinite(q).any() else " - |"


if __name__ == "__main__":
    main()
