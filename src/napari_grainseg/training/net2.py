"""Training Net2, the boundary-map refiner: reproducible, resumable, checkpointed.

Data. A *pool* of synthetic images (seeds ``training_seed(config, i)``, disjoint
from Net1's training seeds when ``config.seed`` differs) is generated once per
run together with the REAL output of a given Net1 on each image; it is cached
in the run folder (``pool_cache``), keyed by the pool settings and the Net1
weights' SHA-256. Every training example is a random crop of a pool image,
flipped/rotated, degraded afresh:

- the coarse map ``c`` is Net1's probability, made worse at random
  (cold-diffusion style) by breaking boundary segments (gaps of
  ``gap_length`` px), adding spurious fragments and blurring — so Net2 also
  learns to close gaps that a better Net1 would leave rarely;
- the state at degradation level t in 0..T mixes the truth ``x0`` (1-px
  boundaries dilated to ``target_width``) and ``c`` with a smooth random mask
  of mean t / T (SegRefiner-style mixing in blobs; sometimes a uniform blend,
  which is exactly what the sampler of :mod:`napari_grainseg.segmentation.refine` produces);
  at t = 0 the state is the truth lightly mixed and blurred, so the
  fixed-point steps learn to keep a clean map and fix small leftovers.

Net2 sees the state, the cached features (``c`` and the image's edge maps and
intensity) and t / T, and predicts ``x0`` with Net1's loss
(:func:`napari_grainseg.training.net1.boundary_loss`). The blind ablation sees the
state only.

A run folder holds ``checkpoint.pt``, ``log.jsonl`` and at the end ``net2.pt`` +
``net2.json`` (fp16 weights, config, git revision, metrics and ``net1_sha256``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_grainseg.errors import InputError
from napari_grainseg.io.atomic import atomic_path
from napari_grainseg.segmentation.refine import DEFAULT_TOL, schedule_level, schedule_state
from napari_grainseg.training.config import Net2TrainConfig
from napari_grainseg.training.loop import Export, Progress, export_checkpoint, prepare_device, train
from napari_grainseg.training.net1 import VALIDATION_SEED_BASE, boundary_loss, boundary_target, training_seed

#: Most refinement steps a validation image gets (refine() allows more; validation must stay quick).
VALIDATION_MAX_STEPS = 12

#: Offset of Net2's validation seeds from :data:`~napari_grainseg.training.net1.VALIDATION_SEED_BASE`
#: (Net1's validation uses the first few seeds after the base).
NET2_VALIDATION_OFFSET = 500_000


# --------------------------------------------------------------------------- pool


def _pool_example(seed: int, shape: tuple[int, int], preset: str, net1, target_width: int) -> dict:
    """One cached image: Net2's condition (real Net1 output + edges + intensity) and the truth."""
    from napari_grainseg.models.features import net1_features
    from napari_grainseg.segmentation.inference import run_net1
    from napari_grainseg.synthetic import generate

    sample = generate(seed=seed, shape=tuple(shape), preset=preset)
    features = net1_features(sample.image)
    condition = [run_net1(net1, features, "cpu")[None], features]
    return {
        "condition": np.concatenate(condition).astype(np.float16),
        "truth": sample.boundaries.astype(bool),
        "target": boundary_target(sample.boundaries, target_width).astype(bool),
        "labels": sample.labels,
    }


def _pool_key(config: Net2TrainConfig, net1_sha: str, kind: str, size: int, shape) -> str:
    parts = [kind, config.seed, size, list(shape), list(config.presets), config.target_width, net1_sha]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def build_pool(
    config: Net2TrainConfig, net1, net1_sha: str, cache: Path | None, *, validation: bool = False, progress: bool = True
) -> dict[str, np.ndarray]:
    """The pool (or validation set) as stacked arrays, loaded from ``cache`` when it matches."""
    from tqdm import tqdm

    size, shape = (config.val_size, config.val_shape) if validation else (config.pool_size, config.pool_shape)
    key = _pool_key(config, net1_sha, "val" if validation else "pool", size, shape)
    path = None if cache is None else Path(cache) / f"net2_{'val' if validation else 'pool'}_{key}.npz"
    if path is not None and path.is_file():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    if validation:
        seeds = [VALIDATION_SEED_BASE + NET2_VALIDATION_OFFSET + i for i in range(size)]
    else:
        seeds = [training_seed(config, i) for i in range(size)]
    presets = [config.presets[i % len(config.presets)] for i in range(size)]
    rows = [
        _pool_example(s, shape, p, net1, config.target_width)
        for s, p in tqdm(
            list(zip(seeds, presets)),
            desc="Net2 validation set" if validation else "Net2 pool",
            unit="image",
            disable=not progress,
        )
    ]
    pool = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **pool)
    return pool


# --------------------------------------------------------------------------- degradation


