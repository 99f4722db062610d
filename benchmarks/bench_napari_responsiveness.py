"""Does the viewer stay responsive while Net1 and Net2 run? Longest main-thread stall, measured.

A real napari viewer (run under ``xvfb-run``) shows a 1024² and a 2048² micrograph (the
bundled real one, mirrored to size), each in ``--repeats`` fresh viewers (medians
reported). The "Segment grains" widget runs Net1 and then Net2 (Run) in its thread
workers on the CPU, exactly as a user would click it, with live layer updates.
Meanwhile a 10 ms ``QTimer`` on the main thread records the gaps between its ticks:
the longest gap is the longest time the UI could not react. Target: < 200 ms.

    OMP_NUM_THREADS=2 xvfb-run -a .venv/bin/python benchmarks/bench_napari_responsiveness.py \\
        [--net1 PATH] [--net2 PATH] [--sizes 1024 2048] [--repeats 3] [--steps 30] [--json FILE]

Without shipped or given Net2 weights, a freshly initialised Net2 runs (same
architecture and cost, but it does not converge, so it runs ``--steps`` steps).
Prints a markdown table; ``--json FILE`` also writes the raw figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def mirrored(image: np.ndarray, size: int) -> np.ndarray:
    """Mirror-tile ``image`` to ``size``×``size`` (keeps grains whole across the joins)."""
    h, w = image.shape
    reps = (-(-size // h) + 1, -(-size // w) + 1)
    rows = [np.concatenate([image if j % 2 == 0 else image[:, ::-1] for j in range(reps[1])], axis=1) for _ in range(1)]
    strip = rows[0]
    tiled = np.concatenate([strip if i % 2 == 0 else strip[::-1] for i in range(reps[0])], axis=0)
    return np.ascontiguousarray(tiled[:size, :size])


class GapRecorder:
    """A 10 ms QTimer on the main thread; ``gaps`` are the intervals between its ticks (s)."""

    def __init__(self, interval_ms: int = 10):
        from qtpy.QtCore import QTimer

        self.gaps: list[float] = []
        self._last = None
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self):
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append(now - self._last)
        self._last = now

    def start(self):
        self.gaps.clear()
        self._last = None
        self.timer.start()

    def stop(self) -> dict:
        self.timer.stop()
        g = np.array(self.gaps) * 1000 if self.gaps else np.zeros(1)
        return {
            "max_gap_ms": round(float(g.max()), 1),
            "p99_gap_ms": round(float(np.percentile(g, 99)), 1),
            "median_gap_ms": round(float(np.median(g)), 1),
            "ticks": len(self.gaps),
        }


def wait_for(worker, app, timeout_s: float) -> float:
    """Process Qt events until ``worker`` finishes; returns the wall time."""
    done = {"flag": False}
    worker.finished.connect(lambda: done.update(flag=True))
    t0 = time.perf_counter()
    while not done["flag"] and time.perf_counter() - t0 < timeout_s:
        app.processEvents()
        time.sleep(0.001)
    # let queued signals (the last layer updates) land, still timed
    for _ in range(20):
        app.processEvents()
        time.sleep(0.005)
    return time.perf_counter() - t0


def run_once(size: int, net1: str | None, net2: str, steps: int) -> dict:
    """One fresh viewer: Net1 then Net2 Run on a ``size``² micrograph; the gaps of each stage."""
    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from napari_grainseg.io.samples import interconnect_tem
    from napari_grainseg.plugin import _segment_widget
    from napari_grainseg.plugin._segment_widget import SegmentWidget

    _segment_widget.MAX_NET2_STEPS = steps
    image = mirrored(interconnect_tem().data, size)
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    viewer.add_image(image, name="micrograph")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.net1_weights, widget.net2_weights = net1, net2
    widget.device.value = "cpu"
    rec = GapRecorder()
    for _ in range(50):
        app.processEvents()
    out = {"size": size}
    rec.start()
    seconds = wait_for(widget.run_net1(), app, 1200)
    out["net1"] = {"seconds": round(seconds, 1), **rec.stop()}
    out["device"], out["torch_threads"] = widget.device_label.value, torch.get_num_threads()  # as run
    assert "micrograph boundaries" in viewer.layers, widget.status.value
    rec.start()
    seconds = wait_for(widget.net2_run(), app, 3600)
    steps_done = viewer.layers["micrograph boundaries"].metadata["grainseg_info"]["net2_steps"]
    out["net2"] = {"seconds": round(seconds, 1), "steps": steps_done, **rec.stop()}
    viewer.close()
    for _ in range(20):
        app.processEvents()
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net1", help="Net1 weights (default: shipped)")
    parser.add_argument("--net2", help="Net2 weights (default: shipped, else an untrained Net2)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--repeats", type=int, default=3, help="fresh viewers per size (median reported)")
    parser.add_argument("--steps", type=int, default=30, help="most Net2 steps")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)

    import torch

    from napari_grainseg.models.weights import shipped_weights_dir
    from napari_grainseg.plugin import _segment_widget, _threading

    _threading.SYNCHRONOUS = False
    net2 = args.net2 or (
        str(shipped_weights_dir() / "net2.pt") if (shipped_weights_dir() / "net2.pt").is_file() else None
    )
    net2_kind = "given/shipped weights"
    if net2 is None:
        from napari_grainseg.models.net2 import Net2, Net2Config
        from napari_grainseg.models.weights import save_weights

        torch.manual_seed(0)
        config = Net2Config()
        net2 = str(
            save_weights(Net2(config), Path(tempfile.mkdtemp()) / "net2.pt", {"architecture": config.to_dict()})[0]
        )
        net2_kind = "untrained (no shipped weights yet)"

    runs = [run_once(size, args.net1, net2, args.steps) for size in args.sizes for _ in range(args.repeats)]
    results = {
        "net2_weights": net2_kind,
        "live_update_interval_s": _segment_widget.LIVE_UPDATE_INTERVAL_S,
        "runs": runs,
        "summary": [],
    }
    print("| size | stage | runs | wall s (median) | steps | max gap ms (median; worst) | p99 gap ms (median) |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        mine = [r for r in runs if r["size"] == size]
        for stage in ("net1", "net2"):
            rs = [r[stage] for r in mine]
            row = {
                "size": size,
                "stage": stage,
                "runs": len(rs),
                "seconds_median": float(np.median([r["seconds"] for r in rs])),
                "steps": sorted({r.get("steps") for r in rs if r.get("steps")}),
                "max_gap_ms_median": float(np.median([r["max_gap_ms"] for r in rs])),
                "max_gap_ms_worst": max(r["max_gap_ms"] for r in rs),
                "p99_gap_ms_median": float(np.median([r["p99_gap_ms"] for r in rs])),
            }
            results["summary"].append(row)
            steps = ", ".join(str(s) for s in row["steps"])
            print(
                f"| {size}² | {stage} | {row['runs']} | {row['seconds_median']:.1f} | {steps} | "
                f"{row['max_gap_ms_median']:.0f}; {row['max_gap_ms_worst']:.0f} | {row['p99_gap_ms_median']:.0f} |"
            )
    print(
        f"device {runs[0]['device']}, {runs[0]['torch_threads']} torch threads; Net2: {net2_kind}; "
        f"layers redrawn at most every {_segment_widget.LIVE_UPDATE_INTERVAL_S} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
