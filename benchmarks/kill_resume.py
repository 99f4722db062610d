"""SIGKILL ``grainseg batch`` at random moments, resume, and compare with a clean run.

For each of ``--kills`` trials: a fresh output folder, ``grainseg batch`` started
as a real subprocess and killed with SIGKILL (its whole process group, Dask
workers included) at a random moment of a clean run's duration, then resumed
to completion with the same command. The resumed folder must equal the clean
run's: label and boundary arrays, CSVs, SVGs and PNGs byte for byte, JSON
without timings, completion markers listing the same files with the same
SHA-256 (JSON outputs aside: they hold timings), and no temporary file
(staging folder, .part file, commit journal, lock) left.

    python benchmarks/kill_resume.py                       # 10 kills, 5 fields of 128x160, serial
    python benchmarks/kill_resume.py --workers 2 --kills 4 # on a local Dask cluster

Prints a markdown table (one row per kill) and a verdict; exit 1 if any trial differs.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def compare(clean: Path, other: Path) -> list[str]:
    """Differences between two batch output folders (empty: identical up to timings)."""
    from napari_grainseg.io.outputs import comparable_outputs, leftover_files

    problems = []
    left = leftover_files(other)
    if left:
        problems.append(f"temporary files left: {left}")
    a, b = comparable_outputs(clean), comparable_outputs(other)
    if a.keys() != b.keys():
        problems.append(
            f"file sets differ: only clean {sorted(a.keys() - b.keys())}, only resumed {sorted(b.keys() - a.keys())}"
        )
    problems += [f"{name} differs" for name in sorted(a.keys() & b.keys()) if a[name] != b[name]]
    return problems


def state(out: Path) -> str:
    """What a kill left: fields done, half-moved sets (journals), staging folders, lock, .part files."""
    if not out.exists():
        return "nothing written"
    done = len(list(out.rglob("*_done.json")))
    journals = len(list(out.rglob(".*.commit.json")))
    staging = len([p for p in out.rglob(".*.staging-*") if p.is_dir()])
    parts = len(list(out.rglob(".*.part*")))
    lock = (out / ".grainseg.lock").exists()
    bits = [f"{done} done"]
    bits += [f"{journals} half-moved"] if journals else []
    bits += [f"{staging} staging"] if staging else []
    bits += [f"{parts} .part"] if parts else []
    bits += ["summary"] if (out / "sample_summary.json").exists() else []
    bits += ["lock left"] if lock else []
    return ", ".join(bits)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--fields", type=int, default=5)
    ap.add_argument("--shape", default="128x160", help="HEIGHTxWIDTH of each synthetic field")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--net2-steps", default="0")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = ap.parse_args()

    import tifffile

    from napari_grainseg.synthetic import generate

    work = args.work or Path(tempfile.mkdtemp(prefix="kill_resume_"))
    fields = work / "fields"
    h, w = (int(v) for v in args.shape.lower().split("x"))
    for i in range(args.fields):
        path = fields / f"g{i % 2}" / f"field_{i:02d}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, generate(100 + i, (h, w), "tem").image.astype(np.float32))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def command(out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "napari_grainseg.cli",
            "batch",
            str(fields),
            "--out",
            str(out),
            "--workers",
            str(args.workers),
            "--net2-steps",
            args.net2_steps,
            "--pixel-size",
            "2",
            "--no-progress",
        ]

    clean = work / "clean"
    t0 = time.perf_counter()
    subprocess.run(command(clean), env=env, check=True, stderr=subprocess.DEVNULL)
    t_clean = time.perf_counter() - t0
    print(
        f"clean run: {args.fields} fields of {h}x{w}, {args.workers} worker(s), Net2 steps {args.net2_steps}: "
        f"{t_clean:.1f} s\n"
    )
    print("| kill | at (s) | state the kill left | resume exit | resume (s) | identical to clean |")
    print("|---:|---:|---|---:|---:|---|")
    rng = random.Random(args.seed)
    failures = kills = attempts = 0
    t_ref = t_clean  # runs get faster when the machine is less loaded: aim within the fastest seen
    while kills < args.kills and attempts < 3 * args.kills:
        attempts += 1
        out = work / f"run_{attempts:02d}"
        at = rng.uniform(0.02, 0.95) * t_ref
        t1 = time.perf_counter()
        proc = subprocess.Popen(command(out), env=env, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=at)
            t_ref = min(t_ref, time.perf_counter() - t1)
            print(f"| – | {at:.1f} | finished before the kill (not counted) | | | |", flush=True)
            continue
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the batch and any Dask worker it started
            proc.wait()
        kills += 1
        left = state(out)
        t1 = time.perf_counter()
        code = subprocess.run(command(out), env=env, stderr=subprocess.DEVNULL).returncode
        t_resume = time.perf_counter() - t1
        problems = compare(clean, out) if code == 0 else [f"resume exit {code}"]
        failures += bool(problems)
        verdict = "yes" if not problems else "NO: " + "; ".join(problems)[:300]
        print(f"| {kills} | {at:.1f} | {left} | {code} | {t_resume:.1f} | {verdict} |", flush=True)
    print(
        f"\n{kills - failures} of {kills} killed-and-resumed runs identical to the clean run "
        "(arrays, CSVs, SVGs, PNGs, JSON without timings, markers' SHA-256); working folder {work}".replace(
            "{work}", str(work)
        )
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
