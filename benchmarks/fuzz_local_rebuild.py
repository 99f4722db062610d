"""Does the local rebuild of hand edits ever give other grains than the whole image? A fuzz.

Chains of adversarial boundary edits (written for a review of the local rebuild): filled disks
and erasures up to 40 px across, rings, painted or erased bands up to 30 px wide, napari-like
brush strokes 10 px wide, rectangles up to 120 px, a quarter of them at the image border, on
synthetic "tem" fields whose boundaries are thickened by hand in places (half the chains). After
each edit :func:`napari_grainseg.segmentation.editing.rebuild_grains_near` is compared with
:func:`~napari_grainseg.segmentation.grains.boundaries_to_labels` of the whole image: the same
boundaries and the same grains (whatever their ids), the grain count it reports, and its next id.
Where the whole image is built, its grains take the old ids as the napari layer does
(:func:`~napari_grainseg.segmentation.editing.carry_ids`), checked the same way; where the local
rebuild worked, ``carry_ids`` on the whole-image build must give every grain the same id.

    python benchmarks/fuzz_local_rebuild.py --fields 384:20:4 768:40:5 --chains 30 --edits 15

``--fields SIZE:DIAMETER:SEED``. Prints the counts (local, whole image, differing, carried
differing: a wrong ``carry_ids`` result, ids unlike local: ``carry_ids`` numbered a grain unlike
the local rebuild); exits 1 if any result was wrong. ``--json FILE`` writes them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import circle_perimeter, disk, line

from napari_grainseg.segmentation.editing import carry_ids, grain_correspondence, rebuild_grains_near
from napari_grainseg.segmentation.grains import boundaries_to_labels

KINDS = ("blob", "erase", "ring", "band", "stroke", "rect")


_yy, _xx = np.mgrid[-5:5, -5:5] + 0.5
#: A brush 10 px across, as napari paints at brush size 10.
BRUSH_10PX = (_yy**2 + _xx**2) <= 25


def edit(b: np.ndarray, rng, kind: str) -> np.ndarray:
    """One adversarial edit of the boundary map ``b``."""
    out = b.copy()
    h, w = out.shape
    border = rng.random() < 0.25
    if border:
        y = int(rng.choice([rng.integers(0, 6), rng.integers(h - 6, h), rng.integers(0, h)]))
        x = int(rng.integers(0, 6)) if rng.random() < 0.5 else int(rng.integers(w - 6, w))
        if rng.random() < 0.5:
            y, x = x % h, y % w
    else:
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
    R = float(rng.choice([rng.uniform(1, 6), rng.uniform(6, 40)]))
    if kind == "blob":
        out[disk((y, x), R, shape=out.shape)] = 1
    elif kind == "erase":
        out[disk((y, x), R, shape=out.shape)] = 0
    elif kind == "ring":
        r = int(rng.integers(2, 30))
        rr, cc = circle_perimeter(y, x, r, shape=out.shape)
        out[rr, cc] = 1
        if rng.random() < 0.5:
            rr, cc = circle_perimeter(y, x, r + 1, shape=out.shape)
            out[rr, cc] = 1
    elif kind == "band":
        L = int(rng.integers(5, 120))
        a = rng.uniform(0, np.pi)
        y1, x1 = int(np.clip(y + L * np.sin(a), 0, h - 1)), int(np.clip(x + L * np.cos(a), 0, w - 1))
        m = np.zeros(out.shape, bool)
        rr, cc = line(y, x, y1, x1)
        m[rr, cc] = True
        wdt = int(rng.integers(0, 15))
        if wdt:
            m = ndi.binary_dilation(m, iterations=wdt)
        out[m] = 1 if rng.random() < 0.7 else 0
    elif kind == "stroke":  # a napari brush stroke, brush size 10 (a disc 10 px across at each sample)
        L = int(rng.integers(10, 80))
        a = rng.uniform(0, 2 * np.pi)
        y1, x1 = int(np.clip(y + L * np.sin(a), 0, h - 1)), int(np.clip(x + L * np.cos(a), 0, w - 1))
        rr, cc = line(y, x, y1, x1)
        m = np.zeros(out.shape, bool)
        m[rr, cc] = True
        m = ndi.binary_dilation(m, BRUSH_10PX)
        out[m] = 1 if rng.random() < 0.8 else 0
    elif kind == "rect":
        hh, ww = int(rng.integers(1, 60)), int(rng.integers(1, 60))
        out[max(y - hh, 0) : y + hh, max(x - ww, 0) : x + ww] = 1 if rng.random() < 0.6 else 0
    return out


def _right(labels: np.ndarray, whole: np.ndarray, n_before: int, update) -> bool:
    """Whether ``labels`` holds the whole-image build's grains, with the count and next id ``update`` reports."""
    return (
        grain_correspondence(labels, whole) is not None
        and np.unique(labels[labels > 0]).size == n_before + update.count_change
        and labels.max() < update.next_id
    )


