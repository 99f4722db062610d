"""Make the example report of docs/measurement.md from the bundled real micrograph.

The grains come from the product's pipeline (``pipeline.segment``: shipped Net1
with the automatic scale choice, then Net2 until convergence), exactly as
``grainseg segment`` makes them. The micrograph has no calibration, so the
report is in pixels.

Usage::

    python scripts/make_report_example.py [OUT_DIR]

writes the full report to OUT_DIR (default: a temporary folder), copies the
histogram and overlay to docs/images/report_histogram.png and
docs/images/report_overlay.png, and prints a Markdown excerpt.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from napari_grainseg.io import samples
from napari_grainseg.measure.report import write_report
from napari_grainseg.segmentation.pipeline import segment

DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


def _fmt(value, spec: str = ".1f") -> str:
    """A summary number, or a dash where the report has none (e.g. an SD of a single grain)."""
    return "–" if value is None else format(value, spec)


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="grainseg_report_"))
    micrograph = samples.interconnect_tem()
    t0 = time.perf_counter()
    result = segment(micrograph.data, device="cpu")
    labels = result.labels
    t1 = time.perf_counter()
    paths = write_report(
        out_dir,
        "interconnect_tem",
        image=micrograph.data,
        labels=labels,
        pixel_size_nm=micrograph.pixel_size_nm,
        extra=result.info(),
    )
    t2 = time.perf_counter()
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(paths["histogram_png"], DOCS_IMAGES / "report_histogram.png")
    shutil.copyfile(paths["overlay"], DOCS_IMAGES / "report_overlay.png")

    s = json.loads(paths["json"].read_text())
    print(f"segmentation {t1 - t0:.2f} s, report {t2 - t1:.2f} s; files in {out_dir}\n")
    print("| quantity | value |\n|---|---|")
    rows = [
        ("grains (all / in size statistics)", f"{s['n_grains']} / {s['n_grains_included']}"),
        ("mean ECD", f"{_fmt(s['mean_ecd_px'])} px"),
        (
            "median ECD / SD / CV",
            f"{_fmt(s['median_ecd_px'])} px / {_fmt(s['sd_ecd_px'])} px / {_fmt(s['cv_ecd'], '.2f')}",
        ),
        ("D10 / D50 / D90", f"{_fmt(s['d10_px'])} / {_fmt(s['d50_px'])} / {_fmt(s['d90_px'])} px"),
        (
            "lognormal sigma / median / KS D",
            "– (too few grains to fit)"
            if not s["lognormal"]
            else f"{s['lognormal']['sigma']:.2f} / {s['lognormal']['median_px']:.1f} px / "
            f"{s['lognormal']['ks_statistic']:.3f}",
        ),
        ("N_A (Saltikov, whole field)", f"{s['n_a_per_px2'] * 1e4:.3f} per 100x100 px"),
        ("mean intercept (8 orientations)", f"{s['mean_intercept_px']:.1f} px"),
        (
            "intercept along the line (x)",
            f"{s['axial_intercept']['mean_intercept_px']:.1f} px" if s["axial_intercept"] else "-",
        ),
        ("ASTM G planimetric / intercept", f"{s['astm_g_planimetric']} / {s['astm_g_intercept']}"),
    ]
    for k, v in rows:
        print(f"| {k} | {v} |")
    print("\nwarnings:")
    for w in s["warnings"]:
        print(f"- {w}")
    print("\nCSV excerpt:\n```")
    print("\n".join(paths["csv"].read_text().splitlines()[:6]))
    print("```")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
