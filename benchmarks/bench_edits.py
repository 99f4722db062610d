"""How long does a hand correction freeze napari on a large micrograph? Click to redrawn, measured.

A real napari viewer (run under ``xvfb-run``) holds the boundary and grains layers of a
synthetic "tem" field (1024², mean grain diameter 24 px) mirrored to each size. The
"Correct grains" dock's buttons are clicked (``QPushButton.click``: the signal a mouse click
sends) for Merge, Delete and Split of grains near random points, each followed by Undo, and a
brush dab (a filled disk written as napari's brush writes it) is followed by the grains'
rebuild. Each action is timed from the click until Qt has processed the resulting events (the
grains redrawn): the whole time the viewer cannot react.

Two ways run in the same process, on the same edits:

- ``whole image``: the editing operation and the rebuild of the grains on the whole image
  (the code before the edits were made local);
- ``around the edit``: the shipped code (``segmentation.editing.grains_window`` and
  ``rebuild_grains_near``).

    OMP_NUM_THREADS=2 xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python \\
        benchmarks/bench_edits.py --sizes 4096 8192 --repeats 3 --json FILE

Prints a markdown table of medians and their ratio; ``--json FILE`` also writes every timing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_napari_responsiveness import mirrored  # noqa: E402

ACTIONS = ("merge", "undo merge", "delete", "undo delete", "split", "undo split", "brush dab")
WAYS = ("whole image", "around the edit")


def field_boundaries(size: int) -> np.ndarray:
    """uint8 boundaries of a 1024² synthetic field mirrored to ``size``², closed into grains."""
    from napari_grainseg.segmentation.grains import boundaries_to_labels
    from napari_grainseg.synthetic import generate

    sample = generate(seed=24, shape=(1024, 1024), preset="tem", mean_diameter=24.0)
    return (boundaries_to_labels(mirrored(sample.boundaries.astype(np.uint8), size)) == 0).astype(np.uint8)


def whole_image_way(monkeypatch: dict) -> None:
    """Switch the shipped code to the whole-image way (restored by :func:`restore`)."""
    from napari_grainseg.plugin import _boundaries, _correct_widget

    monkeypatch["window"] = _correct_widget.grains_window
    monkeypatch["near"] = _boundaries.BoundaryLink._rebuild_near_change
    _correct_widget.grains_window = lambda labels, ids, **search: (slice(0, None), slice(0, None))
    _boundaries.BoundaryLink._rebuild_near_change = lambda self, data: False


def restore(monkeypatch: dict) -> None:
    from napari_grainseg.plugin import _boundaries, _correct_widget

    if monkeypatch:
        _correct_widget.grains_window = monkeypatch.pop("window")
        _boundaries.BoundaryLink._rebuild_near_change = monkeypatch.pop("near")


def timed(app, action) -> float:
    t0 = time.perf_counter()
    action()
    app.processEvents()
    return time.perf_counter() - t0


def run_size(size: int, repeats: int, seed: int) -> dict:
    import napari
    from qtpy.QtWidgets import QApplication
    from scipy import ndimage as ndi
    from skimage.draw import disk

    from napari_grainseg.plugin import _threading
    from napari_grainseg.plugin._boundaries import BoundaryLink
    from napari_grainseg.plugin._correct_widget import CorrectWidget

    _threading.SYNCHRONOUS = True
    boundaries = field_boundaries(size)
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    image = viewer.add_image(np.zeros((size, size), np.uint8), name="field")
    link = BoundaryLink.create(viewer, image, boundaries)
    fix = CorrectWidget(viewer)
    app.processEvents()
    fix.picks_button.native.click()
    picks = viewer.layers["field boundaries picks"]
    fix.lines_button.native.click()
    lines = viewer.layers["field boundaries split lines"]
    rng = np.random.default_rng(seed)
    times: dict = {way: {a: [] for a in ACTIONS} for way in WAYS}
    patch: dict = {}
    for _ in range(repeats):
        y, x = (int(v) for v in rng.integers(size // 8, size - size // 8, 2))
        for way in WAYS:
            if way == "whole image":
                whole_image_way(patch)
            else:
                restore(patch)
            labels = np.asarray(link.grains.data)
            a = int(labels[y, x]) or int(labels[y + 1, x + 1])
            crop = labels[y - 80 : y + 80, x - 80 : x + 80]
            ring = ndi.binary_dilation(crop == a) & (crop == 0)  # boundary pixels beside grain a
            near = np.bincount(crop[ndi.binary_dilation(ring)].ravel())
            near[[0, a]] = 0
            b = int(np.argmax(near))  # the neighbour across the longest shared boundary
            ys, xs = np.nonzero(labels[y - 80 : y + 80, x - 80 : x + 80] == a)
            inside_a = [y - 80 + ys[len(ys) // 2], x - 80 + xs[len(xs) // 2]]
            ys, xs = np.nonzero(labels[y - 80 : y + 80, x - 80 : x + 80] == b)
            inside_b = [y - 80 + ys[len(ys) // 2], x - 80 + xs[len(xs) // 2]]
            for tool in ("merge", "delete", "split"):
                if tool == "split":
                    lines.data = []
                    lines.add_paths([np.array([[y - 60, x], [y + 60, x]], float)])
                else:
                    picks.data = np.array([inside_a, inside_b] if tool == "merge" else [inside_a], float)
                times[way][tool].append(timed(app, getattr(fix, f"{tool}_button").native.click))
                assert fix.status.value.startswith(tool), fix.status.value
                times[way][f"undo {tool}"].append(timed(app, fix.undo_button.native.click))
            dab = disk((y, x), 6, shape=(size, size))

            def paint(dab=dab):
                with link.boundaries.block_history():
                    link.boundaries.data_setitem(dab, np.ones(len(dab[0]), np.uint8))
                link.flush()

            times[way]["brush dab"].append(timed(app, paint))
            link.boundaries.undo()
            link.flush()
    restore(patch)
    viewer.close()
    return {"size": size, "grains": int(link.grain_count), "seconds": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = [run_size(size, args.repeats, args.seed) for size in args.sizes]
    print("| size | grains | action | whole image (s) | around the edit (s) | ratio |")
    print("|---|---|---|---|---|---|")
    for res in results:
        for action in ACTIONS:
            old = float(np.median(res["seconds"]["whole image"][action]))
            new = float(np.median(res["seconds"]["around the edit"][action]))
            print(f"| {res['size']}² | {res['grains']} | {action} | {old:.2f} | {new:.3f} | {old / new:.1f}× |")
    if args.json:
        args.json.write_text(json.dumps({"repeats": args.repeats, "results": results}, indent=1))


if __name__ == "__main__":
    main()
