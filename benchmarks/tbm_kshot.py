"""k-shot adaptation on real optical micrographs (TBM crops with hand-traced boundaries).

A fixed test part (>= 32 crops, whole micrographs: no test crop shares a micrograph
with an adaptation crop) is scored with the shipped Net1 (k = 0), the classical
baseline and Net1 adapted on k crops drawn from the other micrographs
(``finetune_net1``, all k crops used for training: no held-out split here, the
test part plays that role), each with both grain builders (threshold, watershed).

    python benchmarks/tbm_kshot.py --ks 4 --draws 1              # pilot
    python benchmarks/tbm_kshot.py --ks 0 1 2 4 8 16 --draws 3 --json docs/adaptation_tbm.json \
        --plot docs/images/adaptation_kshot.png

The data (../shared/data/tbm_train, MIT licence) is read in place, never copied, and
the shipped model is never trained on it: every adaptation starts from the shipped
weights and lives in memory only.

``--independent`` runs the same sweep on a synthetic domain shift instead: a look no
model was trained on (:mod:`napari_grainseg.evaluation.independent`), adapting on k of
16 images of other seeds and testing on the frozen ``look-independent`` set:

    python benchmarks/tbm_kshot.py --independent --ks 0 1 4 --draws 2 --json docs/adaptation_independent.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = None  # found by napari_grainseg.evaluation.real_sets.find_tbm_dir
METRICS = ("f1_2px", "vi", "vi_split", "vi_merge", "abs_grain_count_error", "abs_mean_ecd_error")
BUILDERS = ("threshold", "watershed")


def load_tbm(root: Path | None):
    """All crops as (name, micrograph id, image float32, 1-px truth lines), adaptation part first,
    and the number of adaptation crops: the project's fixed split and truth convention
    (:mod:`napari_grainseg.evaluation.real_sets`: 33 test crops of 11 micrographs)."""
    from napari_grainseg.evaluation.real_sets import load_traced, tbm_micrograph, tbm_split

    adapt, test = tbm_split(root)
    crops = []
    for image_path, mask_path in adapt + test:
        s = load_traced(image_path, mask_path)
        crops.append((Path(image_path).name, tbm_micrograph(image_path), s.image, s.boundaries))
    return crops, len(adapt)


#: First seed of the independent renderer's adaptation pool (the test set starts at 8_000_900_000).
INDEPENDENT_POOL_SEED = 8_001_000_000


def load_independent(n_pool: int = 16):
    """The synthetic domain shift in the shape of :func:`load_tbm`: ``n_pool`` adaptation images of
    the independent renderer (their own seeds, one "micrograph" each), then the frozen test set."""
    from napari_grainseg.evaluation.independent import render_independent
    from napari_grainseg.evaluation.suite import EVAL_SETS

    crops = []
    for i in range(n_pool):
        s = render_independent(INDEPENDENT_POOL_SEED + i)
        crops.append((s.name, s.name, s.image, s.boundaries))
    for s in EVAL_SETS["look-independent"].samples():
        crops.append((s.name, s.name, s.image, s.boundaries))
    return crops, n_pool


def split_by_micrograph(crops, n_adapt: int):
    """(test indices, adaptation pool indices)."""
    return list(range(n_adapt, len(crops))), list(range(n_adapt))


def score(predict, crops, test, settings=None):
    """Per builder: list of per-image metric dicts. ``predict(image) -> probability``;
    ``settings``: {name: {"grains": builder, parameter: value}} (default: the two builders' defaults)."""
    from napari_grainseg.evaluation.metrics import evaluate_prediction
    from napari_grainseg.segmentation.grains import boundaries_to_labels, probability_to_labels

    settings = settings or {b: {"grains": b} for b in BUILDERS}
    rows = {b: [] for b in settings}
    for i in test:
        _, _, image, lines = crops[i]
        truth = boundaries_to_labels(lines, min_grain_area=1)
        prob = predict(image)
        for b, setting in settings.items():
            setting = dict(setting)
            labels = probability_to_labels(prob, setting.pop("grains"), **setting)
            rows[b].append(evaluate_prediction(labels == 0, labels, lines, truth, tolerances=(2,)))
    return rows


def per_image_means(rows):
    """Per metric, the per-image values (``abs_`` keys: magnitudes)."""
    from napari_grainseg.evaluation.metrics import metric_values

    return {key: metric_values(rows, key) for key in METRICS}


def summary(values):
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return {"mean": float(v.mean()), "se": float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0}


def main(argv=None) -> int:
    import torch

    from napari_grainseg.evaluation.suite import method_runners
    from napari_grainseg.models.weights import load_net1
    from napari_grainseg.segmentation.inference import predict_boundaries
    from napari_grainseg.training.corrections import Correction
    from napari_grainseg.training.finetune import FinetuneConfig, finetune_net1, inference_copy, tune_grain_builder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--ks", type=int, nargs="+", default=[0, 1, 2, 4, 8, 16])
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument(
        "--draws-at",
        nargs="*",
        default=[],
        metavar="K=N",
        help="another number of draws for some k, e.g. 4=3 (when time allows only a few)",
    )
    ap.add_argument("--steps", type=int, default=FinetuneConfig.steps)
    ap.add_argument("--lr", type=float, default=FinetuneConfig.lr)
    ap.add_argument("--synthetic-share", type=float, default=FinetuneConfig.synthetic_share)
    ap.add_argument(
        "--net2-steps",
        type=int,
        default=0,
        help="also adapt Net2 for this many steps and score the adapted Net1 refined by it (until converged)",
    )
    ap.add_argument("--test-limit", type=int, help="score only this many test crops (quick pilots)")
    ap.add_argument("--no-classical", action="store_true")
    ap.add_argument(
        "--no-hint",
        action="store_true",
        help="adapted models estimate the grain size per image instead of predicting at the "
        "scale they were adapted at (as grainseg segment --model does)",
    )
    ap.add_argument(
        "--independent", action="store_true", help="a synthetic domain shift (the independent renderer) instead of TBM"
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    crops, n_adapt = load_independent() if args.independent else load_tbm(args.data)
    test, pool = split_by_micrograph(crops, n_adapt)
    assert not {crops[i][1] for i in test} & {crops[i][1] for i in pool}  # no shared micrograph
    test_ids = sorted({crops[i][1] for i in test})
    if args.test_limit:
        test = test[: args.test_limit]
    print(
        f"{len(crops)} crops; test {len(test)} crops of micrographs {test_ids}; pool {len(pool)} crops", file=sys.stderr
    )
    results = {
        "test_crops": [crops[i][0] for i in test],
        "pool_crops": [crops[i][0] for i in pool],
        "config": {
            "steps": args.steps,
            "lr": args.lr,
            "synthetic_share": args.synthetic_share,
            "hint": not args.no_hint,
        },
        "runs": [],
    }
    t_all = time.monotonic()
    if not args.no_classical:
        t0 = time.monotonic()
        classical = method_runners(["classical"])["classical"]
        rows = {b: [] for b in BUILDERS}
        from napari_grainseg.evaluation.metrics import evaluate_prediction
        from napari_grainseg.segmentation.grains import boundaries_to_labels

        for i in test:
            _, _, image, lines = crops[i]
            _, labels, _ = classical(image)
            rows["threshold"].append(
                evaluate_prediction(
                    labels == 0, labels, lines, boundaries_to_labels(lines, min_grain_area=1), tolerances=(2,)
                )
            )
        results["classical"] = per_image_means(rows["threshold"])
        print(f"classical: {_line(results['classical'])} ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    shipped = load_net1(device="cpu")
    draws_at = {int(a.split("=")[0]): int(a.split("=")[1]) for a in args.draws_at}
    for k in args.ks:
        for draw in range(1 if k == 0 else draws_at.get(k, args.draws)):
            t0 = time.monotonic()
            run = {"k": k, "draw": draw}
            settings = {b: {"grains": b} for b in BUILDERS}
            if k == 0:
                model, hint = shipped, None
            else:
                chosen = sorted(np.random.default_rng([k, draw]).choice(pool, size=k, replace=False).tolist())
                corr = [Correction(crops[i][2], crops[i][3], None, crops[i][0]) for i in chosen]
                config = FinetuneConfig(
                    steps=args.steps,
                    lr=args.lr,
                    synthetic_share=args.synthetic_share,
                    holdout=0.0,
                    seed=draw,
                    net2_steps=args.net2_steps,
                )
                res = finetune_net1(corr, config, device="cpu")
                model = inference_copy(res.model)
                hint = None if args.no_hint else res.info["inference_grain_size_px"]
                tuned = {k_: v for k_, v in res.info["grain_builder"].items() if k_ != "vi"}
                settings["tuned"] = tuned
                run |= {
                    "crops": [crops[i][0] for i in chosen],
                    "train_seconds": res.info["train_seconds"],
                    "final_loss": res.info["loss_curve"][-1][1],
                    "grain_size_px": res.info["grain_size_px"],
                    "tuned_builder": res.info["grain_builder"],
                }
                # control: the shipped model with a grain builder tuned on the same k crops
                shipped_tuned = tune_grain_builder(shipped, corr)
                run["shipped_tuned_builder"] = shipped_tuned
                rows = score(
                    lambda image: predict_boundaries(image, shipped, device="cpu").probability,
                    crops,
                    test,
                    {"shipped+tuned": {k_: v for k_, v in shipped_tuned.items() if k_ != "vi"}},
                )
                run["scores_shipped_tuned"] = per_image_means(rows["shipped+tuned"])

            def predict(image, model=model, hint=hint):
                return predict_boundaries(image, model, device="cpu", grain_size_px=hint).probability

            rows = score(predict, crops, test, settings)
            run["scores"] = {b: per_image_means(r) for b, r in rows.items()}
            if k and res.net2 is not None:
                from napari_grainseg.training.finetune import refined_map

                net2 = inference_copy(res.net2)

                def predict_net2(image, model=model, hint=hint, net2=net2):
                    pred = predict_boundaries(image, model, device="cpu", grain_size_px=hint)
                    return refined_map(image, pred, net2)

                rows = score(predict_net2, crops, test, settings)
                run["scores"] |= {f"net2+{b}": per_image_means(r) for b, r in rows.items()}
                run["net2_train_seconds"] = res.info["net2"]["train_seconds"]
            run["seconds"] = round(time.monotonic() - t0, 1)
            results["runs"].append(run)
            for b in run["scores"]:
                print(f"k={k} draw={draw} {b:9s}: {_line(run['scores'][b])} ({run['seconds']} s)", file=sys.stderr)
            if "scores_shipped_tuned" in run:
                print(
                    f"k={k} draw={draw} shipped+tuned {run['shipped_tuned_builder']}: "
                    f"{_line(run['scores_shipped_tuned'])}",
                    file=sys.stderr,
                )
            if args.json:  # after every run, so an interrupted sweep keeps what it measured
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(results | {"partial": True}, indent=1))
    results["seconds"] = round(time.monotonic() - t_all, 1)
    results["table"] = table(results)
    print(results["table"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    if args.plot:
        plot(results, args.plot)
    print(f"total {results['seconds']} s", file=sys.stderr)
    return 0


def _line(scores):
    return " ".join(f"{k} {np.nanmean(v):.3f}" for k, v in scores.items())


def _scores(run, builder):
    if builder == "shipped+tuned":
        return run.get("scores_shipped_tuned")
    return run["scores"].get(builder)


def aggregate(results, k, builder):
    """Mean ± standard error over the draws of the per-draw means (one draw: over test images)."""
    runs = [r for r in results["runs"] if r["k"] == k and _scores(r, builder) is not None]
    if not runs:
        return None, 0
    out = {}
    for key in METRICS:
        if len(runs) == 1:
            out[key] = summary(_scores(runs[0], builder)[key])
        else:
            out[key] = summary([np.nanmean(_scores(r, builder)[key]) for r in runs])
    return out, len(runs)


#: Rows of the table: (builder key, label for k = 0, label for k > 0).
ROWS = (
    ("threshold", "shipped Net1 + threshold 0.5", "adapted Net1 + threshold 0.5"),
    ("watershed", "shipped Net1 + watershed h 0.1", "adapted Net1 + watershed h 0.1"),
    ("tuned", None, "adapted Net1 + builder tuned on the k crops"),
    ("shipped+tuned", None, "shipped Net1 + builder tuned on the k crops (control)"),
    ("net2+threshold", None, "adapted Net1 + adapted Net2 + threshold 0.5"),
    ("net2+watershed", None, "adapted Net1 + adapted Net2 + watershed h 0.1"),
    ("net2+tuned", None, "adapted Net1 + adapted Net2 + builder tuned on the k crops (for Net1)"),
)


def table(results):
    heads = ("F1@2px", "VI", "VI split", "VI merge", "abs. count error", "abs. mean-ECD error")
    lines = ["| method | k | draws | " + " | ".join(heads) + " |", "|---|---|---|" + "---|" * len(heads)]
    if "classical" in results:
        cells = [
            f"{summary(results['classical'][m])['mean']:.3f} ± {summary(results['classical'][m])['se']:.3f}"
            for m in METRICS
        ]
        lines.append("| classical (watershed, tuned on synthetic) | – | – | " + " | ".join(cells) + " |")
    ks = sorted({r["k"] for r in results["runs"]})
    for b, label0, label in ROWS:
        for k in ks:
            agg, n = aggregate(results, k, b)
            if agg is None:
                continue
            cells = [f"{agg[m]['mean']:.3f} ± {agg[m]['se']:.3f}" for m in METRICS]
            lines.append(f"| {label0 if k == 0 else label} | {k} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted({r["k"] for r in results["runs"]})
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    for ax, (key, title) in zip(
        axes,
        (
            ("f1_2px", "boundary F1 @ 2 px (higher is better)"),
            ("vi", "VI"),
            ("abs_grain_count_error", "|grain-count error|"),
            ("abs_mean_ecd_error", "|mean-ECD error|"),
        ),
    ):
        for b, colour, label in (
            ("threshold", "tab:blue", "Net1 + threshold 0.5"),
            ("watershed", "tab:orange", "Net1 + watershed h 0.1"),
            ("tuned", "tab:green", "adapted Net1 + tuned builder"),
        ):
            pts = [(k, aggregate(results, k, b)[0]) for k in ks]
            pts = [(k, a) for k, a in pts if a is not None]
            if b == "tuned":  # k = 0 is the shipped model with its default builder
                zero = aggregate(results, 0, "watershed")[0]
                pts = ([(0, zero)] if zero else []) + pts
            ax.errorbar(
                [k for k, _ in pts],
                [a[key]["mean"] for _, a in pts],
                yerr=[a[key]["se"] for _, a in pts],
                marker="o",
                color=colour,
                label=label,
                capsize=3,
            )
        if "classical" in results:
            ax.axhline(summary(results["classical"][key])["mean"], color="grey", ls="--", label="classical")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("adaptation crops k")
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
