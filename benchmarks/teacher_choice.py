"""Which teacher best-teacher distillation takes, per training source.

For ``--n`` samples of each named source (generator presets, or ``upsampled-fine``), drawn with
the seeds of the first ``--n`` samples of a Net1 run with ``--seed`` (a run itself draws sample
``i`` from one source only, ``preset[i % len(preset)]``), the teacher whose boundary loss
against the sample's truth is lowest (:func:`napari_grainseg.training.net1.best_teacher_targets`,
the rule of ``TrainConfig.teachers``) and each teacher's mean loss. Prints a markdown table.

    python benchmarks/teacher_choice.py --teachers configs/weights/net1_v5.pt configs/weights/net1_v8.pt \
        --sources tem random train upsampled-fine --n 32
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    import numpy as np
    import torch

    from napari_grainseg.models.weights import load_net1
    from napari_grainseg.training.net1 import (
        TrainConfig,
        best_teacher_targets,
        boundary_loss,
        make_example,
        training_seed,
    )

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teachers", nargs="+", required=True)
    parser.add_argument("--sources", nargs="+", default=["tem", "random", "train", "upsampled-fine"])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--seed", type=int, default=11, help="the run's seed (its sample seeds)")
    parser.add_argument("--json")
    args = parser.parse_args()

    config = TrainConfig(seed=args.seed)
    teachers = [load_net1(path) for path in args.teachers]
    rows = {}
    for source in args.sources:
        counts = np.zeros(len(teachers), int)
        losses = np.zeros((len(teachers), args.n))
        for i in range(args.n):
            features, target, _ = make_example(
                training_seed(config, i), config.patch_shape, source, config.target_width
            )
            x, t = torch.from_numpy(features)[None], torch.from_numpy(target)[None]
            _, choice, _ = best_teacher_targets(teachers, x, t, config.pos_weight, config.dice_weight)
            counts[int(choice[0])] += 1
            with torch.no_grad():
                for k, teacher in enumerate(teachers):
                    losses[k, i] = float(boundary_loss(teacher(x), t, config.pos_weight, config.dice_weight))
        rows[source] = {
            "chosen": {path: int(c) for path, c in zip(args.teachers, counts)},
            "mean_loss": {path: float(m) for path, m in zip(args.teachers, losses.mean(axis=1))},
        }
    names = [p.rsplit("/", 1)[-1] for p in args.teachers]
    print("| source | " + " | ".join(f"{n} chosen | {n} loss" for n in names) + " |")
    print("|---|" + "---|---|" * len(names))
    for source, row in rows.items():
        cells = [f"{row['chosen'][p]}/{args.n} | {row['mean_loss'][p]:.3f}" for p in args.teachers]
        print(f"| {source} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"teachers": args.teachers, "n": args.n, "seed": args.seed, "sources": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
