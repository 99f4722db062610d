"""Time of one field's measurement with one CPU thread and with two, in the same process.

:func:`~napari_grainseg.measure.statistics.measure_field` measures the per-grain table and the
intercept's test lines side by side when :func:`~napari_grainseg.models.device.cpu_threads` is
above 1 (the CLI, the napari statistics dock; a batch worker gets its share of the cores). The
two ways alternate on the same label image (synthetic "tem" grains of mean diameter 20 px,
boundaries 0), medians of ``--repeats``; the results must be identical.

    python benchmarks/bench_measure_threads.py --sizes 2048 4096 --repeats 5 --json docs/bench_measure_threads_s22.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from napari_grainseg.measure.statistics import measure_field
from napari_grainseg.models.device import restored_cpu_threads, set_cpu_threads


def timed_measure(labels: np.ndarray, threads: int) -> tuple[float, tuple]:
    set_cpu_threads(threads)
    start = time.perf_counter()
    result = measure_field(labels, 2.0)
    return time.perf_counter() - start, result


def main() -> None:
    from napari_grainseg.segmentation.grains import boundaries_to_labels
    from napari_grainseg.synthetic import generate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with restored_cpu_threads():
        measure_field(np.repeat(np.arange(1, 11, dtype=np.uint32), 12)[None, :].repeat(20, 0))  # imports
        for size in args.sizes:
            labels = boundaries_to_labels(
                generate(seed=1, shape=(size, size), preset="tem", mean_diameter=20.0).boundaries
            )
            times: dict[int, list[float]] = {1: [], 2: []}
            results = {}
            for _ in range(args.repeats):
                for threads in (1, 2):
                    seconds, results[threads] = timed_measure(labels, threads)
                    times[threads].append(seconds)
            (table_1, summary_1), (table_2, summary_2) = results[1], results[2]
            identical = summary_1 == summary_2 and all(
                np.array_equal(a, table_2.data[c], equal_nan=a.dtype.kind == "f") for c, a in table_1.data.items()
            )
            one, two = float(np.median(times[1])), float(np.median(times[2]))
            row = {
                "size": size,
                "grains": summary_1["n_grains"],
                "one_thread_s": round(one, 3),
                "two_threads_s": round(two, 3),
                "ratio": round(two / one, 2),
                "identical": bool(identical),
            }
            rows.append(row)
            print(row, flush=True)
    if args.json:
        info = {"machine": platform.processor() or platform.machine(), "repeats": args.repeats}
        args.json.write_text(json.dumps({"info": info, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
