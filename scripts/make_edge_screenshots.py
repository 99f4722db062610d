"""Screenshots of the Edge detectors widget on the bundled real micrograph, from a real napari viewer.

Run under a (virtual) display:  xvfb-run -a .venv/bin/python scripts/make_edge_screenshots.py
Writes docs/images/edges_napari.png (whole window) and docs/images/edges_layers.png (each layer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def main() -> None:
    import napari
    from matplotlib.figure import Figure

    from napari_grainseg.plugin._edges_widget import EdgeDetectorsWidget

    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 700)
    viewer.open_sample("napari-grainseg", "interconnect_tem")
    widget = EdgeDetectorsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Edge detectors")
    widget.run()
    viewer.reset_view()
    viewer.screenshot(str(OUT / "edges_napari.png"), canvas_only=False)

    image = viewer.layers["interconnect_tem"].data
    panels = (
        [("micrograph", image, "gray")]
        + [(name, viewer.layers[f"interconnect_tem {name}"].data, "gray") for name in ("Sobel", "LoG", "Canny")]
        + [("fused RGB (R Sobel, G LoG, B Canny)", viewer.layers["interconnect_tem edges RGB"].data, None)]
    )
    fig = Figure(figsize=(12, 1.9 * len(panels)), layout="constrained")
    for ax, (title, data, cmap) in zip(fig.subplots(len(panels), 1), panels):
        ax.imshow(np.asarray(data), cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    fig.savefig(OUT / "edges_layers.png", dpi=110)
    viewer.close()
    print(f"wrote {OUT / 'edges_napari.png'} and {OUT / 'edges_layers.png'}")


if __name__ == "__main__":
    main()
