"""Throughput of ``grainseg segment`` against the classical baseline, same fields, same run (issue 22).

Two field sets (synthetic "tem" micrographs, cached in ``--cache``): one 1024² field and 24 small
fields of six shapes from 256² to 384×512. Three methods:

* ``default``: ``grainseg segment`` (since session 9: Net1, grains by threshold; since session 11
  Net1 runs through OpenCV's DNN module on the CPU, ``models/net1_opencv.py``);
* ``default (torch)``: ``grainseg segment --backend torch`` (the same, Net1 through PyTorch);
* ``net1+net2``: ``grainseg segment --net2-steps auto`` (Net1, then Net2 until converged);
* ``classical``: the watershed baseline (``grains.classical_boundaries(sigma=4, h=0.002,
  merge_threshold=0.01)`` then ``boundaries_to_labels``) with the same output files (TIFFs and
  :func:`~napari_grainseg.measure.report.write_report`), run by this script as its own process.

**Whole process**: each method as a fresh process on each field set (imports, model loading,
every field, every output file), ``--repeats`` times, methods interleaved; the median wall time,
seconds per megapixel and the ratio to the classical baseline's median.

**In process, per stage**: one process, models loaded and a warm-up field run first; then every
field of a set through the real pipeline (``segment`` + ``write_segmentation``; for the baseline
the same calls as above), with timers wrapped around the functions of each stage (exclusive
time: a stage nested in another is counted once, in the inner one): read, edges (edge statistics
and Net1's input features), Net1 (network passes and the scale choice), Net2, grains, measurement,
report (CSV, JSON, histogram PNG, overlay PNG), write (TIFFs), other (the rest). Medians over
``--repeats``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_throughput.py --repeats 3 --markdown docs/benchmarks.md

Report the machine's load (printed) with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMALL_SHAPES = [(256, 256), (256, 320), (320, 320), (320, 384), (384, 384), (384, 512)]
METHODS = ("default", "default (torch)", "net1+net2", "classical")
STAGES = ("read", "edges", "Net1", "Net2", "grains", "measurement", "report", "write", "other")
PIXEL_SIZE_NM = "2"


def make_fields(cache: Path) -> dict[str, list[Path]]:
    import numpy as np
    import tifffile

    from napari_grainseg.synthetic import generate

    sets = {"1024": [(1024, 1024)], "small": [SMALL_SHAPES[i % 6] for i in range(24)]}
    out = {}
    for name, shapes in sets.items():
        folder = cache / f"fields_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, shape in enumerate(shapes):
            path = folder / f"{name}_{i:02d}_{shape[0]}x{shape[1]}.tif"
            if not path.exists():
                tifffile.imwrite(path, generate(2000 + i, shape, "tem").image.astype(np.float32))
            paths.append(path)
        out[name] = paths
    return out


def megapixels(paths) -> float:
    import tifffile

    return sum(tifffile.TiffFile(p).pages[0].shape[0] * tifffile.TiffFile(p).pages[0].shape[1] for p in paths) / 1e6


# --------------------------------------------------------------------------- classical baseline


def classical_field(path: Path, out_dir: Path) -> None:
    """The baseline on one field with the learned pipeline's output files."""
    import numpy as np

    from napari_grainseg.io.readers import read_micrograph
    from napari_grainseg.measure.report import write_report, write_tiff
    from napari_grainseg.segmentation.grains import boundaries_to_labels, classical_boundaries

    m = read_micrograph(path).with_pixel_size(float(PIXEL_SIZE_NM))
    labels = boundaries_to_labels(classical_boundaries(m.data, sigma=4, h=0.002, merge_threshold=0.01))
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(path).stem
    write_tiff(out_dir / f"{stem}_boundaries.tif", (labels == 0).astype(np.uint8))
    write_tiff(out_dir / f"{stem}_grains.tif", labels.astype(np.uint32))
    write_report(out_dir, stem, image=m.data, labels=labels, pixel_size_nm=m.pixel_size_nm)


def command(method: str, paths, out: Path) -> list[str]:
    files = [str(p) for p in paths]
    if method == "classical":
        return [sys.executable, __file__, "classical", *files, "--out", str(out)]
    extra = {"net1+net2": ["--net2-steps", "auto"], "default (torch)": ["--backend", "torch"]}.get(method, [])
    return [
        sys.executable,
        "-m",
        "napari_grainseg.cli",
        "segment",
        *files,
        "--out",
        str(out),
        "--pixel-size",
        PIXEL_SIZE_NM,
        "--device",
        "cpu",
        *extra,
    ]


