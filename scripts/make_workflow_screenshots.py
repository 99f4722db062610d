"""Screenshots of the napari walkthrough of docs/user_guide.md, from a real viewer with the real docks.

The same walkthrough as tests/test_plugin_walkthrough.py: a calibrated 16-bit TIFF made from the
bundled micrograph (2 nm/px), edges, Net1, three Net2 steps with a boundary drawn in between,
merge, a scale-bar strip excluded, statistics with grains coloured by size, then the Learn from
corrections dock learning from the corrected layer (40 steps, in its worker, shot half-way). Run
under a (virtual) display:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/make_workflow_screenshots.py

Writes docs/images/workflow_{1_edges,2_net1,3_net2,4_correct,5_statistics,6_learn}.png with the
shipped weights (``--only 6_learn``: only that one). The learned model goes to a temporary model
store, never to yours. Look at every image before committing it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"
DOCKS = ("Edge detectors", "Segment grains", "Correct grains", "Grain statistics", "Learn from corrections")
STAGES = ("1_edges", "2_net1", "3_net2", "4_correct", "5_statistics", "6_learn")


def calibrated_tiff(folder: Path) -> Path:
    """The bundled micrograph as a 16-bit TIFF calibrated at 2 nm per pixel (ImageJ tags)."""
    import tifffile

    from napari_grainseg.io.samples import interconnect_tem

    image = interconnect_tem().data
    data = (image - image.min()) / (np.ptp(image) or 1) * 60000
    path = folder / "interconnect_tem.tif"
    tifffile.imwrite(path, data.astype(np.uint16), imagej=True, resolution=(0.5, 0.5), metadata={"unit": "nm"})
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", nargs="+", choices=STAGES, default=STAGES, help="write only these images")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp())
    from napari_grainseg.models.store import STORE_ENV

    os.environ[STORE_ENV] = str(tmp / "models")  # the learned model never lands in the user's store

    import napari
    from qtpy.QtCore import QPoint, Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication
    from scipy import ndimage as ndi

    from napari_grainseg.plugin import _threading

    _threading.SYNCHRONOUS = True  # deterministic screenshots
    args.out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1600, 1000)
    app = QApplication.instance()

    def settle():
        for _ in range(40):
            app.processEvents()

    def click(button):
        QTest.mouseClick(button.native, Qt.MouseButton.LeftButton)
        settle()

    def tick(checkbox):
        native = checkbox.native
        QTest.mouseClick(native, Qt.MouseButton.LeftButton, pos=QPoint(8, native.height() // 2))
        settle()

    def shot(name: str, dock):
        if name not in args.only:
            return
        dock.raise_()
        settle()
        path = args.out / f"workflow_{name}.png"
        viewer.screenshot(str(path), canvas_only=False)
        print(f"wrote {path}")

    (image,) = viewer.open(str(calibrated_tiff(tmp)), plugin="napari-grainseg")
    docks, widgets = {}, {}
    for name in DOCKS:
        # as from the Plugins menu: the docks make themselves tabs (Edges, Segment, Correct, Statistics)
        docks[name], widgets[name] = viewer.window.add_plugin_dock_widget("napari-grainseg", name)
        settle()
    edges, seg, fix, stats, learn = (widgets[name] for name in DOCKS)
    seg.device.value = "cpu"
    viewer.canvas.overlays.scale_bar.visible = True  # the calibration in view

    click(edges.run_button)
    viewer.reset_view()
    shot("1_edges", docks["Edge detectors"])
    for name in ("Sobel", "LoG", "Canny"):
        viewer.layers[f"interconnect_tem {name}"].visible = False

    click(seg.run_net1_button)
    viewer.reset_view()
    shot("2_net1", docks["Segment grains"])

    click(seg.step_button)
    bnd = viewer.layers["interconnect_tem boundaries"]
    line = (np.full(200, 77), np.arange(400, 600))  # a boundary drawn by hand between two steps
    with bnd.block_history():
        bnd.data_setitem(line, np.ones(200, np.uint8))
    click(seg.step_button)
    click(seg.step_button)
    shot("3_net2", docks["Segment grains"])

    grains = viewer.layers["interconnect_tem grains"]
    labels = np.asarray(grains.data)
    ids = np.unique(labels[:, labels.shape[1] // 3])
    ids = [int(g) for g in ids if g > 0][:2]
    click(fix.picks_button)

    def centre(g):  # the grain's innermost pixel (the image border counts as outside)
        dist = ndi.distance_transform_edt(np.pad(labels == g, 1))[1:-1, 1:-1]
        return np.unravel_index(np.argmax(dist), labels.shape)

    points = [centre(g) for g in ids]
    viewer.layers.selection.active.data = np.array(points, float)
    settle()
    shot("4_correct", docks["Correct grains"])
    click(fix.merge_button)

    # the scale-bar strip, drawn as a rectangle on a new Shapes layer (napari's button, the image
    # selected: the layer takes the image's scale and units) and excluded from the measurement
    h, w = labels.shape
    strip = viewer.add_shapes(
        [np.array([[h - 20, w - 200], [h - 1, w - 1]], float)],
        shape_type="rectangle",
        name="scale bar strip",
        scale=image.scale,
        units=image.units,
        edge_color="red",
        face_color=[1, 0, 0, 0.25],
    )
    viewer.layers.selection.active = grains
    settle()
    stats.exclude.value = strip
    tick(stats.include_edge)  # a strip image: nearly every grain touches the border
    tick(stats.colour_by_ecd)
    viewer.layers["interconnect_tem boundary probability"].visible = False
    stats.update()
    settle()
    viewer.reset_view()
    shot("5_statistics", docks["Grain statistics"])

    # learn from the corrected boundary layer (chosen for you: it holds hand edits), in the worker
    learn.device.value = "cpu"
    learn.steps.value = 40
    learn.model_name.value = "interconnect TEM"
    _threading.SYNCHRONOUS = False
    for name in ("ECD", "grains"):  # the image and its corrected boundary layer in view
        viewer.layers[f"interconnect_tem {name}"].visible = False
    viewer.layers.selection.active = viewer.layers["interconnect_tem boundaries"]
    click(learn.learn_button)
    run = learn._run
    t0 = time.perf_counter()
    while learn._run is not None and (run.total == 0 or run.step < run.total // 2) and time.perf_counter() - t0 < 300:
        settle()
        time.sleep(0.02)
    settle()
    shot("6_learn", docks["Learn from corrections"])
    while learn._run is not None and time.perf_counter() - t0 < 600:
        settle()
        time.sleep(0.02)
    viewer.close()


if __name__ == "__main__":
    main()
