"""Is a VI gap between two Net1 weights the network's, or the automatic scale choice's?

Each image of the named sets runs through both weights with the product's automatic scale and
grains by watershed (the default builder and depth). The paired VI difference (new − old) is
reported separately over the images where both weights chose the same working scale and where
they did not, with its split and merge terms. Session 16 used it on the paper's flat look:

    python benchmarks/scale_choice_gap.py --old configs/weights/net1_v5.pt --new configs/weights/net1_v13.pt \
        --sets ood-paper ood-paper-48 --json docs/scale_choice_gap_v13_vs_v5.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _paired(values) -> dict:
    import numpy as np

    d = np.asarray(values, float)
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
    return {"mean": float(d.mean()) if d.size else float("nan"), "se": se, "n": int(d.size)}


def main(argv=None) -> int:
    from napari_grainseg.evaluation.metrics import evaluate_prediction
    from napari_grainseg.evaluation.suite import EVAL_SETS
    from napari_grainseg.models.weights import load_net1
    from napari_grainseg.segmentation.grains import probability_to_labels
    from napari_grainseg.segmentation.inference import predict_boundaries

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, required=True)
    ap.add_argument("--new", type=Path, required=True)
    ap.add_argument("--sets", nargs="+", required=True, choices=sorted(EVAL_SETS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    models = {"old": load_net1(args.old, device="cpu"), "new": load_net1(args.new, device="cpu")}
    rows = []
    for name in args.sets:
        for sample in EVAL_SETS[name].samples():
            row = {"set": name}
            for key, model in models.items():
                pred = predict_boundaries(sample.image, model, device="cpu")
                labels = probability_to_labels(pred.probability, net1_scale=pred.scale)
                m = evaluate_prediction(labels == 0, labels, sample.boundaries, sample.labels, tolerances=(2,))
                row[key] = {
                    "scale": float(pred.scale),
                    "vi": m["vi"],
                    "vi_split": m["vi_split"],
                    "vi_merge": m["vi_merge"],
                }
            rows.append(row)
    groups = {
        "same scale": [r for r in rows if r["old"]["scale"] == r["new"]["scale"]],
        "different scale": [r for r in rows if r["old"]["scale"] != r["new"]["scale"]],
        "all": rows,
    }
    out = {"old": str(args.old), "new": str(args.new), "sets": args.sets, "new - old": {}}
    for group, members in groups.items():
        out["new - old"][group] = {
            term: _paired([r["new"][term] - r["old"][term] for r in members]) for term in ("vi", "vi_split", "vi_merge")
        }
    for group, terms in out["new - old"].items():
        vi = terms["vi"]
        print(
            f"{group}: {vi['n']} images, VI new - old {vi['mean']:+.4f} ± {vi['se']:.4f}; "
            f"split {terms['vi_split']['mean']:+.4f}, merge {terms['vi_merge']['mean']:+.4f}"
        )
    if args.json:
        out["images"] = rows
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
