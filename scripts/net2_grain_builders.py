"""Ways of building grains from Net1's and Net2's maps, image by image against Net1 + watershed.

Exploratory (docs/net2.md, "what did not work"): for each image of the named
``grainseg eval`` sets it runs the shipped Net1 and a Net2 (shipped, or
``--net2-weights``), then scores grains built from

- ``net2``: Net2's final map by threshold (what ``grainseg eval`` calls net1+net2);
- ``net2-ws h``: the watershed of Net2's final map, h = 0.1 ... 0.4;
- ``first-ws``: the watershed of Net2's first full prediction (after the T scheduled steps);
- ``mean-ws h`` / ``max-ws``: the watershed of the mean / maximum of Net1's and Net2's maps,
- ``mean-dist-ws``: the watershed of the mean map minus 0.6 × the distance to its
  thresholded boundaries (capped at 6 px, scaled to 1), so that a region with a
  narrow neck (two convex grains joined through a gap) gets two basins;
- ``ws-merge-net2``: Net1's watershed regions (h 0.1), adjacent ones merged where
  Net2's smoothed map (its largest value within 2 px) along their shared boundary
  is below 0.2 on average (Net2 erased the line as spurious);
- ``net2-close-ends``: Net2's thresholded final map with every dead end joined
  to the nearest other boundary along the cheapest path through Net1's map
  (:func:`close_dead_ends`): grain boundaries end at junctions, not inside grains;
- ``net2 closed start`` (with ``--closed-start``): the same Net2 run from Net1's
  map with its watershed lines (h 0.1) drawn in, although it was not trained so:
  it then only has to keep or erase closed candidate lines;
- ``oracle (bound)``: not a method but a bound: Net1's map over-segmented finely
  (watershed, h 0.002) and its regions merged by the truth (each region takes the
  true grain it overlaps most); no grain builder that only merges Net1's basins
  does better,

and prints each one's VI, merge and split parts and |grain-count error|, with the
image-by-image VI difference from Net1 + watershed (h 0.1, the eval's
``net1+watershed``): mean ± standard error, and on how many images it is lower;
and the ``net2`` difference separately for the images where Net1 ran at scale 1.0
and where its automatic scale choice resampled the image.

``--cue`` adds a check of the evidence left at faint ridges: Net1's map is
over-segmented (watershed, h 0.02); for adjacent regions whose shared ridge is
faint (mean smoothed probability < 0.3, smaller region > 30 px) it reports the
ROC AUC with which the difference of the regions' mean intensities (in units of
their pooled standard deviation) tells a true boundary (the regions' majority
grains differ) from a spurious ridge.

Run from the repository root, e.g.::

    python scripts/net2_grain_builders.py tune-tem tune-train --cue
    python scripts/net2_grain_builders.py id-tem-64 id-train-64
    python scripts/net2_grain_builders.py tune-tem tune-train --closed-start
    python scripts/net2_grain_builders.py tune-tem tune-train --net2-weights configs/weights/net2_segments.pt
"""

from __future__ import annotations

import argparse

import numpy as np


def _ws(probability: np.ndarray, h: float) -> np.ndarray:
    from napari_grainseg.segmentation.grains import probability_watershed

    return probability_watershed(probability, h=h)


def builders(closed_start: bool = False) -> dict:
    """Name -> function(maps) -> labels; ``maps`` holds ``net1``, ``first``, ``final`` and ``truth``,
    and with ``closed_start`` also ``closed``."""
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    out = {"net1-ws 0.1 (reference)": lambda m: _ws(m["net1"], 0.1),
           "net2": lambda m: boundaries_to_labels(m["final"])}
    for h in (0.1, 0.2, 0.3, 0.4):
        out[f"net2-ws {h}"] = lambda m, h=h: _ws(m["final"], h)
    out["first-ws 0.1"] = lambda m: _ws(m["first"], 0.1)
    for h in (0.1, 0.2):
        out[f"mean-ws {h}"] = lambda m, h=h: _ws(0.5 * (m["net1"] + m["final"]), h)
    out["max-ws 0.1"] = lambda m: _ws(np.maximum(m["net1"], m["final"]), 0.1)
    out["mean-dist-ws"] = lambda m: distance_watershed(0.5 * (m["net1"] + m["final"]))
    out["ws-merge-net2 0.2"] = lambda m: merge_faint_regions(m["net1"], m["final"], 0.2)
    out["net2-close-ends"] = lambda m: boundaries_to_labels(close_dead_ends(m["final"], m["net1"]))
    if closed_start:
        out["net2 closed start"] = lambda m: boundaries_to_labels(m["closed"])
    out["oracle (bound)"] = lambda m: oracle_merge(m["net1"], m["truth"])
    return out


