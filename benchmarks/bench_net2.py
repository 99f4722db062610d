"""Net2 refinement speed and convergence (a benchmark script, not a test).

    .venv/bin/python benchmarks/bench_net2.py [--net1 PATH] [--net2 PATH] [--images 16] [--markdown docs/net2.md]

Reports, on this machine's CPU with torch's default threads:
- time per Net2 step per megapixel on a 1024x1024 synthetic micrograph at scale 1 (the
  median over the steps after the first; the first also computes the cached image features,
  reported separately);
- steps to convergence (mean, median, max, share converged within 30) on the ``id-tem`` and
  ``id-train`` evaluation images and on the bundled real micrograph;
- the whole ``segment`` pipeline (Net1 + Net2 + grains) in seconds per megapixel beside
  Net1 alone and the classical baseline (watershed), measured in the same run on the same image.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def step_speed(net1, net2, size: int = 1024) -> dict:
    from napari_grainseg.segmentation.inference import predict_boundaries
    from napari_grainseg.segmentation.refine import refine
    from napari_grainseg.synthetic import generate

    image = generate(seed=1, shape=(size, size), preset="tem", mean_diameter=30.0).image
    pred = predict_boundaries(image, net1, device="cpu", grain_size_px=30.0)
    list(refine(image, pred.probability, model=net2, device="cpu", max_steps=2))  # warm-up
    steps = list(refine(image, pred.probability, model=net2, device="cpu", max_steps=8, tol=1e-9))
    per_step = statistics.median(s.seconds for s in steps[1:])
    mpx = image.size / 1e6
    return {
        "image": f"{size}x{size} synthetic (tem, 30 px grains)",
        "step_s_per_mpx": round(per_step / mpx, 3),
        "features_s_per_mpx": round((steps[0].seconds - per_step) / mpx, 3),
    }


def convergence(net1, net2, n_images: int) -> dict:
    from napari_grainseg.evaluation.suite import EVAL_SETS
    from napari_grainseg.io.samples import interconnect_tem
    from napari_grainseg.segmentation.inference import predict_boundaries
    from napari_grainseg.segmentation.refine import refine

    out = {}
    for name in ("id-tem", "id-train"):
        counts, converged = [], []
        for sample in EVAL_SETS[name].samples(n_images):
            pred = predict_boundaries(sample.image, net1, device="cpu")
            steps = list(refine(sample.image, pred.probability, model=net2, device="cpu", scale=pred.scale))
            counts.append(len(steps))
            converged.append(steps[-1].converged)
        out[name] = {
            "images": len(counts),
            "mean_steps": round(float(np.mean(counts)), 1),
            "median_steps": float(np.median(counts)),
            "max_steps": int(max(counts)),
            "converged_share": round(float(np.mean(converged)), 3),
        }
    image = interconnect_tem().data
    pred = predict_boundaries(image, net1, device="cpu")
    steps = list(refine(image, pred.probability, model=net2, device="cpu", scale=pred.scale))
    out["interconnect_tem (real)"] = {
        "steps": len(steps),
        "converged": steps[-1].converged,
        "final_change": round(steps[-1].change, 5),
    }
    return out


def pipeline_speed(net1, net2, size: int = 1024) -> dict:
    from napari_grainseg.segmentation.grains import boundaries_to_labels, classical_boundaries
    from napari_grainseg.segmentation.pipeline import segment
    from napari_grainseg.synthetic import generate

    image = generate(seed=2, shape=(size, size), preset="tem", mean_diameter=30.0).image
    mpx = image.size / 1e6
    segment(image, model=net1, device="cpu", grain_size_px=30.0, net2_steps=0)  # warm-up
    _, t_net1 = _timed(lambda: segment(image, model=net1, device="cpu", grain_size_px=30.0, net2_steps=0))
    full, t_full = _timed(
        lambda: segment(image, model=net1, device="cpu", grain_size_px=30.0, net2_steps="auto", net2_model=net2)
    )
    _, t_classical = _timed(lambda: boundaries_to_labels(classical_boundaries(image)))
    return {
        "image": f"{size}x{size} synthetic (tem, 30 px grains)",
        "net1_net2_s_per_mpx": round(t_full / mpx, 2),
        "net2_steps": full.refine_steps,
        "net1_only_s_per_mpx": round(t_net1 / mpx, 2),
        "classical_s_per_mpx": round(t_classical / mpx, 2),
    }


def to_markdown(result: dict) -> str:
    s, p = result["step"], result["pipeline"]
    lines = [
        f"Measured by `benchmarks/bench_net2.py` ({result['threads']} torch threads, {result['net2_weights']}).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| one Net2 step, {s['image']} | {s['step_s_per_mpx']} s/MPx |",
        f"| cached image features (once per image) | {s['features_s_per_mpx']} s/MPx |",
        f"| whole segment, Net1 + Net2 ({p['net2_steps']} steps) | {p['net1_net2_s_per_mpx']} s/MPx |",
        f"| whole segment, Net1 only | {p['net1_only_s_per_mpx']} s/MPx |",
        f"| classical baseline (watershed), same image | {p['classical_s_per_mpx']} s/MPx |",
        "",
        "| images | steps to convergence: mean / median / max | converged within 30 |",
        "|---|---|---|",
    ]
    for name, c in result["convergence"].items():
        if "mean_steps" in c:
            lines.append(
                f"| {name} ({c['images']}) | {c['mean_steps']} / {c['median_steps']:g} / {c['max_steps']} "
                f"| {c['converged_share']:.0%} |"
            )
        else:
            lines.append(
                f"| {name} | {c['steps']} (final change {c['final_change']}) | {'yes' if c['converged'] else 'no'} |"
            )
    return "\n".join(lines)


def main() -> None:
    import torch

    from napari_grainseg.models.weights import load_net1, load_net2

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net1", help="Net1 weights (default: shipped)")
    parser.add_argument("--net2", help="Net2 weights (default: shipped)")
    parser.add_argument("--images", type=int, default=16, help="evaluation images per set for convergence")
    parser.add_argument("--markdown", help="write the results into this markdown file (section bench-net2)")
    args = parser.parse_args()
    net1, net2 = load_net1(args.net1), load_net2(args.net2)
    result = {
        "threads": torch.get_num_threads(),
        "net2_weights": args.net2 or "shipped net2.pt",
        "step": step_speed(net1, net2),
        "convergence": convergence(net1, net2, args.images),
        "pipeline": pipeline_speed(net1, net2),
    }
    print(json.dumps(result, indent=2))
    if args.markdown:
        from napari_grainseg.evaluation.markdown import replace_section

        replace_section(args.markdown, "bench-net2", to_markdown(result), heading="## Speed and convergence")


if __name__ == "__main__":
    main()
