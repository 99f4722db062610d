"""Fit the table behind ``synthetic.generator.circle_distribution``.

The geometry stage is run with the calibration switched off (circles drawn with
the given mean diameter and log-sigma) on large images with grains of 40 px, and
the interior *cells* (before 1-px boundaries are drawn) are measured: ratio of
their mean ECD to the circles' mean diameter, and SD of their ln ECD, for each
(smoothing steps, circle log-sigma). The effect of the 1-px boundary and of the
15-px minimum is modelled analytically in ``circle_distribution``.

Usage: ``python scripts/calibrate_synthetic.py`` (about 2 minutes on one core);
paste the printed table into ``_CELL_TABLE`` of ``synthetic/generator.py``.
``--check`` instead prints requested vs measured output statistics.
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_grainseg.measure.table import grain_ecds
from napari_grainseg.synthetic import generator, presets

SIGMAS = (0.0, 0.15, 0.3, 0.45, 0.6, 0.75)
STEPS = (0, 2, 4, 6, 9, 12)


def _geometry_params(d: float, s: float, steps: int) -> dict:
    p = presets.sample_preset("tem", np.random.default_rng(0))
    p.update(mean_diameter=d, log_sigma=s, smoothing=steps)
    return p


def cell_table(d: float = 40.0, side: int = 1024, repeats: int = 2) -> list:
    raw = generator.circle_distribution
    generator.circle_distribution = lambda d_, s_, k_: (d_, s_)
    try:
        rows = []
        for k in STEPS:
            row = []
            for s in SIGMAS:
                p = _geometry_params(d, s, k)
                ecd = np.concatenate(
                    [
                        grain_ecds(
                            generator.grain_geometry(np.random.default_rng([7, r]), (side, side), p)[0] + 1,
                            fill=False,
                            min_area=1,
                            interior=True,
                        )
                        for r in range(repeats)
                    ]
                )
                row.append((round(float(ecd.mean() / d), 4), round(float(np.log(ecd).std(ddof=1)), 4)))
            rows.append(row)
            print(f"    # smoothing {k}", flush=True)
            print(f"    {row},", flush=True)
        return rows
    finally:
        generator.circle_distribution = raw


def check(diameters=(8, 12, 30, 60), sigmas=(0.2, 0.4, 0.6), steps=(0, 4), min_grains=400) -> None:
    print("d_req  s_req  steps   d_out  s_out    n")
    for k in steps:
        for d in diameters:
            for s in sigmas:
                p = _geometry_params(d, s, k)
                side = int(min(1536, max(256, np.sqrt(min_grains * d * d * 1.4))))
                ecd, r = [], 0
                while sum(map(len, ecd)) < min_grains:
                    ecd.append(
                        grain_ecds(
                            generator.grain_geometry(np.random.default_rng([9, r]), (side, side), p)[1],
                            fill=False,
                            min_area=15,
                            interior=True,
                        )
                    )
                    r += 1
                e = np.concatenate(ecd)
                print(
                    f"{d:5.1f}  {s:5.2f}  {k:5d}   {e.mean():6.2f}  {np.log(e).std(ddof=1):5.3f}  {e.size:4d}",
                    flush=True,
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="print requested vs measured statistics")
    a = ap.parse_args()
    if a.check:
        check()
    else:
        print("_CELL_TABLE = [  # rows: smoothing", STEPS, "; columns: log-sigma", SIGMAS)
        cell_table()
        print("]")


if __name__ == "__main__":
    main()
