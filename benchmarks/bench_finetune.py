"""Time and memory of fine-tuning Net1 on 4 corrected crops of 256² (the default 300 steps).

    python benchmarks/bench_finetune.py --repeats 3 --threads 2

Uses synthetic crops (the same work as real ones: the time does not depend on the
content). Reports the median wall time of ``repeats`` runs, split into preparation
(features at every augmentation scale, synthetic pool) and training, and the peak
resident memory of the process. The machine's load average is printed beside it:
on a shared machine the figure is an upper bound.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time


def main(argv=None) -> int:
    import numpy as np
    import torch

    from napari_grainseg.synthetic import generate
    from napari_grainseg.training.corrections import Correction
    from napari_grainseg.training.finetune import FinetuneConfig, finetune_net1

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=FinetuneConfig.steps)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    corr = []
    for seed in range(4):
        s = generate(seed, shape=(256, 256), preset="train", mean_diameter=40.0)
        corr.append(Correction(s.image.astype(np.float32), s.boundaries, None, f"crop{seed}"))
    totals, trains = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = finetune_net1(corr, FinetuneConfig(steps=args.steps, holdout=0.0), device="cpu")
        totals.append(time.perf_counter() - t0)
        trains.append(res.info["train_seconds"])
        print(
            f"run: {totals[-1]:.1f} s (training {trains[-1]:.1f} s, preparation {res.info['prepare_seconds']} s)",
            file=sys.stderr,
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()
    print(
        f"fine-tuning on 4 crops of 256², {args.steps} steps, {args.threads} threads: "
        f"median {statistics.median(totals):.1f} s "
        f"(training {statistics.median(trains):.1f} s) of {args.repeats} runs; peak memory {peak_mb:.0f} MB; "
        f"load average during the runs {load[0]:.1f} on {os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
