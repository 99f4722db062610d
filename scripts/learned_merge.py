"""A learned merge of Net1's fine watershed basins, with and without Net2's maps as evidence.

Exploratory (docs/net2.md, "what did not work"). Agglomeration with a learned
boundary classifier (as in connectomics, e.g. GALA) is the usual way to beat a
plain watershed; here it asks whether Net2's map, given to such a classifier,
lets Net1 + Net2 beat Net1 + watershed.

1. Net1's map is over-segmented (watershed of the smoothed map, h 0.01).
2. Every pair of adjacent regions gets 32 features: the length of the shared
   boundary, both region sizes, the regions' mean-intensity difference (raw and
   in pooled standard deviations), and for each map (Net1, Net2's final map,
   Net2's first full prediction) the mean, minimum, 10/25/50/75 % quantiles and
   maximum along the boundary and the boundary's height above the higher of the
   two basins' minima (minimum and mean).
3. A small MLP (2 x 32 hidden units, 300 full-batch Adam epochs, seed 0) is
   trained to say "same true grain" on fresh synthetic images (``--train`` of
   each preset, seeds 8_900_000_000 + i for ``tem`` and 8_900_100_000 + i for
   ``train``; disjoint from every test and tuning set), examples weighted by the
   square root of the smaller region's size.
4. Pairs with a probability above 0.5 (and 0.35) are merged (union-find), and
   the grains are drawn from the same watershed lines as Net1 + watershed.

It prints, per named ``grainseg eval`` set, VI, merge / split parts and
|grain-count error|, with the VI difference from Net1 + watershed (h 0.1) image
by image (mean ± standard error; on how many images it is lower), for the
classifier with Net1's features only and with Net1's and Net2's.

Run from the repository root (about 10 min on 2 cores)::

    python scripts/learned_merge.py tune-tem tune-train id-tem-64 id-train-64
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from net2_grain_builders import _adjacent_pairs, _basins, _majority_grain, _merge, print_table  # noqa: E402

MAPS = ("net1", "final", "first")
#: Features per pair that do not depend on a map; then 9 per map, in the order of MAPS.
GENERIC = 5
BASIN_H = 0.01


def pair_features(regions: np.ndarray, maps: dict, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adjacent region pairs (E, 2) and their features (E, 5 + 9 per map), described in the module doc."""
    from scipy import ndimage

    edges, inverse, ia, ib = _adjacent_pairs(regions)
    length = np.bincount(inverse)
    r1, r2 = edges[:, 0], edges[:, 1]
    ids = np.arange(regions.max() + 1)
    size = np.asarray(ndimage.sum(np.ones_like(regions), regions, ids), float)
    smooth = ndimage.gaussian_filter(image.astype(np.float64), 1.0)
    lo, hi = np.percentile(smooth, [1, 99])
    smooth = (smooth - lo) / (hi - lo + 1e-9)
    with np.errstate(invalid="ignore"):  # id 0 is not a region: its mean is 0 / 0
        mean = np.nan_to_num(np.asarray(ndimage.mean(smooth, regions, ids)))
        std = np.nan_to_num(np.asarray(ndimage.standard_deviation(smooth, regions, ids)))
    step = np.abs(mean[r1] - mean[r2])
    columns = [np.log(length), np.log(np.minimum(size[r1], size[r2])), np.log(np.maximum(size[r1], size[r2])),
               step / (np.sqrt((std[r1] ** 2 + std[r2] ** 2) / 2) + 0.02), step]
    starts = np.concatenate([[0], np.cumsum(length)[:-1]])
    for name in MAPS:
        flat = ndimage.gaussian_filter(maps[name].astype(np.float64), 1.0)
        values = np.maximum(flat.ravel()[ia], flat.ravel()[ib])
        grouped = values[np.lexsort((values, inverse))]  # grouped by pair, sorted within each

        def quantile(q):
            return grouped[starts + np.floor(q * (length - 1)).astype(int)]

        average = np.bincount(inverse, values) / length
        basin = np.asarray(ndimage.minimum(flat, regions, ids))
        floor = np.maximum(basin[r1], basin[r2])
        columns += [average, *(quantile(q) for q in (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)),
                    quantile(0.0) - floor, average - floor]
    return edges, np.stack(columns, 1).astype(np.float32)


