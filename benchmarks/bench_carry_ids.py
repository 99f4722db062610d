"""What keeping the grains' ids costs when an edit needs the whole image rebuilt.

An edit whose window would exceed a quarter of the image is rebuilt on the whole image
(:func:`~napari_grainseg.segmentation.grains.boundaries_to_labels`), which numbers the grains
1..n afresh; :func:`~napari_grainseg.segmentation.editing.carry_ids` then gives them back the ids
(colours) they had. Both are timed on the same edits in the same process, medians of
``--repeats``, on synthetic "tem" fields of mean grain diameter 20 px:

- ``erase``: boundaries erased in a square a third of the image's side (one huge merge);
- ``line``: a line drawn across the whole width (every grain it crosses split);
- ``band``: a band 40 px wide painted down the whole height (grains under it removed).

Also the share of grain pixels whose id, so colour, is the one they had, with the ids carried
and numbered afresh.

    python benchmarks/bench_carry_ids.py --sizes 2048 4096 --repeats 3 --json docs/bench_carry_ids_s19.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from napari_grainseg.segmentation.editing import carry_ids
from napari_grainseg.segmentation.grains import boundaries_to_labels


def edited(boundaries: np.ndarray, kind: str) -> np.ndarray:
    out = boundaries.copy()
    n = out.shape[0]
    if kind == "erase":
        out[n // 3 : 2 * n // 3, n // 3 : 2 * n // 3] = 0
    elif kind == "line":
        out[n // 2 + 3, :] = 1
    else:
        out[:, n // 2 - 20 : n // 2 + 20] = 1
    return out


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def main() -> None:
    from napari_grainseg.synthetic import generate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        sample = generate(seed=1, shape=(size, size), preset="tem", mean_diameter=20.0)
        labels = boundaries_to_labels(sample.boundaries)
        boundaries = (labels == 0).astype(np.uint8)
        for kind in ("erase", "line", "band"):
            after_edit = edited(boundaries, kind)
            build_s, whole = median_time(lambda b=after_edit: boundaries_to_labels(b), args.repeats)
            carry_s, update = median_time(
                lambda w=whole, old=labels: carry_ids(old, w, next_id=int(old.max()) + 1), args.repeats
            )
            grain = whole > 0

            def same_colour(new, old=labels, grain=grain):  # share of grain pixels whose id did not change
                return round(float(np.mean(new[grain] == old[grain])), 4)

            row = {
                "size": size,
                "grains": int(labels.max()),
                "edit": kind,
                "build_s": round(build_s, 3),
                "carry_s": round(carry_s, 3),
                "ratio": round(carry_s / build_s, 2),
                "grains_after": int(whole.max()),
                "same_colour_share_carried": same_colour(update.labels) if update is not None else None,
                "same_colour_share_numbered_afresh": same_colour(whole),
            }
            rows.append(row)
            print(row, flush=True)
    if args.json:
        info = {"machine": platform.processor() or platform.machine(), "repeats": args.repeats}
        args.json.write_text(json.dumps({"info": info, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
