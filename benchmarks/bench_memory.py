"""Peak memory and time of the whole segmentation of one large micrograph, versus its size.

Each size runs in a fresh subprocess (so peaks do not carry over) that processes
one field exactly as ``grainseg batch`` does (``batch.process_item``): read the
TIFF, segment it (edge statistics, Net1 tiles, grains), measure, and write every
output file. The peak is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of that
process (a psutil sampler every 20 ms gives the same figure).

Inputs are synthetic "tem" fields of 1024² mirrored to the requested size
(mirroring keeps grains whole across the joins), cached in ``--cache``.

    nice -n 15 .venv/bin/python benchmarks/bench_memory.py --sizes 1024 2048 4096 8192 \\
        --weights WEIGHTS.pt

Prints a markdown table; ``--json FILE`` also writes the raw figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, threading, time
import psutil

proc = psutil.Process()
peak = {"rss": 0}
stop = False

def sample():
    while not stop:
        peak["rss"] = max(peak["rss"], proc.memory_info().rss)
        time.sleep(0.02)

threading.Thread(target=sample, daemon=True).start()
args = json.loads(sys.argv[1])
from pathlib import Path
from napari_grainseg.batch import BatchItem, BatchOptions, cached_net1, process_item
cached_net1(args["weights"], "cpu")
baseline = proc.memory_info().rss
options = BatchOptions(weights=args["weights"], device="cpu", pixel_size_nm=1.0,
                       grain_size_px=args["grain_size"], net2_steps=args["net2_steps"], threads=args["threads"],
                       grains=args["grains"])
record = process_item(BatchItem(Path(args["input"]), Path(args["out"]), "big"), options)
stop = True
assert record["status"] == "processed", record
done = json.loads((Path(args["out"]) / "big_done.json").read_text())
summary = json.loads((Path(args["out"]) / "big_summary.json").read_text())
print(json.dumps({"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "sampled_peak_rss": peak["rss"], "baseline_rss": baseline, "seconds": record["seconds"],
                  "net1_seconds": summary.get("net1_seconds"), "n_grains": record["n_grains"],
                  "tiles": summary.get("tiles")}))
"""


def make_input(size: int, cache: Path) -> Path:
    """A size×size float32 TIFF: a 1024² synthetic field mirrored to fill it."""
    import numpy as np
    import tifffile

    path = cache / f"mirror_{size}.tif"
    if path.exists():
        return path
    from napari_grainseg.synthetic import generate

    cache.mkdir(parents=True, exist_ok=True)
    base = generate(0, (1024, 1024), "tem").image.astype(np.float32)
    reps = -(-size // 1024)
    row = np.concatenate([base if j % 2 == 0 else base[:, ::-1] for j in range(reps)], axis=1)
    del base
    big = np.concatenate([row if i % 2 == 0 else row[::-1] for i in range(reps)], axis=0)[:size, :size]
    tifffile.imwrite(path, np.ascontiguousarray(big))
    return path


def run_size(
    size: int,
    weights: str | None,
    cache: Path,
    threads: int,
    grain_size: float | None,
    net2_steps: int | str = 0,
    grains: str = "watershed",
) -> dict:
    import tempfile

    inp = make_input(size, cache)
    with tempfile.TemporaryDirectory() as out:
        args = {
            "input": str(inp),
            "weights": weights,
            "out": out,
            "threads": threads,
            "grain_size": grain_size,
            "net2_steps": net2_steps,
            "grains": grains,
        }
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"size {size} failed:\n{proc.stderr[-3000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(size=size, wall_s=time.perf_counter() - t0)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    p.add_argument("--weights", default=None, help="Net1 weights (default: shipped)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--grain-size",
        type=float,
        default=24.0,
        help="grain-size hint in px (one Net1 pass; default 24); 0 = estimate (two passes)",
    )
    p.add_argument("--net2-steps", default="0", help="Net2 steps (default 0: Net1 only)")
    from napari_grainseg.segmentation.grains import DEFAULT_GRAIN_BUILDER, GRAIN_BUILDERS

    p.add_argument(
        "--grains",
        default=DEFAULT_GRAIN_BUILDER,
        choices=GRAIN_BUILDERS,
        help="grain builder (grainseg batch --grains; default: the product's)",
    )
    p.add_argument("--cache", type=Path, default=Path("/tmp/grainseg-bench"))
    p.add_argument("--json", type=Path, help="also write the raw results here")
    p.add_argument("--markdown", type=Path, help="write the table into this file's 'batch-memory' section")
    a = p.parse_args()
    rows, lines = [], []
    load = os.getloadavg()
    lines.append(
        f"Load average at the start: {load[0]:.1f} ({os.cpu_count()} cores); {a.threads} torch "
        f"thread(s); grain-size hint {a.grain_size or 'none'} px; grains by {a.grains}; "
        "each size in a fresh process."
    )
    lines.append("")
    lines.append(
        "| image | Mpx | peak RSS (GB) | above the loaded model (B/px) | Net1 (s) | whole field (s) | grains |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    print("\n".join(lines), flush=True)
    for size in a.sizes:
        r = run_size(size, a.weights, a.cache, a.threads, a.grain_size or None, a.net2_steps, a.grains)
        rows.append(r)
        line = (
            f"| {size}² | {size * size / 1e6:.1f} | {r['peak_rss'] / 1e9:.2f} | "
            f"{(r['peak_rss'] - r['baseline_rss']) / (size * size):.1f} | {r['net1_seconds']:.0f} | "
            f"{r['seconds']:.0f} | {r['n_grains']} |"
        )
        lines.append(line)
        print(line, flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    if a.markdown:
        from napari_grainseg.evaluation.markdown import replace_section

        replace_section(a.markdown, "batch-memory", "\n".join(lines), heading="## Batch and scale")


if __name__ == "__main__":
    main()