def same_grain(regions: np.ndarray, edges: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1 where both regions of a pair lie mostly in the same true grain."""
    from napari_grainseg.evaluation.metrics import fill_boundaries

    majority = _majority_grain(regions, fill_boundaries(truth))
    return (majority[edges[:, 0]] == majority[edges[:, 1]]).astype(np.float32)


def fit_classifier(x: np.ndarray, y: np.ndarray, weight: np.ndarray, epochs: int = 300):
    """A 2 x 32 MLP on standardised features; returns x -> probability of "same grain"."""
    import torch

    torch.manual_seed(0)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xt = torch.tensor((x - mu) / sd)
    yt, wt = torch.tensor(y), torch.tensor(weight / weight.mean(), dtype=torch.float32)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 32), torch.nn.ReLU(), torch.nn.Linear(32, 32),
                              torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.Adam(net.parameters(), 1e-2, weight_decay=1e-4)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xt)[:, 0], yt, reduction="none")
        (loss * wt).mean().backward()
        opt.step()

    def predict(features: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(net(torch.tensor((features - mu) / sd))[:, 0]).numpy()

    return predict


def examples(samples, net1, net2) -> list[dict]:
    """Per image: regions, lines, pairs, features, pair truth and the true labels."""
    from napari_grainseg.segmentation.inference import predict_boundaries
    from napari_grainseg.segmentation.refine import refine

    out = []
    for sample in samples:
        pred = predict_boundaries(sample.image, net1, device="cpu")
        steps = list(refine(sample.image, pred.probability, model=net2, device="cpu", scale=pred.scale, net1=net1))
        first = steps[min(net2.config.scheduled_steps or 1, len(steps)) - 1]
        maps = {"net1": pred.probability, "first": first.state, "final": steps[-1].state}
        regions, lined, _ = _basins(pred.probability, BASIN_H)
        edges, x = pair_features(regions, maps, sample.image)
        out.append({"regions": regions, "lined": lined, "edges": edges, "x": x, "net1": pred.probability,
                    "y": same_grain(regions, edges, sample.labels), "truth": sample.labels})
    return out


def main() -> None:
    import torch

    from napari_grainseg.evaluation.suite import EVAL_SETS, EvalSet
    from napari_grainseg.evaluation.metrics import grain_count_error, segmentation_scores
    from napari_grainseg.segmentation.grains import probability_watershed
    from napari_grainseg.models.weights import load_net1, load_net2

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sets", nargs="+", choices=sorted(EVAL_SETS))
    p.add_argument("--train", type=int, default=96, help="training images per preset (default 96)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    net1, net2 = load_net1(device="cpu"), load_net2(device="cpu")
    train = []
    for preset, first_seed in (("tem", 8_900_000_000), ("train", 8_900_100_000)):
        train += examples(EvalSet("learned-merge-train", "", preset, (256, 256), first_seed, a.train).samples(),
                          net1, net2)
    x = np.concatenate([e["x"] for e in train])
    y = np.concatenate([e["y"] for e in train])
    print(f"training pairs: {y.size} from {len(train)} images, {y.mean():.1%} within one grain")
    columns = {"Net1 features": list(range(GENERIC + 9)), "Net1 + Net2 features": list(range(x.shape[1]))}
    classifiers = {k: (c, fit_classifier(x[:, c], y, np.sqrt(np.exp(x[:, 1])))) for k, c in columns.items()}

    def scores(labels, truth):
        s = segmentation_scores(labels, truth)
        return s["vi"], s["vi_merge"], s["vi_split"], abs(grain_count_error(labels, truth))

    for name in a.sets:
        test = examples(EVAL_SETS[name].samples(), net1, net2)
        rows = {"net1-ws 0.1 (reference)": [scores(probability_watershed(e["net1"]), e["truth"]) for e in test]}
        for label, (c, predict) in classifiers.items():
            for above in (0.5, 0.35):
                rows[f"{label}, merge above {above}"] = [
                    scores(_merge(e["regions"], e["lined"], e["edges"][predict(e["x"][:, c]) > above]), e["truth"])
                    for e in test]
        print(f"\n{name}: {len(test)} images")
        print_table(rows)


if __name__ == "__main__":
    main()
