"""Time and peak memory of ``measure`` against the number of grains (issue 21: near-linear scaling).

Each case runs in a fresh process: the label image is built, then
:func:`napari_grainseg.measure.statistics.measure_field` (per-grain table + summary)
and the CSV/JSON writers run on it (timed); a second, traced run of the measurement
gives numpy's peak allocations (``tracemalloc``, the labels excluded); the process's
peak RSS includes the labels and the first run's imports.

Cases
-----
* ``pixels N``: an N×N image where every pixel is its own grain (N² one-pixel grains);
* ``grains K``: a realistic field: a 1-px-boundary Voronoi field of ~12.5k grains
  (1024², ECD ≈ 10 px) tiled K×K with distinct ids;
* ``big-ids``: 10 grains with ids near 2**32 in a 128² image.

Usage: ``python benchmarks/bench_measure_scaling.py [--quick]`` (prints a Markdown table).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CASES = [
    ("pixels", 316),
    ("pixels", 1000),
    ("pixels", 1415),
    ("grains", 1),
    ("grains", 2),
    ("grains", 4),
    ("big-ids", 0),
]
QUICK = [("pixels", 316), ("grains", 1), ("big-ids", 0)]


def make_labels(kind: str, size: int):
    import numpy as np

    if kind == "pixels":
        return np.arange(1, size * size + 1, dtype=np.uint32).reshape(size, size)
    if kind == "big-ids":
        lab = np.zeros((128, 128), np.uint32)
        for i in range(10):
            lab[i * 12 : (i + 1) * 12 - 1, :] = 2**32 - 1 - 7919 * i
        return lab
    from scipy.spatial import cKDTree

    from napari_grainseg.segmentation.grains import normalize_labels

    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1024, (12_500, 2))
    yy, xx = np.mgrid[:1024, :1024]
    field = (cKDTree(pts).query(np.c_[yy.ravel(), xx.ravel()])[1].reshape(1024, 1024) + 1).astype(np.uint32)
    field = normalize_labels(field)
    top = int(field.max())
    rows = [
        np.concatenate([np.where(field > 0, field + (i * size + j) * top, 0) for j in range(size)], 1)
        for i in range(size)
    ]
    return np.concatenate(rows, 0).astype(np.uint32)


def run_case(kind: str, size: int) -> dict:
    import resource
    import tempfile
    import time
    import tracemalloc

    import numpy as np

    from napari_grainseg.measure.report import write_grains_csv, write_summary_json
    from napari_grainseg.measure.statistics import measure_field

    # stripes of unequal widths: the lognormal fit (and scipy.stats) runs too
    warm = np.repeat(np.arange(1, 11, dtype=np.uint32), np.arange(2, 12))[None, :].repeat(20, 0)
    measure_field(warm)  # imports, outside the timing
    labels = make_labels(kind, size)
    t0 = time.perf_counter()
    table, summary = measure_field(labels, 2.0)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_grains_csv(f"{tmp}/g.csv", table)
        write_summary_json(f"{tmp}/s.json", summary)
    t2 = time.perf_counter()
    n_grains = len(table)
    del table, summary
    tracemalloc.start()  # a second, traced run: numpy's peak allocations
    measure_field(labels, 2.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "case": f"{kind} {size}" if kind != "big-ids" else kind,
        "pixels": int(labels.size),
        "grains": n_grains,
        "measure_s": t1 - t0,
        "write_s": t2 - t1,
        "traced_peak_mb": peak / 2**20,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the small cases only")
    ap.add_argument("--case", nargs=2, metavar=("KIND", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]))))
        return
    print("| case | pixels | grains | measure (s) | CSV+JSON (s) | µs per grain | traced peak (MB) | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, size in QUICK if args.quick else CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--case", kind, str(size)], check=True, capture_output=True, text=True
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"| {r['case']} | {r['pixels']:,} | {r['grains']:,} | {r['measure_s']:.2f} | {r['write_s']:.2f} | "
            f"{1e6 * r['measure_s'] / r['grains']:.1f} | {r['traced_peak_mb']:.0f} | {r['rss_peak_mb']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
