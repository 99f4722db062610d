"""Net1 on the bundled real micrograph: probability and grain boundaries, for docs/net1.md.

    .venv/bin/python scripts/make_net1_figures.py

Writes docs/images/net1_real.png: the micrograph, Net1's probability and the closed grains'
boundaries (red) for the automatic scale choice and for a grain-size hint of 100 px.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def main() -> None:
    from matplotlib.figure import Figure

    from napari_grainseg.io.samples import interconnect_tem
    from napari_grainseg.measure.report import overlay_rgb
    from napari_grainseg.segmentation.grains import boundaries_to_labels
    from napari_grainseg.segmentation.inference import predict_boundaries

    image = interconnect_tem().data
    panels = [("bundled real micrograph (CC0, imec)", image, "gray")]
    for label, hint in (("automatic scale", None), ("grain-size hint 100 px", 100.0)):
        pred = predict_boundaries(image, device="cpu", grain_size_px=hint)
        labels = boundaries_to_labels(pred.probability)
        how = (
            f"scale {pred.scale:.2f}, grain size {pred.grain_size_px:.0f} px ({pred.grain_size_source})"
            if pred.grain_size_px
            else f"scale {pred.scale:.2f}"
        )
        panels.append((f"Net1 probability, {label}: {how}", pred.probability, "magma"))
        panels.append((f"closed grains, {label}: {int(labels.max())} grains", overlay_rgb(image, labels == 0), None))
    fig = Figure(figsize=(12, 1.75 * len(panels)), layout="constrained")
    for ax, (title, data, cmap) in zip(fig.subplots(len(panels), 1), panels):
        ax.imshow(np.asarray(data), cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / "net1_real.png", dpi=110)
    print(f"wrote {OUT / 'net1_real.png'}")


if __name__ == "__main__":
    main()
