"""Learning from corrections taken at different magnifications (real TBM crops, hand-traced).

A lab's corrected micrographs are not always at one magnification. This benchmark draws
k adaptation crops from the TBM adaptation part and shows them at different magnifications
(crop i resampled by ``magnifications[i % len(magnifications)]``, image and truth), adapts
Net1 on them (one working scale, the median grain size's), and scores the 33 test crops at every
magnification (each test crop once per magnification). Each adapted arm uses the grain builder
the model tuned on its own crops:

``uncalibrated``
    Every image predicted at the corrections' (median) grain size: what ``grainseg segment
    --model`` does for images without a pixel size.
``calibrated``
    Every image (corrections and test) given the pixel size of its magnification (1 nm/px at
    x1, 1/m nm/px at xm): the model records the corrections' grain size in nm
    (:func:`napari_grainseg.training.finetune.corrections_grain_size_nm`), tunes its grain builder
    with each correction at its own scale, and each image is predicted at the hint of its own
    pixel size (:func:`napari_grainseg.models.model_dir.model_grain_size_hint`), as the product does.
``true hint``
    The uncalibrated model (and its builder), each test image given its true grain size as the
    hint (the reference for the two above).
``shipped``
    The shipped Net1 with the automatic scale and the product's grain builder (k = 0).

Session 23 also ran, at commit c4f4498, each correction resampled by its own grain size
(``scale_per_image``): with each image's scale from the adapted model's own estimate it was worse
(VI +0.104 ± 0.020 against one scale); with the true hint level with one scale (2.574 against
2.588); docs/finetune_magnifications_s23.json. It is not in the product.

    python benchmarks/finetune_magnifications.py --draws 3 --json docs/finetune_magnifications.json

The data (../shared/data/tbm_train, MIT licence) is read in place and never trained into
a shipped model; every adapted model lives in memory only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

METRICS = ("f1_2px", "vi", "abs_grain_count_error", "abs_mean_ecd_error")


def resampled(image: np.ndarray, lines: np.ndarray, factor: float):
    """``(image, 1-px lines)`` resampled by ``factor``: the truth's grains are grown over their
    lines, resampled by nearest neighbour and given new 1-px lines the generator's way."""
    from napari_grainseg.measure.table import fill_boundaries
    from napari_grainseg.segmentation.grains import boundaries_to_labels
    from napari_grainseg.segmentation.inference import resample
    from napari_grainseg.synthetic.targets import boundary_pixels

    if factor == 1.0:
        return image, lines
    cells = fill_boundaries(boundaries_to_labels(lines, min_grain_area=1))
    h, w = cells.shape
    rows = np.minimum((np.arange(round(h * factor)) + 0.5) / factor, h - 1).astype(int)
    cols = np.minimum((np.arange(round(w * factor)) + 0.5) / factor, w - 1).astype(int)
    out = resample(image, factor)
    new_lines = boundary_pixels(cells[np.ix_(rows, cols)])
    if out.shape != new_lines.shape:
        raise RuntimeError(f"resampled image {out.shape} and truth {new_lines.shape} differ")
    return out, new_lines


def true_grain_size(lines: np.ndarray) -> float | None:
    """The image's mean grain diameter measured on its truth (as fine-tuning measures corrections)."""
    from napari_grainseg.segmentation.inference import estimate_grain_size

    return estimate_grain_size(lines.astype(np.float32))


def score(predict, test, setting: dict) -> list[dict]:
    """Per test image: the metrics of ``predict(image) -> BoundaryPrediction`` with the builder ``setting``."""
    from napari_grainseg.evaluation.metrics import evaluate_prediction
    from napari_grainseg.segmentation.grains import boundaries_to_labels, probability_to_labels

    rows = []
    for image, lines, _ in test:
        pred = predict(image)
        s = dict(setting)
        labels = probability_to_labels(pred.probability, s.pop("grains"), net1_scale=pred.scale, **s)
        row = evaluate_prediction(labels == 0, labels, lines, boundaries_to_labels(lines, min_grain_area=1))
        row["scale"] = pred.scale
        rows.append(row)
    return rows


def per_image_values(rows: list[dict]) -> dict[str, list[float]]:
    from napari_grainseg.evaluation.metrics import metric_values

    out = {key: metric_values(rows, key) for key in METRICS}
    out["scale"] = [r["scale"] for r in rows]
    return out