def _basins(probability: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Watershed regions of the smoothed map from its h-minima: without lines (every pixel in a
    region, for adjacency) and with 1 px lines (the same region ids, for drawing); and the
    smoothed map."""
    from scipy import ndimage
    from skimage.morphology import h_minima
    from skimage.segmentation import watershed

    smooth = ndimage.gaussian_filter(probability.astype(np.float64), 1.0)
    markers = ndimage.label(h_minima(smooth, h))[0]
    return watershed(smooth, markers), watershed(smooth, markers, watershed_line=True), smooth


def _adjacent_pairs(regions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of adjacent regions and the 4-neighbour pixel pairs across them.

    Returns ``(edges, inverse, ia, ib)``: the sorted unique pairs (E, 2) as
    (smaller id, larger id); for every pixel pair across two regions, the index
    of its pair in ``edges`` and the flat indices of its two pixels.
    """
    index = np.arange(regions.size).reshape(regions.shape)
    a = np.concatenate([regions[:, :-1].ravel(), regions[:-1, :].ravel()])
    b = np.concatenate([regions[:, 1:].ravel(), regions[1:, :].ravel()])
    ia = np.concatenate([index[:, :-1].ravel(), index[:-1, :].ravel()])
    ib = np.concatenate([index[:, 1:].ravel(), index[1:, :].ravel()])
    keep = a != b
    pairs = np.stack([np.minimum(a, b)[keep], np.maximum(a, b)[keep]], 1)
    edges, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return edges, inverse.ravel(), ia[keep], ib[keep]


def _majority_grain(regions: np.ndarray, grains: np.ndarray) -> np.ndarray:
    """For every region id, the grain (label > 0) that covers most of it; 0 if none does."""
    overlap = np.zeros((regions.max() + 1, grains.max() + 1), np.int64)
    np.add.at(overlap, (regions.ravel(), grains.ravel()), 1)
    overlap[:, 0] = 0
    return overlap.argmax(axis=1)


def _merge(regions: np.ndarray, lined: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Grains of the watershed ``lined`` with every listed pair of regions joined (connected
    components of the pairs): the lines between two joined regions go, the others stay. With no
    pairs this is exactly Net1 + watershed's construction (``probability_watershed``)."""
    from scipy import ndimage
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from napari_grainseg.segmentation.grains import boundaries_to_labels

    n = int(regions.max()) + 1
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    group = connected_components(graph, directed=False)[1] + 1
    joined = np.where(lined > 0, group[lined], 0)  # lines stay 0
    highest = ndimage.maximum_filter(joined, size=3)
    lowest = ndimage.minimum_filter(np.where(joined > 0, joined, n + 1), size=3)
    return boundaries_to_labels((lined == 0) & (highest != lowest))


def distance_watershed(probability: np.ndarray, weight: float = 0.6, cap: float = 6.0, h: float = 0.1):
    """Grains by watershed of the smoothed map minus ``weight`` × the (capped, scaled) distance to
    its thresholded boundaries: a gap between two convex grains is a neck, and the neck a saddle."""
    from scipy import ndimage
    from skimage.morphology import h_minima
    from skimage.segmentation import watershed

    from napari_grainseg.segmentation.grains import boundaries_to_labels

    smooth = ndimage.gaussian_filter(probability.astype(np.float64), 1.0)
    surface = smooth - weight * np.minimum(ndimage.distance_transform_edt(smooth < 0.5), cap) / cap
    markers, n = ndimage.label(h_minima(surface, h))
    return boundaries_to_labels(watershed(surface, markers, watershed_line=True) == 0)


def merge_faint_regions(net1: np.ndarray, net2: np.ndarray, below: float) -> np.ndarray:
    """Net1's watershed regions (h 0.1), neighbours merged where Net2's smoothed map (its largest
    value within 2 px) along their shared boundary averages below ``below``."""
    from scipy import ndimage

    regions, lined, _ = _basins(net1, 0.1)
    edges, inverse, ia, ib = _adjacent_pairs(regions)
    # Net2's line may run a pixel or two beside Net1's ridge: take its largest value within 2 px
    refined = ndimage.maximum_filter(ndimage.gaussian_filter(net2.astype(np.float64), 1.0), size=5).ravel()
    mean = np.bincount(inverse, np.maximum(refined[ia], refined[ib])) / np.bincount(inverse)
    return _merge(regions, lined, edges[mean < below])


def close_dead_ends(boundary_map: np.ndarray, probability: np.ndarray, *, threshold: float = 0.5,
                    max_length: int = 30, max_mean_cost: float = 0.6, border: int = 3) -> np.ndarray:
    """The thresholded ``boundary_map`` with its dead ends joined to the nearest other boundary.

    Grain boundaries end at junctions, never inside a grain, so every end of the
    thresholded map's skeleton (away from the image border) is taken as a gap:
    from it the cheapest path (cost 1 − smoothed ``probability`` + 0.02 per px,
    8-connected) to a skeleton pixel that the skeleton itself reaches only the
    long way round (more than twice the straight distance plus 6 px, so the
    path closes a loop instead of running back along its own line) is drawn in,
    if that target lies within ``max_length`` px and the path's mean cost is
    below ``max_mean_cost``. Returns a bool map.
    """
    from scipy import ndimage
    from skimage.graph import MCP_Geometric
    from skimage.morphology import disk, skeletonize

    mask = np.asarray(boundary_map) >= threshold
    skeleton = skeletonize(mask)
    neighbours = ndimage.convolve(skeleton.astype(np.int32), np.ones((3, 3), np.int32), mode="constant") - 1
    ends = np.argwhere(skeleton & (neighbours == 1))
    h, w = mask.shape
    inside = (ends[:, 0] >= border) & (ends[:, 1] >= border) & (ends[:, 0] < h - border) & (ends[:, 1] < w - border)
    cost = np.clip(1.0 - ndimage.gaussian_filter(probability.astype(np.float64), 1.0), 0.0, 1.0) + 0.02
    out = mask.copy()
    reach = 3 * max_length  # the skeleton's own way round is followed this far
    for y, x in ends[inside]:
        y0, x0 = max(0, y - reach), max(0, x - reach)
        window = np.s_[y0:min(h, y + reach + 1), x0:min(w, x + reach + 1)]
        local = skeleton[window]
        start = (y - y0, x - x0)
        along = MCP_Geometric(np.where(local, 1.0, np.inf)).find_costs([start])[0]
        yy, xx = np.indices(local.shape)
        straight = np.hypot(yy - start[0], xx - start[1])
        own = local & (along <= 2 * straight + 6)
        targets = local & ~own & (straight <= max_length)
        if not targets.any():
            continue
        # the path may not run inside its own line's band (except at the start)
        blocked = ndimage.binary_dilation(own, disk(2)) & (straight > 2.5)
        local_cost = np.where(blocked | (straight > max_length + 2), np.inf, cost[window])
        mcp = MCP_Geometric(local_cost)
        total = np.where(targets, mcp.find_costs([start])[0], np.inf)
        end = np.unravel_index(np.argmin(total), total.shape)
        if not np.isfinite(total[end]):
            continue
        path = np.asarray(mcp.traceback(end))
        if total[end] / len(path) < max_mean_cost:
            out[path[:, 0] + y0, path[:, 1] + x0] = True
    return out


def oracle_merge(net1: np.ndarray, truth: np.ndarray, h: float = 0.002) -> np.ndarray:
    """A bound, not a method: Net1's fine basins (h ``h``) merged where they share a majority
    true grain."""
    from napari_grainseg.evaluation.metrics import fill_boundaries

    regions, lined, _ = _basins(net1, h)
    majority = _majority_grain(regions, fill_boundaries(truth))
    edges = _adjacent_pairs(regions)[0]
    return _merge(regions, lined, edges[majority[edges[:, 0]] == majority[edges[:, 1]]])


def faint_ridge_pairs(probability: np.ndarray, image: np.ndarray, truth: np.ndarray) -> list[tuple]:
    """(mean ridge probability, |Δ mean intensity| / pooled std, smaller region px, true boundary?)
    for every pair of adjacent regions of an h = 0.02 watershed of ``probability``."""
    from scipy import ndimage

    regions, _, smooth = _basins(probability, 0.02)
    ids = np.arange(1, regions.max() + 1)
    mean = np.asarray(ndimage.mean(ndimage.gaussian_filter(image.astype(np.float64), 1.0), regions, ids))
    std = np.asarray(ndimage.standard_deviation(image.astype(np.float64), regions, ids))
    size = np.asarray(ndimage.sum(np.ones_like(regions), regions, ids))
    majority = _majority_grain(regions, truth)  # boundary pixels (0) of the truth count for no grain
    edges, inverse, ia, ib = _adjacent_pairs(regions)
    ridge = np.bincount(inverse, np.maximum(smooth.ravel()[ia], smooth.ravel()[ib])) / np.bincount(inverse)
    rows = []
    for (r1, r2), along in zip(edges, ridge):
        pooled = np.sqrt((std[r1 - 1] ** 2 + std[r2 - 1] ** 2) / 2) + 1e-6
        rows.append((float(along), abs(mean[r1 - 1] - mean[r2 - 1]) / pooled,
                     min(size[r1 - 1], size[r2 - 1]), majority[r1] != majority[r2]))
    return rows


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U / n1 n0; ties count half)."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    n1 = int(positive.sum())
    n0 = positive.size - n1
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def print_table(scores: dict[str, list[tuple]]) -> None:
    """Markdown table of (VI, merge, split, |count error|) per image for each way of building
    grains, with the image-by-image VI difference from the first (the reference)."""
    print("| grains from | VI | merge | split | abs count err | VI − reference | lower on |")
    print("|---|---|---|---|---|---|---|")
    ref = np.array(next(iter(scores.values())))[:, 0]
    n = ref.size
    for k, rows in scores.items():
        r = np.array(rows)
        d = r[:, 0] - ref
        print(f"| {k} | {r[:, 0].mean():.3f} | {r[:, 1].mean():.3f} | {r[:, 2].mean():.3f} | "
              f"{r[:, 3].mean():.3f} | {d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(n):.3f} | "
              f"{int((d < 0).sum())}/{n} |")


def main() -> None:
    import torch

    from napari_grainseg.evaluation.suite import EVAL_SETS
    from napari_grainseg.evaluation.metrics import grain_count_error, segmentation_scores
    from napari_grainseg.segmentation.inference import predict_boundaries
    from napari_grainseg.models.weights import load_net1, load_net2
    from napari_grainseg.segmentation.refine import refine

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sets", nargs="+", choices=sorted(EVAL_SETS))
    p.add_argument("--net2-weights", help="Net2 weights (default: the shipped net2.pt)")
    p.add_argument("--cue", action="store_true", help="also the faint-ridge intensity check")
    p.add_argument("--closed-start", action="store_true",
                   help="also run the Net2 from Net1's map with its watershed lines (h 0.1) drawn in, "
                        "as if it had been trained with closed_start")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    net1, net2 = load_net1(device="cpu"), load_net2(a.net2_weights, device="cpu")
    ways = builders(a.closed_start)
    if a.closed_start:
        import dataclasses

        closing = load_net2(a.net2_weights, device="cpu")
        closing.config = dataclasses.replace(closing.config, closed_start=True)
    for name in a.sets:
        scores = {k: [] for k in ways}
        pairs, at_scale_1 = [], []
        for sample in EVAL_SETS[name].samples():
            pred = predict_boundaries(sample.image, net1, device="cpu")
            at_scale_1.append(pred.scale == 1.0)
            steps = list(refine(sample.image, pred.probability, model=net2, device="cpu", scale=pred.scale,
                                net1=net1))
            first = steps[min(net2.config.scheduled_steps or 1, len(steps)) - 1]
            maps = {"net1": pred.probability, "first": first.state, "final": steps[-1].state,
                    "truth": sample.labels}  # the truth only for the oracle bound
            if a.closed_start:
                maps["closed"] = list(refine(sample.image, pred.probability, model=closing, device="cpu",
                                             scale=pred.scale, net1=net1))[-1].state
            for k, build in ways.items():
                labels = build(maps)
                s = segmentation_scores(labels, sample.labels)
                scores[k].append((s["vi"], s["vi_merge"], s["vi_split"],
                                  abs(grain_count_error(labels, sample.labels))))
            if a.cue:
                with np.errstate(invalid="ignore"):  # a region of the over-segmentation can be empty
                    pairs += faint_ridge_pairs(pred.probability, sample.image, sample.labels)
        n = len(scores[next(iter(ways))])
        print(f"\n{name}: {n} images ({sum(at_scale_1)} at Net1 scale 1.0), Net2 {a.net2_weights or 'shipped'}")
        print_table(scores)
        d = np.array(scores["net2"])[:, 0] - np.array(scores[next(iter(ways))])[:, 0]
        for label, chosen in (("at Net1 scale 1.0", np.array(at_scale_1)), ("at other scales", ~np.array(at_scale_1))):
            if chosen.sum() > 1:
                print(f"net2 − reference {label}: {d[chosen].mean():+.3f} ± "
                      f"{d[chosen].std(ddof=1) / np.sqrt(chosen.sum()):.3f} ({int(chosen.sum())} images)")
        if a.cue:
            r = np.array(pairs, float)
            faint = (r[:, 0] < 0.3) & (r[:, 2] > 30)
            true = r[faint, 3] > 0
            auc = roc_auc(true, r[faint, 1]) if 0 < true.sum() < true.size else float("nan")
            print(f"faint ridges: {int(faint.sum())} pairs, {int(true.sum())} true boundaries; "
                  f"ROC AUC of the intensity difference {auc:.2f}")


if __name__ == "__main__":
    main()
