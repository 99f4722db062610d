"""Check that a refactor leaves results unchanged: run a fixed set of commands, then compare two runs.

``run OUT`` writes, with the package as installed (or on PYTHONPATH):
``demo/`` (``grainseg demo``), ``segment/`` (``grainseg segment`` on 4 images of each frozen
test set, written here as TIFFs) and ``eval.json`` (``grainseg eval --sets id-tem``).
``compare A B`` compares every label/boundary TIFF exactly, every CSV cell and every JSON
value (timings, dates and paths left out), and exits 1 on any difference.

Examples
--------
$ python scripts/compare_outputs.py run /tmp/before       # on the old commit
$ python scripts/compare_outputs.py run /tmp/after        # on the new one
$ python scripts/compare_outputs.py compare /tmp/before /tmp/after
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

#: Keys whose values legitimately change run to run (timings, dates, paths, versions).
VOLATILE = ("seconds", "time", "date", "path", "version", "s_per_", "sec_per_mpx", "command", "weights_sha", "input")
PAPER_NETS = Path(__file__).resolve().parents[1].parent / "shared/data/seed_nets/seed_nets.npz"


def _grainseg(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "napari_grainseg.cli", *args], check=True)


def run(out: Path, paper_nets: Path, segment_args: tuple[str, ...] = ()) -> None:
    from napari_grainseg.synthetic import generate

    try:
        from napari_grainseg.evaluation.suite import EVAL_SETS
    except ImportError:  # before the restructure
        from napari_grainseg.evalsuite import EVAL_SETS
    out.mkdir(parents=True, exist_ok=True)
    _grainseg("demo", "--out", str(out / "demo"))
    images = out / "images"
    images.mkdir(exist_ok=True)
    paths = []
    for name in ("id-tem", "id-train", "ood-noisy", "ood-large", "ood-small", "ood-paper"):
        s = EVAL_SETS[name]
        for i in range(4):
            sample = generate(seed=s.first_seed + i, shape=s.shape, preset=s.preset, **s.overrides)
            path = images / f"{name}_{i}.tif"
            tifffile.imwrite(path, sample.image.astype(np.float32))
            paths.append(str(path))
    _grainseg("segment", *paths, "--out", str(out / "segment"), *segment_args)
    _grainseg("eval", "--sets", "id-tem", "--json", str(out / "eval.json"), "--paper-nets", str(paper_nets))


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not any(t in k.lower() for t in VOLATILE)}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _close(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _diff_json(a, b, where: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{where}.{k}: only in {'B' if k not in a else 'A'}")
            else:
                _diff_json(a[k], b[k], f"{where}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff_json(x, y, f"{where}[{i}]", out)
    elif not _close(a, b):
        out.append(f"{where}: {a!r} != {b!r}")


def compare(a: Path, b: Path) -> list[str]:
    problems: list[str] = []
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    for rel in sorted(files_a ^ files_b):
        problems.append(f"{rel}: only in {'A' if rel in files_a else 'B'}")
    for rel in sorted(files_a & files_b):
        pa, pb = a / rel, b / rel
        if rel.suffix == ".tif" and rel.parts[0] != "images":
            x, y = tifffile.imread(pa), tifffile.imread(pb)
            if x.shape != y.shape or x.dtype != y.dtype or not np.array_equal(x, y):
                problems.append(f"{rel}: arrays differ ({int(np.sum(x != y)) if x.shape == y.shape else 'shape'})")
        elif rel.suffix == ".csv":
            ra = list(csv.reader(pa.open()))
            rb = list(csv.reader(pb.open()))
            if ra != rb:
                n = sum(1 for u, v in zip(ra, rb) if u != v) + abs(len(ra) - len(rb))
                problems.append(f"{rel}: {n} CSV rows differ")
        elif rel.suffix == ".json":
            _diff_json(_strip(json.loads(pa.read_text())), _strip(json.loads(pb.read_text())), str(rel), problems)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--paper-nets", type=Path, default=PAPER_NETS)
    r.add_argument(
        "--segment-args",
        default="",
        help="extra arguments for grainseg segment, e.g. the defaults of an older version: '--net2-steps auto --svg'",
    )
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = parser.parse_args()
    if args.cmd == "run":
        run(args.out, args.paper_nets, tuple(args.segment_args.split()))
        return 0
    problems = compare(args.a, args.b)
    print("\n".join(problems) if problems else "identical (timings, dates and paths aside)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
