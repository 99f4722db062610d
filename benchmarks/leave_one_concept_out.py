"""Leave one concept out: how much each concept family of the generator's training data is worth.

Seven small Net1 models are trained from scratch on the ``train`` preset, identical in everything
(seed, steps, architecture) except the data: one on everything (the control), and one for
each family of :data:`~napari_grainseg.synthetic.concepts.CONCEPT_FAMILIES` with that
family's knobs switched off (``TrainConfig.generator_overrides``). Each model is then scored
on every family's test set (``concept-*`` in ``grainseg eval``: the bright-field preset with
that family shown strongly) and on ``id-tem``. A family the model needed shows as a VI rise on
its own test set against the control (paired image by image); the other sets show whether
leaving it out cost anything else. A second control, trained on everything from another seed,
shows how far two trainings differ by chance alone.

Small models (8 base channels, ``--steps`` steps, about 0.4 s a step on 2 CPU cores) keep the
seven trainings to about 50 minutes; they answer which concepts matter, not how good the
shipped model is. Each image is scored at its own scale (the true grain size as the hint;
all sets here are in Net1's trained size range) and with grains by threshold, so the scores
differ only by what each model learnt. Trained models are reused when present (delete the
folder to retrain); the weights and configs are copied to ``configs/weights/loco``.

    OMP_NUM_THREADS=2 python benchmarks/leave_one_concept_out.py --steps 1000 \\
        --json docs/leave_one_concept_out.json > docs/leave_one_concept_out.md
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

CONTROL = "none"  # the model trained with every concept
SECOND_CONTROL = "none, seed 13"  # the same data and steps from another seed: how much training alone varies


def configs(steps: int) -> dict:
    """``{left-out family or CONTROL: TrainConfig}``."""
    from napari_grainseg.synthetic.concepts import CONCEPT_FAMILIES
    from napari_grainseg.training.net1 import TrainConfig

    common = dict(
        steps=steps,
        batch_size=8,
        lr=3e-3,
        warmup_steps=50,
        seed=12,
        val_every=max(1, steps // 4),
        checkpoint_every=100,
        val_size=8,
        preset="train",
        architecture={"in_channels": 4, "base_channels": 8, "depth": 4},
    )
    out = {CONTROL: TrainConfig(**common), SECOND_CONTROL: TrainConfig(**{**common, "seed": 13})}
    out.update(
        {name: TrainConfig(**common, generator_overrides=dict(f.without)) for name, f in CONCEPT_FAMILIES.items()}
    )
    return out


def train_all(steps: int, runs: Path, keep: Path) -> dict[str, Path]:
    """Train (or reuse) every model; returns ``{name: weights path}`` under ``keep``."""
    from napari_grainseg.training.net1 import train_net1

    keep.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, config in configs(steps).items():
        kept = keep / f"without_{name.replace(', ', '_').replace(' ', '')}.pt"
        if kept.is_file():
            recorded = json.loads(kept.with_suffix(".json").read_text())["train_config"]
            if recorded != json.loads(json.dumps(config.to_dict())):
                raise SystemExit(f"{kept} was trained with another config; delete it to retrain")
        else:
            t0 = time.perf_counter()
            train_net1(config, runs / name, device="cpu", progress=False)
            shutil.copyfile(runs / name / "net1.pt", kept)
            shutil.copyfile(runs / name / "net1.json", kept.with_suffix(".json"))
            print(f"trained without {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        paths[name] = kept
    return paths


def score(paths: dict[str, Path], set_names: list[str]) -> dict:
    """``{set: {model: {metric: [per image]}}}`` at the true scale, grains by threshold."""
    from napari_grainseg.errors import InputError
    from napari_grainseg.evaluation.metrics import evaluate_prediction
    from napari_grainseg.evaluation.suite import EVAL_SETS
    from napari_grainseg.models.weights import load_net1
    from napari_grainseg.segmentation.grains import boundaries_to_labels
    from napari_grainseg.segmentation.inference import equivalent_grain_diameter, predict_boundaries

    models = {name: load_net1(p, device="cpu") for name, p in paths.items()}
    out: dict = {}
    for set_name in set_names:
        samples = list(EVAL_SETS[set_name].samples())
        out[set_name] = {}
        for name, model in models.items():
            rows = {"vi": [], "f1_2px": [], "abs_grain_count_error": []}
            for s in samples:
                hint, _ = equivalent_grain_diameter(s.labels)
                prob = predict_boundaries(s.image, model, device="cpu", grain_size_px=hint).probability
                try:
                    labels = boundaries_to_labels(prob)
                except InputError:  # no closed grain: scored as one grain without boundaries
                    labels = np.ones(prob.shape, np.uint32)
                m = evaluate_prediction(labels == 0, labels, s.boundaries, s.labels)
                rows["vi"].append(m["vi"])
                rows["f1_2px"].append(m["f1_2px"])
                rows["abs_grain_count_error"].append(abs(m["grain_count_error"]))
            out[set_name][name] = rows
        print(f"scored {set_name}", file=sys.stderr, flush=True)
    return out


def markdown(scores: dict, steps: int) -> str:
    """Control's VI per set, then each left-out model's paired VI difference to it."""
    sets = list(scores)
    models = list(next(iter(scores.values())))
    lines = [
        f"Models: Net1 with 8 base channels, {steps} steps from scratch on the `train` preset, seed 12; "
        "VI at the true scale, grains by threshold; paired over the set's images: "
        "left-out model − control, mean ± standard error (images where the left-out model is worse).",
        "",
        "| trained without | " + " | ".join(sets) + " |",
        "|---|" + "---|" * len(sets),
        "| nothing (control): VI | " + " | ".join(f"{np.mean(scores[s][CONTROL]['vi']):.3f}" for s in sets) + " |",
    ]
    for name in models:
        if name == CONTROL:
            continue
        cells = []
        for s in sets:
            d = np.array(scores[s][name]["vi"]) - np.array(scores[s][CONTROL]["vi"])
            se = d.std(ddof=1) / np.sqrt(len(d))
            own = s == f"concept-{name}"
            cell = f"{d.mean():+.3f} ± {se:.3f} ({int((d > 0).sum())}/{len(d)})"
            cells.append(f"**{cell}**" if own else cell)
        label = "nothing, another seed (training noise)" if name == SECOND_CONTROL else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from napari_grainseg.synthetic.concepts import CONCEPT_FAMILIES

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--runs", type=Path, default=Path("runs/loco"), help="training folders (checkpoints)")
    ap.add_argument("--keep", type=Path, default=Path("configs/weights/loco"), help="where the weights are kept")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    paths = train_all(args.steps, args.runs, args.keep)
    set_names = [f"concept-{name}" for name in CONCEPT_FAMILIES] + ["id-tem"]
    scores = score(paths, set_names)
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "scores": scores}, indent=1) + "\n")
    print(markdown(scores, args.steps))


if __name__ == "__main__":
    main()
