"""Where the memory of one large field goes: numpy's peak allocation in each stage of ``grainseg batch``.

``bench_memory.py`` gives the process's peak RSS, which stays high once reached (freed memory
is kept by the allocator), so it cannot say which stage set it. This runs the same
``batch.process_item`` on the same mirrored synthetic field under ``tracemalloc`` (numpy reports
its allocations to it) and prints, for each wrapped stage, the traced memory when it starts,
its peak and what it leaves behind (GB). Nested stages are listed in the order they end.

    python benchmarks/memory_by_stage.py --size 8192 [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import tracemalloc
from pathlib import Path

#: (module, function) pairs timed as stages.
STAGES = (
    ("napari_grainseg.segmentation.inference", "predict_probability"),
    ("napari_grainseg.segmentation.grains", "h_minima_markers"),
    ("napari_grainseg.segmentation.grains", "watershed_lines"),
    ("napari_grainseg.segmentation.grains", "boundaries_to_labels"),
    ("napari_grainseg.segmentation.pipeline", "segment"),
    ("napari_grainseg.measure.report", "write_tiff"),
    ("napari_grainseg.measure.table", "prepare_labels"),
    ("napari_grainseg.measure.table", "_shape_columns"),
    ("napari_grainseg.measure.table", "_perimeters"),
    ("napari_grainseg.measure.statistics", "summarize"),
    ("napari_grainseg.measure.statistics", "measure_field"),
    ("napari_grainseg.measure.report", "save_overlay"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/grainseg-bench"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import importlib

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_memory import make_input

    source = make_input(args.size, args.cache)
    tracemalloc.start(1)
    rows: list[dict] = []

    def wrap(module, name):
        function = getattr(module, name)

        @functools.wraps(function)
        def traced(*a, **k):
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            out = function(*a, **k)
            after, peak = tracemalloc.get_traced_memory()
            rows.append({"stage": name, "before_gb": before / 1e9, "peak_gb": peak / 1e9, "after_gb": after / 1e9})
            tracemalloc.reset_peak()
            return out

        setattr(module, name, traced)

    for module_name, name in STAGES:
        wrap(importlib.import_module(module_name), name)
    from napari_grainseg.batch import BatchItem, BatchOptions, process_item

    options = BatchOptions(device="cpu", pixel_size_nm=1.0, grain_size_px=24.0, net2_steps=0, threads=2)
    with tempfile.TemporaryDirectory() as out:
        record = process_item(BatchItem(source, Path(out), "big"), options)
    assert record["status"] == "processed", record
    print(f"{args.size}²: {record['n_grains']} grains; traced numpy memory (GB)\n")
    print("| stage | at start | peak | left |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['before_gb']:.2f} | {r['peak_gb']:.2f} | {r['after_gb']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "n_grains": record["n_grains"], "stages": rows}, indent=1))


if __name__ == "__main__":
    main()