def whole_process(sets: dict, repeats: int, before_src: Path | None = None) -> dict:
    """Wall times of each method as a fresh process; with ``before_src`` (a ``src`` folder of
    another version, e.g. ``git archive COMMIT src``) also that version's, same run."""
    versions = {"": None} if before_src is None else {"": None, " (before)": before_src}
    times: dict[str, list[float]] = {}
    for r in range(repeats):
        for s, paths in sets.items():
            for m in METHODS[r % len(METHODS) :] + METHODS[: r % len(METHODS)]:  # rotate the order: load drifts
                for tag, src in versions.items():
                    env = dict(os.environ)
                    if src is not None:
                        env["PYTHONPATH"] = str(src)
                    with tempfile.TemporaryDirectory() as out:
                        t0 = time.perf_counter()
                        subprocess.run(command(m, paths, Path(out)), check=True, capture_output=True, env=env)
                        times.setdefault(f"{s}/{m}{tag}", []).append(time.perf_counter() - t0)
                    print(f"  process {s} {m}{tag}: {times[f'{s}/{m}{tag}'][-1]:.2f} s", file=sys.stderr, flush=True)
    return times


# --------------------------------------------------------------------------- stages, in process


class StageTimer:
    """Exclusive wall time per stage of wrapped functions (a nested stage is not counted twice)."""

    def __init__(self):
        self.total = dict.fromkeys(STAGES, 0.0)
        self._stack: list[list] = []

    def wrap(self, module, name: str, stage: str) -> None:
        fn = getattr(module, name)

        def timed(*args, **kwargs):
            self._stack.append([stage, 0.0])
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                _, inner = self._stack.pop()
                self.total[stage] += dt - inner
                if self._stack:
                    self._stack[-1][1] += dt

        setattr(module, name, timed)

    def wrap_generator(self, module, name: str, stage: str) -> None:
        fn = getattr(module, name)
        timer = self

        def timed(*args, **kwargs):
            gen = fn(*args, **kwargs)
            while True:
                timer._stack.append([stage, 0.0])
                t0 = time.perf_counter()
                try:
                    item = next(gen)
                except StopIteration:
                    item = StopIteration
                dt = time.perf_counter() - t0
                _, inner = timer._stack.pop()
                timer.total[stage] += dt - inner
                if timer._stack:
                    timer._stack[-1][1] += dt
                if item is StopIteration:
                    return
                yield item

        setattr(module, name, timed)


def install_timers() -> StageTimer:
    from napari_grainseg.io import readers
    from napari_grainseg.measure import report
    from napari_grainseg.measure import statistics as mstats
    from napari_grainseg.models import features
    from napari_grainseg.segmentation import grains, inference, pipeline, refine

    t = StageTimer()
    t.wrap(readers, "read_micrograph", "read")
    for mod in (inference, refine):
        t.wrap(mod, "resolve_edge_params", "edges")
    t.wrap(inference, "net1_features", "edges")
    t.wrap(features, "net1_features", "edges")
    t.wrap(inference, "predict_boundaries", "Net1")
    t.wrap(pipeline, "predict_boundaries", "Net1")
    t.wrap_generator(refine, "refine", "Net2")
    t.wrap(pipeline, "probability_to_labels", "grains")
    t.wrap(grains, "classical_boundaries", "edges")  # the baseline's gradient and watershed
    t.wrap(grains, "boundaries_to_labels", "grains")
    t.wrap(mstats, "measure_field", "measurement")
    t.wrap(report, "write_field_exports", "report")
    t.wrap(report, "save_overlay", "report")
    t.wrap(report, "write_tiff", "write")
    return t


def stages_in_process(sets: dict, repeats: int) -> dict:
    from napari_grainseg.io import readers
    from napari_grainseg.models.weights import load_net1, load_net2
    from napari_grainseg.segmentation import pipeline
    from napari_grainseg.segmentation.options import cached_net1

    timer = install_timers()
    net1_torch, net2 = load_net1(device="cpu"), load_net2(device="cpu")
    net1_default = cached_net1(None, "cpu")  # through OpenCV when the shipped weights have their export

    def run(method: str, paths, out: Path) -> None:
        for p in paths:
            if method == "classical":
                classical_field(p, out)
                continue
            m = readers.read_micrograph(p).with_pixel_size(float(PIXEL_SIZE_NM))
            result = pipeline.segment(
                m.data,
                model=net1_torch if method == "default (torch)" else net1_default,
                device="cpu",
                net2_steps="auto" if method == "net1+net2" else 0,
                net2_model=net2,
            )
            pipeline.write_segmentation(
                out, Path(p).stem, m.data, result, pixel_size_nm=m.pixel_size_nm, extra={"source": str(p)}
            )

    with tempfile.TemporaryDirectory() as out:  # warm-up: imports, first-call costs
        for m in METHODS:
            run(m, sets["small"][:1], Path(out))
    results: dict[str, list[dict]] = {}
    for r in range(repeats):
        for s, paths in sets.items():
            for m in METHODS[r % len(METHODS) :] + METHODS[: r % len(METHODS)]:
                timer.total = dict.fromkeys(STAGES, 0.0)
                with tempfile.TemporaryDirectory() as out:
                    t0 = time.perf_counter()
                    run(m, paths, Path(out))
                    wall = time.perf_counter() - t0
                stages = dict(timer.total)
                stages["other"] = wall - sum(stages.values())
                stages["total"] = wall
                results.setdefault(f"{s}/{m}", []).append(stages)
                print(f"  stages {s} {m}: {wall:.2f} s", file=sys.stderr, flush=True)
    return results


