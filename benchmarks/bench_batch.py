"""Batch throughput: megapixels per second with 1, 2 (... N) local Dask workers of 1 thread each,
and the classical baseline (watershed, ``grains.classical_boundaries``) measured in the same run.

Every configuration processes the same synthetic "tem" fields (1024² by default,
cached in ``--cache``) end to end: read, segment, write every output file
(boundaries, grains, CSV, summary, histograms, overlay), and the sample summary.
Times are wall-clock and include starting the local cluster and loading the
model in each worker. The time for 100 fields is extrapolated from the measured
throughput (said so in the table). The CPU time per field (``time.process_time``
in the process that ran it) shows whether workers oversubscribe the cores: on a
machine whose cores are free, N single-thread workers reach about
N × MPx / (CPU s per field) — the last column, an upper bound, not a measurement.

    nice -n 15 .venv/bin/python benchmarks/bench_batch.py --fields 12 --workers 1 2 \\
        --weights WEIGHTS.pt

Prints a markdown table; ``--json FILE`` also writes the raw figures. Report the
machine's load (``uptime``) with the figures: other processes change them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def make_fields(n: int, size: int, cache: Path) -> Path:
    import numpy as np
    import tifffile

    from napari_grainseg.synthetic import generate

    folder = cache / f"fields_{size}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = folder / f"field_{i:03d}.tif"
        if not path.exists():
            tifffile.imwrite(path, generate(1000 + i, (size, size), "tem").image.astype(np.float32))
    return folder


def _classical_init() -> None:
    import cv2

    cv2.setNumThreads(1)


def classical_field(path: str, out_dir: str) -> float:
    """The classical baseline on one field, with the same output files as the Net1 pipeline.

    Returns the CPU seconds it took."""
    from napari_grainseg.io.readers import read_micrograph
    from napari_grainseg.measure.report import write_report
    from napari_grainseg.segmentation.grains import boundaries_to_labels, classical_boundaries

    cpu0 = time.process_time()
    m = read_micrograph(path)
    labels = boundaries_to_labels(classical_boundaries(m.data, sigma=4, h=0.002, merge_threshold=0.01))
    write_report(out_dir, Path(path).stem, image=m.data, labels=labels, pixel_size_nm=1.0)
    return time.process_time() - cpu0


def run_net1(folder: Path, workers: int, weights: str | None, n: int) -> dict:
    from napari_grainseg.batch import BatchOptions, discover_inputs, run_batch, write_sample_summary

    with tempfile.TemporaryDirectory() as out:
        items = discover_inputs(folder, out)[:n]
        options = BatchOptions(weights=weights, device="cpu", pixel_size_nm=1.0, threads=1)
        t0 = time.perf_counter()
        result = run_batch(items, options, workers=workers, resume=False, progress=False)
        write_sample_summary(out, items, result)
        wall = time.perf_counter() - t0
    assert not result.failures, result.failures
    cpu = [r["cpu_seconds"] for r in result.records]
    return {"method": "net1", "workers": workers, "fields": n, "wall_s": wall, "cpu_s_per_field": sum(cpu) / n}


def run_classical(folder: Path, workers: int, n: int) -> dict:
    files = sorted(folder.glob("*.tif"))[:n]
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        with ProcessPoolExecutor(workers, initializer=_classical_init) as pool:
            cpu = list(pool.map(classical_field, map(str, files), [out] * len(files)))
        wall = time.perf_counter() - t0
    return {"method": "classical", "workers": workers, "fields": n, "wall_s": wall, "cpu_s_per_field": sum(cpu) / n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fields", type=int, default=12)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--weights", default=None, help="Net1 weights (default: shipped)")
    p.add_argument("--no-classical", action="store_true")
    p.add_argument("--cache", type=Path, default=Path("/tmp/grainseg-bench"))
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path, help="write the table into this file's 'batch-throughput' section")
    a = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    folder = make_fields(a.fields, a.size, a.cache)
    mpx = a.size * a.size / 1e6
    load = os.getloadavg()
    rows = []
    for w in a.workers:
        rows.append(run_net1(folder, w, a.weights, a.fields))
        if not a.no_classical:
            rows.append(run_classical(folder, w, a.fields))
    base = {r["method"]: r["wall_s"] for r in rows if r["workers"] == a.workers[0]}
    lines = [
        f"Load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores); "
        f"{a.fields} synthetic fields of {a.size}², 1 thread per worker, wall time from start to "
        "sample summary (cluster start and model loading included).",
        "",
        "| method | workers | wall (s) | MPx/s | speed-up | 100 fields (min, extrapolated) "
        "| CPU s per field | CPU-bound MPx/s on free cores |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        r["mpx_per_s"] = r["fields"] * mpx / r["wall_s"]
        r["speedup"] = base[r["method"]] / r["wall_s"]
        r["load_average"] = load
        lines.append(
            f"| {r['method']} | {r['workers']} | {r['wall_s']:.1f} | {r['mpx_per_s']:.3f} | "
            f"{r['speedup']:.2f}× | {100 * mpx / r['mpx_per_s'] / 60:.1f} | "
            f"{r['cpu_s_per_field']:.2f} | {r['workers'] * mpx / r['cpu_s_per_field']:.3f} |"
        )
    print("\n".join(lines))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    if a.markdown:
        from napari_grainseg.evaluation.markdown import replace_section

        replace_section(a.markdown, "batch-throughput", "\n".join(lines), heading="## Batch and scale")


if __name__ == "__main__":
    sys.exit(main())
