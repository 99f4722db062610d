"""Is the banded fill of boundary pixels identical to the one-piece fill? A fuzz over varied fields.

:func:`napari_grainseg.measure.table.fill_boundaries` with ``max_gap_px`` and ``threads`` runs the
distance transform in bands of rows, each with a margin wider than the widest gap; it must give
exactly the one-piece result, ties included. Fields (random sizes 40-400 px, ``--fields`` of them,
cycling through four kinds), each compared with 2, 3 and 4 bands, the gap passed as the true
largest distance of a 0-pixel to a grain:

- ``tem``: grains of the synthetic "tem" preset (1-px boundaries), mean diameter 8-40 px;
- ``thick``: Voronoi grains with boundaries 1-5 px thick (a brush);
- ``grid``: square grains with 1-3 px gaps (equidistant grains: ties everywhere);
- ``blobs``: Voronoi grains without boundaries, with square holes up to 10 px across.

    python benchmarks/fuzz_banded_fill.py --fields 120 --json docs/fuzz_banded_fill_s22.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

KINDS = ("tem", "thick", "grid", "blobs")


def voronoi(rng, h: int, w: int, n: int) -> np.ndarray:
    seeds = np.zeros((h, w), np.uint32)
    seeds[rng.integers(0, h, n), rng.integers(0, w, n)] = np.arange(1, n + 1)
    _, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    return seeds[iy, ix]


def field(kind: str, rng, seed: int) -> np.ndarray:
    import cv2

    from napari_grainseg.segmentation.grains import boundaries_to_labels
    from napari_grainseg.synthetic import generate

    h, w = int(rng.integers(40, 400)), int(rng.integers(40, 400))
    if kind == "tem":
        diameter = float(rng.uniform(8, 40))
        return boundaries_to_labels(generate(seed=seed, shape=(h, w), preset="tem", mean_diameter=diameter).boundaries)
    if kind == "grid":
        p, gap = int(rng.integers(5, 30)), int(rng.integers(1, 4))
        yy, xx = np.mgrid[:h, :w]
        lab = ((yy // p) * 1000 + xx // p + 1).astype(np.uint32)
        lab[(yy % p < gap) | (xx % p < gap)] = 0
        return lab
    lab = voronoi(rng, h, w, int(rng.integers(3, 200)))
    if kind == "thick":
        edge = np.zeros(lab.shape, bool)
        edge[:-1] |= lab[:-1] != lab[1:]
        edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
        k = int(rng.integers(1, 6))
        lab[cv2.dilate(edge.astype(np.uint8), np.ones((k, k), np.uint8)) > 0] = 0
        return lab
    for _ in range(int(rng.integers(1, 30))):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(1, 6)
        lab[max(0, cy - r) : cy + r, max(0, cx - r) : cx + r] = 0
    return lab


def main() -> None:
    from napari_grainseg.measure import table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    table.BANDED_FILL_MIN_PX = 0  # small fields, so that many cases run
    rng = np.random.default_rng(args.seed)
    counts = {kind: {"fields": 0, "comparisons": 0, "differing": 0} for kind in KINDS}
    for i in range(args.fields):
        kind = KINDS[i % len(KINDS)]
        lab = field(kind, rng, i)
        zero = lab == 0
        if not zero.any() or zero.all():
            continue
        gap = float(ndi.distance_transform_edt(zero).max())
        whole = table.fill_boundaries(lab)
        counts[kind]["fields"] += 1
        for threads in (2, 3, 4):
            banded = table.fill_boundaries(lab, max_gap_px=gap, threads=threads)
            counts[kind]["comparisons"] += 1
            counts[kind]["differing"] += int(not np.array_equal(whole, banded))
    total = {k: sum(c[k] for c in counts.values()) for k in ("fields", "comparisons", "differing")}
    print(json.dumps({"by_kind": counts, "total": total}, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "by_kind": counts, "total": total}, indent=1))


if __name__ == "__main__":
    main()
