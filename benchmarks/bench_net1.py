"""Net1 inference speed and memory (a benchmark script, not a test).

    .venv/bin/python benchmarks/bench_net1.py [--weights PATH] [--repeats 5]

Reports, on this machine's CPU with torch's default threads:
- the median wall time of ``predict_boundaries`` on a 1024x1024 synthetic micrograph at scale 1
  (grain-size hint inside the trained range: no rescaling), edge fusion and tiling included,
  with Net1 through PyTorch and through OpenCV (``models/net1_opencv.py``, same process);
  beside it the edge fusion alone and the classical baseline in the same process;
- the peak resident memory of a fresh process segmenting a 4096x4096 micrograph with
  1024 px tiles, for each of the two (measured by ``resource.getrusage`` in a subprocess, so nothing else counts).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, oneDNN kernels)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def speed(weights: str | None, repeats: int) -> dict:
    import torch

    from napari_grainseg.models.net1_opencv import load_opencv_net1
    from napari_grainseg.models.weights import load_net1
    from napari_grainseg.segmentation.edges import fuse_edges
    from napari_grainseg.segmentation.grains import classical_boundaries
    from napari_grainseg.segmentation.inference import predict_boundaries
    from napari_grainseg.synthetic import generate

    image = generate(seed=1, shape=(1024, 1024), preset="tem", mean_diameter=30.0).image
    model = load_net1(weights, device="cpu")
    net1 = _median_seconds(lambda: predict_boundaries(image, model, device="cpu", grain_size_px=30.0), repeats)
    cv_model = load_opencv_net1(weights)  # None when the weights have no current ONNX export
    net1_cv = (
        _median_seconds(lambda: predict_boundaries(image, cv_model, device="cpu", grain_size_px=30.0), repeats)
        if cv_model is not None
        else float("nan")
    )
    edges = _median_seconds(lambda: fuse_edges(image), repeats)
    classical = _median_seconds(lambda: classical_boundaries(image), max(1, repeats // 2))
    return {
        "image": "1024x1024 synthetic (tem preset, 30 px grains)",
        "torch_threads": torch.get_num_threads(),
        "net1_total_s": round(net1, 3),
        "net1_opencv_total_s": round(net1_cv, 3),
        "ratio_opencv_to_torch": round(net1_cv / net1, 2),
        "edge_fusion_s": round(edges, 3),
        "classical_baseline_s": round(classical, 3),
        "ratio_net1_to_classical": round(net1 / classical, 2),
    }


_MEMORY_CHILD = """
import resource, sys, numpy as np
from napari_grainseg.synthetic import generate
from napari_grainseg.segmentation.inference import predict_boundaries
from napari_grainseg.models.weights import load_net1
from napari_grainseg.models.net1_opencv import load_opencv_net1
size = int(sys.argv[1]); weights = sys.argv[2] if sys.argv[2] != "-" else None
model = load_opencv_net1(weights) if sys.argv[3] == "opencv" else load_net1(weights)
tile = generate(seed=2, shape=(1024, 1024), preset="tem", mean_diameter=30.0).image
image = np.tile(tile, (size // 1024, size // 1024))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pred = predict_boundaries(image, model, device="cpu", grain_size_px=30.0, tile_size=1024)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before / 1024, peak / 1024, pred.n_tiles)
"""


def memory(weights: str | None, size: int, backend: str = "torch") -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(size), weights or "-", backend],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    before, peak, tiles = float(out[0]), float(out[1]), int(out[2])
    return {
        "image": f"{size}x{size}",
        "backend": backend,
        "tiles": tiles,
        "rss_before_predict_mb": round(before),
        "peak_rss_mb": round(peak),
        "input_mb": round(size * size * 4 / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="Net1 weights (default: shipped)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-size", type=int, default=4096)
    args = parser.parse_args()
    result = {
        "speed": speed(args.weights, args.repeats),
        "memory": memory(args.weights, args.memory_size),
        "memory_opencv": memory(args.weights, args.memory_size, "opencv"),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
