"""Screenshots of each step of the napari workflow on the bundled real micrograph, from a real viewer.

Run under a (virtual) display:
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/make_workflow_screenshots.py \\
        [--net1 PATH] [--net2 PATH]
Writes docs/images/workflow_{1_edges,2_net1,3_net2,4_correct,5_statistics}.png.
Net1/Net2 default to the shipped weights (Net1 falls back to the development snapshot).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"
DEV_NET1 = Path("/root/grainseg-runs/net1_dev/net1.pt")


def _weights(args):
    from napari_grainseg.models.weights import shipped_weights_dir

    net1 = args.net1 or next((str(p) for p in (shipped_weights_dir() / "net1.pt", DEV_NET1) if p.is_file()), None)
    net2 = args.net2 or (str(shipped_weights_dir() / "net2.pt")
                         if (shipped_weights_dir() / "net2.pt").is_file() else None)
    if net2 is None:  # no trained Net2 yet: an untrained one shows the controls working
        import torch

        from napari_grainseg.models.net2 import Net2, Net2Config
        from napari_grainseg.models.weights import save_weights

        torch.manual_seed(0)
        config = Net2Config()
        net2 = str(save_weights(Net2(config), Path(tempfile.mkdtemp()) / "net2.pt",
                                {"architecture": config.to_dict()})[0])
        print("note: no trained Net2 weights; the Net2 screenshot uses an untrained Net2")
    return net1, net2


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net1")
    parser.add_argument("--net2")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_grainseg.plugin import _threading
    from napari_grainseg.plugin._correct_widget import CorrectWidget
    from napari_grainseg.plugin._edges_widget import EdgeDetectorsWidget
    from napari_grainseg.plugin._segment_widget import SegmentWidget
    from napari_grainseg.plugin._stats_widget import StatsWidget

    _threading.SYNCHRONOUS = True  # deterministic screenshots
    net1, net2 = _weights(args)
    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 900)
    app = QApplication.instance()

    def shot(name: str):
        for _ in range(30):
            app.processEvents()
        viewer.screenshot(str(OUT / f"workflow_{name}.png"), canvas_only=False)
        print(f"wrote {OUT / f'workflow_{name}.png'}")

    viewer.open_sample("napari-grainseg", "interconnect_tem")
    edges = EdgeDetectorsWidget(viewer)
    edges_dock = viewer.window.add_dock_widget(edges, name="Edge detectors")
    edges.run()
    viewer.reset_view()
    shot("1_edges")
    for name in ("Sobel", "LoG", "Canny"):
        viewer.layers[f"interconnect_tem {name}"].visible = False
    viewer.window.remove_dock_widget(edges_dock)

    seg = SegmentWidget(viewer)
    seg.net1_weights, seg.net2_weights = net1, net2
    viewer.window.add_dock_widget(seg, name="Segment grains")
    seg.pixel_size.value = 2.0
    seg.set_pixel_size()
    seg.run_net1()
    for _ in range(30):
        app.processEvents()
    viewer.reset_view()
    shot("2_net1")
    seg.net2_step()
    seg.net2_step()
    seg.net2_step()
    shot("3_net2")
    seg.stop()

    fix = CorrectWidget(viewer)
    viewer.window.add_dock_widget(fix, name="Correct grains")
    grains = viewer.layers["interconnect_tem grains"]
    ids = np.unique(grains.data[:, grains.data.shape[1] // 2])
    ids = ids[ids > 0][:2]
    picks = fix.picks_layer()
    from scipy import ndimage as ndi

    points = [np.unravel_index(np.argmax(ndi.distance_transform_edt(grains.data == g)), grains.data.shape)
              for g in ids]
    picks.data = np.array(points, float)
    shot("4_correct")
    fix.merge()

    stats = StatsWidget(viewer)
    viewer.window.add_dock_widget(stats, name="Grain statistics", area="right")
    stats.grains.value = grains
    stats.include_edge.value = True  # a strip image: nearly every grain touches the border
    stats.update()
    viewer.reset_view()
    shot("5_statistics")
    viewer.close()


if __name__ == "__main__":
    main()
