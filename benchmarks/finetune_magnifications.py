"""Learning from corrections taken at different magnifications (real TBM crops, hand-traced).

A lab's corrected micrographs are not always at one magnification. This benchmark draws
k adaptation crops from the TBM adaptation part and shows them at different magnifications
(crop i resampled by ``magnifications[i % len(magnifications)]``, image and truth), adapts
Net1 on them, and scores the 33 test crops at every magnification (each test crop once per
magnification). Compared, each with the grain builder it tuned on its own crops:

``one scale``
    The adapted model as fine-tuning made it until session 23: every correction resampled by
    the median grain size's working scale, and every image predicted at that scale (the
    corrections' grain size as the hint, as ``grainseg segment --model`` does without one).
``one scale + true hint``
    The same model, each test image given its true grain size as the hint (what a user is
    told to do for images at another magnification).
``per image``
    Each correction resampled by its own grain size (``finetune_net1(scale_per_image=True)``),
    each test image predicted at the adapted scale of its own grain size, estimated by the
    adapted model (:func:`napari_grainseg.segmentation.inference.predict_boundaries` once at
    the automatic scale, then at the adapted scale of that estimate when it differs).
``per image + true hint``
    The same model with each test image's true grain size as the hint.
``shipped``
    The shipped Net1 with the automatic scale and the product's grain builder (k = 0).

    python benchmarks/finetune_magnifications.py --draws 3 --json docs/finetune_magnifications.json

The data (../shared/data/tbm_train, MIT licence) is read in place and never trained into
a shipped model; every adapted model lives in memory only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
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


def predict_adapted_auto(image: np.ndarray, model):
    """The adapted model at the adapted scale of the grain size it estimates on the image."""
    from napari_grainseg.models.model_dir import adapted_scale, inference_grain_size
    from napari_grainseg.segmentation.inference import predict_boundaries

    first = predict_boundaries(image, model, device="cpu")
    if first.grain_size_px is None or abs(adapted_scale(first.grain_size_px) - first.scale) < 1e-9:
        return first
    return predict_boundaries(image, model, device="cpu", grain_size_px=inference_grain_size(first.grain_size_px))


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

    from napari_grainseg.models.model_dir import inference_grain_size
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

    def with_true_hint(model):
        hints = iter(true_hints)
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
        for arm, per_image_scale in (("one scale", False), ("per image", True)):
            t0 = time.monotonic()
            res = finetune_net1(corrections, config, device="cpu", scale_per_image=per_image_scale)
            model = inference_copy(res.model)
            tuned = {k: v for k, v in res.info["grain_builder"].items() if k != "vi"}
            run[f"{arm} builder"] = tuned
            run[f"{arm} train_seconds"] = res.info["train_seconds"]
            if per_image_scale:
                predict = lambda im, model=model: predict_adapted_auto(im, model)  # noqa: E731
            else:
                hint = res.info["inference_grain_size_px"]
                predict = lambda im, model=model, hint=hint: predict_boundaries(  # noqa: E731
                    im, model, device="cpu", grain_size_px=hint
                )
            run["scores"][arm] = per_image_values(score(predict, test, tuned))
            run["scores"][f"{arm} + true hint"] = per_image_values(score(with_true_hint(model), test, tuned))
            for name in (arm, f"{arm} + true hint"):
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
    error over draws), and the per-image paired VI difference of ``per image`` against ``one scale``."""
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
        [np.array(r["scores"]["per image"]["vi"]) - np.array(r["scores"]["one scale"]["vi"]) for r in results["runs"]]
    )
    lines.append("")
    lines.append(
        f"VI per image − one scale, paired over {diffs.size} image-draws: {diffs.mean():+.3f} ± "
        f"{diffs.std(ddof=1) / np.sqrt(diffs.size):.3f} ({int((diffs < 0).sum())} better)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
