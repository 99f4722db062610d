"""A microscopist's walkthrough in a real napari viewer, for a person to look at: screenshots of every stage.

Opens the four docks as napari does from the Plugins menu (stacked, not tabbed), a calibrated
16-bit TIFF (the bundled micrograph at 2 nm/px) and an uncalibrated 512² synthetic TIFF, then
clicks the real buttons: edges, Net1 (in its worker thread, with a screenshot while it runs),
three Net2 steps with a boundary painted in between, merge / split / delete with undo and redo,
a scale-bar strip drawn as a rectangle and excluded, statistics coloured by ECD, all exports,
Net1 on the uncalibrated image, and the exported boundaries reopened and corrected again.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/review_walkthrough.py --size 1920x1080
    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/review_walkthrough.py --size 1366x768

Writes ``<out>/<size>/NN_stage.png`` and ``notifications.txt`` (every napari notification, by
stage). Nothing here is asserted: the tests do that (tests/test_plugin_walkthrough.py).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from review_driver import ReviewDriver

DOCKS = ("Edge detectors", "Segment grains", "Correct grains", "Learn from corrections", "Grain statistics")


def make_tiffs(folder: Path) -> tuple[Path, Path]:
    """A calibrated (2 nm/px, ImageJ tags) 16-bit TIFF of the bundled micrograph, and an uncalibrated
    512² 16-bit synthetic one."""
    import tifffile

    from napari_grainseg.io.samples import interconnect_tem
    from napari_grainseg.synthetic import generate

    image = interconnect_tem().data
    data = (image - image.min()) / (np.ptp(image) or 1) * 60000
    calibrated = folder / "line42.tif"
    tifffile.imwrite(calibrated, data.astype(np.uint16), imagej=True, resolution=(0.5, 0.5), metadata={"unit": "nm"})
    sample = generate(seed=3, shape=(512, 512), preset="tem").image
    sample = (sample - sample.min()) / (np.ptp(sample) or 1) * 50000 + 5000
    uncalibrated = folder / "film_uncal.tif"
    tifffile.imwrite(uncalibrated, sample.astype(np.uint16))
    return calibrated, uncalibrated


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--out", type=Path, default=Path("/tmp/grainseg_review"))
    parser.add_argument("--tabs", action="store_true", help="tabify the docks (default: stacked, as napari opens them)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    out = args.out / args.size
    out.mkdir(parents=True, exist_ok=True)

    import napari
    from scipy import ndimage as ndi

    from napari_grainseg.plugin import _threading

    viewer = napari.Viewer(show=True)
    drive = ReviewDriver(viewer, out, width, height)
    settle, click, shot, note_notifications = drive.settle, drive.click, drive.shot, drive.note
    tick = drive.tick

    tmp = Path(tempfile.mkdtemp())
    calibrated, uncalibrated = make_tiffs(tmp)
    (image,) = viewer.open(str(calibrated), plugin="napari-grainseg")
    (uncal,) = viewer.open(str(uncalibrated), plugin="napari-grainseg")
    viewer.layers.selection.active = image
    docks, widgets = {}, {}
    for name in DOCKS:
        docks[name], widgets[name] = viewer.window.add_plugin_dock_widget("napari-grainseg", name, tabify=args.tabs)
    edges, seg, fix, _, stats = (widgets[name] for name in DOCKS)
    seg.device.value = "cpu"
    viewer.canvas.overlays.scale_bar.visible = True
    viewer.reset_view()
    shot("opened", docks["Segment grains"])

    click(edges.run_button)
    viewer.reset_view()
    shot("edges", docks["Edge detectors"])
    for name in ("Sobel", "LoG", "Canny"):
        viewer.layers[f"line42 {name}"].visible = False
    viewer.layers.selection.active = image

    # Net1 in its real worker thread
    click(seg.run_net1_button)
    t0 = time.perf_counter()
    shot_taken = False
    while seg._net1_worker is not None and time.perf_counter() - t0 < 300:
        settle(5)
        if not shot_taken and time.perf_counter() - t0 > 1.0:
            shot("net1_running", docks["Segment grains"])
            shot_taken = True
    settle(100)
    viewer.reset_view()
    shot("net1_done", docks["Segment grains"])

    _threading.SYNCHRONOUS = True  # Net2 steps and edits: deterministic from here
    click(seg.step_button)
    shot("net2_step1", docks["Segment grains"])
    bnd = viewer.layers["line42 boundaries"]
    line = (np.full(200, 77), np.arange(400, 600))
    with bnd.block_history():  # what the paint brush does
        bnd.data_setitem(line, np.ones(200, np.uint8))
    settle()
    click(seg.step_button)
    shot("net2_step2_after_paint", docks["Segment grains"])
    click(seg.step_button)
    shot("net2_step3", docks["Segment grains"])

    grains = viewer.layers["line42 grains"]
    labels = np.asarray(grains.data)

    def centre(g):
        dist = ndi.distance_transform_edt(np.pad(labels == g, 1))[1:-1, 1:-1]
        return np.unravel_index(np.argmax(dist), labels.shape)

    ids = [int(g) for g in np.unique(labels[:, labels.shape[1] // 3]) if g > 0][:2]
    click(fix.picks_button)
    viewer.layers.selection.active.data = np.array([centre(g) for g in ids], float)
    settle()
    shot("picks", docks["Correct grains"])
    click(fix.merge_button)
    shot("merged", docks["Correct grains"])
    click(fix.undo_button)
    shot("merge_undone", docks["Correct grains"])
    click(fix.redo_button)
    labels = np.asarray(grains.data)
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    big = int(np.argmax(areas))
    rows, cols = np.nonzero(labels == big)
    x = int(np.median(cols))
    click(fix.lines_button)
    viewer.layers.selection.active.add_paths([np.array([[rows.min() - 2, x], [rows.max() + 2, x]], float)])
    settle()
    shot("split_line", docks["Correct grains"])
    click(fix.split_button)
    shot("split", docks["Correct grains"])
    labels = np.asarray(grains.data)
    small = [int(g) for g in np.unique(labels) if g > 0][-1]
    click(fix.picks_button)
    viewer.layers.selection.active.data = np.array([centre(small)], float)
    click(fix.delete_button)
    shot("deleted", docks["Correct grains"])

    # a scale-bar strip drawn as a rectangle on a Shapes layer (what a user would draw)
    h, w = labels.shape
    strip = viewer.add_shapes(
        [np.array([[h - 20, w - 200], [h - 1, w - 1]], float) * image.scale],
        shape_type="rectangle",
        name="scale bar strip",
        edge_color="red",
        face_color=[1, 0, 0, 0.3],
    )
    settle()
    viewer.layers.selection.active = grains
    settle()
    stats.exclude.value = strip
    tick(stats.include_edge)
    tick(stats.colour_by_ecd)
    stats.update()
    settle(100)
    shot("statistics", docks["Grain statistics"])
    export_dir = tmp / "exports"
    export_dir.mkdir()
    stats.folder.value = export_dir
    click(stats.all_button)
    shot("exported", docks["Grain statistics"])

    # the uncalibrated image
    _threading.SYNCHRONOUS = False
    viewer.layers.selection.active = uncal
    settle()
    click(seg.run_net1_button)
    t0 = time.perf_counter()
    while seg._net1_worker is not None and time.perf_counter() - t0 < 300:
        settle(5)
    settle(100)
    _threading.SYNCHRONOUS = True
    viewer.reset_view()
    shot("uncalibrated_net1", docks["Segment grains"])
    viewer.layers.selection.active = viewer.layers["film_uncal grains"]
    stats.update()
    settle(100)
    shot("uncalibrated_statistics", docks["Grain statistics"])

    # another day: reopen the exported boundaries and go on correcting
    viewer.layers.clear()
    settle()
    (reopened,) = viewer.open(str(export_dir / "line42_boundaries.tif"), plugin="napari-grainseg")
    settle()
    viewer.reset_view()
    shot("reopened", docks["Correct grains"])
    lab, _ = ndi.label(np.asarray(reopened.data) == 0)
    labels = lab
    ids = [int(g) for g in np.unique(lab[:, lab.shape[1] // 2]) if g > 0][:2]
    click(fix.picks_button)
    viewer.layers.selection.active.data = np.array([centre(g) for g in ids], float)
    click(fix.merge_button)
    shot("reopened_merged", docks["Correct grains"])
    viewer.layers.selection.active = viewer.layers[reopened.name.replace("boundaries", "grains")]
    settle(100)
    shot("reopened_statistics", docks["Grain statistics"])

    note_notifications()
    drive.write_notifications()
    print("\n".join(drive.log))
    viewer.close()


if __name__ == "__main__":
    main()
