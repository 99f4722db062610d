"""Peak memory and time of the whole segmentation of one large micrograph, versus its size.

Each size runs in a fresh subprocess (so peaks do not carry over) that reads the
micrograph from a TIFF, segments it (Net1 tiles, grains), and writes every
output file, exactly as ``grainseg batch`` does for one field. A sampler thread
records the resident set size (psutil, every 20 ms) per stage; the process
peak is ``resource.getrusage(RUSAGE_SELF).ru_maxrss``.

Inputs are synthetic "tem" fields of 1024² mirrored to the requested size
(mirroring keeps grains whole across the joins), cached in ``--cache``.

    nice -n 15 .venv/bin/python benchmarks/bench_memory.py --sizes 1024 2048 4096 8192 \\
        --weights /root/grainseg-runs/net1_dev/net1.pt

Prints a markdown table; ``--json FILE`` also writes the raw figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CHILD = r'''
import json, resource, sys, threading, time
from pathlib import Path
import psutil

stage = {"name": "start"}
peaks = {}
proc = psutil.Process()
stop = False

def sample():
    while not stop:
        rss = proc.memory_info().rss
        peaks[stage["name"]] = max(peaks.get(stage["name"], 0), rss)
        time.sleep(0.02)

threading.Thread(target=sample, daemon=True).start()
args = json.loads(sys.argv[1])
import torch
torch.set_num_threads(args["threads"])
import cv2
cv2.setNumThreads(args["threads"])
from napari_grainseg.io import read_micrograph
from napari_grainseg.models.weights import load_net1
from napari_grainseg.pipeline import segment, write_segmentation
t = {}
t0 = time.perf_counter()
stage["name"] = "import+model"
model = load_net1(args["weights"], device="cpu")
base = proc.memory_info().rss
stage["name"] = "read"
m = read_micrograph(args["input"])
t["read"] = time.perf_counter() - t0
stage["name"] = "segment"
result = segment(m.data, model=model, device="cpu", grain_size_px=args["grain_size"])
t["segment"] = time.perf_counter() - t0 - t["read"]
stage["name"] = "write"
write_segmentation(args["out"], "big", m.data, result, pixel_size_nm=1.0)
t["write"] = time.perf_counter() - t0 - t["read"] - t["segment"]
stop = True
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak_rss": peak, "baseline_rss": base, "stage_peaks": peaks, "seconds": t,
                  "n_grains": int(result.labels.max()), "tiles": result.prediction.n_tiles}))
'''


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


def run_size(size: int, weights: str | None, cache: Path, threads: int, grain_size: float | None) -> dict:
    import tempfile

    inp = make_input(size, cache)
    with tempfile.TemporaryDirectory() as out:
        args = {"input": str(inp), "weights": weights, "out": out, "threads": threads,
                "grain_size": grain_size}
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
    p.add_argument("--grain-size", type=float, default=24.0,
                   help="grain-size hint in px (one Net1 pass; default 24); 0 = estimate (two passes)")
    p.add_argument("--cache", type=Path, default=Path("/tmp/grainseg-bench"))
    p.add_argument("--json", type=Path, help="also write the raw results here")
    a = p.parse_args()
    rows = []
    print("| image | Mpx | peak RSS (GB) | above model baseline (B/px) | segment (s) | write (s) | grains |")
    print("|---|---|---|---|---|---|---|")
    for size in a.sizes:
        r = run_size(size, a.weights, a.cache, a.threads, a.grain_size or None)
        rows.append(r)
        mpx = size * size / 1e6
        print(f"| {size}² | {mpx:.1f} | {r['peak_rss'] / 1e9:.2f} | "
              f"{(r['peak_rss'] - r['baseline_rss']) / (size * size):.1f} | {r['seconds']['segment']:.1f} | "
              f"{r['seconds']['write']:.1f} | {r['n_grains']} |", flush=True)
        print("  stage peaks (GB): " + ", ".join(f"{k} {v / 1e9:.2f}" for k, v in r["stage_peaks"].items()),
              file=sys.stderr, flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
