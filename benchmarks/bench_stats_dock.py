"""How long the "Grain statistics" dock takes to re-measure a large field, on one CPU thread and on two,
and whether the viewer stays responsive meanwhile. Run under ``xvfb-run``.

A real viewer shows a synthetic "tem" micrograph (mean grain diameter 20 px) with its boundary layer;
the dock (opened from the Plugins menu) measures its grains in its worker thread, as after an edit.
:func:`~napari_grainseg.models.device.set_cpu_threads` gives the measurement one thread or two (two:
the per-grain table and the intercept side by side); the two alternate, ``--repeats`` times each.
A 10 ms ``QTimer`` on the main thread records the gaps between its ticks: the longest is the longest
time the viewer could not react.

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_stats_dock.py --size 4096 --repeats 3 \\
        --json docs/bench_stats_dock_s22.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def main() -> None:
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_grainseg.models.device import set_cpu_threads
    from napari_grainseg.plugin._boundaries import BoundaryLink
    from napari_grainseg.synthetic import generate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sample = generate(seed=1, shape=(args.size, args.size), preset="tem", mean_diameter=20.0)
    viewer = napari.Viewer(show=True)
    image = viewer.add_image(sample.image.astype(np.float32), name="img", scale=(2.0, 2.0), units=("nm", "nm"))
    link = BoundaryLink.create(viewer, image, sample.boundaries.astype(np.uint8))
    app = QApplication.instance()

    def settle(until) -> float:
        start = time.perf_counter()
        while not until():
            app.processEvents()
            time.sleep(0.002)
        return time.perf_counter() - start

    settle(lambda: link.grain_count > 0)
    _, stats = viewer.window.add_plugin_dock_widget("napari-grainseg", "Grain statistics")
    settle(lambda: stats.stats is not None and stats._worker is None)
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for threads in (1, 2):
            set_cpu_threads(threads)
            stats.stats = None
            gaps.clear()
            last[0] = time.perf_counter()
            stats.update()
            seconds = settle(lambda: stats.stats is not None and stats._worker is None)
            runs[threads].append({"seconds": round(seconds, 3), "longest_gap_ms": round(max(gaps) * 1000, 1)})
            print(threads, runs[threads][-1], flush=True)
    timer.stop()
    viewer.close()
    rows = [
        {
            "threads": threads,
            "median_seconds": float(np.median([r["seconds"] for r in runs[threads]])),
            "median_longest_gap_ms": float(np.median([r["longest_gap_ms"] for r in runs[threads]])),
            "runs": runs[threads],
        }
        for threads in (1, 2)
    ]
    ratio = rows[1]["median_seconds"] / rows[0]["median_seconds"]
    print("| threads | measured (s) | longest main-thread gap (ms) |\n|---|---|---|")
    for row in rows:
        print(f"| {row['threads']} | {row['median_seconds']:.2f} | {row['median_longest_gap_ms']:.0f} |")
    print(f"ratio two / one: {ratio:.2f}")
    if args.json:
        info = {"machine": platform.processor() or platform.machine(), "size": args.size, "repeats": args.repeats}
        args.json.write_text(json.dumps({"info": info, "results": rows, "ratio": round(ratio, 3)}, indent=1))


if __name__ == "__main__":
    main()