def main(argv=None) -> int:
    import torch

    from napari_grainseg.models.model_dir import inference_grain_size, model_grain_size_hint
    from napari_grainseg.models.weights import load_net1
    from napari_grainseg.segmentation.grains import DEFAULT_GRAIN_BUILDER
    from napari_grainseg.segmentation.inference import predict_boundaries
    from napari_grainseg.training.corrections import Correction
    from napari_grainseg.training.finetune import FinetuneConfig, finetune_net1, inference_copy

    sys.path.insert(0, str(Path(__file__).parent))
    from tbm_kshot import load_tbm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--k", type=int, default=4, help="adaptation crops per draw")
    ap.add_argument("--magnifications", type=float, nargs="+", default=[1.0, 0.5])
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--steps", type=int, default=FinetuneConfig.steps)
    ap.add_argument("--test-limit", type=int, help="score only this many test crops (quick pilots)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t_all = time.monotonic()
    crops, n_adapt = load_tbm(args.data)
    pool, test_idx = list(range(n_adapt)), list(range(n_adapt, len(crops)))[: args.test_limit]
    test = []  # (image, lines, magnification)
    for m in args.magnifications:
        for i in test_idx:
            image, lines = resampled(crops[i][2], crops[i][3], m)
            test.append((image, lines, m))
    results = {
        "k": args.k,
        "magnifications": args.magnifications,
        "test_images": len(test),
        "steps": args.steps,
        "test_magnification": [t[2] for t in test],
        "true_grain_size_px": [true_grain_size(t[1]) for t in test],
        "runs": [],
    }
    shipped = load_net1(device="cpu")
    rows = score(lambda im: predict_boundaries(im, shipped, device="cpu"), test, {"grains": DEFAULT_GRAIN_BUILDER})
    results["shipped"] = per_image_values(rows)
    print(f"shipped: {_line(results['shipped'])}", file=sys.stderr)
    true_hints = [inference_grain_size(s) if s else None for s in results["true_grain_size_px"]]

    def with_hints(model, hints):
        hints = iter(hints)
        return lambda im: predict_boundaries(im, model, device="cpu", grain_size_px=next(hints))

    for draw in range(args.draws):
        chosen = sorted(np.random.default_rng([args.k, draw, 23]).choice(pool, size=args.k, replace=False).tolist())
        corrections = []
        for j, i in enumerate(chosen):
            m = args.magnifications[j % len(args.magnifications)]
            image, lines = resampled(crops[i][2], crops[i][3], m)
            corrections.append(Correction(image, lines, None, f"{crops[i][0]} x{m:g}"))
        config = FinetuneConfig(steps=args.steps, holdout=0.0, seed=draw)
        run = {"draw": draw, "crops": [c.name for c in corrections], "scores": {}}
        calibrated = [
            replace(c, pixel_size_nm=1.0 / args.magnifications[j % len(args.magnifications)])
            for j, c in enumerate(corrections)
        ]
        for arm, corr in (("uncalibrated", corrections), ("calibrated", calibrated)):
            t0 = time.monotonic()
            res = finetune_net1(corr, config, device="cpu")  # the same weights; the builder is tuned per arm
            model = inference_copy(res.model)
            tuned = {k: v for k, v in res.info["grain_builder"].items() if k != "vi"}
            scale = {k: res.info[k] for k in ("grain_size_px", "grain_size_nm")}
            run[arm] = {"builder": tuned, "train_seconds": res.info["train_seconds"], **scale}
            if arm == "uncalibrated":
                arms = {arm: [model_grain_size_hint(scale)] * len(test), "true hint": true_hints}
            else:
                arms = {arm: [model_grain_size_hint(scale, pixel_size_nm=1.0 / m) for _, _, m in test]}
            for name, hints in arms.items():
                run["scores"][name] = per_image_values(score(with_hints(model, hints), test, tuned))
                took = f"{time.monotonic() - t0:.0f} s"
                print(f"draw {draw} {name}: {_line(run['scores'][name])} ({took})", file=sys.stderr)
        results["runs"].append(run)
        if args.json:
            args.json.write_text(json.dumps(results | {"partial": True}, indent=1))
    results["seconds"] = round(time.monotonic() - t_all, 1)
    results["table"] = table(results)
    print(results["table"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def _line(scores: dict) -> str:
    return " ".join(f"{k} {np.nanmean(v):.3f}" for k, v in scores.items() if k in METRICS)


def table(results: dict) -> str:
    """Markdown: per arm and test magnification, mean over draws of the per-draw means (± standard
    error over draws), and the per-image paired VI difference of ``calibrated`` against ``uncalibrated``."""
    mags = np.array(results["test_magnification"])
    arms = ["shipped"] + list(results["runs"][0]["scores"])
    lines = ["| arm | test magnification | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for arm in arms:
        for m in [*results["magnifications"], "all"]:
            sel = np.ones(mags.size, bool) if m == "all" else mags == m
            cells = []
            for key in METRICS:
                if arm == "shipped":
                    cells.append(f"{np.nanmean(np.array(results['shipped'][key])[sel]):.3f}")
                    continue
                means = [np.nanmean(np.array(r["scores"][arm][key])[sel]) for r in results["runs"]]
                se = np.std(means, ddof=1) / np.sqrt(len(means)) if len(means) > 1 else 0.0
                cells.append(f"{np.mean(means):.3f} ± {se:.3f}")
            lines.append(f"| {arm} | {m if m == 'all' else f'x{m:g}'} | " + " | ".join(cells) + " |")
    diffs = np.concatenate(
        [
            np.array(r["scores"]["calibrated"]["vi"]) - np.array(r["scores"]["uncalibrated"]["vi"])
            for r in results["runs"]
        ]
    )
    lines.append("")
    lines.append(
        f"VI calibrated − uncalibrated, paired over {diffs.size} image-draws: {diffs.mean():+.3f} ± "
        f"{diffs.std(ddof=1) / np.sqrt(diffs.size):.3f} ({int((diffs < 0).sum())} better)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
