"""Gallery of the synthetic presets beside real and paper images, plus realism figures.

Writes ``docs/images/gallery.png`` (presets side by side with the real micrograph and
the paper's synthetic inputs) and prints a table comparing the default "tem" preset
with the real micrograph: intensity histogram statistics, high-pass noise level,
slope of the radially averaged power spectrum, and edge contrast (99th / 50th
percentile of the gradient magnitude). Usage::

    python scripts/make_gallery.py [--data ../shared/data] [--out docs/images/gallery.png]
"""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

import cv2
import numpy as np

from napari_grainseg.io.atomic import atomic_path
from napari_grainseg.synthetic import generate


def image_figures(img: np.ndarray) -> dict[str, float]:
    """Realism figures of a [0, 1] image (same code for real and synthetic)."""
    img = img.astype(np.float32)
    p1, p50, p99 = np.percentile(img, [1, 50, 99])
    z = (img - img.mean()) / img.std()
    highpass = img - cv2.GaussianBlur(img, (0, 0), 2.0)
    f = np.abs(np.fft.fftshift(np.fft.fft2(img - img.mean()))) ** 2
    h, w = img.shape
    fy, fx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(h)), np.fft.fftshift(np.fft.fftfreq(w)), indexing="ij")
    fr = np.hypot(fy, fx)
    bins = np.logspace(np.log10(0.02), np.log10(0.45), 16)
    idx = np.digitize(fr.ravel(), bins)
    radial = np.array([f.ravel()[idx == i].mean() for i in range(1, len(bins))])
    centres = np.sqrt(bins[1:] * bins[:-1])
    slope = np.polyfit(np.log(centres), np.log(radial), 1)[0]
    g = cv2.GaussianBlur(img, (0, 0), 1.5)
    gm = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    return {
        "mean": float(img.mean()),
        "std": float(img.std()),
        "p1": float(p1),
        "p50": float(p50),
        "p99": float(p99),
        "skew": float((z**3).mean()),
        "noise_sd": float(highpass.std()),
        "psd_slope": float(slope),
        "edge_contrast": float(np.percentile(gm, 99) / np.percentile(gm, 50)),
    }


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(here.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(here / "docs" / "images" / "gallery.png"))
    a = ap.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real = cv2.imread(str(Path(a.data) / "interconnect_tem.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    paper = [
        cv2.imread(p, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
        for p in sorted(glob.glob(str(Path(a.data) / "seed_synthetic_examples" / "*.png")))[:2]
    ]
    rows = [
        ("real TEM (CC0, imec), crop 96x496", real[:96, 300:796]),
        *[(f"paper's synthetic input #{i + 1}", p) for i, p in enumerate(paper)],
    ]
    for preset, seeds in (("tem", (0, 1, 2)), ("paper", (0,)), ("train", (0, 1, 2, 3))):
        for s in seeds:
            smp = generate(s, (96, 496), preset)
            extra = f", D={smp.params['mean_diameter']:.0f}px" if preset == "train" else ""
            rows.append((f'preset "{preset}", seed {s}{extra}', smp.image))
    smp = generate(0, (96, 496))
    overlay = np.dstack([smp.image] * 3)
    overlay[smp.boundaries] = (1.0, 0.2, 0.2)
    rows.insert(4, ('preset "tem", seed 0, target boundaries in red', overlay))

    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 1.95 * len(rows)))
    for ax, (title, im) in zip(axes, rows):
        ax.imshow(im, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=9, loc="left")
        ax.axis("off")
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(a.out) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    print(f"wrote {a.out}")

    # realism figures: real image vs "tem" at the real image's shape (3 seeds averaged)
    print("\nfigure          real    tem(D=48)  tem(D=100)")
    real_f = image_figures(real)
    tem48 = [image_figures(generate(s, real.shape).image) for s in range(3)]
    tem100 = [image_figures(generate(s, real.shape, mean_diameter=100.0).image) for s in range(3)]
    for k in real_f:
        print(
            f"{k:14s} {real_f[k]:7.3f}  {np.mean([t[k] for t in tem48]):9.3f}  {np.mean([t[k] for t in tem100]):9.3f}"
        )


if __name__ == "__main__":
    main()
