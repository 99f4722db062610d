"""A microscopist's walk through "Learn from corrections" in a real napari viewer: screenshots of every stage.

Opens two 256² micrographs of a look the shipped Net1 was not trained on (the textured look of
tests/test_plugin_learn.py) as 16-bit TIFFs, opens the docks from the Plugins menu, then clicks the
real buttons: Run Net1 on the first, a hand correction of its boundary layer (what painting and
erasing amounts to) and a merge, Learn (40 steps, with screenshots while it runs), Run Net1 on
the second image with the new model, Rename, Learn again, Cancel, and bad input (no layer chosen,
an empty name, a taken name).

    GRAINSEG_MODEL_STORE=/tmp/store xvfb-run -a -s "-screen 0 1920x1080x24" \
        .venv/bin/python scripts/review_learn.py --size 1920x1080

Writes ``<out>/<size>/NN_stage.png`` and ``notifications.txt`` (every napari notification, by
stage). Refuses to run without GRAINSEG_MODEL_STORE (it would write into your real model store).
Nothing is asserted here: tests/test_plugin_learn.py does that.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from review_driver import ReviewDriver

DOCKS = ("Segment grains", "Correct grains", "Learn from corrections")
TEXTURED = dict(preset="tem", texture=0.3, contrast=0.08, boundary_darkening=0.1, mean_diameter=24.0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--out", type=Path, default=Path("/tmp/grainseg_learn_review"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--short", action="store_true", help="stop after the first learned model")
    args = parser.parse_args(argv)
    if not os.environ.get("GRAINSEG_MODEL_STORE"):
        raise SystemExit("set GRAINSEG_MODEL_STORE to a scratch folder first")
    width, height = (int(v) for v in args.size.split("x"))
    out = args.out / args.size
    out.mkdir(parents=True, exist_ok=True)

    import napari
    import tifffile
    from qtpy.QtCore import QTimer
    from scipy import ndimage as ndi

    from napari_grainseg.synthetic import generate

    tmp = Path(tempfile.mkdtemp())
    samples = {}
    for name, seed in (("etched_01", 3), ("etched_02", 1003)):
        s = generate(seed, shape=(256, 256), **TEXTURED)
        data = (s.image - s.image.min()) / (np.ptp(s.image) or 1) * 50000 + 5000
        tifffile.imwrite(tmp / f"{name}.tif", data.astype(np.uint16))
        samples[name] = s

    viewer = napari.Viewer(show=True)
    drive = ReviewDriver(viewer, out, width, height)
    settle, click, shot, note = drive.settle, drive.click, drive.shot, drive.note

    def wait(cond, limit=600):
        t0 = time.perf_counter()
        while not cond() and time.perf_counter() - t0 < limit:
            settle(5)
        settle(60)

    (img_a,) = viewer.open(str(tmp / "etched_01.tif"), plugin="napari-grainseg")
    docks, widgets = {}, {}
    for name in DOCKS:
        docks[name], widgets[name] = viewer.window.add_plugin_dock_widget("napari-grainseg", name)
        settle()
    seg, fix, learn = (widgets[name] for name in DOCKS)
    seg.device.value = "cpu"
    learn.device = "cpu"
    viewer.reset_view()
    shot("opened", docks["Learn from corrections"])

    # Net1 with the shipped model, in its worker
    seg.image.value = img_a
    click(seg.run_net1_button)
    wait(lambda: seg._net1_worker is None)
    viewer.reset_view()
    shot("net1_shipped", docks["Segment grains"])

    # correct by hand: what painting / erasing amounts to, then a merge with the Correct dock
    def paint_truth(name):
        """Correct a boundaries layer to the sample's truth, as painting and erasing by hand would."""
        layer = viewer.layers[f"{name} boundaries"]
        truth = samples[name].boundaries.astype(np.uint8)
        index = np.nonzero(np.asarray(layer.data) != truth)
        with layer.block_history():
            layer.data_setitem(index, truth[index])
        settle(100)
        return layer

    paint_truth("etched_01")
    grains = viewer.layers["etched_01 grains"]
    labels = np.asarray(grains.data)

    def centre(g):
        dist = ndi.distance_transform_edt(np.pad(labels == g, 1))[1:-1, 1:-1]
        return np.unravel_index(np.argmax(dist), labels.shape)

    ids = [int(g) for g in np.unique(labels[:, 128]) if g > 0][:2]
    click(fix.picks_button)
    viewer.layers.selection.active.data = np.array([centre(g) for g in ids], float)
    settle()
    click(fix.merge_button)
    settle(100)
    shot("corrected", docks["Correct grains"])
    shot("learn_dock_before", docks["Learn from corrections"])

    # learn: a small budget
    learn.steps.value = args.steps
    ticks = []  # a 10 ms timer on the main thread: its longest gap is the longest the viewer was blocked
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    click(learn.learn_button)
    t0 = time.perf_counter()
    shots = 0
    while learn._run is not None and time.perf_counter() - t0 < 600:
        settle(5)
        if shots < 2 and time.perf_counter() - t0 > 4 + 8 * shots:
            shot(f"learning_{shots + 1}", docks["Learn from corrections"])
            shots += 1
    timer.stop()
    gaps = np.diff(ticks) * 1000
    print(
        f"learned in {time.perf_counter() - t0:.1f} s; main-thread gaps: max {gaps.max():.0f} ms, "
        f"p99 {np.percentile(gaps, 99):.0f} ms (screenshots included)",
        flush=True,
    )
    settle(100)
    shot("learned", docks["Learn from corrections"])
    shot("segment_dock_after_learning", docks["Segment grains"])

    # the second image of the same look: one click with the new model
    (img_b,) = viewer.open(str(tmp / "etched_02.tif"), plugin="napari-grainseg")
    settle()
    shot("second_image_opened", docks["Segment grains"])
    seg.image.value = img_b
    click(seg.run_net1_button)
    wait(lambda: seg._net1_worker is None)
    for layer in viewer.layers:
        layer.visible = layer.name.startswith("etched_02")
    viewer.reset_view()
    shot("second_image_net1_learned", docks["Segment grains"])
    if args.short:
        drive.write_notifications()
        viewer.close()
        return

    # rename
    learn.new_name.value = "etched steel"
    click(learn.rename_button)
    shot("renamed", docks["Learn from corrections"])
    shot("renamed_segment_dock", docks["Segment grains"])

    # learn again (the chosen stored model's images + the chosen layers)
    click(learn.again_button)
    wait(lambda: learn._run is None)
    shot("learned_again", docks["Learn from corrections"])

    # cancel
    learn.steps.value = 5000
    click(learn.learn_button)
    wait(lambda: learn._run is None or learn._run.step >= 3, 120)
    shot("before_cancel", docks["Learn from corrections"])
    click(learn.cancel_button)
    shot("cancelling", docks["Learn from corrections"])
    wait(lambda: learn._run is None)
    shot("cancelled", docks["Learn from corrections"])
    learn.steps.value = args.steps

    # bad input
    learn.corrected.value = []
    settle()
    click(learn.learn_button)
    shot("bad_no_layer", docks["Learn from corrections"])
    learn.corrected.value = [viewer.layers["etched_01 boundaries"]]
    learn.model_name.value = ""
    click(learn.learn_button)
    shot("bad_empty_name", docks["Learn from corrections"])
    learn.model_name.value = "etched steel"
    click(learn.learn_button)
    shot("bad_taken_name", docks["Learn from corrections"])
    learn.new_name.value = ""
    click(learn.rename_button)
    shot("bad_rename_empty", docks["Learn from corrections"])
    click(learn.delete_button)
    shot("delete_armed", docks["Learn from corrections"])

    # a second corrected image, a verified region drawn over the first: two images, one held out
    bnd2 = paint_truth("etched_02")
    learn.corrected.value = [viewer.layers["etched_01 boundaries"], bnd2]
    settle()
    for layer in viewer.layers:
        layer.visible = layer.name in ("etched_01", "etched_01 boundaries")
    click(learn.region_button)
    viewer.layers.selection.active.add_rectangles(np.array([[20, 20], [200, 230]], float))
    settle()
    shot("region_drawn", docks["Learn from corrections"])
    learn.model_name.value = "two images"
    click(learn.learn_button)
    wait(lambda: learn._run is None)
    shot("learned_two_images", docks["Learn from corrections"])
    shot("learned_two_images_segment", docks["Segment grains"])

    note()
    drive.write_notifications()
    print("\n".join(drive.log))
    viewer.close()


if __name__ == "__main__":
    main()
