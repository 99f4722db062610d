"""Grain builders on one Net1 probability: the threshold against the watershed at several depths.

Net1 (the shipped weights unless ``--weights``) runs once per image through the product's
automatic scale; each builder then turns the same probability into grains. Per set and
builder: mean VI, grain-count and mean-ECD errors, and the paired VI difference to the
threshold. The watershed's default depth (``grains.DEFAULT_WATERSHED_H``) was chosen with

    python benchmarks/grain_builders.py --sets tune-tem tune-small tune-independent tune-random real-tbm-adapt \\
        --h 0.1 0.2 0.3 0.4 0.5 --json docs/grain_builders_tune.json

(lowest mean VI over the five sets) and then scored once on the test sets.

``--weights A B ...`` scores an output ensemble: the mean of the networks' probabilities
(session 17's ensemble of v5 and v13, docs/generalisation.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def mean_probability_ensemble(members):
    """A Net1-like module whose probability is the mean of ``members``' probabilities."""
    import torch

    class MeanProbability(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.members = torch.nn.ModuleList(members)
            self.config = members[0].config
            if any(m.config.multiple != self.config.multiple for m in members):
                raise SystemExit("ensemble members need the same input multiple")

        def forward(self, x):
            p = torch.stack([torch.sigmoid(m(x)) for m in self.members]).mean(0)
            return torch.logit(p.clamp(1e-6, 1 - 1e-6))

    return MeanProbability().eval()


def main(argv=None) -> int:
    from napari_grainseg.evaluation.metrics import evaluate_prediction
    from napari_grainseg.evaluation.suite import EVAL_SETS
    from napari_grainseg.models.weights import load_net1
    from napari_grainseg.segmentation.grains import probability_to_labels
    from napari_grainseg.segmentation.inference import predict_boundaries

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", required=True, choices=sorted(EVAL_SETS))
    ap.add_argument("--h", nargs="+", type=float, default=[0.1, 0.2, 0.3, 0.4, 0.5])
    ap.add_argument("--weights", type=Path, nargs="+", help="one Net1, or several: the mean of their probabilities")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    weights = args.weights or [None]
    members = [load_net1(w, device="cpu") for w in weights]
    model = members[0] if len(members) == 1 else mean_probability_ensemble(members)
    builders = {"threshold": {"method": "threshold"}}
    builders |= {f"watershed h={h:g}": {"method": "watershed", "watershed_h": h} for h in args.h}
    results = {"weights": [str(w or "shipped") for w in weights], "sets": {}}
    for name in args.sets:
        rows = {b: [] for b in builders}
        for sample in EVAL_SETS[name].samples():
            pred = predict_boundaries(sample.image, model, device="cpu")
            for b, kw in builders.items():
                labels = probability_to_labels(pred.probability, net1_scale=pred.scale, **kw)
                m = evaluate_prediction(labels == 0, labels, sample.boundaries, sample.labels, tolerances=(2,))
                rows[b].append((m["vi"], abs(m["grain_count_error"]), abs(m["mean_ecd_error"])))
        base = np.array(rows["threshold"])[:, 0]
        out = {}
        for b, r in rows.items():
            a = np.array(r)
            d = a[:, 0] - base
            out[b] = {
                "vi": float(a[:, 0].mean()),
                "abs_grain_count_error": float(a[:, 1].mean()),
                "abs_mean_ecd_error": float(a[:, 2].mean()),
                "vi_minus_threshold": float(d.mean()),
                "se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan"),
                "better": int((d < 0).sum()),
                "n": len(d),
            }
            print(
                f"{name:17s} {b:16s} VI {out[b]['vi']:.3f} ({d.mean():+.3f} ± {out[b]['se']:.3f}, "
                f"{out[b]['better']}/{len(d)} better) |count err| {a[:, 1].mean():.0%} |ECD err| {a[:, 2].mean():.0%}",
                flush=True,
            )
        results["sets"][name] = out
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    means = {b: float(np.mean([results["sets"][s][b]["vi"] for s in args.sets])) for b in builders}
    results["mean_vi_over_sets"] = means
    for b, v in means.items():
        print(f"mean VI over the sets: {b:16s} {v:.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
