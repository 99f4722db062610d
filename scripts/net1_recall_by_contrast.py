"""Where Net1 misses boundaries: recall against the local contrast across each true boundary pixel.

    .venv/bin/python scripts/net1_recall_by_contrast.py [--sets id-tem id-train] [--weights FILE]

For every true boundary pixel of the frozen evaluation sets, the two grains that
meet there are taken from the true labels, and the mean intensity of each inside
a 9x9 window is compared: the step between them, in units of the image's pixel
noise (robust MAD of the image minus its 3x3 median), is the boundary's local
contrast. The table gives the share of boundary length in each contrast band and
Net1's recall there (a true pixel counts as found when a predicted closed-grain
boundary lies within 2 px, as in the F1@2px tolerance, without the one-to-one
matching). Prints a markdown table for docs/net1.md.
"""

from __future__ import annotations

import argparse

import numpy as np

BANDS = ((0.0, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, np.inf))
HALF_WINDOW = 4


def local_contrast(
    image: np.ndarray, true_labels: np.ndarray, true_boundaries: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Contrast (step / pixel noise) at every true boundary pixel between two grains; returns (ys, xs), contrast."""
    from scipy import ndimage

    image = image.astype(np.float64)
    noise = 1.4826 * np.median(np.abs(image - ndimage.median_filter(image, 3)))
    r = HALF_WINDOW
    labels, values = np.pad(true_labels, r), np.pad(image, r)
    ys, xs, contrast = [], [], []
    for y, x in zip(*np.nonzero(true_boundaries)):
        window = labels[y : y + 2 * r + 1, x : x + 2 * r + 1]
        ids, counts = np.unique(window[window > 0], return_counts=True)
        if len(ids) < 2:
            continue
        a, b = ids[np.argsort(counts)[-2:]]
        patch = values[y : y + 2 * r + 1, x : x + 2 * r + 1]
        ys.append(y), xs.append(x)
        contrast.append(abs(patch[window == a].mean() - patch[window == b].mean()) / max(noise, 1e-12))
    return (np.asarray(ys), np.asarray(xs)), np.asarray(contrast)


def main() -> None:
    import torch
    from scipy import ndimage

    from napari_grainseg.evaluation.suite import EVAL_SETS
    from napari_grainseg.models.weights import load_net1
    from napari_grainseg.segmentation.grains import boundaries_to_labels
    from napari_grainseg.segmentation.inference import predict_boundaries

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["id-tem", "id-train"], choices=list(EVAL_SETS))
    parser.add_argument("--weights", default=None, help="Net1 weights (default: shipped)")
    args = parser.parse_args()
    model = load_net1(args.weights, device=torch.device("cpu"))
    print("| set | contrast band (step / noise σ) | share of boundary length | Net1 recall (2 px) |")
    print("|---|---|---|---|")
    for name in args.sets:
        contrasts, found = [], []
        for sample in EVAL_SETS[name].samples():
            pred = predict_boundaries(sample.image, model, device="cpu")
            predicted = boundaries_to_labels(pred.probability) == 0
            near = ndimage.distance_transform_edt(~predicted) <= 2
            (ys, xs), c = local_contrast(sample.image, sample.labels, sample.boundaries > 0)
            contrasts.append(c), found.append(near[ys, xs])
        c, hit = np.concatenate(contrasts), np.concatenate(found)
        for lo, hi in BANDS:
            band = (c >= lo) & (c < hi)
            label = f"≥ {lo:g}" if np.isinf(hi) else f"{lo:g}–{hi:g}"
            print(f"| {name} | {label} | {100 * band.mean():.1f} % | {hit[band].mean():.3f} |")
        print(f"| {name} | all | 100 % | {hit.mean():.3f} |")


if __name__ == "__main__":
    main()
