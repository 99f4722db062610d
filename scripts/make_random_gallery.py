"""Gallery of the domain-randomisation preset (or the independent renderer): images above their exact boundaries.

Writes ``docs/images/random_gallery.png``: ``--n`` samples of preset ``"random"``
(seeds ``--seed`` onwards), each micrograph above its target boundaries, so the
range of looks (intensity mixtures, textures, boundary styles, distractors, noise,
inversion) can be seen at once. ``--independent`` draws the evaluation-only
renderer of :mod:`napari_grainseg.evaluation.independent` instead. Usage::

    python scripts/make_random_gallery.py [--n 12] [--seed 0] [--out docs/images/random_gallery.png]
    python scripts/make_random_gallery.py --independent --n 12 --seed 8000900000 \
        --out docs/images/independent_gallery.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from napari_grainseg.io.atomic import atomic_path
from napari_grainseg.synthetic import generate


def gallery(n: int, seed: int, size: int = 192, columns: int = 6, independent: bool = False) -> np.ndarray:
    """uint8 grid: each tile is a sample's image with its boundaries (white on black) below."""
    from napari_grainseg.evaluation.independent import render_independent

    tiles = []
    for i in range(n):
        if independent:
            s = render_independent(seed + i, (size, size))
        else:
            s = generate(seed=seed + i, shape=(size, size), preset="random")
        image = (np.clip(s.image, 0, 1) * 255).astype(np.uint8)
        target = np.where(s.boundaries, 255, 0).astype(np.uint8)
        tiles.append(np.pad(np.vstack([image, np.full((4, size), 128, np.uint8), target]), 4, constant_values=255))
    rows = [
        np.hstack(tiles[r : r + columns] + [np.full_like(tiles[0], 255)] * (columns - len(tiles[r : r + columns])))
        for r in range(0, n, columns)
    ]
    return np.vstack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/images/random_gallery.png"))
    parser.add_argument("--independent", action="store_true", help="the evaluation-only independent renderer")
    args = parser.parse_args()
    grid = gallery(args.n, args.seed, independent=args.independent)
    with atomic_path(args.out) as tmp:
        cv2.imwrite(str(tmp), grid)
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
    main()