# --------------------------------------------------------------------------- output


def markdown(data: dict) -> str:
    med = statistics.median
    lines = [
        f"Load average before the run: {data['load']}; {data['cpus']} CPUs; "
        f"OMP_NUM_THREADS={data['omp']}; medians of {data['repeats']}; fields: one 1024² "
        f"({data['mpx']['1024']:.2f} MPx) and 24 small ({data['mpx']['small']:.2f} MPx).",
        "",
    ]
    if data.get("process"):
        lines += [
            "Whole process (imports, model loading, every field and output file):",
            "",
            "| field set | method | wall (s) | s per MPx | ratio to classical | runs (s) |",
            "|---|---|---:|---:|---:|---|",
        ]
        for s in ("1024", "small"):
            for tag in ("", " (before)"):
                if f"{s}/classical{tag}" not in data["process"]:
                    continue
                base = med(data["process"][f"{s}/classical{tag}"])
                for m in METHODS:
                    v = data["process"][f"{s}/{m}{tag}"]
                    lines.append(
                        f"| {s} | {m}{tag} | {med(v):.2f} | {med(v) / data['mpx'][s]:.2f} | "
                        f"{med(v) / base:.2f} | {', '.join(f'{x:.2f}' for x in v)} |"
                    )
        lines.append("")
    if data.get("stages"):
        lines += [
            "In process, per stage (s, medians; models loaded, warm):",
            "",
            "| field set | method | " + " | ".join(STAGES) + " | total | ratio to classical |",
            "|---|---|" + "---:|" * (len(STAGES) + 2),
        ]
        for s in ("1024", "small"):
            base = med(r["total"] for r in data["stages"][f"{s}/classical"])
            for m in METHODS:
                runs = data["stages"][f"{s}/{m}"]
                cells = [f"{med(r[k] for r in runs):.2f}" for k in (*STAGES, "total")]
                lines.append(f"| {s} | {m} | " + " | ".join(cells) + f" | {med(r['total'] for r in runs) / base:.2f} |")
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, table: str) -> None:
    begin, end = "<!-- BEGIN throughput -->", "<!-- END throughput -->"
    text = path.read_text(encoding="utf-8")
    block = f"{begin}\n{table}{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text += f"\n{block}\n"
    path.write_text(text, encoding="utf-8")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "classical":
        ap = argparse.ArgumentParser()
        ap.add_argument("cmd")
        ap.add_argument("files", nargs="+", type=Path)
        ap.add_argument("--out", type=Path, required=True)
        a = ap.parse_args()
        for f in a.files:
            classical_field(f, a.out)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "grainseg_throughput")
    ap.add_argument("--smoke", action="store_true", help="2 small fields and no 1024² field (a quick check)")
    ap.add_argument(
        "--before-src",
        type=Path,
        help="also time this src folder's version as whole processes (ratios within each version)",
    )
    ap.add_argument("--skip-process", action="store_true")
    ap.add_argument("--skip-stages", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the raw timings")
    ap.add_argument("--markdown", type=Path, help="replace the throughput block of this file")
    args = ap.parse_args()
    sets = make_fields(args.cache)
    if args.smoke:
        sets = {"1024": sets["small"][:1], "small": sets["small"][1:3]}
    data = {
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "cpus": os.cpu_count(),
        "omp": os.environ.get("OMP_NUM_THREADS", "unset"),
        "repeats": args.repeats,
        "mpx": {s: megapixels(p) for s, p in sets.items()},
    }
    if not args.skip_process:
        data["process"] = whole_process(sets, args.repeats, args.before_src)
    if not args.skip_stages:
        data["stages"] = stages_in_process(sets, args.repeats)
    table = markdown(data)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))
    if args.markdown:
        write_markdown(args.markdown, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
