"""Figure of one micrograph across Net2's refinement steps (docs/images/net2_steps.png).

    .venv/bin/python scripts/make_net2_figure.py [--net1 PATH] [--net2 PATH] [--seed N] [--out FILE]

Top row: the synthetic micrograph (an ``id-tem`` evaluation image), its true boundaries and
Net1's probability; then the state after each refinement step with its step number, phase,
mean absolute change and the variation of information (split / merge) of the grains it gives.
Prints the per-step numbers too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_grainseg.evaluation.metrics import segmentation_scores
    from napari_grainseg.evaluation.suite import EVAL_SETS
    from napari_grainseg.models.weights import load_net1, load_net2
    from napari_grainseg.segmentation.grains import boundaries_to_labels
    from napari_grainseg.segmentation.inference import predict_boundaries
    from napari_grainseg.segmentation.refine import refine
    from napari_grainseg.synthetic import generate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net1", help="Net1 weights (default: shipped)")
    parser.add_argument("--net2", help="Net2 weights (default: shipped)")
    parser.add_argument("--index", type=int, default=2, help="image of the id-tem evaluation set")
    parser.add_argument("--out", type=Path, default=Path("docs/images/net2_steps.png"))
    args = parser.parse_args()

    eval_set = EVAL_SETS["id-tem"]
    sample = generate(
        seed=eval_set.first_seed + args.index, shape=eval_set.shape, preset=eval_set.preset, **eval_set.overrides
    )
    net1, net2 = load_net1(args.net1), load_net2(args.net2)
    pred = predict_boundaries(sample.image, net1, device="cpu")
    steps = list(refine(sample.image, pred.probability, model=net2, device="cpu", scale=pred.scale))

    def vi(prob):
        s = segmentation_scores(boundaries_to_labels(prob), sample.labels)
        return s["vi_split"], s["vi_merge"]

    panels = [("micrograph", sample.image, "gray"), ("true boundaries", sample.boundaries, "magma")]
    split, merge = vi(pred.probability)
    panels.append((f"Net1\nVI split {split:.2f} / merge {merge:.2f}", pred.probability, "magma"))
    print(f"net1: VI split {split:.3f} merge {merge:.3f}")
    shown = steps if len(steps) <= 9 else steps[:6] + steps[-3:]
    for s in shown:
        split, merge = vi(s.state)
        print(
            f"step {s.step:2d} {s.phase:11s} change {s.change:.4f} VI split {split:.3f} merge {merge:.3f}"
            f"{'  converged' if s.converged else ''}"
        )
        panels.append(
            (f"step {s.step} ({s.phase}), Δ {s.change:.4f}\nVI split {split:.2f} / merge {merge:.2f}", s.state, "magma")
        )
    cols = 4
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.9 * rows))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, img, cmap) in zip(axes.flat, panels):
        limits = {} if cmap == "gray" else {"vmin": 0, "vmax": 1}
        ax.imshow(img, cmap=cmap, interpolation="nearest", **limits)
        ax.set_title(title, fontsize=8)
    fig.suptitle(
        f"Net2 refinement of an id-tem test image ({len(steps)} steps, "
        f"{'converged' if steps[-1].converged else 'not converged'})",
        fontsize=10,
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
