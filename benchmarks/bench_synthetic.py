"""Images per second of ``synthetic.generate`` on one CPU core.

Run with one thread (torch is not involved)::

    OMP_NUM_THREADS=1 python benchmarks/bench_synthetic.py

Prints the median time per image and images/s for the default "tem" preset (every
realism feature on) at 96x496 and 1024x1024, for "train" and "paper" at 96x496, and for the
domain-randomisation preset "random" at Net1's training patch (128x256; its mean time too,
since a few draws with bimodal sizes make a slow tail).
Targets: >= 30 images/s at 96x496 and >= 1 image/s at 1024x1024.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402

from napari_grainseg.synthetic import generate  # noqa: E402

cv2.setNumThreads(1)


def bench(shape, preset, n):
    generate(10_000, shape, preset)  # warm-up
    times, cpu = [], []
    for seed in range(n):
        t, c = time.perf_counter(), time.process_time()
        generate(seed, shape, preset)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    med, medc, mean = statistics.median(times), statistics.median(cpu), statistics.fmean(times)
    # CPU time is what one core spends; wall time also counts waiting on a busy machine
    print(
        f"{preset:6s} {shape[0]:5d}x{shape[1]:<5d} median wall {med * 1e3:7.1f} ms "
        f"({1 / med:6.1f} images/s)  cpu {medc * 1e3:7.1f} ms ({1 / medc:6.1f} images/s)  "
        f"mean wall {mean * 1e3:7.1f} ms  n={n}",
        flush=True,
    )
    return 1 / med


if __name__ == "__main__":
    bench((96, 496), "tem", 100)
    bench((1024, 1024), "tem", 10)
    bench((96, 496), "train", 100)
    bench((96, 496), "paper", 100)
    bench((128, 256), "random", 100)