def _smooth_uniform(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """A smooth random field with (approximately) uniform marginals in [0, 1]."""
    from scipy import ndimage, special

    field_ = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    field_ /= max(float(field_.std()), 1e-6)
    return (0.5 * (1 + special.erf(field_ / math.sqrt(2)))).astype(np.float32)


def degrade_coarse(
    coarse: np.ndarray, truth: np.ndarray, rng: np.random.Generator, config: Net2TrainConfig
) -> np.ndarray:
    """Make a coarse map worse: gaps in true boundaries, spurious fragments, blur (cold diffusion).

    Parameters
    ----------
    coarse
        Net1's probability (H, W).
    truth
        True 1-px boundaries (H, W) bool: gaps are cut where they are.
    """
    import cv2
    from scipy import ndimage

    out = coarse.astype(np.float32).copy()
    h, w = out.shape
    if rng.random() < config.gap_prob:
        ys, xs = np.nonzero(truth)
        n = rng.poisson(config.gaps_per_100px * ys.size / 100) if ys.size else 0
        lo, hi = config.gap_length
        for i in rng.choice(ys.size, size=min(n, ys.size), replace=False) if n else ():
            radius = rng.integers(lo, hi + 1) / 2
            cv2.circle(out, (int(xs[i]), int(ys[i])), int(math.ceil(radius)), 0.0, thickness=-1)
    if rng.random() < config.fragment_prob:
        n = rng.poisson(config.fragments_per_10k_px * h * w / 1e4)
        for _ in range(n):
            y, x = rng.uniform(0, h), rng.uniform(0, w)
            length, angle = rng.uniform(4, 20), rng.uniform(0, math.pi)
            end = (int(x + length * math.cos(angle)), int(y + length * math.sin(angle)))
            cv2.line(out, (int(x), int(y)), end, float(rng.uniform(0.4, 1.0)), thickness=int(rng.integers(1, 3)))
    if rng.random() < config.blur_prob:
        out = ndimage.gaussian_filter(out, rng.uniform(*config.blur_sigma))
    return np.clip(out, 0.0, 1.0)


def mix_state(
    x0: np.ndarray, coarse: np.ndarray, level: int, rng: np.random.Generator, config: Net2TrainConfig
) -> np.ndarray:
    """The training state at degradation level ``level`` (0..T): truth and coarse map mixed.

    The mask has mean ``level / T``: smooth blobs with a random edge softness, or
    (``uniform_mix_prob``) a uniform blend. At level 0 the truth is lightly
    mixed (up to 0.5 / T) and sometimes blurred, like Net2's own predictions.
    """
    from scipy import ndimage

    big_t = config.levels
    a = level / big_t if level else rng.uniform(0, 0.5 / big_t)
    if rng.random() < config.uniform_mix_prob:
        mask = np.float32(a)
    else:
        u = _smooth_uniform(rng, x0.shape, rng.uniform(3, 12))
        tau = rng.uniform(0.02, 0.3)
        mask = 1 / (1 + np.exp(-(a - u) / tau))
    clean = x0
    if rng.random() < 0.5:
        clean = ndimage.gaussian_filter(x0, rng.uniform(0.3, 1.0))
    return (mask * coarse + (1 - mask) * clean).astype(np.float32)


def make_batch(pool: dict, step: int, config: Net2TrainConfig) -> tuple[np.ndarray, ...]:
    """Training batch ``step`` (deterministic): states, conditions, t / T, targets and unroll counts."""
    rng = np.random.default_rng([config.seed, step])
    ph, pw = config.patch_shape
    states, conds, ts, targets, unrolls = [], [], [], [], []
    n_pool, h, w = pool["truth"].shape
    for _ in range(config.batch_size):
        i = rng.integers(n_pool)
        y, x = rng.integers(0, h - ph + 1), rng.integers(0, w - pw + 1)
        cond = pool["condition"][i, :, y : y + ph, x : x + pw].astype(np.float32)
        truth = pool["truth"][i, y : y + ph, x : x + pw]
        x0 = pool["target"][i, y : y + ph, x : x + pw].astype(np.float32)
        k, flip = int(rng.integers(4)), rng.random() < 0.5
        if ph != pw:
            k = 2 * (k % 2)  # a quarter turn would swap the sides of a non-square crop
        cond, truth, x0 = (_orient(a, k, flip) for a in (cond, truth, x0))
        coarse = degrade_coarse(cond[0], truth, rng, config)
        cond = np.concatenate([coarse[None], cond[1:]])
        level = int(rng.integers(0, config.levels + 1))
        states.append(mix_state(x0, coarse, level, rng, config)[None])
        conds.append(cond)
        ts.append(level / config.levels)
        targets.append(x0[None])
        unrolls.append(int(rng.integers(1, config.max_unroll + 1)) if rng.random() < config.unroll_prob else 0)
    return (
        np.stack(states),
        np.stack(conds),
        np.asarray(ts, np.float32),
        np.stack(targets),
        np.asarray(unrolls, np.int64),
    )


def unroll_states(model, states, conds, ts, unrolls):
    """Replace the states of examples with ``unrolls > 0`` by the model's own iterates (no gradient).

    An example with ``n`` unrolls starts at its level t, takes one step there
    and ``n - 1`` fixed-point steps, and is then trained at t = 0.
    """
    import torch

    chosen = torch.nonzero(unrolls > 0).flatten()
    if chosen.numel() == 0:
        return states, ts
    states, ts = states.clone(), ts.clone()
    was_training = model.training
    model.eval()
    with torch.no_grad():
        s, c, t, n = states[chosen], conds[chosen], ts[chosen], unrolls[chosen]
        for k in range(int(n.max())):
            active = n > k
            new = torch.sigmoid(model(s, c, t))
            s = torch.where(active.view(-1, 1, 1, 1), new, s)
            t = torch.where(active, torch.zeros_like(t), t)
        states[chosen], ts[chosen] = s, t
    model.train(was_training)
    return states, ts


def _orient(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, k, axes=(-2, -1))
    return np.ascontiguousarray(a[..., ::-1] if flip else a)


# --------------------------------------------------------------------------- validation


def _validation_grains(boundary_map: np.ndarray, watershed: bool = False) -> np.ndarray:
    """Grains of a boundary map for scoring (by threshold, or by watershed of the map); a map
    with no closed grain (an early or diverging model can draw boundary everywhere) scores as
    one region, i.e. everything merged."""
    from napari_grainseg.segmentation.grains import probability_to_labels

    try:
        return probability_to_labels(boundary_map, "watershed" if watershed else "threshold")
    except InputError:
        return np.zeros(boundary_map.shape, np.uint32)


def net1_baselines(val: dict) -> dict[str, float]:
    """The bars Net2 must clear on the validation images: VI of Net1 alone
    (``val_vi_net1``) and of Net1 + watershed (``val_vi_net1_watershed``)."""
    from napari_grainseg.evaluation.metrics import segmentation_scores

    vi_net1, vi_watershed = [], []
    for probability, truth_labels in zip(val["condition"][:, 0], val["labels"]):
        probability = probability.astype(np.float32)
        vi_net1.append(segmentation_scores(_validation_grains(probability), truth_labels)["vi"])
        vi_watershed.append(segmentation_scores(_validation_grains(probability, watershed=True), truth_labels)["vi"])
    return {"val_vi_net1": float(np.mean(vi_net1)), "val_vi_net1_watershed": float(np.mean(vi_watershed))}


def evaluate_net2(
    model, val: dict, config: Net2TrainConfig, device, baselines: dict[str, float] | None = None
) -> dict[str, float]:
    """Validation: loss at every level (fixed degradations) and VI of the full refinement.

    Beside the refined VI it reports the bars Net2 must clear on the same images
    (:func:`net1_baselines`; pass them to skip recomputing what does not change
    between validations).
    """
    import torch

    from napari_grainseg.evaluation.metrics import segmentation_scores

    model.eval()
    rng = np.random.default_rng([config.seed, 10**9])
    losses, vi_net2, vi_net2_watershed, steps_used = [], [], [], []
    blind = model.config.conditioning == "blind"
    total = model.config.scheduled_steps
    with torch.inference_mode():
        for i in range(val["truth"].shape[0]):
            cond = val["condition"][i].astype(np.float32)
            x0 = val["target"][i].astype(np.float32)
            start = cond[0]
            for level in range(config.levels + 1):
                state = mix_state(x0, start, level, rng, config)
                logits = model(
                    torch.from_numpy(state)[None, None].to(device),
                    None if blind else torch.from_numpy(cond)[None].to(device),
                    torch.tensor([level / config.levels], device=device),
                )
                losses.append(
                    float(
                        boundary_loss(
                            logits, torch.from_numpy(x0)[None, None].to(device), config.pos_weight, config.dice_weight
                        )
                    )
                )
            state, coarse, n = start, start, 0
            c_t = None if blind else torch.from_numpy(cond)[None].to(device)
            for n in range(1, VALIDATION_MAX_STEPS + 1):  # refine()'s schedule, on the cached condition
                t = schedule_level(n, total)
                x0_hat = torch.sigmoid(
                    model(
                        torch.from_numpy(state)[None, None].to(device),
                        c_t,
                        torch.tensor([t / total if total else 0.0], device=device),
                    )
                )
                new = schedule_state(x0_hat[0, 0].cpu().numpy(), coarse, t, total)
                change = float(np.mean(np.abs(new - state)))
                state = new
                if t == 0 and change < DEFAULT_TOL:
                    break
            steps_used.append(n)
            vi_net2.append(segmentation_scores(_validation_grains(state), val["labels"][i])["vi"])
            vi_net2_watershed.append(
                segmentation_scores(_validation_grains(state, watershed=True), val["labels"][i])["vi"]
            )
    model.train()
    return {
        "val_loss": float(np.mean(losses)),
        **(baselines or net1_baselines(val)),
        "val_vi_refined": float(np.mean(vi_net2)),
        "val_vi_refined_watershed": float(np.mean(vi_net2_watershed)),
        "val_steps": float(np.mean(steps_used)),
    }


# --------------------------------------------------------------------------- training


def _export_info(net1_path: Path | None) -> Callable[[Any], dict[str, Any]]:
    def info(model) -> dict[str, Any]:
        from napari_grainseg.models.net2 import NET2_CONDITION_CHANNELS, count_parameters

        blind = model.config.conditioning == "blind"
        return {
            "model": "net2",
            "architecture": model.config.to_dict(),
            "parameters": count_parameters(model),
            "condition_channels": [] if blind else ["state", *NET2_CONDITION_CHANNELS, "t/T"],
            **({} if net1_path is None else {"net1_weights": str(net1_path)}),
            "reproduce": "grainseg train net2 --config <this file's train_config as JSON> "
            "--net1-weights <the Net1 with net1_sha256> --out DIR",
        }

    return info


def train_net2(
    config: Net2TrainConfig,
    out_dir: str | Path,
    *,
    net1_weights: str | Path | None = None,
    device: str = "auto",
    resume: bool = True,
    max_minutes: float | None = None,
    pool_cache: str | Path | None = None,
    progress: bool = True,
    callback: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train Net2 against a given Net1; returns a summary dict. Resumes from ``out_dir/checkpoint.pt``.

    Parameters
    ----------
    config
        The run's configuration. A resumed run must use the same config and Net1.
    out_dir
        Run folder (created).
    net1_weights
        The Net1 whose outputs are the coarse maps; default: the shipped Net1.
        Its SHA-256 is recorded with the weights (``net1_sha256``).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"`` (for Net2; Net1 runs on the CPU once per pool image).
    resume
        Continue from the checkpoint in ``out_dir`` if there is one.
    max_minutes
        Stop cleanly (checkpoint written) after this much wall time.
    pool_cache
        Folder for the cached pool and validation set (default: ``out_dir``);
        runs with the same pool settings and Net1 share it.
    progress
        Show tqdm progress bars.
    callback, should_stop
        See :func:`napari_grainseg.training.loop.train`.
    """
    import itertools

    import torch

    from napari_grainseg.models.net2 import Net2
    from napari_grainseg.models.weights import file_sha256, load_net1, shipped_weights_dir

    out_dir = Path(out_dir)
    dev = prepare_device(config, device)
    net1_path = Path(net1_weights) if net1_weights is not None else shipped_weights_dir() / "net1.pt"
    net1 = load_net1(net1_path, device="cpu")
    net1_sha = file_sha256(net1_path)
    cache = Path(pool_cache) if pool_cache is not None else out_dir
    pool = build_pool(config, net1, net1_sha, cache, progress=progress)
    val = build_pool(config, net1, net1_sha, cache, validation=True, progress=progress)
    del net1
    baselines = net1_baselines(val)  # fixed for the run: scored once, logged with every validation

    def batches(start_step: int):
        return (make_batch(pool, step, config) for step in itertools.count(start_step))

    def loss_fn(model, batch):
        states, conds, ts, targets, unrolls = (torch.from_numpy(a).to(dev) for a in batch)
        states, ts = unroll_states(model, states, conds, ts, unrolls)
        return boundary_loss(model(states, conds, ts), targets, config.pos_weight, config.dice_weight)

    return train(
        config,
        lambda: Net2(config.net2_config()),
        batches,
        loss_fn,
        out_dir,
        device=dev,
        export=Export("net2.pt", _export_info(net1_path)),
        validate=lambda model: evaluate_net2(model, val, config, dev, baselines),
        select="val_vi_refined",
        identity={"net1_sha256": net1_sha},
        resume=resume,
        max_minutes=max_minutes,
        bar=progress,
        desc=f"Net2 ({config.net2_config().conditioning})",
        callback=callback,
        should_stop=should_stop,
    )


def export_net2_checkpoint(checkpoint: str | Path, weights_path: str | Path) -> Path:
    """Write the model of a (possibly unfinished) Net2 checkpoint as a weights file (the averaged
    weights with ``ema_decay``: the ones a finished run would export)."""
    from napari_grainseg.models.net2 import Net2

    return export_checkpoint(
        checkpoint, weights_path, Net2TrainConfig, lambda config: Net2(config.net2_config()), _export_info(None)
    )