def run_field(boundaries: np.ndarray, chains: range, edits: int, min_area: int, thick_share: float) -> dict:
    counts = {"local": 0, "whole image": 0, "differing": 0, "carried differing": 0, "ids unlike local": 0}
    for chain in chains:
        rng = np.random.default_rng(chain)
        b = boundaries.copy()
        if rng.random() < thick_share:  # boundaries thickened by hand in places
            m = np.zeros(b.shape, bool)
            for _ in range(5):
                y, x = rng.integers(0, b.shape[0]), rng.integers(0, b.shape[1])
                m[max(y - 60, 0) : y + 60, max(x - 60, 0) : x + 60] = True
            b = np.where(m & ndi.binary_dilation(b > 0, iterations=int(rng.integers(1, 8))), 1, b).astype(np.uint8)
        labels = boundaries_to_labels(b, min_grain_area=min_area)
        next_id = int(labels.max()) + 1
        for _ in range(edits):
            edited = edit(b, rng, KINDS[int(rng.integers(len(KINDS)))])
            rows, cols = np.nonzero(edited != b)
            if rows.size == 0:
                continue
            changed = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
            whole = boundaries_to_labels(edited, min_grain_area=min_area)
            n_before = np.unique(labels[labels > 0]).size
            carried = carry_ids(labels, whole, next_id=next_id)
            if carried is not None and not _right(carried.labels, whole, n_before, carried):
                counts["carried differing"] += 1
            update = rebuild_grains_near(labels, edited, changed, next_id=next_id, min_grain_area=min_area)
            if update is None:
                counts["whole image"] += 1
                if carried is None:
                    labels, b, next_id = whole, edited, int(whole.max()) + 1
                else:
                    labels, b, next_id = carried.labels, edited, carried.next_id
                continue
            counts["local"] += 1
            spliced = labels.copy()
            spliced[update.window] = update.labels
            if carried is not None and not np.array_equal(carried.labels, spliced):
                counts["ids unlike local"] += 1
            right = _right(spliced, whole, n_before, update)
            if not right:
                counts["differing"] += 1
                spliced, update_next = whole, int(whole.max()) + 1
            else:
                update_next = update.next_id
            labels, b, next_id = spliced, edited, update_next
    return counts


def main() -> None:
    from napari_grainseg.synthetic import generate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", nargs="+", default=["384:20:4", "768:40:5"], help="SIZE:DIAMETER:SEED")
    parser.add_argument("--chains", type=int, default=30)
    parser.add_argument("--edits", type=int, default=15)
    parser.add_argument("--min-area", type=int, nargs="+", default=[10, 2])
    parser.add_argument("--thick-share", type=float, default=0.5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    for spec in args.fields:
        size, diameter, seed = spec.split(":")
        sample = generate(seed=int(seed), shape=(int(size), int(size)), preset="tem", mean_diameter=float(diameter))
        for min_area in args.min_area:
            counts = run_field(sample.boundaries, range(args.chains), args.edits, min_area, args.thick_share)
            results.append({"field": spec, "min_area": min_area, **counts})
            print(f"{spec} min area {min_area}: {counts}", flush=True)
    keys = ("local", "whole image", "differing", "carried differing", "ids unlike local")
    total = {key: sum(r[key] for r in results) for key in keys}
    print(f"total: {total}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "total": total}, indent=1))
    sys.exit(1 if total["differing"] or total["carried differing"] or total["ids unlike local"] else 0)


if __name__ == "__main__":
    main()
